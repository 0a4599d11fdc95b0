#!/usr/bin/env bash
# What the plugins teams pair with authentication cost on top of it: one Gatehouse, three routes to the same
# upstream, every request carrying the same valid token from the node's own issuer. See bench/README.md, "The
# plugin chain".
#
#   /intro        oauth2-introspection alone (the tutorial's config, consumer_by client_id)
#   /chain        oauth2-introspection + rate-limiting (local) + acl + cors + correlation-id
#   /chain-redis  the same with rate-limiting's redis policy (skipped when Redis does not answer at REDIS_HOST:REDIS_PORT)
#
#   bench/plugin-chain.sh              # wrk: ROUNDS rounds, each route in turn; req/s and CPU per request, and the
#                                      # ratios of /chain and /chain-redis to /intro measured in the same round
#   bench/plugin-chain.sh callgrind    # instructions per request on each route (load-independent): Gatehouse under
#                                      # callgrind, REQUESTS requests per route over one connection
#
# SET=opentelemetry measures tracing instead of the chain (bench/README.md, "The opentelemetry plugin"):
#   /intro        oauth2-introspection alone
#   /traced       oauth2-introspection + opentelemetry at SAMPLING_RATE (0.01), exporting to the upstream nginx
#                 (every path answers 200, so it is an OTLP/HTTP sink that accepts everything)
#
# SET=prometheus measures the `prometheus` plugin instead (issue 20), with the same modes:
#   /intro        oauth2-introspection alone
#   /prometheus   oauth2-introspection + prometheus with every family on (per_consumer, status_code_metrics,
#                 latency_metrics, bandwidth_metrics); the token maps to a consumer, so the consumer label is filled
#
# The rate limit is far above what the machine can send (so every request is counted, none refused), the consumer
# the token maps to is in the group acl allows, requests carry an Origin cors allows, and correlation-id generates
# its id and echoes it. Knobs (environment): ROUNDS (5), DURATION (10s), THREADS (2), CONNS (32), WARMUP (3s),
# PAUSE (1), REQUESTS (2000, callgrind), HIDE_HEADERS (0; 1 sets rate-limiting's hide_client_headers), SYNC_RATE
# (unset; a number adds it to /chain-redis's rate-limiting: batched Redis writes), REDIS_HOST (127.0.0.1), REDIS_PORT (6379), GH_BIN
# (target/release/gatehouse), KEEP (0), ports GH_PROXY_PORT (18200), GH_ADMIN_PORT (18201), GH_PLATFORM_PORT
# (18202), GH_ISSUER_PORT (18203), GH_ECHO_PORT (18204), UPSTREAM_PORT (18281).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck disable=SC2034 # read by log() in lib.sh
LOG_TAG='plugin-chain'
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
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
SET=${SET:-chain}
SAMPLING_RATE=${SAMPLING_RATE:-0.01}
KEEP=${KEEP:-0}
GH_PROXY_PORT=${GH_PROXY_PORT:-18200}
GH_ADMIN_PORT=${GH_ADMIN_PORT:-18201}
GH_PLATFORM_PORT=${GH_PLATFORM_PORT:-18202}
GH_ISSUER_PORT=${GH_ISSUER_PORT:-18203}
GH_ECHO_PORT=${GH_ECHO_PORT:-18204}
UPSTREAM_PORT=${UPSTREAM_PORT:-18281}
ORIGIN=http://app.bench.dev

require_gatehouse
require_cmd curl
require_cmd node "reading JSON answers"
require_nginx
case $MODE in
  wrk) ensure_cmd wrk ;;
  callgrind) require_cmd valgrind; require_cmd callgrind_control ;;
  *) die "usage: $0 [wrk|callgrind]" ;;
esac
require_free_ports "$GH_PROXY_PORT" "$GH_ADMIN_PORT" "$GH_PLATFORM_PORT" "$GH_ISSUER_PORT" "$GH_ECHO_PORT" "$UPSTREAM_PORT"
bench_tmp gatehouse-plugin-chain
log "load before start: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min), $(nproc) cores"

start_upstream

if [[ $MODE == callgrind ]]; then
  # Counting nothing until the measured requests start (callgrind_control -i on).
  cat >"$TMP/under-callgrind" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$TMP/callgrind.out.%p "$BIN" "\$@"
SH
  chmod +x "$TMP/under-callgrind"
  REAL_BIN=$BIN
  BIN=$TMP/under-callgrind
fi
# Access log off: its cost is measured elsewhere (bench/README.md) and would be the same on every route.
start_proxy_gatehouse GATEHOUSE_GATEWAY__ACCESS_LOG=off
platform_login
provision RS256 http://bench.dev
CLIENT_ID=$(json_get "$TMP/client-RS256.json" j.id)
BEARER=$(fetch_token "$GH_ISSUER_RS256/oauth/token" "$GH_AUTH_RS256")

admin POST /services "{\"name\":\"bench\",\"url\":\"http://127.0.0.1:$UPSTREAM_PORT/\"}"
admin POST /consumers "{\"username\":\"bench-consumer\",\"custom_id\":\"$CLIENT_ID\"}"
admin POST /consumers/bench-consumer/acls '{"group":"bench-callers"}'
introspection='{"name":"oauth2-introspection","config":{"introspection_url":"'"$GH_ISSUER_RS256"'/introspect","authorization_value":"'"$GH_AUTH_RS256"'","consumer_by":"client_id","custom_claims_forward":["Claim"]}}'
# chain ROUTE RATE_LIMITING_CONFIG: the route with the whole chain
chain() {
  admin POST /services/bench/routes "{\"name\":\"$1\",\"paths\":[\"/$1\"]}"
  admin POST "/routes/$1/plugins" "$introspection"
  admin POST "/routes/$1/plugins" "{\"name\":\"rate-limiting\",\"config\":$2}"
  admin POST "/routes/$1/plugins" '{"name":"acl","config":{"allow":["bench-callers"]}}'
  admin POST "/routes/$1/plugins" "{\"name\":\"cors\",\"config\":{\"origins\":[\"$ORIGIN\"],\"credentials\":true}}"
  admin POST "/routes/$1/plugins" '{"name":"correlation-id","config":{"echo_downstream":true}}'
}
admin POST /services/bench/routes '{"name":"intro","paths":["/intro"]}'
admin POST /routes/intro/plugins "$introspection"
# HIDE_HEADERS=1: rate-limiting's hide_client_headers, to tell the cost of its seven response headers from the rest.
RL_EXTRA=""
REDIS_EXTRA=""
[[ -z ${SYNC_RATE:-} ]] || REDIS_EXTRA=",\"sync_rate\":$SYNC_RATE"
[[ ${HIDE_HEADERS:-0} != 1 ]] || RL_EXTRA=',"hide_client_headers":true'
ROUTES=(intro)
case $SET in
  chain)
    chain chain "{\"second\":100000000,\"hour\":1000000000,\"policy\":\"local\"$RL_EXTRA}"
    ROUTES+=(chain)
    if (exec 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT") 2>/dev/null; then
      chain chain-redis "{\"second\":100000000,\"hour\":1000000000,\"policy\":\"redis\",\"redis\":{\"host\":\"$REDIS_HOST\",\"port\":$REDIS_PORT}$RL_EXTRA$REDIS_EXTRA}"
      ROUTES+=(chain-redis)
    else
      log "Redis does not answer at $REDIS_HOST:$REDIS_PORT: /chain-redis is left out"
    fi
    ;;
  opentelemetry)
    admin POST /services/bench/routes '{"name":"traced","paths":["/traced"]}'
    admin POST /routes/traced/plugins "$introspection"
    admin POST /routes/traced/plugins "{\"name\":\"opentelemetry\",\"config\":{\"traces_endpoint\":\"http://127.0.0.1:$UPSTREAM_PORT/v1/traces\",\"sampling_rate\":$SAMPLING_RATE}}"
    ROUTES+=(traced)
    ;;
  prometheus)
    admin POST /services/bench/routes '{"name":"prometheus","paths":["/prometheus"]}'
    admin POST /routes/prometheus/plugins "$introspection"
    admin POST /routes/prometheus/plugins \
      '{"name":"prometheus","config":{"per_consumer":true,"status_code_metrics":true,"latency_metrics":true,"bandwidth_metrics":true}}'
    ROUTES+=(prometheus)
    ;;
  *) die "SET must be chain, opentelemetry or prometheus" ;;
esac

PROXY=http://127.0.0.1:$GH_PROXY_PORT
HEADERS=(-H "Authorization: Bearer $BEARER" -H "Origin: $ORIGIN")
for route in "${ROUTES[@]}"; do
  left=600
  until [[ $(curl -sS -o /dev/null -w '%{http_code}' "${HEADERS[@]}" "$PROXY/$route") == 200 ]]; do
    (( left-- > 0 )) || { curl -sS -i "${HEADERS[@]}" "$PROXY/$route" >&2; die "$PROXY/$route does not answer 200"; }
    sleep 0.1
  done
  curl -sS -D "$TMP/headers-$route" -o /dev/null "${HEADERS[@]}" "$PROXY/$route"
done
if [[ $SET == prometheus ]]; then
  # The plugin must have run: the status listener counts the route's requests under the consumer's name.
  STATUS_URL=$(sed -n "s/^export STATUS_URL=\(.*\)$/\1/p" "$TMP/gh.out")
  curl -sS "$STATUS_URL/metrics" | grep -q '^kong_http_requests_total{service="bench",route="prometheus",code="200",source="service",workspace="default",consumer="bench-consumer"}' \
    || die "/prometheus was not recorded by the prometheus plugin"
elif [[ $SET == chain ]]; then
  # The chain must have run: its headers are on the answer.
  expected=('Access-Control-Allow-Origin' 'Kong-Request-ID')
  [[ -n $RL_EXTRA ]] || expected+=('X-RateLimit-Remaining-Second')
  for header in "${expected[@]}"; do
    grep -qi "^$header:" "$TMP/headers-chain" || { cat "$TMP/headers-chain" >&2; die "/chain answered without $header"; }
  done
  curl -sS -o /dev/null -w '%{http_code}' "$PROXY/chain" | grep -qx 401 || die "/chain without a token must answer 401"
fi

if [[ $MODE == callgrind ]]; then
  printf '%s\n' "$("$REAL_BIN" --version), $REQUESTS requests per route over one connection"
  printf '%-12s %14s %10s\n' route instr/request "vs intro"
  base=0
  for route in "${ROUTES[@]}"; do
    awk -v url="$PROXY/$route" -v n="$REQUESTS" -v auth="Authorization: Bearer $BEARER" -v origin="Origin: $ORIGIN" 'BEGIN {
      for (i = 0; i < n; i++) {
        if (i > 0) print "next"
        printf "url = \"%s\"\nheader = \"%s\"\nheader = \"%s\"\noutput = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\n", url, auth, origin
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
    # Kept per route (with KEEP=1) for callgrind_annotate.
    for f in "$TMP"/callgrind.out.*; do mv "$f" "$TMP/callgrind-$route.${f##*.}"; done
    per=$(( ir / REQUESTS ))
    (( base > 0 )) || base=$per
    printf '%-12s %14d %10s\n' "/$route" "$per" "$(awk -v a="$per" -v b="$base" 'BEGIN { printf "x%.3f", a / b }')"
  done
  exit 0
fi

wrk_rounds intro "${HEADERS[@]}"
