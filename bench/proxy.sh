#!/usr/bin/env bash
# Gatehouse's proxy vs nginx as a plain reverse proxy, in front of the same upstream, on 127.0.0.1 only.
# See bench/README.md, "Proxy benchmark".
#
#   bench/proxy.sh                          # 5 rounds, wrk -t2 -c64 -d10s --latency per proxy and round
#   ROUNDS=3 DURATION=5s bench/proxy.sh
#   PERF=1 bench/proxy.sh                   # then a perf profile of Gatehouse under the same load
#   AUTH=introspection bench/proxy.sh       # Gatehouse with the oauth2-introspection plugin vs nginx without auth
#   AUTH=introspection GH_STANDIN=nginx bench/proxy.sh   # the ceiling: an nginx sending what Gatehouse sends, in its place
#   AUTH=oidc NGINX_HEADERS=gatehouse bench/proxy.sh     # Gatehouse with openid-connect (local JWT validation)
#
# Knobs (environment): ROUNDS (5), DURATION (10s), THREADS (2), CONNS (64), WARMUP (5s), PAUSE (1 s between runs),
# ORDER (gatehouse-first | alternate: who runs first in each round), REQ_PATH (/bench: the path requested),
# CHECK_DURATION (3s: the strict status/body check per proxy after the rounds; 0 skips it),
# AUTH (none | introspection: Gatehouse's route gets the tutorial's oauth2-introspection plugin, checking tokens at
# its own issuer, and every request of both proxies carries one bearer token, so Gatehouse runs its cache-hit path;
# then MISS_DURATION (DURATION) of requests to a route whose plugin never caches, the cache-miss path; oidc: the
# how-to's openid-connect plugin (issuer, auth_methods [bearer], audience) validating the same kind of token locally
# against its issuer's keys; the token goes upstream in `Authorization` as the client sent it, so nginx forwarding
# the client's headers sends the same),
# NGINX_HEADERS (none: the nginx proxy adds no header; credentials (AUTH=introspection only): it sends the upstream
# the same X-Credential-* headers Gatehouse sends, static values from the issuer's answer for the bench token;
# gatehouse: every header Gatehouse sends the upstream and the client (Kong's forwarded headers, Via, a request id,
# the latency headers, and the credentials with AUTH=introspection). Either way nginx checks nothing; the upstream
# then parses the same request heads behind both proxies and the ratio compares the proxies' own work),
# NGINX_CREDENTIALS (0; 1 is NGINX_HEADERS=credentials, its older name),
# GH_STANDIN (none; nginx: in Gatehouse's place, measure a second nginx (STANDIN_PORT, 18282) with
# NGINX_HEADERS=gatehouse's directives: how close to the nginx baseline a proxy exactly as efficient as nginx could
# come while sending what Gatehouse must send),
# PERF (0: 1 profiles Gatehouse with perf record -g for PERF_DURATION, 10s, and prints the top symbols),
# GH_ACCESS_LOG (off; stderr or a path: Gatehouse's gateway.access_log), GH_BIN (target/release/gatehouse), KEEP (0: keep the temp dir with logs and raw results),
# ports GH_PROXY_PORT (18200), GH_ADMIN_PORT (18201), GH_PLATFORM_PORT (18202), GH_ISSUER_PORT (18203),
# GH_ECHO_PORT (18204), NGINX_PORT (18280), UPSTREAM_PORT (18281), STANDIN_PORT (18282).
# (Knobs are not named GATEHOUSE_*: Gatehouse reads every GATEHOUSE_* variable as configuration.)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck disable=SC2034 # read by log() in lib.sh
LOG_TAG='proxy-bench'
ROOT=$(dirname "$HERE")
BIN=${GH_BIN:-$ROOT/target/release/gatehouse}
ROUNDS=${ROUNDS:-5}
GH_ACCESS_LOG=${GH_ACCESS_LOG:-off}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-5s}
PAUSE=${PAUSE:-1}
ORDER=${ORDER:-gatehouse-first}
REQ_PATH=${REQ_PATH:-/bench}
CHECK_DURATION=${CHECK_DURATION:-3s}
PERF=${PERF:-0}
PERF_DURATION=${PERF_DURATION:-10s}
KEEP=${KEEP:-0}
AUTH=${AUTH:-none}
MISS_DURATION=${MISS_DURATION:-$DURATION}
GH_PROXY_PORT=${GH_PROXY_PORT:-18200}
GH_ADMIN_PORT=${GH_ADMIN_PORT:-18201}
GH_PLATFORM_PORT=${GH_PLATFORM_PORT:-18202}
GH_ISSUER_PORT=${GH_ISSUER_PORT:-18203}
GH_ECHO_PORT=${GH_ECHO_PORT:-18204}
NGINX_CREDENTIALS=${NGINX_CREDENTIALS:-0}
NGINX_HEADERS=${NGINX_HEADERS:-none}
[[ $NGINX_CREDENTIALS == 0 ]] || NGINX_HEADERS=credentials
GH_STANDIN=${GH_STANDIN:-none}
STANDIN_PORT=${STANDIN_PORT:-18282}
NGINX_PORT=${NGINX_PORT:-18280}
UPSTREAM_PORT=${UPSTREAM_PORT:-18281}
EXPECTED_BODY='hello'

# --- prerequisites ------------------------------------------------------------------------------------------
require_gatehouse
require_cmd curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { apt_install nginx || true; NGINX=$(command -v nginx || echo /usr/sbin/nginx); }
[[ -x $NGINX ]] || die "nginx is required and could not be installed"
ensure_cmd wrk
if [[ $PERF == 1 ]]; then command -v perf >/dev/null || die "PERF=1 needs perf"; fi
[[ $PERF == 0 || $GH_STANDIN == none ]] || die "PERF=1 profiles Gatehouse; with GH_STANDIN=nginx Gatehouse is not measured"

case $GH_STANDIN in none | nginx) ;; *) die "GH_STANDIN must be none or nginx" ;; esac
case $NGINX_HEADERS in none | credentials | gatehouse) ;; *) die "NGINX_HEADERS must be none, credentials or gatehouse" ;; esac
[[ $NGINX_HEADERS != credentials || $AUTH == introspection ]] || die "NGINX_HEADERS=credentials needs AUTH=introspection"
require_free_ports "$GH_PROXY_PORT" "$GH_ADMIN_PORT" "$GH_PLATFORM_PORT" "$GH_ISSUER_PORT" "$GH_ECHO_PORT" "$NGINX_PORT" "$UPSTREAM_PORT"
[[ $GH_STANDIN == none ]] || require_free_ports "$STANDIN_PORT"

# --- processes and cleanup ----------------------------------------------------------------------------------
# SAMPLER: the RSS sampler of the run in progress (run_wrk); on exit it is stopped first, before the servers.
SAMPLER=""
cleanup_extra() { [[ -z $SAMPLER ]] || kill "$SAMPLER" 2>/dev/null || true; }
bench_tmp gatehouse-proxy-bench

log "load before start: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min), $(nproc) cores"

# nginx instances: the checked-in configs, with the ports rewritten when the knobs differ from their defaults.
start_nginx() { # start_nginx NAME CONF [EXTRA_PROXY_DIRECTIVES_FILE [LISTEN_PORT]] -> NGINX_PID_<NAME>
  local name=$1 conf=$TMP/$1.conf prefix=$TMP/$1 user=() extra=${3:-/dev/null} port=${4:-$NGINX_PORT}
  mkdir -p "$prefix/tmp"
  sed -e "s/127\.0\.0\.1:18280/127.0.0.1:$port/g" -e "s/127\.0\.0\.1:18281/127.0.0.1:$UPSTREAM_PORT/g" \
    -e "/proxy_set_header Connection/r $extra" "$2" >"$conf"
  # As root, nginx would run its workers as "nobody", who cannot enter the temp dir.
  [[ $(id -u) -ne 0 ]] || user=(-g 'user root;')
  "$NGINX" -t -q -p "$prefix/" -c "$conf" -e stderr "${user[@]}" 2>"$TMP/$name.err" \
    || { cat "$TMP/$name.err" >&2; die "nginx $name: configuration test failed"; }
  "$NGINX" -p "$prefix/" -c "$conf" -e stderr "${user[@]}" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  PIDS+=("$!")
  printf -v "NGINX_PID_$name" '%s' "$!"
}
log "starting nginx upstream on 127.0.0.1:$UPSTREAM_PORT ($("$NGINX" -v 2>&1 | sed 's/.*: //'))"
start_nginx upstream "$HERE/nginx/upstream.conf"
wait_http "http://127.0.0.1:$UPSTREAM_PORT/" "$NGINX_PID_upstream" 20 || { cat "$TMP/upstream.err" >&2; die "nginx upstream did not start"; }

# Gatehouse: quickstart (embedded storage, every listener on loopback); only the proxy is under load. Its access
# log is off by default here because bench/nginx/nginx.conf has `access_log off`: like for like. GH_ACCESS_LOG=stderr
# measures Gatehouse with its default (a line per request, about 3,000 instructions; bench/README.md).
start_proxy_gatehouse GATEHOUSE_GATEWAY__ACCESS_LOG="$GH_ACCESS_LOG"
admin POST /services "{\"name\":\"bench\",\"url\":\"http://127.0.0.1:$UPSTREAM_PORT/\"}"
admin POST /services/bench/routes '{"name":"bench","paths":["/"]}'

# AUTH=introspection: the tutorial's plugin on the bench route, a token from Gatehouse's issuer on every request
# (nginx ignores it); a second route, /miss, whose plugin sets introspect_request (never cached): every request
# there is one introspection call.
AUTH_HEADER=()
case $AUTH in
  none) PLUGINS="no plugins" ;;
  introspection)
    require_cmd node "reading JSON answers"
    platform_login
    provision RS256 http://bench.dev
    BEARER=$(fetch_token "$GH_ISSUER_RS256/oauth/token" "$GH_AUTH_RS256")
    AUTH_HEADER=(-H "Authorization: Bearer $BEARER")
    introspection_config() { # introspection_config EXTRA_JSON_FIELDS
      printf '{"name":"oauth2-introspection","config":{"introspection_url":"%s/introspect","authorization_value":"%s","consumer_by":"client_id","custom_claims_forward":["Claim"]%s}}' \
        "$GH_ISSUER_RS256" "$GH_AUTH_RS256" "$1"
    }
    admin POST /routes/bench/plugins "$(introspection_config '')"
    admin POST /services/bench/routes '{"name":"miss","paths":["/miss"]}'
    admin POST /routes/miss/plugins "$(introspection_config ',"introspect_request":true')"
    PLUGINS="oauth2-introspection (tutorial config: consumer_by client_id, custom_claims_forward [Claim], ttl 30) checking an RS256 token at its own issuer"
    ;;
  oidc)
    require_cmd node "reading JSON answers"
    platform_login
    provision RS256 http://bench.dev
    BEARER=$(fetch_token "$GH_ISSUER_RS256/oauth/token" "$GH_AUTH_RS256")
    AUTH_HEADER=(-H "Authorization: Bearer $BEARER")
    admin POST /routes/bench/plugins "$(printf '{"name":"openid-connect","config":{"issuer":"%s","auth_methods":["bearer"],"audience":["http://bench.dev"]}}' "$GH_ISSUER_RS256")"
    PLUGINS="openid-connect (the how-to's config: issuer, auth_methods [bearer], audience) validating an RS256 token locally"
    ;;
  *) die "AUTH must be none, introspection or oidc" ;;
esac

# The nginx proxies start once the token exists: their extra directives may carry the headers Gatehouse derives
# from that token's introspection answer (Kong's standard fields, one header per array value), as static values.
if [[ $AUTH == introspection ]] && [[ $NGINX_HEADERS == credentials || $NGINX_HEADERS == gatehouse || $GH_STANDIN == nginx ]]; then
  curl -sS -o "$TMP/introspected.json" -X POST "$GH_ISSUER_RS256/introspect" -H "Authorization: $GH_AUTH_RS256" \
    --data-urlencode "token=$BEARER" || die "introspecting the bench token failed"
  node -e '
    const a = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    if (!a.active) process.exit(1);
    const fields = [["Scope", "scope"], ["Client-Id", "client_id"], ["Identifier", "username"], ["Token-Type", "token_type"],
      ["Exp", "exp"], ["Iat", "iat"], ["Nbf", "nbf"], ["Sub", "sub"], ["Aud", "aud"], ["Iss", "iss"], ["Jti", "jti"]];
    for (const [name, field] of fields) {
      for (const v of [].concat(a[field] ?? [])) console.log(`proxy_set_header X-Credential-${name} "${String(v).replace(/["\\$]/g, "")}";`);
    }' "$TMP/introspected.json" >"$TMP/headers-credentials.conf" || die "the bench token's introspection answer is not active"
else
  : >"$TMP/headers-credentials.conf"
fi
# What Gatehouse sends besides the credentials (see "What Gatehouse sends" in bench/README.md): Kong's forwarded
# headers, Via and the request id upstream; Via, the latency headers and the request id to the client. The request
# id is a fixed 32-digit value (nginx's $request_id reads the random generator for every request; Gatehouse counts),
# so this nginx does at most the work Gatehouse's headers need.
cat >"$TMP/headers-gatehouse.conf" <<'NGX'
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_set_header X-Forwarded-Proto $scheme;
proxy_set_header X-Forwarded-Host $host;
proxy_set_header X-Forwarded-Port $server_port;
proxy_set_header X-Forwarded-Path $uri;
proxy_set_header X-Real-IP $remote_addr;
proxy_set_header Via "1.1 gatehouse/VERSION";
proxy_set_header X-Kong-Request-Id 0123456789abcdef0123456789abcdef;
add_header Via "1.1 gatehouse/VERSION";
add_header X-Kong-Upstream-Latency 0;
add_header X-Kong-Proxy-Latency 0;
add_header X-Kong-Request-Id 0123456789abcdef0123456789abcdef;
NGX
sed -i "s|VERSION|$("$BIN" --version | awk '{print $2}')|" "$TMP/headers-gatehouse.conf"
cat "$TMP/headers-credentials.conf" >>"$TMP/headers-gatehouse.conf"
cp /dev/null "$TMP/headers-none.conf"
headers_what() { # headers_what KIND
  case $1 in
    none) echo "plain proxy" ;;
    credentials) echo "proxy adding the same $(grep -c . "$TMP/headers-credentials.conf") X-Credential-* headers as Gatehouse (static values)" ;;
    gatehouse) echo "proxy sending every header Gatehouse sends ($(grep -c . "$TMP/headers-gatehouse.conf") directives$([[ $AUTH != introspection ]] || echo "; credentials as static values"))" ;;
  esac
}
NGINX_WHAT=$(headers_what "$NGINX_HEADERS")
log "starting nginx proxy on 127.0.0.1:$NGINX_PORT ($NGINX_WHAT)"
start_nginx proxy "$HERE/nginx/nginx.conf" "$TMP/headers-$NGINX_HEADERS.conf"
wait_http "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID_proxy" 20 || { cat "$TMP/proxy.err" >&2; die "nginx proxy did not start"; }
if [[ $GH_STANDIN == nginx ]]; then
  log "starting the stand-in nginx on 127.0.0.1:$STANDIN_PORT ($(headers_what gatehouse)); it replaces Gatehouse in every measurement"
  start_nginx standin "$HERE/nginx/nginx.conf" "$TMP/headers-gatehouse.conf" "$STANDIN_PORT"
  wait_http "http://127.0.0.1:$STANDIN_PORT/" "$NGINX_PID_standin" 20 || { cat "$TMP/standin.err" >&2; die "the stand-in nginx did not start"; }
fi

# --- smoke checks: both proxies answer the upstream's 200 "hello" -------------------------------------------
GH_URL=http://127.0.0.1:$GH_PROXY_PORT$REQ_PATH
[[ $GH_STANDIN == none ]] || GH_URL=http://127.0.0.1:$STANDIN_PORT$REQ_PATH
NGINX_URL=http://127.0.0.1:$NGINX_PORT$REQ_PATH
check_once() { # check_once URL -> "code body"
  curl -sS "${AUTH_HEADER[@]}" -D "$TMP/last-headers" -o "$TMP/last-body" -w '%{http_code}' "$1" 2>/dev/null || true
}
left=100
until [[ $(check_once "$GH_URL") == 200 ]] && [[ $(cat "$TMP/last-body") == "$EXPECTED_BODY" ]]; do
  (( left-- > 0 )) || { cat "$TMP/last-headers" "$TMP/last-body" >&2; die "Gatehouse proxy does not answer 200 \"$EXPECTED_BODY\" at $GH_URL"; }
  sleep 0.1
done
cp "$TMP/last-headers" "$TMP/gh-response-headers"
[[ $(check_once "$NGINX_URL") == 200 && $(cat "$TMP/last-body") == "$EXPECTED_BODY" ]] \
  || { cat "$TMP/last-headers" "$TMP/last-body" >&2; die "nginx proxy does not answer 200 \"$EXPECTED_BODY\" at $NGINX_URL"; }
cp "$TMP/last-headers" "$TMP/nginx-response-headers"
log "smoke checks passed: $GH_URL and $NGINX_URL both answer 200 \"$EXPECTED_BODY\" from 127.0.0.1:$UPSTREAM_PORT"
if [[ $AUTH == oidc && $GH_STANDIN == none ]]; then
  code=$(curl -sS -o /dev/null -w '%{http_code}' "$GH_URL")
  [[ $code == 401 ]] || die "Gatehouse answers $code without a token; the plugin is not running"
  log "the plugin runs: 401 without the token, 200 with it"
fi
if [[ $AUTH == introspection && $GH_STANDIN == none ]]; then
  code=$(curl -sS -o /dev/null -w '%{http_code}' "$GH_URL")
  [[ $code == 401 ]] || die "Gatehouse answers $code without a token; the plugin is not running"
  code=$(curl -sS "${AUTH_HEADER[@]}" -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GH_PROXY_PORT/miss")
  [[ $code == 200 ]] || die "Gatehouse answers $code on /miss with the token"
  log "the plugin runs: 401 without the token, 200 with it (bench route and /miss)"
fi

# --- measurement helpers ------------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
target_url() { if [[ $1 == gatehouse ]]; then echo "$GH_URL"; else echo "$NGINX_URL"; fi; }
# The processes whose memory and CPU count for a proxy: Gatehouse's one process; nginx's workers.
target_pids() {
  if [[ $1 == gatehouse && $GH_STANDIN == nginx ]]; then pgrep -P "$NGINX_PID_standin" | tr '\n' ' '
  elif [[ $1 == gatehouse ]]; then echo "$GH_PID"
  else pgrep -P "$NGINX_PID_proxy" | tr '\n' ' '; fi
}
rss_kb() { local s=0 p; for p in "$@"; do s=$(( s + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) )); done; echo "$s"; }
cpu_ticks() { local s=0 p; for p in "$@"; do s=$(( s + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done; echo "$s"; }
sys_ticks() { local s=0 p; for p in "$@"; do s=$(( s + $(awk '{print $15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done; echo "$s"; }
# us_per_req TICKS REQUESTS
us_per_req() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-" }'; }
# sample_rss OUTFILE PIDS...: peak of the summed VmRSS, every 200 ms, until killed
sample_rss() {
  local out=$1 peak=0 now; shift
  while :; do
    now=$(rss_kb "$@"); (( now > peak )) && { peak=$now; echo "$peak" >"$out"; }
    sleep 0.2
  done
}

RESULTS=$TMP/results.tsv
printf 'round\tproxy\trps\tp50_ms\tp90_ms\tp99_ms\tmax_ms\trequests\tnon2xx\tsockerr\trss_kb\tcpu_us_per_req\tsys_us_per_req\tupstream_us_per_req\tupstream_sys_us_per_req\n' >"$RESULTS"

# run_wrk PROXY DURATION ROUND: one measured run, appended to RESULTS (ROUND "warmup" is not kept)
run_wrk() {
  local proxy=$1 pids line rss cpu0 cpu1 sys0 sys1 up0 up1 upsys0 upsys1 requests
  read -r -a pids <<<"$(target_pids "$proxy")"
  rm -f "$TMP/rss"
  sample_rss "$TMP/rss" "${pids[@]}" &
  SAMPLER=$!
  cpu0=$(cpu_ticks "${pids[@]}"); sys0=$(sys_ticks "${pids[@]}"); up0=$(cpu_ticks "${UPSTREAM_WORKERS[@]}")
  upsys0=$(sys_ticks "${UPSTREAM_WORKERS[@]}")
  wrk -t"$THREADS" -c"$CONNS" -d"$2" --latency --timeout 5s "${AUTH_HEADER[@]}" -s "$HERE/proxy.lua" "$(target_url "$proxy")" >"$TMP/wrk-$proxy-$3.txt"
  cpu1=$(cpu_ticks "${pids[@]}"); sys1=$(sys_ticks "${pids[@]}"); up1=$(cpu_ticks "${UPSTREAM_WORKERS[@]}")
  upsys1=$(sys_ticks "${UPSTREAM_WORKERS[@]}")
  kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true
  SAMPLER=
  line=$(grep '^RESULT' "$TMP/wrk-$proxy-$3.txt") || die "wrk gave no result for $proxy: $(cat "$TMP/wrk-$proxy-$3.txt")"
  [[ $3 == warmup ]] && return 0
  rss=$(cat "$TMP/rss" 2>/dev/null || echo 0)
  requests=$(field requests "$line")
  local sockerr=$(( $(field connect "$line") + $(field read "$line") + $(field write "$line") + $(field timeout "$line") ))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$3" "$proxy" "$(field rps "$line")" "$(field p50_ms "$line")" \
    "$(field p90_ms "$line")" "$(field p99_ms "$line")" "$(field max_ms "$line")" "$requests" "$(field non2xx "$line")" \
    "$sockerr" "$rss" "$(us_per_req $(( cpu1 - cpu0 )) "$requests")" "$(us_per_req $(( sys1 - sys0 )) "$requests")" \
    "$(us_per_req $(( up1 - up0 )) "$requests")" "$(us_per_req $(( upsys1 - upsys0 )) "$requests")" >>"$RESULTS"
}

read -r -a GH_PIDS <<<"$(target_pids gatehouse)"
IDLE_RSS_GH=$(rss_kb "${GH_PIDS[@]}")
# The upstream's worker: on shared cores its CPU per request counts against the proxy in front of it.
read -r -a UPSTREAM_WORKERS <<<"$(pgrep -P "$NGINX_PID_upstream" | tr '\n' ' ')"
read -r -a NGINX_WORKERS <<<"$(target_pids nginx)"
IDLE_RSS_NGINX=$(rss_kb "${NGINX_WORKERS[@]}")

log "warm-up: $WARMUP per proxy"
run_wrk gatehouse "$WARMUP" warmup
run_wrk nginx "$WARMUP" warmup

log "measuring: $ROUNDS rounds x [gatehouse, nginx] (order: $ORDER), wrk -t$THREADS -c$CONNS -d$DURATION --latency"
printf '\n%-5s %-10s %10s %8s %8s %8s %9s %7s %10s %9s\n' round proxy req/s p50_ms p90_ms p99_ms requests errors rss_MB cpu_us/req
for ((r = 1; r <= ROUNDS; r++)); do
  proxies="gatehouse nginx"
  if [[ $ORDER == alternate ]] && (( r % 2 == 0 )); then proxies="nginx gatehouse"; fi
  for p in $proxies; do
    sleep "$PAUSE"
    run_wrk "$p" "$DURATION" "$r"
    tail -1 "$RESULTS" | awk -F'\t' '{ printf "%-5s %-10s %10s %8.2f %8.2f %8.2f %9s %7d %10.1f %9s%s\n", $1, $2, $3, $4, $5, $6, $8, $9 + $10, $11 / 1024, $12, ($9 + $10 > 0 ? "   <- INVALID (errors)" : "") }'
  done
done

# --- strict check: every response exactly 200 "hello\n" ----------------------------------------------------
CHECKS=""
if [[ $CHECK_DURATION != 0 ]]; then
  log "strict check: wrk -t$THREADS -c$CONNS -d$CHECK_DURATION, every response must be 200 \"$EXPECTED_BODY\""
  for p in gatehouse nginx; do
    sleep "$PAUSE"
    line=$(wrk -t"$THREADS" -c"$CONNS" -d"$CHECK_DURATION" --timeout 5s "${AUTH_HEADER[@]}" -s "$HERE/proxy-check.lua" "$(target_url "$p")" | grep '^CHECK' || echo "CHECK (no result)")
    CHECKS+=$(printf '  %-10s %s' "$p" "${line#CHECK }")$'\n'
  done
fi

# --- cache-miss path: every request introspected (one IdP round trip to the node's own issuer) -----------------
MISS=""
if [[ $AUTH == introspection && $GH_STANDIN == none ]]; then
  log "cache-miss path: wrk -t$THREADS -c$CONNS -d$MISS_DURATION on /miss (introspect_request: every request calls the issuer)"
  sleep "$PAUSE"
  pids=("$GH_PID")
  cpu0=$(cpu_ticks "${pids[@]}")
  wrk -t"$THREADS" -c"$CONNS" -d"$MISS_DURATION" --latency --timeout 5s "${AUTH_HEADER[@]}" -s "$HERE/proxy.lua" \
    "http://127.0.0.1:$GH_PROXY_PORT/miss" >"$TMP/wrk-miss.txt"
  cpu1=$(cpu_ticks "${pids[@]}")
  line=$(grep '^RESULT' "$TMP/wrk-miss.txt") || die "wrk gave no result for /miss: $(cat "$TMP/wrk-miss.txt")"
  requests=$(field requests "$line")
  MISS=$(awk -v t=$(( cpu1 - cpu0 )) -v hz="$CLK_TCK" -v n="$requests" -v rps="$(field rps "$line")" -v p99="$(field p99_ms "$line")" \
    -v errors="$(( $(field non2xx "$line") + $(field connect "$line") + $(field read "$line") + $(field timeout "$line") ))" \
    'BEGIN { printf "  req/s %.0f, p99 %.2f ms, Gatehouse CPU per request %.1f us (proxy + plugin + issuer), errors %d\n", rps, p99, t / hz * 1e6 / n, errors }')
fi

# --- optional profile of Gatehouse --------------------------------------------------------------------------
PERF_REPORT=""
if [[ $PERF == 1 ]]; then
  log "profiling Gatehouse: perf record -g -p $GH_PID during wrk -t$THREADS -c$CONNS -d$PERF_DURATION"
  perf record -g -o "$TMP/perf.data" -p "$GH_PID" >"$TMP/perf-record.log" 2>&1 &
  perf_pid=$!
  sleep 0.5
  wrk -t"$THREADS" -c"$CONNS" -d"$PERF_DURATION" --latency "${AUTH_HEADER[@]}" -s "$HERE/proxy.lua" "$GH_URL" >"$TMP/wrk-perf.txt"
  kill -INT "$perf_pid" 2>/dev/null; wait "$perf_pid" 2>/dev/null || true
  { perf report -i "$TMP/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
      | grep -E '^ +[0-9.]+%' | sed 's/[[:space:]-]*$//' | head -5
    echo "  --- by symbol (self time) ---"
    perf report -i "$TMP/perf.data" --no-children --sort dso,symbol --stdio -g none --percent-limit 0.5 2>/dev/null \
      | grep -E '^ +[0-9.]+%' | sed 's/[[:space:]-]*$//' | cut -c1-180 | head -40
  } >"$TMP/perf-top.txt" || true
  PERF_REPORT=$(cat "$TMP/perf-top.txt")
  KEEP=1
fi

GH_WARN=$(gh_warnings -c || true)
NGINX_ERR=$(cat "$TMP/proxy.err" "$TMP/upstream.err" | grep -c . || true)

# --- summary ------------------------------------------------------------------------------------------------
awk -F'\t' -v idle_gh="$IDLE_RSS_GH" -v idle_ng="$IDLE_RSS_NGINX" '
function median(a, n,    i, j, t, b) {
  if (n == 0) return "nan"
  for (i = 1; i <= n; i++) b[i] = a[i]
  for (i = 2; i <= n; i++) { t = b[i]; for (j = i - 1; j >= 1 && b[j] > t; j--) b[j + 1] = b[j]; b[j + 1] = t }
  return (n % 2) ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
}
NR > 1 {
  k = $1 SUBSEP $2
  rps[k] = $3; p50[k] = $4; p99[k] = $6; err[k] = $9 + $10; rss[k] = $11; cpu[k] = $12; sys[k] = $13; up[k] = $14; upsys[k] = $15
  if (!($1 in seen)) { seen[$1] = 1; order[++nr] = $1 }
}
END {
  print "\n=== Proxy benchmark summary: Gatehouse (GH) vs nginx (NG), same upstream; per round, then medians ==="
  printf "%-6s %9s %8s %9s %8s %9s %9s %8s %8s\n", "round", "GH req/s", "GH p99", "NG req/s", "NG p99", "req/s", "p99", "GH err", "NG err"
  printf "%-6s %9s %8s %9s %8s %9s %9s %8s %8s\n", "", "", "ms", "", "ms", "GH/NG", "GH-NG ms", "", ""
  for (i = 1; i <= nr; i++) {
    r = order[i]; g = r SUBSEP "gatehouse"; n = r SUBSEP "nginx"
    if (!(g in rps) || !(n in rps)) continue
    valid = (err[g] == 0 && err[n] == 0)
    printf "%-6s %9.0f %8.2f %9.0f %8.2f %9.3f %9.2f %8d %8d%s\n", r, rps[g], p99[g], rps[n], p99[n], rps[g] / rps[n], p99[g] - p99[n], err[g], err[n], valid ? "" : "  INVALID"
    all++
    if (valid) { nv++; v_ratio[nv] = rps[g] / rps[n]; v_dp99[nv] = p99[g] - p99[n]
      v_grps[nv] = rps[g]; v_nrps[nv] = rps[n]; v_gp99[nv] = p99[g]; v_np99[nv] = p99[n]; v_gp50[nv] = p50[g]; v_np50[nv] = p50[n]
      v_grss[nv] = rss[g]; v_nrss[nv] = rss[n]; v_gcpu[nv] = cpu[g]; v_ncpu[nv] = cpu[n]
      v_gsys[nv] = sys[g]; v_nsys[nv] = sys[n]; v_gup[nv] = up[g]; v_nup[nv] = up[n]; v_gupsys[nv] = upsys[g]; v_nupsys[nv] = upsys[n]
      if (nv == 1 || v_ratio[nv] < rmin) rmin = v_ratio[nv]; if (nv == 1 || v_ratio[nv] > rmax) rmax = v_ratio[nv] }
  }
  if (nv == 0) { print "\nNO VALID ROUND: every round had errors (non-2xx or socket errors); the figures above are not comparable."; exit }
  mr = median(v_ratio, nv); gp99 = median(v_gp99, nv); np99 = median(v_np99, nv)
  printf "%-6s %9.0f %8.2f %9.0f %8.2f %9.3f %9.2f   <- medians over %d valid of %d rounds (ratio: median of per-round ratios)\n", "median", median(v_grps, nv), gp99, median(v_nrps, nv), np99, mr, median(v_dp99, nv), nv, all
  printf "req/s ratio GH/NG spread: min %.3f, max %.3f\n", rmin, rmax
  printf "p50 ms (median): GH %.2f, NG %.2f\n", median(v_gp50, nv), median(v_np50, nv)
  printf "CPU per request (median, us of proxy CPU time): GH %.1f, NG %.1f (ratio %.2f)\n", median(v_gcpu, nv), median(v_ncpu, nv), median(v_gcpu, nv) / median(v_ncpu, nv)
  printf "  of which in the kernel: GH %.1f, NG %.1f; the upstream'"'"'s CPU per request behind each: GH %.1f (kernel %.1f), NG %.1f (kernel %.1f)\n", median(v_gsys, nv), median(v_nsys, nv), median(v_gup, nv), median(v_gupsys, nv), median(v_nup, nv), median(v_nupsys, nv)
  printf "RSS under load (peak per run, median): GH %.1f MB (idle before load %.1f MB), NG workers %.1f MB (idle %.1f MB)\n", median(v_grss, nv) / 1024, idle_gh / 1024, median(v_nrss, nv) / 1024, idle_ng / 1024
  printf "goal req/s GH/NG >= 1.0 (floor 0.9): %s; goal p99 GH <= NG + 1 ms (%.2f <= %.2f): %s\n", (mr >= 1.0 ? "MET" : (mr >= 0.9 ? "above the 0.9 floor, below 1.0" : "NOT MET")), gp99, np99 + 1, (gp99 <= np99 + 1 ? "MET" : "NOT MET")
}' "$RESULTS"

cat <<EOF

[setup]
wrk -t$THREADS -c$CONNS -d$DURATION --latency, GET $REQ_PATH, $ROUNDS rounds (order: $ORDER), warm-up $WARMUP per proxy; load generator, proxies and upstream share the same $(nproc) cores
upstream: nginx (bench/nginx/upstream.conf, 1 worker) on 127.0.0.1:$UPSTREAM_PORT, 200 "hello\\n" for every path
Gatehouse: $("$BIN" --version 2>/dev/null || echo "$BIN") quickstart, proxy on 127.0.0.1:$GH_PROXY_PORT, service + route "/" ($PLUGINS)
$([[ $GH_STANDIN == none ]] || echo "GH_STANDIN=nginx: every GH figure above is the stand-in nginx on 127.0.0.1:$STANDIN_PORT (Gatehouse's headers, static credentials, no checks), not Gatehouse")
nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //') (bench/nginx/nginx.conf, ${#NGINX_WORKERS[@]} workers, upstream keepalive 64) on 127.0.0.1:$NGINX_PORT, $NGINX_WHAT
RSS: VmRSS of the Gatehouse process; of the nginx proxy's worker processes, summed (its master: $(( $(rss_kb "$NGINX_PID_proxy") / 1024 )) MB)
stderr lines: Gatehouse matching warn/error: $GH_WARN; nginx (proxy + upstream): $NGINX_ERR
load average after: $(cut -d' ' -f1-3 /proc/loadavg)
EOF
if [[ -n $MISS ]]; then printf '\n[cache-miss path: Gatehouse /miss, every request introspected at the issuer, wrk -d%s]\n%s\n' "$MISS_DURATION" "$MISS"; fi
if [[ -n $CHECKS ]]; then printf '\n[strict check: status distribution; ok = 200 with body "%s\\n"]\n%s' "$EXPECTED_BODY" "$CHECKS"; fi
if [[ $GH_WARN != 0 ]]; then printf '\n[Gatehouse stderr, first lines]\n'; gh_warnings | head -5; fi
if [[ $NGINX_ERR != 0 ]]; then printf '\n[nginx stderr, first lines]\n'; cat "$TMP/proxy.err" "$TMP/upstream.err" | head -5; fi
if [[ -n $PERF_REPORT ]]; then
  printf '\n[perf record -g: Gatehouse samples by DSO, then by symbol, wrk -d%s; perf.data kept in %s]\n%s\n' "$PERF_DURATION" "$TMP" "$PERF_REPORT"
fi
if [[ $KEEP == 1 ]]; then printf '\nraw results: %s (wrk outputs, logs, response headers alongside)\n' "$RESULTS"; fi
