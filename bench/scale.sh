#!/usr/bin/env bash
# Gatehouse at size: N services, each with one route and two plugins (request-termination, cors), loaded with
# `gatehouse deck gateway sync` into an empty quickstart. See bench/README.md, "Scale".
#
#   bench/scale.sh                          # SIZES="10 10000"
#   SIZES=2000 PROBES=50 bench/scale.sh
#
# Per size it measures: the sync from empty (seconds, entities/s through the Admin API), the time from the sync's
# end until the proxy serves the last route, the process's RSS (VmRSS, and its peak VmHWM) once settled,
# publish-to-proxy latency of one added route (p50/p99/max over PROBES changes, idle and under wrk load), and
# proxy req/s for the first and the last route (router and plugin lookup; request-termination answers, so no
# upstream is involved).
#
# Knobs (environment): SIZES ("10 10000"), PROBES (100), PARALLELISM (decK's --parallelism, 10), DURATION (10s, each
# wrk run), CONNS (16), LOAD (1: also measure propagation under wrk load), GH_BIN (target/release/gatehouse), KEEP
# (0), ports GH_PROXY_PORT (18300), GH_ADMIN_PORT (18301), GH_PLATFORM_PORT (18302), GH_ISSUER_PORT (18303),
# GH_ECHO_PORT (18304).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck disable=SC2034 # read by log() in lib.sh
LOG_TAG='scale-bench'
ROOT=$(dirname "$HERE")
BIN=${GH_BIN:-$ROOT/target/release/gatehouse}
SIZES=${SIZES:-10 10000}
PROBES=${PROBES:-100}
PARALLELISM=${PARALLELISM:-10}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
LOAD=${LOAD:-1}
KEEP=${KEEP:-0}
GH_PROXY_PORT=${GH_PROXY_PORT:-18300}
GH_ADMIN_PORT=${GH_ADMIN_PORT:-18301}
GH_PLATFORM_PORT=${GH_PLATFORM_PORT:-18302}
GH_ISSUER_PORT=${GH_ISSUER_PORT:-18303}
GH_ECHO_PORT=${GH_ECHO_PORT:-18304}
PROXY=http://127.0.0.1:$GH_PROXY_PORT

require_gatehouse
require_cmd curl
require_cmd python3
ensure_cmd wrk
bench_tmp scale-bench

# rss_kb FIELD: VmRSS or VmHWM of Gatehouse, in kB
rss_kb() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$GH_PID/status"; }
served() { [[ $(curl -s -o /dev/null -w '%{http_code}' "$PROXY$1") == 200 ]]; }
# wrk_rps PATH: requests/s of one wrk run against the proxy
wrk_rps() {
  local out
  out=$(wrk -t1 -c"$CONNS" -d"$DURATION" "$PROXY$1")
  grep -q 'Non-2xx' <<<"$out" && die "wrk on $1 got non-2xx answers"
  awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out"
}

declare -a ROWS
for n in $SIZES; do
  require_free_ports "$GH_PROXY_PORT" "$GH_ADMIN_PORT" "$GH_PLATFORM_PORT" "$GH_ISSUER_PORT" "$GH_ECHO_PORT"
  rm -rf "$TMP/gh-data"
  start_proxy_gatehouse
  python3 "$HERE/scale.py" gen "$n" "$TMP/kong-$n"
  log "N=$n: deck gateway sync of $n services, $n routes, $((2 * n)) plugins (--parallelism $PARALLELISM)"
  t0=$(date +%s.%N)
  "$BIN" gateway sync --kong-addr "$ADMIN" --parallelism "$PARALLELISM" "$TMP/kong-$n" >"$TMP/sync-$n.out" 2>&1 \
    || { tail -20 "$TMP/sync-$n.out" >&2; die "sync failed"; }
  t1=$(date +%s.%N)
  wait_until "$GH_PID" 120 served "/s$n/x" || die "the last route is not served"
  t2=$(date +%s.%N)
  sync_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
  serve_ms=$(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.0f", (b - a) * 1000}')
  rate=$(awk -v s="$sync_s" -v n="$n" 'BEGIN {printf "%.0f", 4 * n / s}')
  sleep 2
  rss=$(( $(rss_kb VmRSS) / 1024 ))
  hwm=$(( $(rss_kb VmHWM) / 1024 ))
  log "N=$n: sync ${sync_s}s (${rate} entities/s), served ${serve_ms} ms after, RSS ${rss} MB (peak ${hwm} MB)"
  idle=$(python3 "$HERE/scale.py" propagate "$ADMIN" "$PROXY" "$PROBES" s1 | grep RESULT)
  log "N=$n: propagation idle: $idle"
  loaded="-"
  if [[ $LOAD == 1 ]]; then
    wrk -t1 -c"$CONNS" -d600s "$PROXY/s1/" >/dev/null 2>&1 &
    WRK_PID=$!
    sleep 1
    loaded=$(python3 "$HERE/scale.py" propagate "$ADMIN" "$PROXY" "$PROBES" s1 | grep RESULT)
    kill "$WRK_PID" 2>/dev/null || true
    wait "$WRK_PID" 2>/dev/null || true
    log "N=$n: propagation under load: $loaded"
  fi
  first=$(wrk_rps /s1/)
  last=$(wrk_rps "/s$n/")
  log "N=$n: req/s first route $first, last route $last"
  ROWS+=("$n|$sync_s|$rate|$serve_ms|$rss|$hwm|$(field p50_ms "$idle")/$(field p99_ms "$idle")|$(field p50_ms "$loaded")/$(field p99_ms "$loaded")|$first|$last")
  kill "$GH_PID" 2>/dev/null || true
  wait "$GH_PID" 2>/dev/null || true
done

printf '\n| services | sync s | entities/s | last route served after (ms) | RSS MB | peak MB | propagation p50/p99 ms idle | under load | req/s first route | req/s last route |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for row in "${ROWS[@]}"; do printf '| %s |\n' "${row//|/ | }"; done
