#!/usr/bin/env bash
# Instructions the whole Gatehouse process spends per token request (and per introspection), counted by callgrind:
# a figure that does not move with the machine's load, for comparing two builds on a busy machine where the
# wall-clock ratios of bench/run.sh are noise. See bench/README.md, "What issue 15's hardening costs".
#
#   bench/issuer-instructions.sh                       # ES256 and RS256 tokens, and introspection
#   GH_BIN=/tmp/base/target/release/gatehouse bench/issuer-instructions.sh
#
# One connection, requests one after the other (curl -K), REQUESTS (500) of each after 100 unmeasured ones. Knobs:
# REQUESTS, ALGS ("ES256 RS256"), GH_BIN (target/release/gatehouse), KEEP (0), ports GH_PLATFORM_PORT (18402),
# GH_ISSUER_PORT (18403), and the unused listeners' GH_PROXY_PORT (18400), GH_ADMIN_PORT (18401), GH_ECHO_PORT
# (18404). Needs valgrind and node (for reading JSON, as bench/run.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck disable=SC2034 # read by log() in lib.sh
LOG_TAG='issuer-instructions'
ROOT=$(dirname "$HERE")
BIN=${GH_BIN:-$ROOT/target/release/gatehouse}
REQUESTS=${REQUESTS:-500}
ALGS=${ALGS:-"ES256 RS256"}
KEEP=${KEEP:-0}
GH_PROXY_PORT=${GH_PROXY_PORT:-18400}
GH_ADMIN_PORT=${GH_ADMIN_PORT:-18401}
GH_PLATFORM_PORT=${GH_PLATFORM_PORT:-18402}
GH_ISSUER_PORT=${GH_ISSUER_PORT:-18403}
GH_ECHO_PORT=${GH_ECHO_PORT:-18404}

require_gatehouse
require_cmd curl
require_cmd node "reading JSON"
ensure_cmd valgrind
require_cmd callgrind_control
require_free_ports "$GH_PROXY_PORT" "$GH_ADMIN_PORT" "$GH_PLATFORM_PORT" "$GH_ISSUER_PORT" "$GH_ECHO_PORT"
bench_tmp gatehouse-issuer-instructions

# Under callgrind, counting nothing until the measured requests start (callgrind_control -i on).
cat >"$TMP/under-callgrind" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$TMP/callgrind.out.%p "$BIN" "\$@"
SH
chmod +x "$TMP/under-callgrind"
REAL_BIN=$BIN
BIN=$TMP/under-callgrind
start_gatehouse \
  GATEHOUSE_PROXY__LISTEN="127.0.0.1:$GH_PROXY_PORT" \
  GATEHOUSE_ADMIN__LISTEN="127.0.0.1:$GH_ADMIN_PORT" \
  GATEHOUSE_PLATFORM__LISTEN="127.0.0.1:$GH_PLATFORM_PORT" \
  GATEHOUSE_ISSUER__LISTEN="127.0.0.1:$GH_ISSUER_PORT" \
  GATEHOUSE_ECHO__LISTEN="127.0.0.1:$GH_ECHO_PORT" \
  GATEHOUSE_STATUS__LISTEN=127.0.0.1:0 GATEHOUSE_PROXY__LISTEN_TLS=127.0.0.1:0
platform_login

# requests URL AUTH BODY COUNT -> a curl config of COUNT POSTs on one connection
requests() {
  local i
  for ((i = 0; i < $4; i++)); do
    ((i == 0)) || echo next
    printf 'url = "%s"\nheader = "Authorization: %s"\ndata = "%s"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' \
      "$1" "$2" "$3"
  done
}

# measure LABEL URL AUTH BODY: instructions per request of REQUESTS measured ones
measure() {
  local statuses ir
  requests "$2" "$3" "$4" 100 >"$TMP/warm.txt"
  requests "$2" "$3" "$4" "$REQUESTS" >"$TMP/measured.txt"
  curl -s -K "$TMP/warm.txt" >/dev/null
  rm -f "$TMP"/callgrind.out.*
  callgrind_control -z "$GH_PID" >/dev/null 2>&1
  callgrind_control -i on "$GH_PID" >/dev/null 2>&1
  statuses=$(curl -s -K "$TMP/measured.txt" | sort | uniq -c | awk '{printf "%s%s:%s", (NR > 1 ? " " : ""), $2, $1}')
  callgrind_control -d "$GH_PID" >/dev/null 2>&1
  callgrind_control -i off "$GH_PID" >/dev/null 2>&1
  [[ $statuses == "200:$REQUESTS" ]] || die "$1: statuses $statuses"
  ir=$(for f in "$TMP"/callgrind.out.*; do sed -n 's/^summary: //p' "$f"; done | awk '{s += $1} END {print s}')
  printf '%-16s %9d instructions per request\n' "$1" $(( ir / REQUESTS ))
}

log "$("$REAL_BIN" --version), $REQUESTS requests each"
for alg in $ALGS; do
  provision "$alg" "http://bench.example"
  issuer_var=GH_ISSUER_$alg auth_var=GH_AUTH_$alg
  measure "token $alg" "${!issuer_var}/oauth/token" "${!auth_var}" "grant_type=client_credentials&scope=my-scope"
done
alg=${ALGS%% *}
issuer_var=GH_ISSUER_$alg auth_var=GH_AUTH_$alg
token=$(fetch_token "${!issuer_var}/oauth/token" "${!auth_var}")
measure "introspect $alg" "${!issuer_var}/introspect" "${!auth_var}" "token=$token"
