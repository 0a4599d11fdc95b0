#!/usr/bin/env bash
# The oauth2-introspection cache on a running `gatehouse quickstart`, with an nginx (bench/nginx/idp.conf) as the
# IdP: it answers every token with the same answer, so each new token leaves exactly one more cache entry. See
# bench/README.md, "The introspection cache".
#
#   bench/introspection-cache.sh memory     # resident memory before and after TOKENS requests, each with a bearer
#                                           # token never seen before: on a route whose plugin caches inactive
#                                           # answers (negative_ttl), then on one caching active answers
#   bench/introspection-cache.sh hits       # instructions per cache hit: Gatehouse under callgrind, HITS requests
#                                           # with one token on the active route, counted from the first to the last
#   bench/introspection-cache.sh plain      # the same on a route with no plugin: the plain proxy path
#   CACHE_BYTES=4294967296 CACHE_ENTRIES=10000000 bench/introspection-cache.sh memory   # unbounded: cost per entry
#   TOKENS=200000 bench/introspection-cache.sh memory                                  # past the default bounds
#
# Requests go out with curl --parallel (CONNS at a time). Knobs (environment): TOKENS (50000 per kind),
# WARMUP_TOKENS (2000 per kind), HITS (2000), CONNS (16), CACHE_ENTRIES, CACHE_BYTES (gateway.introspection_cache_entries and _bytes; unset: the defaults),
# GH_BIN (target/release/gatehouse), KEEP (0), ports GH_PROXY_PORT (18200), GH_ADMIN_PORT (18201),
# GH_PLATFORM_PORT (18202), GH_ISSUER_PORT (18203), GH_ECHO_PORT (18204), IDP_PORT (18291).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck disable=SC2034 # read by log() in lib.sh
LOG_TAG='introspection-cache'
ROOT=$(dirname "$HERE")
BIN=${GH_BIN:-$ROOT/target/release/gatehouse}
MODE=${1:-memory}
TOKENS=${TOKENS:-50000}
HITS=${HITS:-2000}
CONNS=${CONNS:-16}
WARMUP_TOKENS=${WARMUP_TOKENS:-2000}
KEEP=${KEEP:-0}
GH_PROXY_PORT=${GH_PROXY_PORT:-18200}
GH_ADMIN_PORT=${GH_ADMIN_PORT:-18201}
GH_PLATFORM_PORT=${GH_PLATFORM_PORT:-18202}
GH_ISSUER_PORT=${GH_ISSUER_PORT:-18203}
GH_ECHO_PORT=${GH_ECHO_PORT:-18204}
IDP_PORT=${IDP_PORT:-18291}

require_gatehouse
require_cmd curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { apt_install nginx || true; NGINX=$(command -v nginx || echo /usr/sbin/nginx); }
[[ -x $NGINX ]] || die "nginx is required and could not be installed"
case $MODE in
  memory) ;;
  hits | plain) require_cmd valgrind; require_cmd callgrind_control ;;
  *) die "usage: $0 memory|hits|plain" ;;
esac
require_free_ports "$GH_PROXY_PORT" "$GH_ADMIN_PORT" "$GH_PLATFORM_PORT" "$GH_ISSUER_PORT" "$GH_ECHO_PORT" "$IDP_PORT"
bench_tmp gatehouse-introspection-cache

log "starting the stand-in IdP (nginx) on 127.0.0.1:$IDP_PORT"
mkdir -p "$TMP/idp/tmp"
sed "s/127\.0\.0\.1:18291/127.0.0.1:$IDP_PORT/" "$HERE/nginx/idp.conf" >"$TMP/idp.conf"
user=()
[[ $(id -u) -ne 0 ]] || user=(-g 'user root;')
"$NGINX" -p "$TMP/idp/" -c "$TMP/idp.conf" -e stderr "${user[@]}" >"$TMP/idp.out" 2>"$TMP/idp.err" &
PIDS+=("$!")
wait_http "http://127.0.0.1:$IDP_PORT/" "$!" 20 || { cat "$TMP/idp.err" >&2; die "nginx did not start"; }

settings=()
[[ -z ${CACHE_ENTRIES:-} ]] || settings+=(GATEHOUSE_GATEWAY__INTROSPECTION_CACHE_ENTRIES="$CACHE_ENTRIES")
[[ -z ${CACHE_BYTES:-} ]] || settings+=(GATEHOUSE_GATEWAY__INTROSPECTION_CACHE_BYTES="$CACHE_BYTES")
if [[ $MODE == hits || $MODE == plain ]]; then
  # Under callgrind, counting nothing until the hits start (callgrind_control -i on).
  cat >"$TMP/under-callgrind" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$TMP/callgrind.out.%p "$BIN" "\$@"
SH
  chmod +x "$TMP/under-callgrind"
  REAL_BIN=$BIN
  BIN=$TMP/under-callgrind
fi
start_proxy_gatehouse "${settings[@]}"
IDP=http://127.0.0.1:$IDP_PORT
admin POST /services "{\"name\":\"bench\",\"url\":\"$IDP/\"}"
admin POST /services/bench/routes '{"name":"inactive","paths":["/inactive-route"]}'
admin POST /services/bench/routes '{"name":"active","paths":["/active-route"]}'
admin POST /services/bench/routes '{"name":"plain","paths":["/plain-route"]}'
admin POST /routes/inactive/plugins "{\"name\":\"oauth2-introspection\",\"config\":{\"introspection_url\":\"$IDP/inactive\",\"authorization_value\":\"Basic YmVuY2g6YmVuY2g=\",\"negative_ttl\":3600}}"
admin POST /routes/active/plugins "{\"name\":\"oauth2-introspection\",\"config\":{\"introspection_url\":\"$IDP/active\",\"authorization_value\":\"Basic YmVuY2g6YmVuY2g=\",\"ttl\":3600}}"

PROXY=http://127.0.0.1:$GH_PROXY_PORT
expect() { # expect CODE PATH
  local left=600
  until [[ $(curl -sS -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer probe' "$PROXY$2") == "$1" ]]; do
    (( left-- > 0 )) || die "$PROXY$2 does not answer $1"
    sleep 0.1
  done
}
expect 401 /inactive-route
expect 200 /active-route

RUN=0
send() { # send PATH COUNT [TOKEN] -> "statuses" of COUNT requests, each with a new bearer token (or every one with TOKEN)
  RUN=$((RUN + 1))
  awk -v url="$PROXY$1" -v n="$2" -v run="$RUN" -v fixed="${3:-}" 'BEGIN {
    for (i = 0; i < n; i++) {
      if (i > 0) print "next"
      printf "url = \"%s\"\nheader = \"Authorization: Bearer %s\"\noutput = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\n",
        url, fixed != "" ? fixed : "bench-token-" run "-" i
    }
  }' >"$TMP/requests-$RUN.txt"
  curl -s --no-progress-meter --parallel --parallel-max "$CONNS" -K "$TMP/requests-$RUN.txt" 2>/dev/null | sort | uniq -c | awk '{printf "%s%s:%s", (NR > 1 ? " " : ""), $2, $1}'
}
# How many of "statuses" were CODE.
count() { tr ' ' '\n' <<<"$2" | awk -F: -v code="$1" '$1 == code {print $2}' | grep . || echo 0; }
if [[ $MODE == hits || $MODE == plain ]]; then
  CONNS=1
  route=/active-route
  [[ $MODE == hits ]] || route=/plain-route
  send "$route" 200 hit-token >/dev/null
  callgrind_control -i on "$GH_PID" >/dev/null 2>&1
  statuses=$(send "$route" "$HITS" hit-token)
  callgrind_control -d "$GH_PID" >/dev/null 2>&1
  callgrind_control -i off "$GH_PID" >/dev/null 2>&1
  hits=$(count 200 "$statuses")
  ir=$(for f in "$TMP"/callgrind.out.*; do sed -n 's/^summary: //p' "$f"; done | awk '{s += $1} END {print s}')
  log "$("$REAL_BIN" --version): $HITS requests with one token, statuses $statuses"
  printf 'instructions per %s: %d (%d in all)\n' "$([[ $MODE == hits ]] && echo 'cache hit' || echo 'plain request')" \
    $(( ir / hits )) "$ir"
  exit 0
fi

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$GH_PID/status"; }
log "warm-up: $WARMUP_TOKENS tokens on each route"
send /inactive-route "$WARMUP_TOKENS" >/dev/null
send /active-route "$WARMUP_TOKENS" >/dev/null
sleep 1
log "$($BIN --version), cache settings: ${settings[*]:-defaults}; $TOKENS new tokens per kind, $CONNS at a time"
printf '%-9s %10s %12s %12s %14s  %s\n' kind answers "RSS before" "RSS after" "bytes/answer" "statuses"
for kind in inactive active; do
  before=$(rss_kb)
  statuses=$(send "/$kind-route" "$TOKENS")
  sleep 1
  after=$(rss_kb)
  answers=$(count "$([[ $kind == active ]] && echo 200 || echo 401)" "$statuses")
  printf '%-9s %10s %9d KB %9d KB %14d  %s\n' "$kind" "$answers" "$before" "$after" \
    $(( (after - before) * 1024 / answers )) "$statuses"
done
