#!/usr/bin/env bash
# What upstream-oauth costs on a cache hit: one Gatehouse, two routes to the same upstream (nginx), the same requests
# on each. See bench/README.md, "upstream-oauth".
#
#   /plain    no plugin
#   /uoauth   upstream-oauth (client_secret_post to the node's own issuer; every measured request is a cache hit:
#             the token, valid for an hour, is fetched once before measuring)
#
#   bench/upstream-oauth.sh              # wrk: ROUNDS rounds, each route in turn; req/s, CPU per request and the
#                                        # ratios of /uoauth to /plain measured in the same round
#   bench/upstream-oauth.sh callgrind    # instructions per request on each route (load-independent): Gatehouse
#                                        # under callgrind, REQUESTS requests per route over one connection
#
# Knobs (environment): ROUNDS (5), DURATION (10s), THREADS (2), CONNS (32), WARMUP (3s), PAUSE (1), REQUESTS (2000,
# callgrind), GH_BIN (target/release/gatehouse), KEEP (0), ports GH_PROXY_PORT (18300), GH_ADMIN_PORT (18301),
# GH_PLATFORM_PORT (18302), GH_ISSUER_PORT (18303), GH_ECHO_PORT (18304), UPSTREAM_PORT (18381).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck disable=SC2034 # read by log() in lib.sh
LOG_TAG='upstream-oauth'
ROOT=$(dirname "$HERE")
BIN=${GH_BIN:-$ROOT/target/release/gatehouse}
MODE=${1:-wrk}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-3s}
PAUSE=${PAUSE:-1}
REQUESTS=${REQUESTS:-2000}
KEEP=${KEEP:-0}
GH_PROXY_PORT=${GH_PROXY_PORT:-18300}
GH_ADMIN_PORT=${GH_ADMIN_PORT:-18301}
GH_PLATFORM_PORT=${GH_PLATFORM_PORT:-18302}
GH_ISSUER_PORT=${GH_ISSUER_PORT:-18303}
GH_ECHO_PORT=${GH_ECHO_PORT:-18304}
UPSTREAM_PORT=${UPSTREAM_PORT:-18381}

require_gatehouse
require_cmd curl
require_cmd node "reading JSON answers"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { apt_install nginx || true; NGINX=$(command -v nginx || echo /usr/sbin/nginx); }
[[ -x $NGINX ]] || die "nginx is required and could not be installed"
case $MODE in
  wrk) ensure_cmd wrk ;;
  callgrind) require_cmd valgrind; require_cmd callgrind_control ;;
  *) die "usage: $0 [wrk|callgrind]" ;;
esac
require_free_ports "$GH_PROXY_PORT" "$GH_ADMIN_PORT" "$GH_PLATFORM_PORT" "$GH_ISSUER_PORT" "$GH_ECHO_PORT" "$UPSTREAM_PORT"
bench_tmp gatehouse-upstream-oauth
log "load before start: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min), $(nproc) cores"

log "starting the upstream (nginx, bench/nginx/upstream.conf) on 127.0.0.1:$UPSTREAM_PORT"
mkdir -p "$TMP/upstream/tmp"
sed "s/127\.0\.0\.1:18281/127.0.0.1:$UPSTREAM_PORT/g" "$HERE/nginx/upstream.conf" >"$TMP/upstream.conf"
user=()
[[ $(id -u) -ne 0 ]] || user=(-g 'user root;')
"$NGINX" -p "$TMP/upstream/" -c "$TMP/upstream.conf" -e stderr "${user[@]}" >"$TMP/upstream.out" 2>"$TMP/upstream.err" &
PIDS+=("$!")
wait_http "http://127.0.0.1:$UPSTREAM_PORT/" "$!" 20 || { cat "$TMP/upstream.err" >&2; die "the upstream did not start"; }

if [[ $MODE == callgrind ]]; then
  cat >"$TMP/under-callgrind" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$TMP/callgrind.out.%p "$BIN" "\$@"
SH
  chmod +x "$TMP/under-callgrind"
  REAL_BIN=$BIN
  BIN=$TMP/under-callgrind
fi
# Access log off: the same on both routes, and measured elsewhere.
start_proxy_gatehouse GATEHOUSE_GATEWAY__ACCESS_LOG=off
platform_login
provision RS256 http://bench.dev
CLIENT_ID=$(json_get "$TMP/client-RS256.json" j.id)
CLIENT_SECRET=$(json_get "$TMP/client-RS256.json" j.client_secret)

admin POST /services "{\"name\":\"bench\",\"url\":\"http://127.0.0.1:$UPSTREAM_PORT/\"}"
admin POST /services/bench/routes '{"name":"plain","paths":["/plain"]}'
admin POST /services/bench/routes '{"name":"uoauth","paths":["/uoauth"]}'
# First with a wrong secret, until /uoauth answers the plugin's 502 (so the plugin runs), then the right one.
plugin() {
  echo "{\"name\":\"upstream-oauth\",\"config\":{\"oauth\":{\"token_endpoint\":\"$GH_ISSUER_RS256/oauth/token\",\"client_id\":\"$CLIENT_ID\",\"client_secret\":\"$1\",\"scopes\":[\"my-scope\"]}}}"
}
admin POST /routes/uoauth/plugins "$(plugin wrong-secret-for-the-bench)"
PLUGIN_ID=$(json_get "$TMP/admin.json" j.id)
ROUTES=(plain uoauth)

PROXY=http://127.0.0.1:$GH_PROXY_PORT
left=600
until [[ $(curl -sS -o /dev/null -w '%{http_code}' "$PROXY/uoauth") == 502 ]]; do
  (( left-- > 0 )) || die "$PROXY/uoauth never answered the plugin's 502"
  sleep 0.1
done
code=$(curl -sS -o "$TMP/admin.json" -w '%{http_code}' -X PATCH "$ADMIN/plugins/$PLUGIN_ID" \
  -H 'content-type: application/json' --data "$(plugin "$CLIENT_SECRET")")
[[ $code == 200 ]] || { cat "$TMP/admin.json" >&2; die "admin API: PATCH /plugins/$PLUGIN_ID -> HTTP $code"; }
for route in "${ROUTES[@]}"; do
  left=600
  until [[ $(curl -sS -o /dev/null -w '%{http_code}' "$PROXY/$route") == 200 ]]; do
    (( left-- > 0 )) || { curl -sS -i "$PROXY/$route" >&2; die "$PROXY/$route does not answer 200"; }
    sleep 0.1
  done
done
# A 200 from /uoauth means the plugin got its token (without one it answers 502): every measured request is a hit.

if [[ $MODE == callgrind ]]; then
  printf '%s\n' "$("$REAL_BIN" --version), $REQUESTS requests per route over one connection"
  printf '%-10s %14s %10s\n' route instr/request "vs plain"
  base=0
  for route in "${ROUTES[@]}"; do
    awk -v url="$PROXY/$route" -v n="$REQUESTS" 'BEGIN {
      for (i = 0; i < n; i++) {
        if (i > 0) print "next"
        printf "url = \"%s\"\noutput = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\n", url
      }
    }' >"$TMP/requests-$route.txt"
    rm -f "$TMP"/callgrind.out.*
    callgrind_control -z "$GH_PID" >/dev/null 2>&1
    callgrind_control -i on "$GH_PID" >/dev/null 2>&1
    statuses=$(curl -s --no-progress-meter --parallel --parallel-max 1 -K "$TMP/requests-$route.txt" | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
    callgrind_control -d "$GH_PID" >/dev/null 2>&1
    callgrind_control -i off "$GH_PID" >/dev/null 2>&1
    [[ $statuses == " $REQUESTS 200 " ]] || die "/$route: expected $REQUESTS x 200, got $statuses"
    ir=$(for f in "$TMP"/callgrind.out.*; do sed -n 's/^summary: //p' "$f"; done | awk '{s += $1} END {print s}')
    for f in "$TMP"/callgrind.out.*; do mv "$f" "$TMP/callgrind-$route.${f##*.}"; done
    per=$(( ir / REQUESTS ))
    (( base > 0 )) || base=$per
    printf '%-10s %14d %10s\n' "/$route" "$per" "$(awk -v a="$per" -v b="$base" 'BEGIN { printf "x%.3f", a / b }')"
  done
  exit 0
fi

wrk_rounds plain
