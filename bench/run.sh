#!/usr/bin/env bash
# Gatehouse vs panva/oidc-provider on one machine, 127.0.0.1 only. See bench/README.md.
#
#   bench/run.sh                      # 5 rounds x 3 cases, wrk -t2 -c32 -d10s
#   ROUNDS=3 DURATION=5s bench/run.sh
#
# Knobs (environment): ROUNDS (5), DURATION (10s), THREADS (2), CONNS (32), WARMUP (3s), PAUSE (1 s between runs),
# CASES ("token-rs256 token-es256 introspect"), ORDER (gatehouse-first | alternate: who runs first in each round),
# OP_WORKERS (1: oidc-provider Node processes for the JWT cases),
# GH_BIN (target/release/gatehouse), HEY (1: cross-check status codes with hey when installed),
# OPENSSL_SPEED (1), KEEP (0: keep the temp dir with logs and raw results), ports GH_PLATFORM_PORT (18002),
# GH_ISSUER_PORT (18003), OP_PORT_RS256 (18090), OP_PORT_ES256 (18091), OP_PORT_OPAQUE (18092).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck disable=SC2034 # read by log() in lib.sh
LOG_TAG='bench'
ROOT=$(dirname "$HERE")
BIN=${GH_BIN:-$ROOT/target/release/gatehouse}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-3s}
PAUSE=${PAUSE:-1}
CASES=${CASES:-"token-rs256 token-es256 introspect"}
ORDER=${ORDER:-gatehouse-first}
OP_WORKERS=${OP_WORKERS:-1}
HEY=${HEY:-1}
OPENSSL_SPEED=${OPENSSL_SPEED:-1}
KEEP=${KEEP:-0}
GH_PLATFORM_PORT=${GH_PLATFORM_PORT:-18002}
GH_ISSUER_PORT=${GH_ISSUER_PORT:-18003}
OP_PORT_RS256=${OP_PORT_RS256:-18090}
OP_PORT_ES256=${OP_PORT_ES256:-18091}
OP_PORT_OPAQUE=${OP_PORT_OPAQUE:-18092}
OP_CLIENT_ID=bench-client
OP_CLIENT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
AUDIENCE=http://bench.dev
TOKEN_BODY='grant_type=client_credentials&scope=my-scope'

# --- prerequisites ------------------------------------------------------------------------------------------
require_gatehouse
require_cmd node oidc-provider
require_cmd curl
ensure_cmd wrk
if [[ $HEY == 1 ]] && ! command -v hey >/dev/null; then
  if apt-cache show hey >/dev/null 2>&1; then apt_install hey || true; fi
  command -v hey >/dev/null || log "hey not available; wrk only"
fi

if [[ ! -d $HERE/oidc-provider/node_modules/oidc-provider ]]; then
  log "installing oidc-provider (npm)"
  if [[ -f $HERE/oidc-provider/package-lock.json ]]; then
    (cd "$HERE/oidc-provider" && npm ci --no-audit --no-fund >/dev/null)
  else
    (cd "$HERE/oidc-provider" && npm install --no-audit --no-fund >/dev/null)
  fi
fi
OP_VERSION=$(node -p "require('$HERE/oidc-provider/node_modules/oidc-provider/package.json').version")

require_free_ports "$GH_PLATFORM_PORT" "$GH_ISSUER_PORT" "$OP_PORT_RS256" "$OP_PORT_ES256" "$OP_PORT_OPAQUE"

# --- processes and cleanup ----------------------------------------------------------------------------------
bench_tmp gatehouse-bench

peak_rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

log "load before start: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min), $(nproc) cores"

# Gatehouse
start_gatehouse GATEHOUSE_PLATFORM__LISTEN="127.0.0.1:$GH_PLATFORM_PORT" GATEHOUSE_ISSUER__LISTEN="127.0.0.1:$GH_ISSUER_PORT"
platform_login
provision RS256 "$AUDIENCE"
provision ES256 "$AUDIENCE"

# oidc-provider: one process (or cluster) per configuration; the idle ones cost memory, not CPU.
start_op() { # start_op NAME PORT ALG FORMAT WORKERS
  NODE_ENV=production PORT=$2 ALG=$3 TOKEN_FORMAT=$4 WORKERS=$5 AUDIENCE=$AUDIENCE \
    CLIENT_ID=$OP_CLIENT_ID CLIENT_SECRET=$OP_CLIENT_SECRET \
    node "$HERE/oidc-provider/server.js" >"$TMP/op-$1.out" 2>"$TMP/op-$1.err" &
  local pid=$!
  PIDS+=("$pid")
  printf -v "OP_PID_$1" '%s' "$pid"
  wait_for "$TMP/op-$1.out" "oidc-provider ready" "$pid" 60 || { cat "$TMP/op-$1.err" >&2; die "oidc-provider $1 did not start"; }
}
log "starting oidc-provider $OP_VERSION (node $(node --version), $OP_WORKERS worker(s) for the JWT cases)"
start_op RS256 "$OP_PORT_RS256" RS256 jwt "$OP_WORKERS"
start_op ES256 "$OP_PORT_ES256" ES256 jwt "$OP_WORKERS"
start_op OPAQUE "$OP_PORT_OPAQUE" RS256 opaque 1
OP_AUTH="Basic $(printf '%s:%s' "$OP_CLIENT_ID" "$OP_CLIENT_SECRET" | base64 -w0)"

# --- targets: URL, auth, body, expected body substring ------------------------------------------------------
jwt_alg() { node -e 'console.log(JSON.parse(Buffer.from(process.argv[1].split(".")[0],"base64url")).alg)' "$1"; }

declare -A URL AUTH BODY EXPECT
for alg in RS256 ES256; do
  issuer_var=GH_ISSUER_$alg auth_var=GH_AUTH_$alg port_var=OP_PORT_$alg
  case_name=token-${alg,,}
  URL[$case_name/gatehouse]=${!issuer_var}/oauth/token
  AUTH[$case_name/gatehouse]=${!auth_var}
  URL[$case_name/oidc-provider]=http://127.0.0.1:${!port_var}/token
  AUTH[$case_name/oidc-provider]=$OP_AUTH
  for s in gatehouse oidc-provider; do
    BODY[$case_name/$s]=$TOKEN_BODY
    EXPECT[$case_name/$s]='"access_token"'
    tok=$(fetch_token "${URL[$case_name/$s]}" "${AUTH[$case_name/$s]}" "$TOKEN_BODY")
    got=$(jwt_alg "$tok") || die "$s $case_name: access token is not a JWT"
    [[ $got == "$alg" ]] || die "$s $case_name: access token signed with $got, expected $alg"
  done
done

GH_TOKEN=$(fetch_token "$GH_ISSUER_RS256/oauth/token" "$GH_AUTH_RS256" "$TOKEN_BODY")
OP_TOKEN=$(fetch_token "http://127.0.0.1:$OP_PORT_OPAQUE/token" "$OP_AUTH" "$TOKEN_BODY")
[[ $OP_TOKEN != *.*.* ]] || die "oidc-provider opaque mode returned a JWT"
URL[introspect/gatehouse]=$GH_ISSUER_RS256/introspect
AUTH[introspect/gatehouse]=$GH_AUTH_RS256
BODY[introspect/gatehouse]=token=$GH_TOKEN
URL[introspect/oidc-provider]=http://127.0.0.1:$OP_PORT_OPAQUE/token/introspection
AUTH[introspect/oidc-provider]=$OP_AUTH
BODY[introspect/oidc-provider]=token=$OP_TOKEN
for s in gatehouse oidc-provider; do
  EXPECT[introspect/$s]='"active":true'
  out=$(curl -sS -X POST "${URL[introspect/$s]}" -H "Authorization: ${AUTH[introspect/$s]}" \
    -H 'Content-Type: application/x-www-form-urlencoded' --data "${BODY[introspect/$s]}")
  [[ $out == *'"active":true'* ]] || die "$s introspection of a fresh token: $out"
done
log "smoke checks passed (token algs, opaque/JWT formats, active introspection)"

# --- measurement --------------------------------------------------------------------------------------------
RESULTS=$TMP/results.tsv
printf 'round\tcase\tserver\trps\tp50_ms\tp99_ms\tok\tnon200\tmismatch\tsockerr\tfirst_bad\n' >"$RESULTS"

run_wrk() { # run_wrk CASE SERVER DURATION -> RESULT line
  local key=$1/$2
  BENCH_BODY=${BODY[$key]} BENCH_AUTH=${AUTH[$key]} BENCH_EXPECT=${EXPECT[$key]} \
    wrk -t"$THREADS" -c"$CONNS" -d"$3" --timeout 10s -s "$HERE/post.lua" "${URL[$key]}" | grep '^RESULT'
}

log "warm-up: $WARMUP per case and server (JIT, caches, connection setup)"
for c in $CASES; do for s in gatehouse oidc-provider; do run_wrk "$c" "$s" "$WARMUP" >/dev/null; done; done

log "measuring: $ROUNDS rounds x [$CASES] x [gatehouse, oidc-provider], wrk -t$THREADS -c$CONNS -d$DURATION"
printf '\n%-5s %-12s %-14s %10s %9s %9s %8s %8s\n' round case server req/s p50_ms p99_ms ok errors
for ((r = 1; r <= ROUNDS; r++)); do
  servers="gatehouse oidc-provider"
  if [[ $ORDER == alternate ]] && (( r % 2 == 0 )); then servers="oidc-provider gatehouse"; fi
  for c in $CASES; do
    for s in $servers; do
      sleep "$PAUSE"
      line=$(run_wrk "$c" "$s" "$DURATION")
      rps=$(field rps "$line") p50=$(field p50_ms "$line") p99=$(field p99_ms "$line")
      ok=$(field ok "$line") non200=$(field non200 "$line") mismatch=$(field mismatch "$line") sockerr=$(field sockerr "$line")
      bad=$(sed -n 's/.*first_bad="\(.*\)"$/\1/p' <<<"$line")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$c" "$s" "$rps" "$p50" "$p99" "$ok" "$non200" "$mismatch" "$sockerr" "$bad" >>"$RESULTS"
      printf '%-5s %-12s %-14s %10s %9s %9s %8s %8s\n' "$r" "$c" "$s" "$rps" "$p50" "$p99" "$ok" "$((non200 + mismatch + sockerr))"
      if (( non200 + mismatch > 0 )); then log "  $s $c: $non200 non-200, $mismatch unexpected bodies; first: $bad"; fi
    done
  done
done

# --- independent status-code check with hey -----------------------------------------------------------------
HEY_REPORT=""
if [[ $HEY == 1 ]] && command -v hey >/dev/null; then
  log "cross-checking status codes with hey (-n $((CONNS * 64)) -c $CONNS per case and server)"
  for c in $CASES; do
    for s in gatehouse oidc-provider; do
      key=$c/$s
      dist=$(hey -n $((CONNS * 64)) -c "$CONNS" -m POST -T application/x-www-form-urlencoded \
        -H "Authorization: ${AUTH[$key]}" -d "${BODY[$key]}" "${URL[$key]}" \
        | awk '/Status code distribution/ {on=1; next} on && /\[/ {gsub(/^ +/, ""); printf "%s; ", $0} on && /^$/ {on=0}')
      HEY_REPORT+=$(printf '  %-12s %-14s %s' "$c" "$s" "${dist:-no responses}")$'\n'
    done
  done
fi

# --- raw signing rate ---------------------------------------------------------------------------------------
RSA_SIGN=""
EC_SIGN=""
if [[ $OPENSSL_SPEED == 1 ]] && command -v openssl >/dev/null; then
  log "openssl speed -seconds 3 -multi $(nproc) rsa2048 / ecdsap256 (servers idle)"
  RSA_SIGN=$(openssl speed -seconds 3 -multi "$(nproc)" rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {print $(NF-1)}' | tail -1)
  EC_SIGN=$(openssl speed -seconds 3 -multi "$(nproc)" ecdsap256 2>/dev/null | awk '/ecdsa \(nistp256\)/ {print $(NF-1)}' | tail -1)
fi

# How expensive is durability here? Synchronous 4 KiB writes/s in the data dir's file system.
FS_TYPE=$(df -T "$TMP" | awk 'NR == 2 {print $2}')
SYNC_RATE=$(dd if=/dev/zero of="$TMP/dsync-probe" bs=4k count=200 oflag=dsync 2>&1 \
  | awk '/copied/ {for (i = 1; i <= NF; i++) if ($i == "copied,") t = $(i + 1); if (t > 0) printf "%.0f", 200 / t}')
rm -f "$TMP/dsync-probe"

GH_RSS=$(peak_rss_mb "$GH_PID")
OP_RSS="RS256 $(peak_rss_mb "$OP_PID_RS256") / ES256 $(peak_rss_mb "$OP_PID_ES256") / opaque $(peak_rss_mb "$OP_PID_OPAQUE")"
GH_WARN=$(gh_warnings -c || true)
OP_ERR=$(cat "$TMP"/op-*.err | grep -v -e 'WARNING: Unsupported runtime' -e 'development-only in-memory adapter' | grep -c . || true)
GH_DATA=$(du -sh "$TMP/gh-data" | cut -f1)

# --- summary ------------------------------------------------------------------------------------------------
node - "$RESULTS" "$RSA_SIGN" "$EC_SIGN" <<'JS'
const fs = require('fs');
const [file, rsaSign, ecSign] = process.argv.slice(2);
const rows = fs.readFileSync(file, 'utf8').trim().split('\n').slice(1).map((l) => {
  const [round, kase, server, rps, p50, p99, ok, non200, mismatch, sockerr] = l.split('\t');
  return { round: +round, kase, server, rps: +rps, p50: +p50, p99: +p99, ok: +ok, bad: +non200 + +mismatch, sockerr: +sockerr };
});
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const cases = [...new Set(rows.map((r) => r.kase))];
console.log('\n=== Summary: Gatehouse (GH) vs oidc-provider (OP); per round, then medians ===');
const med = {};
for (const c of cases) {
  console.log(`\n[${c}]`);
  console.log('round   GH req/s  GH p99ms   OP req/s  OP p99ms   req/s GH/OP  p99 GH/OP');
  const rounds = [...new Set(rows.filter((r) => r.kase === c).map((r) => r.round))];
  const rr = []; const pr = [];
  for (const n of rounds) {
    const g = rows.find((r) => r.kase === c && r.round === n && r.server === 'gatehouse');
    const o = rows.find((r) => r.kase === c && r.round === n && r.server === 'oidc-provider');
    if (!g || !o) continue;
    rr.push(g.rps / o.rps); pr.push(g.p99 / o.p99);
    console.log(`${String(n).padEnd(5)} ${f(g.rps).padStart(10)} ${f(g.p99, 2).padStart(9)} ${f(o.rps).padStart(10)} ${f(o.p99, 2).padStart(9)} ${f(g.rps / o.rps, 2).padStart(12)} ${f(g.p99 / o.p99, 2).padStart(10)}`);
  }
  const gs = rows.filter((r) => r.kase === c && r.server === 'gatehouse');
  const os = rows.filter((r) => r.kase === c && r.server === 'oidc-provider');
  med[c] = { gh: median(gs.map((r) => r.rps)), op: median(os.map((r) => r.rps)) };
  console.log(`median ${f(med[c].gh).padStart(9)} ${f(median(gs.map((r) => r.p99)), 2).padStart(9)} ${f(med[c].op).padStart(10)} ${f(median(os.map((r) => r.p99)), 2).padStart(9)} ${f(median(rr), 2).padStart(12)} ${f(median(pr), 2).padStart(10)}   <- median of per-round ratios`);
  const badG = gs.reduce((a, r) => a + r.bad + r.sockerr, 0); const badO = os.reduce((a, r) => a + r.bad + r.sockerr, 0);
  const okG = gs.reduce((a, r) => a + r.ok, 0); const okO = os.reduce((a, r) => a + r.ok, 0);
  console.log(`checked responses: GH ${okG} ok / ${badG} bad, OP ${okO} ok / ${badO} bad`);
}
const rsa = parseFloat(rsaSign); const ec = parseFloat(ecSign);
if (Number.isFinite(rsa) || Number.isFinite(ec)) {
  console.log('\n[raw signing rate, openssl speed -multi <cores>]');
  if (Number.isFinite(rsa)) {
    console.log(`RSA-2048 sign/s: ${f(rsa)}`);
    if (med['token-rs256']) console.log(`  RS256 tokens/s as a fraction of it: GH ${f(med['token-rs256'].gh / rsa, 3)}, OP ${f(med['token-rs256'].op / rsa, 3)}`);
  }
  if (Number.isFinite(ec)) {
    console.log(`ECDSA P-256 sign/s: ${f(ec)}`);
    if (med['token-es256']) console.log(`  ES256 tokens/s as a fraction of it: GH ${f(med['token-es256'].gh / ec, 3)}, OP ${f(med['token-es256'].op / ec, 3)}`);
  }
}
JS

cat <<EOF

[setup]
wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds (order: $ORDER), warm-up $WARMUP, load generator on the same $(nproc)-core host
Gatehouse: $("$BIN" --version 2>/dev/null || echo "$BIN"), SQLite, every token record persisted (group commit) before the response; data dir now $GH_DATA
data dir file system: ${FS_TYPE:-?}, ${SYNC_RATE:-?} synchronous 4 KiB writes/s (dd oflag=dsync)
oidc-provider $OP_VERSION on node $(node --version), $OP_WORKERS process(es) for JWT cases, 1 for introspection; tokens in memory only (JWTs not stored at all, opaque tokens in an in-process LRU)
peak RSS MB: Gatehouse $GH_RSS; oidc-provider $OP_RSS
Gatehouse stderr lines matching warn/error: $GH_WARN; oidc-provider stderr lines (besides its two startup warnings): $OP_ERR
load average after: $(cut -d' ' -f1-3 /proc/loadavg)
EOF
if [[ -n $HEY_REPORT ]]; then printf '\n[hey status codes, -n %s -c %s]\n%s' "$((CONNS * 64))" "$CONNS" "$HEY_REPORT"; fi
if [[ $GH_WARN != 0 ]]; then printf '\n[Gatehouse stderr, first lines]\n'; gh_warnings | head -5; fi
if [[ $KEEP == 1 ]]; then printf '\nraw results: %s\n' "$RESULTS"; fi
