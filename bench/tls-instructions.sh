#!/usr/bin/env bash
# Instructions per kept-alive request through the proxy's TLS listener against its plaintext one (the whole
# Gatehouse process under callgrind, so the count does not depend on the machine's load), on one route to the
# nginx upstream of the proxy benchmark. See bench/README.md, "TLS benchmark".
#
#   GH_BIN=target/release/gatehouse bench/tls-instructions.sh
#   KEYS="ecdsa rsa" bench/tls-instructions.sh
#
# For each listener, curl sends SHORT and then LONG requests over one kept-alive HTTP/1.1 connection (a new curl,
# so a new connection and, over TLS, one full handshake each time); the count per request is the difference of
# the two runs' instructions divided by LONG - SHORT, so the handshake and curl's connection set-up cancel out.
# Knobs (environment): SHORT (200), LONG (2200), KEYS (ecdsa), GH_BIN (target/release/gatehouse), KEEP (0), ports
# GH_PROXY_PORT (18300), GH_ADMIN_PORT (18301), GH_PLATFORM_PORT (18302), GH_ISSUER_PORT (18303), GH_ECHO_PORT
# (18304), GH_TLS_PORT (18305), UPSTREAM_PORT (18381). CALLGRIND_OUT=DIR keeps each run's profile there (for
# callgrind_annotate).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck disable=SC2034 # read by log() in lib.sh
LOG_TAG='tls-instructions'
ROOT=$(dirname "$HERE")
BIN=${GH_BIN:-$ROOT/target/release/gatehouse}
SHORT=${SHORT:-200}
LONG=${LONG:-2200}
KEYS=${KEYS:-ecdsa}
KEEP=${KEEP:-0}
GH_PROXY_PORT=${GH_PROXY_PORT:-18300}
GH_ADMIN_PORT=${GH_ADMIN_PORT:-18301}
GH_PLATFORM_PORT=${GH_PLATFORM_PORT:-18302}
GH_ISSUER_PORT=${GH_ISSUER_PORT:-18303}
GH_ECHO_PORT=${GH_ECHO_PORT:-18304}
GH_TLS_PORT=${GH_TLS_PORT:-18305}
UPSTREAM_PORT=${UPSTREAM_PORT:-18381}

require_gatehouse
require_cmd curl
require_cmd openssl
require_cmd python3 "writing the Admin API's JSON"
require_cmd valgrind
require_cmd callgrind_control
require_nginx
require_free_ports "$GH_PROXY_PORT" "$GH_ADMIN_PORT" "$GH_PLATFORM_PORT" "$GH_ISSUER_PORT" "$GH_ECHO_PORT" \
  "$GH_TLS_PORT" "$UPSTREAM_PORT"
bench_tmp gatehouse-tls-instructions
start_upstream
callgrind_bin
start_gatehouse GATEHOUSE_GATEWAY__ACCESS_LOG=off \
  GATEHOUSE_PROXY__LISTEN="127.0.0.1:$GH_PROXY_PORT" GATEHOUSE_ADMIN__LISTEN="127.0.0.1:$GH_ADMIN_PORT" \
  GATEHOUSE_PLATFORM__LISTEN="127.0.0.1:$GH_PLATFORM_PORT" GATEHOUSE_ISSUER__LISTEN="127.0.0.1:$GH_ISSUER_PORT" \
  GATEHOUSE_ECHO__LISTEN="127.0.0.1:$GH_ECHO_PORT" GATEHOUSE_STATUS__LISTEN=127.0.0.1:0 \
  GATEHOUSE_PROXY__LISTEN_TLS="127.0.0.1:$GH_TLS_PORT"
ADMIN=http://127.0.0.1:$GH_ADMIN_PORT
admin POST /services "{\"name\":\"bench\",\"url\":\"http://127.0.0.1:$UPSTREAM_PORT/\"}"
admin POST /services/bench/routes '{"name":"bench","paths":["/"]}'

# send URL COUNT [CONFIG LINE...]: COUNT requests on one kept-alive HTTP/1.1 connection; prints how many answered
# 200. The config lines (curl's `-K` syntax) go into every request's block: `next` resets the options.
send() {
  local url=$1 n=$2
  shift 2
  local extra
  extra=$(printf '%s\n' "$@")
  awk -v url="$url" -v n="$n" -v extra="$extra" 'BEGIN {
    for (i = 0; i < n; i++) { if (i > 0) print "next"; printf "http1.1\n%s\nurl = \"%s\"\noutput = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\n", extra, url }
  }' >"$TMP/requests.txt"
  curl -s --no-progress-meter -K "$TMP/requests.txt" 2>/dev/null | grep -c '^200$' || true
}

# measure NAME URL COUNT [CURL ARGS...] -> IR: instructions of the whole process while COUNT requests are sent
measure() {
  local name=$1 url=$2 n=$3
  shift 3
  CALLGRIND_NAME=$name-$n callgrind_count send "$url" "$n" "$@" >"$TMP/answered"
  [[ $(cat "$TMP/answered") == "$n" ]] || die "$name: $(cat "$TMP/answered") of $n requests answered 200"
}

# per_request NAME URL [CURL ARGS...] -> PER: (IR(LONG) - IR(SHORT)) / (LONG - SHORT)
per_request() {
  local name=$1 url=$2 short
  shift 2
  send "$url" 50 "$@" >/dev/null
  measure "$name" "$url" "$SHORT" "$@"
  short=$IR
  measure "$name" "$url" "$LONG" "$@"
  PER=$(( (IR - short) / (LONG - SHORT) ))
}

log "$("$REAL_BIN" --version): $SHORT and $LONG requests per listener, keys $KEYS"
per_request plain "http://127.0.0.1:$GH_PROXY_PORT/"
plain=$PER
printf '%-14s %14s %10s\n' listener instructions "vs plain"
printf '%-14s %14d %10.4f\n' plain "$plain" 1
for KIND in $KEYS; do
  case $KIND in
    ecdsa) key_args=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    rsa) key_args=(-newkey rsa:2048) ;;
    *) die "KEYS: ecdsa or rsa, not $KIND" ;;
  esac
  openssl req -x509 "${key_args[@]}" -nodes -days 2 -subj /CN=localhost \
    -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' -keyout "$TMP/$KIND.key" -out "$TMP/$KIND.crt" 2>/dev/null \
    || die "openssl could not make the $KIND certificate"
  body=$(python3 -c 'import json, sys; print(json.dumps({"cert": open(sys.argv[1]).read(), "key": open(sys.argv[2]).read(), "snis": ["localhost"]}))' \
    "$TMP/$KIND.crt" "$TMP/$KIND.key")
  code=$(curl -sS -o "$TMP/admin.json" -w '%{http_code}' -X PUT "$ADMIN/certificates/0190a0a0-0000-7000-8000-00000000b001" \
    -H 'content-type: application/json' --data "$body")
  [[ $code == 200 || $code == 201 ]] || { cat "$TMP/admin.json" >&2; die "PUT /certificates -> HTTP $code"; }
  tls=("cacert = \"$TMP/$KIND.crt\"" "resolve = \"localhost:$GH_TLS_PORT:127.0.0.1\"")
  left=300
  until [[ $(curl -s -o /dev/null -w '%{http_code}' --cacert "$TMP/$KIND.crt" --resolve "localhost:$GH_TLS_PORT:127.0.0.1" "https://localhost:$GH_TLS_PORT/") == 200 ]]; do
    (( left-- > 0 )) || die "the TLS listener does not serve the $KIND certificate"
    sleep 0.1
  done
  per_request "tls-$KIND" "https://localhost:$GH_TLS_PORT/" "${tls[@]}"
  printf '%-14s %14d %10.4f\n' "tls-$KIND" "$PER" "$(awk -v a="$PER" -v b="$plain" 'BEGIN {print a / b}')"
done
gh_warnings || true
