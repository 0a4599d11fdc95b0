#!/usr/bin/env bash
# How long a scrape of the status listener's /metrics takes with ROUTES routes (1,000) that all have traffic, the
# `prometheus` plugin on globally with every family (status_code_metrics, latency_metrics, bandwidth_metrics): issue
# 20 asks for less than 50 ms. See bench/README.md, "Metrics".
#
#   bench/metrics-scrape.sh                  # 1,000 routes, one request each, then SCRAPES (20) timed scrapes
#   ROUTES=5000 bench/metrics-scrape.sh
#   bench/metrics-scrape.sh callgrind        # instructions per scrape (load-independent): Gatehouse under
#                                            # callgrind, counting only during SCRAPES scrapes; with KEEP=1 the
#                                            # profile stays in the temp dir for callgrind_annotate
#
# Knobs (environment): ROUTES (1000), REQUESTS_PER_ROUTE (1), SCRAPES (20), GH_BIN (target/release/gatehouse),
# KEEP (0), ports GH_PROXY_PORT (18500), GH_ADMIN_PORT (18501), GH_PLATFORM_PORT (18502), GH_ISSUER_PORT (18503),
# GH_ECHO_PORT (18504), UPSTREAM_PORT (18581).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck disable=SC2034 # read by log() in lib.sh
LOG_TAG='metrics-scrape'
ROOT=$(dirname "$HERE")
BIN=${GH_BIN:-$ROOT/target/release/gatehouse}
MODE=${1:-time}
ROUTES=${ROUTES:-1000}
REQUESTS_PER_ROUTE=${REQUESTS_PER_ROUTE:-1}
SCRAPES=${SCRAPES:-20}
KEEP=${KEEP:-0}
GH_PROXY_PORT=${GH_PROXY_PORT:-18500}
GH_ADMIN_PORT=${GH_ADMIN_PORT:-18501}
GH_PLATFORM_PORT=${GH_PLATFORM_PORT:-18502}
GH_ISSUER_PORT=${GH_ISSUER_PORT:-18503}
GH_ECHO_PORT=${GH_ECHO_PORT:-18504}
UPSTREAM_PORT=${UPSTREAM_PORT:-18581}

require_gatehouse
require_cmd curl
require_nginx
case $MODE in
  time) ;;
  callgrind) require_cmd valgrind; require_cmd callgrind_control ;;
  *) die "usage: $0 [time|callgrind]" ;;
esac
require_free_ports "$GH_PROXY_PORT" "$GH_ADMIN_PORT" "$GH_PLATFORM_PORT" "$GH_ISSUER_PORT" "$GH_ECHO_PORT" "$UPSTREAM_PORT"
bench_tmp gatehouse-metrics-scrape

start_upstream

if [[ $MODE == callgrind ]]; then
  # Counting nothing until the measured scrapes start (callgrind_control -i on).
  cat >"$TMP/under-callgrind" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$TMP/callgrind.out.%p "$BIN" "\$@"
SH
  chmod +x "$TMP/under-callgrind"
  REAL_BIN=$BIN
  BIN=$TMP/under-callgrind
fi
start_proxy_gatehouse GATEHOUSE_GATEWAY__ACCESS_LOG=off
STATUS_URL=$(sed -n "s/^export STATUS_URL=\(.*\)$/\1/p" "$TMP/gh.out")
[[ -n $STATUS_URL ]] || die "no STATUS_URL in the quickstart's output"
PROXY=http://127.0.0.1:$GH_PROXY_PORT

admin POST /services "{\"name\":\"bench\",\"url\":\"http://127.0.0.1:$UPSTREAM_PORT/\"}"
admin POST /plugins \
  '{"name":"prometheus","config":{"status_code_metrics":true,"latency_metrics":true,"bandwidth_metrics":true}}'
log "creating $ROUTES routes (one connection, curl -K)"
awk -v admin="$ADMIN" -v n="$ROUTES" 'BEGIN {
  for (i = 0; i < n; i++) {
    if (i > 0) print "next"
    printf "url = \"%s/services/bench/routes\"\nheader = \"Content-Type: application/json\"\ndata = \"{\\\"name\\\":\\\"r%d\\\",\\\"paths\\\":[\\\"/r%d\\\"]}\"\noutput = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\n", admin, i, i
  }
}' >"$TMP/routes.txt"
statuses=$(curl -s -K "$TMP/routes.txt" | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
[[ $statuses == " $ROUTES 201 " ]] || die "creating routes: $statuses"

log "waiting until the proxy serves the last route"
last=$((ROUTES - 1))
left=600
until [[ $(curl -s -o /dev/null -w '%{http_code}' "$PROXY/r$last") == 200 ]]; do
  (( left-- > 0 )) || die "$PROXY/r$last never answered 200"
  sleep 0.1
done
log "$REQUESTS_PER_ROUTE request(s) on each route"
awk -v proxy="$PROXY" -v n="$ROUTES" -v k="$REQUESTS_PER_ROUTE" 'BEGIN {
  for (i = 0; i < n; i++) for (j = 0; j < k; j++) {
    if (i + j > 0) print "next"
    printf "url = \"%s/r%d\"\noutput = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\n", proxy, i
  }
}' >"$TMP/traffic.txt"
statuses=$(curl -s -K "$TMP/traffic.txt" | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
log "traffic statuses: $statuses"

curl -sS -o "$TMP/scrape.txt" "$STATUS_URL/metrics"
routes_seen=$(grep -c '^kong_http_requests_total{service="bench",route="r' "$TMP/scrape.txt" || true)
(( routes_seen >= ROUTES )) || die "the scrape shows $routes_seen routes' request counters, expected $ROUTES"
samples=$(grep -vc '^#' "$TMP/scrape.txt")
bytes=$(wc -c <"$TMP/scrape.txt")

if [[ $MODE == callgrind ]]; then
  rm -f "$TMP"/callgrind.out.*
  callgrind_control -z "$GH_PID" >/dev/null 2>&1
  callgrind_control -i on "$GH_PID" >/dev/null 2>&1
  for ((i = 0; i < SCRAPES; i++)); do
    curl -sS -o /dev/null "$STATUS_URL/metrics"
  done
  callgrind_control -d "$GH_PID" >/dev/null 2>&1
  callgrind_control -i off "$GH_PID" >/dev/null 2>&1
  ir=$(for f in "$TMP"/callgrind.out.*; do sed -n 's/^summary: //p' "$f"; done | awk '{s += $1} END {print s}')
  for f in "$TMP"/callgrind.out.*; do mv "$f" "$TMP/callgrind-scrape.${f##*.}"; done
  printf '%s; %d routes with traffic; a scrape is %d samples, %d bytes\n' "$("$REAL_BIN" --version)" "$ROUTES" "$samples" "$bytes"
  printf 'instructions per scrape over %d scrapes: %d\n' "$SCRAPES" "$(( ir / SCRAPES ))"
  exit 0
fi

for ((i = 0; i < SCRAPES; i++)); do
  curl -sS -o /dev/null -w '%{time_total}\n' "$STATUS_URL/metrics"
done >"$TMP/times.txt"
printf '%s; %d routes with traffic; a scrape is %d samples, %d bytes\n' "$("$BIN" --version)" "$ROUTES" "$samples" "$bytes"
sort -n "$TMP/times.txt" | awk '{ t[NR] = $1 * 1000 } END {
  printf "scrape time over %d scrapes: median %.1f ms, min %.1f ms, max %.1f ms\n", NR, (NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2), t[1], t[NR]
}'
