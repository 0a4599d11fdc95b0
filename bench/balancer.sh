#!/usr/bin/env bash
# What load balancing costs on the proxy path: instructions per request (the whole Gatehouse process under
# callgrind) on three routes of one running `gatehouse quickstart`, measured one after the other in the same run:
#   plain   a service whose host is the target itself;
#   one     a service whose host names an upstream with one target;
#   three   a service whose host names an upstream with three targets (round-robin, equal weights).
# The targets are one nginx (bench/nginx/targets.conf) listening on three ports. See bench/README.md,
# "Load balancing".
#
#   bench/balancer.sh
#   ALGORITHM=consistent-hashing bench/balancer.sh     # the upstreams hash on the client address instead
#
# Requests go out with curl, one connection, kept alive. Knobs (environment): REQUESTS (2000 per route), ALGORITHM
# (round-robin), GH_BIN (target/release/gatehouse), KEEP (0), ports GH_PROXY_PORT (18300), GH_ADMIN_PORT (18301),
# GH_PLATFORM_PORT (18302), GH_ISSUER_PORT (18303), GH_ECHO_PORT (18304), TARGET_PORT (18281; also +1 and +2).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck disable=SC2034 # read by log() in lib.sh
LOG_TAG='balancer'
ROOT=$(dirname "$HERE")
BIN=${GH_BIN:-$ROOT/target/release/gatehouse}
REQUESTS=${REQUESTS:-2000}
ALGORITHM=${ALGORITHM:-round-robin}
KEEP=${KEEP:-0}
GH_PROXY_PORT=${GH_PROXY_PORT:-18300}
GH_ADMIN_PORT=${GH_ADMIN_PORT:-18301}
GH_PLATFORM_PORT=${GH_PLATFORM_PORT:-18302}
GH_ISSUER_PORT=${GH_ISSUER_PORT:-18303}
GH_ECHO_PORT=${GH_ECHO_PORT:-18304}
TARGET_PORT=${TARGET_PORT:-18281}
PORTS=("$TARGET_PORT" $((TARGET_PORT + 1)) $((TARGET_PORT + 2)))

require_gatehouse
require_cmd curl
require_cmd valgrind
require_cmd callgrind_control
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { apt_install nginx || true; NGINX=$(command -v nginx || echo /usr/sbin/nginx); }
[[ -x $NGINX ]] || die "nginx is required and could not be installed"
require_free_ports "$GH_PROXY_PORT" "$GH_ADMIN_PORT" "$GH_PLATFORM_PORT" "$GH_ISSUER_PORT" "$GH_ECHO_PORT" "${PORTS[@]}"
bench_tmp gatehouse-balancer

log "starting the targets (nginx) on 127.0.0.1:${PORTS[*]}"
mkdir -p "$TMP/targets/tmp"
sed -e "s/127\.0\.0\.1:18281/127.0.0.1:${PORTS[0]}/" -e "s/127\.0\.0\.1:18282/127.0.0.1:${PORTS[1]}/" \
  -e "s/127\.0\.0\.1:18283/127.0.0.1:${PORTS[2]}/" "$HERE/nginx/targets.conf" >"$TMP/targets.conf"
user=()
[[ $(id -u) -ne 0 ]] || user=(-g 'user root;')
"$NGINX" -p "$TMP/targets/" -c "$TMP/targets.conf" -e stderr "${user[@]}" >"$TMP/targets.out" 2>"$TMP/targets.err" &
PIDS+=("$!")
wait_http "http://127.0.0.1:${PORTS[2]}/" "$!" 20 || { cat "$TMP/targets.err" >&2; die "nginx did not start"; }

# Under callgrind, counting nothing until the measured requests start (callgrind_control -i on).
cat >"$TMP/under-callgrind" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$TMP/callgrind.out.%p "$BIN" "\$@"
SH
chmod +x "$TMP/under-callgrind"
REAL_BIN=$BIN
BIN=$TMP/under-callgrind
start_proxy_gatehouse

hash=''
[[ $ALGORITHM != consistent-hashing ]] || hash=',"hash_on":"ip"'
admin POST /services "{\"name\":\"plain\",\"url\":\"http://127.0.0.1:${PORTS[0]}/\"}"
admin POST /services/plain/routes '{"paths":["/plain"]}'
for n in one three; do
  admin POST /upstreams "{\"name\":\"$n.upstream\",\"algorithm\":\"$ALGORITHM\"$hash}"
  count=1
  [[ $n == one ]] || count=3
  for port in "${PORTS[@]:0:$count}"; do
    admin POST "/upstreams/$n.upstream/targets" "{\"target\":\"127.0.0.1:$port\"}"
  done
  admin POST /services "{\"name\":\"$n\",\"host\":\"$n.upstream\"}"
  admin POST "/services/$n/routes" "{\"paths\":[\"/$n\"]}"
done

PROXY=http://127.0.0.1:$GH_PROXY_PORT
for route in plain one three; do
  left=600
  until [[ $(curl -sS -o /dev/null -w '%{http_code}' "$PROXY/$route") == 200 ]]; do
    (( left-- > 0 )) || die "$PROXY/$route does not answer 200"
    sleep 0.1
  done
done

# send ROUTE COUNT: COUNT requests on one kept-alive connection; prints how many answered 200.
send() {
  awk -v url="$PROXY/$1" -v n="$2" 'BEGIN {
    for (i = 0; i < n; i++) { if (i > 0) print "next"; printf "url = \"%s\"\noutput = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\n", url }
  }' >"$TMP/requests.txt"
  curl -s --no-progress-meter -K "$TMP/requests.txt" 2>/dev/null | grep -c '^200$' || true
}

log "$("$REAL_BIN" --version): $REQUESTS requests per route, algorithm $ALGORITHM"
printf '%-6s %8s %14s %10s\n' route answers instructions "vs plain"
base=0
for route in plain one three; do
  send "$route" 200 >/dev/null
  rm -f "$TMP"/callgrind.out.*
  callgrind_control -z "$GH_PID" >/dev/null 2>&1
  callgrind_control -i on "$GH_PID" >/dev/null 2>&1
  ok=$(send "$route" "$REQUESTS")
  callgrind_control -d "$GH_PID" >/dev/null 2>&1
  callgrind_control -i off "$GH_PID" >/dev/null 2>&1
  ir=$(for f in "$TMP"/callgrind.out.*; do sed -n 's/^summary: //p' "$f"; done | awk '{s += $1} END {print s}')
  per=$(( ir / (ok > 0 ? ok : 1) ))
  (( base > 0 )) || base=$per
  printf '%-6s %8d %14d %9.4f\n' "$route" "$ok" "$per" "$(awk -v a="$per" -v b="$base" 'BEGIN {print a / b}')"
done
