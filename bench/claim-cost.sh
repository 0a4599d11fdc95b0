#!/usr/bin/env bash
# What one templated claim adds to a token at the token endpoint: wrk on /oauth/token of an ES256 auth server whose
# tokens carry a static claim, with a template claim switched off and on in alternating runs; Gatehouse's CPU time
# per token is compared. See bench/README.md, "Claim templates".
#
#   bench/claim-cost.sh                      # 5 rounds x [off, on], wrk -t2 -c32 -d5s each
#   TEMPLATE='${ upper .Client.Name }' bench/claim-cost.sh
#
# Knobs (environment): ROUNDS (5), DURATION (5s), THREADS (2), CONNS (32), WARMUP (3s), TEMPLATE (the claim value,
# default '${ .AuthServer.Audience }-${ .Client.ID }'), GH_BIN, KEEP (0), ports GH_PLATFORM_PORT (18302) and
# GH_ISSUER_PORT (18303); the other listeners take free ports. (Not GATEHOUSE_*: that prefix is configuration.)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck disable=SC2034 # read by log() in lib.sh
LOG_TAG='claim-bench'
ROOT=$(dirname "$HERE")
BIN=${GH_BIN:-$ROOT/target/release/gatehouse}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-3s}
KEEP=${KEEP:-0}
# shellcheck disable=SC2016 # a Go template, not a shell expansion
TEMPLATE=${TEMPLATE:-'${ .AuthServer.Audience }-${ .Client.ID }'}
GH_PLATFORM_PORT=${GH_PLATFORM_PORT:-18302}
GH_ISSUER_PORT=${GH_ISSUER_PORT:-18303}

require_gatehouse
require_cmd curl
require_cmd node "reading JSON answers"
ensure_cmd wrk
require_free_ports "$GH_PLATFORM_PORT" "$GH_ISSUER_PORT"
bench_tmp gatehouse-claim-bench

start_gatehouse GATEHOUSE_PLATFORM__LISTEN="127.0.0.1:$GH_PLATFORM_PORT" GATEHOUSE_ISSUER__LISTEN="127.0.0.1:$GH_ISSUER_PORT" \
  GATEHOUSE_PROXY__LISTEN=127.0.0.1:0 GATEHOUSE_ADMIN__LISTEN=127.0.0.1:0 GATEHOUSE_ECHO__LISTEN=127.0.0.1:0 \
  GATEHOUSE_STATUS__LISTEN=127.0.0.1:0 GATEHOUSE_PROXY__LISTEN_TLS=127.0.0.1:0
platform_login
provision ES256 http://bench.dev
SERVER=$(json_get "$TMP/as-ES256.json" j.id)
api POST "/v1/auth-servers/$SERVER/claims" \
  '{"name":"static-claim","value":"static","include_in_token":true,"include_in_all_scopes":true,"enabled":true}' "$TMP/static.json"
api POST "/v1/auth-servers/$SERVER/claims" \
  "$(node -e 'console.log(JSON.stringify({name: "template-claim", value: process.argv[1], include_in_token: true, include_in_all_scopes: true, enabled: false}))' "$TEMPLATE")" \
  "$TMP/template.json"
CLAIM=$(json_get "$TMP/template.json" j.id)

# switch on|off: enables or disables the template claim, then waits until minted tokens show it
payload() { node -e 'console.log(Buffer.from(process.argv[1].split(".")[1], "base64url").toString())' "$1"; }
switch() {
  local enabled=false code left=50
  [[ $1 == on ]] && enabled=true
  code=$(curl -sS -o "$TMP/patch.json" -w '%{http_code}' -X PATCH "$PLATFORM/v1/auth-servers/$SERVER/claims/$CLAIM" \
    -H "Authorization: Bearer $KONNECT_TOKEN" -H 'Content-Type: application/json' --data "{\"enabled\":$enabled}")
  [[ $code == 200 ]] || { cat "$TMP/patch.json" >&2; die "PATCH claim -> HTTP $code"; }
  while :; do
    if payload "$(fetch_token "$GH_ISSUER_ES256/oauth/token" "$GH_AUTH_ES256")" | grep -q '"template-claim"'; then
      [[ $1 == on ]] && break
    else
      [[ $1 == off ]] && break
    fi
    (( left-- > 0 )) || die "the issuer did not pick up the claim switch ($1)"
    sleep 0.1
  done
}
switch on
log "a token with the template claim: $(payload "$(fetch_token "$GH_ISSUER_ES256/oauth/token" "$GH_AUTH_ES256")" | grep -o '"template-claim":[^,}]*')"

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$GH_PID/stat"; }
export BENCH_BODY='grant_type=client_credentials&scope=my-scope' BENCH_AUTH=$GH_AUTH_ES256 BENCH_EXPECT='"access_token"'
RESULTS=$TMP/results.tsv
# run MODE DURATION ROUND: one wrk run; appends "round mode rps cpu_us_per_token errors"
run() {
  local before after line requests
  before=$(cpu_ticks)
  line=$(wrk -t"$THREADS" -c"$CONNS" -d"$2" --timeout 10s -s "$HERE/post.lua" "$GH_ISSUER_ES256/oauth/token" | grep '^RESULT') \
    || die "wrk gave no result"
  after=$(cpu_ticks)
  [[ $3 == warmup ]] && return 0
  requests=$(field ok "$line")
  printf '%s\t%s\t%s\t%s\t%s\n' "$3" "$1" "$(field rps "$line")" \
    "$(awk -v t=$(( after - before )) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')" \
    "$(( $(field non200 "$line") + $(field mismatch "$line") + $(field sockerr "$line") ))" >>"$RESULTS"
  tail -1 "$RESULTS"
}

log "warm-up $WARMUP, then $ROUNDS rounds x [off, on], wrk -t$THREADS -c$CONNS -d$DURATION on $GH_ISSUER_ES256/oauth/token"
run on "$WARMUP" warmup
for ((r = 1; r <= ROUNDS; r++)); do
  for mode in off on; do
    switch "$mode"
    run "$mode" "$DURATION" "$r"
  done
done

awk -F'\t' -v template="$TEMPLATE" '
function median(a, n,    i, j, t) {
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ if ($2 == "off") { off[++n_off] = $4; rps_off[n_off] = $3 } else { on[++n_on] = $4; rps_on[n_on] = $3; d[n_on] = $4 - off[n_on] }
  errors += $5 }
END {
  printf "\n=== One template claim at the token endpoint (ES256), %d rounds ===\n", n_on
  printf "template: %s\n", template
  printf "tokens/s (median): without %.0f, with %.0f\n", median(rps_off, n_off), median(rps_on, n_on)
  printf "Gatehouse CPU per token (median): without %.1f us, with %.1f us\n", median(off, n_off), median(on, n_on)
  printf "cost of the template claim: median of per-round differences %.1f us (goal < 20 us)\n", median(d, n_on)
  printf "errors: %d\n", errors
}' "$RESULTS"
