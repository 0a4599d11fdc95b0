#!/usr/bin/env bash
# Gatehouse's TLS proxy listener vs nginx terminating TLS, with the same certificate, in front of the same upstream,
# on 127.0.0.1 only. See bench/README.md, "TLS benchmark".
#
#   bench/tls.sh                        # ECDSA P-256 then RSA-2048; 3 alternating rounds of each measurement
#   ROUNDS=5 DURATION=5s KEYS=ecdsa bench/tls.sh
#
# Two measurements per key type, proxy and round, with wrk against https://localhost:PORT/:
#   keepalive   wrk -t THREADS -c CONNS: requests/s on kept-alive TLS connections (the handshakes happen once);
#   handshake   wrk -t THREADS -c HS_CONNS with `Connection: close`: every request on a new TCP connection with a
#               full TLS handshake (wrk does not resume sessions), so requests/s is handshakes/s.
# The proxies take turns, the first alternating from round to round; the medians of the rounds and their ratio
# (Gatehouse / nginx) are printed at the end.
#
# Knobs (environment): ROUNDS (3), DURATION (10s), WARMUP (3s), THREADS (2), CONNS (64), HS_CONNS (16), PAUSE (1 s
# between runs), KEYS ("ecdsa rsa"), GH_BIN (target/release/gatehouse), KEEP (0: keep the temp dir), ports
# GH_PROXY_PORT (18300), GH_ADMIN_PORT (18301), GH_PLATFORM_PORT (18302), GH_ISSUER_PORT (18303), GH_ECHO_PORT
# (18304), GH_TLS_PORT (18305), NGINX_PORT (18380: nginx's TLS listener), UPSTREAM_PORT (18381).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck disable=SC2034 # read by log() in lib.sh
LOG_TAG='tls-bench'
ROOT=$(dirname "$HERE")
BIN=${GH_BIN:-$ROOT/target/release/gatehouse}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
HS_CONNS=${HS_CONNS:-16}
PAUSE=${PAUSE:-1}
KEYS=${KEYS:-ecdsa rsa}
KEEP=${KEEP:-0}
GH_PROXY_PORT=${GH_PROXY_PORT:-18300}
GH_ADMIN_PORT=${GH_ADMIN_PORT:-18301}
GH_PLATFORM_PORT=${GH_PLATFORM_PORT:-18302}
GH_ISSUER_PORT=${GH_ISSUER_PORT:-18303}
GH_ECHO_PORT=${GH_ECHO_PORT:-18304}
GH_TLS_PORT=${GH_TLS_PORT:-18305}
NGINX_PORT=${NGINX_PORT:-18380}
UPSTREAM_PORT=${UPSTREAM_PORT:-18381}

# --- prerequisites ------------------------------------------------------------------------------------------
require_gatehouse
require_cmd curl
require_cmd openssl
require_cmd python3 "writing the Admin API's JSON"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { apt_install nginx-light || true; NGINX=$(command -v nginx || echo /usr/sbin/nginx); }
[[ -x $NGINX ]] || die "nginx is required and could not be installed"
ensure_cmd wrk
require_free_ports "$GH_PROXY_PORT" "$GH_ADMIN_PORT" "$GH_PLATFORM_PORT" "$GH_ISSUER_PORT" "$GH_ECHO_PORT" \
  "$GH_TLS_PORT" "$NGINX_PORT" "$UPSTREAM_PORT"
bench_tmp gatehouse-tls-bench
log "load before start: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min), $(nproc) cores; $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(openssl version)"

# start_nginx NAME CONF [CERT KEY] -> NGINX_PID_<NAME>: a checked-in config with the ports (and certificate) rewritten
start_nginx() {
  local name=$1 conf=$TMP/$1.conf prefix=$TMP/$1 user=()
  mkdir -p "$prefix/tmp"
  sed -e "s/127\.0\.0\.1:18380/127.0.0.1:$NGINX_PORT/g" -e "s/127\.0\.0\.1:18281/127.0.0.1:$UPSTREAM_PORT/g" \
    -e "s/127\.0\.0\.1:18381/127.0.0.1:$UPSTREAM_PORT/g" -e "s| CERT;| ${3:-CERT};|" -e "s| KEY;| ${4:-KEY};|" "$2" >"$conf"
  [[ $(id -u) -ne 0 ]] || user=(-g 'user root;')
  "$NGINX" -t -q -p "$prefix/" -c "$conf" -e stderr "${user[@]}" 2>"$TMP/$name.err" \
    || { cat "$TMP/$name.err" >&2; die "nginx $name: configuration test failed"; }
  "$NGINX" -p "$prefix/" -c "$conf" -e stderr "${user[@]}" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  PIDS+=("$!")
  printf -v "NGINX_PID_$name" '%s' "$!"
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# make_cert KIND -> $TMP/KIND.crt, $TMP/KIND.key: a self-signed certificate for localhost and 127.0.0.1
make_cert() {
  local key_args
  case $1 in
    ecdsa) key_args=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    rsa) key_args=(-newkey rsa:2048) ;;
    *) die "KEYS: ecdsa or rsa, not $1" ;;
  esac
  openssl req -x509 "${key_args[@]}" -nodes -days 2 -subj /CN=localhost \
    -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' -keyout "$TMP/$1.key" -out "$TMP/$1.crt" 2>/dev/null \
    || die "openssl could not make the $1 certificate"
}

# served_fingerprint PORT: the SHA-256 fingerprint of the certificate served for SNI localhost
served_fingerprint() {
  openssl s_client -connect "127.0.0.1:$1" -servername localhost </dev/null 2>/dev/null \
    | openssl x509 -noout -fingerprint -sha256 2>/dev/null || true
}

log "starting the nginx upstream on 127.0.0.1:$UPSTREAM_PORT"
start_nginx upstream "$HERE/nginx/upstream.conf"
wait_http "http://127.0.0.1:$UPSTREAM_PORT/" "$NGINX_PID_upstream" 20 || die "the nginx upstream did not start"

# Gatehouse serves the certificate as a `certificates` entity for SNI localhost (Kong's way), replaced for each key
# type through the Admin API; its own file certificate (the quickstart's) is only the fallback.
start_gatehouse GATEHOUSE_GATEWAY__ACCESS_LOG=off \
  GATEHOUSE_PROXY__LISTEN="127.0.0.1:$GH_PROXY_PORT" GATEHOUSE_ADMIN__LISTEN="127.0.0.1:$GH_ADMIN_PORT" \
  GATEHOUSE_PLATFORM__LISTEN="127.0.0.1:$GH_PLATFORM_PORT" GATEHOUSE_ISSUER__LISTEN="127.0.0.1:$GH_ISSUER_PORT" \
  GATEHOUSE_ECHO__LISTEN="127.0.0.1:$GH_ECHO_PORT" GATEHOUSE_STATUS__LISTEN=127.0.0.1:0 \
  GATEHOUSE_PROXY__LISTEN_TLS="127.0.0.1:$GH_TLS_PORT"
ADMIN=http://127.0.0.1:$GH_ADMIN_PORT
admin POST /services "{\"name\":\"bench\",\"url\":\"http://127.0.0.1:$UPSTREAM_PORT/\"}"
admin POST /services/bench/routes '{"name":"bench","paths":["/"],"protocols":["https"]}'

# run_wrk PROXY MODE -> requests/s (wrk's), and the run's raw output in $TMP/wrk-<...>.txt
run_wrk() {
  local port=$GH_TLS_PORT conns=$CONNS extra=() out
  [[ $1 == gatehouse ]] || port=$NGINX_PORT
  if [[ $2 == handshake ]]; then conns=$HS_CONNS; extra=(-H 'Connection: close'); fi
  out=$TMP/wrk-$KIND-$2-$1-$ROUND.txt
  wrk -t"$THREADS" -c"$conns" -d"$DURATION" "${extra[@]}" "https://localhost:$port/" >"$out" 2>&1 || die "wrk failed: $(cat "$out")"
  if grep -qE 'Non-2xx|Socket errors' "$out"; then log "WARNING $1 $2: $(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ')"; fi
  awk '/^Requests\/sec:/ {print $2}' "$out"
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

SUMMARY=()
for KIND in $KEYS; do
  make_cert "$KIND"
  want=$(openssl x509 -in "$TMP/$KIND.crt" -noout -fingerprint -sha256)
  body=$(python3 -c 'import json, sys; print(json.dumps({"cert": open(sys.argv[1]).read(), "key": open(sys.argv[2]).read(), "snis": ["localhost"]}))' \
    "$TMP/$KIND.crt" "$TMP/$KIND.key")
  code=$(curl -sS -o "$TMP/admin.json" -w '%{http_code}' -X PUT "$ADMIN/certificates/0190a0a0-0000-7000-8000-00000000b001" \
    -H 'content-type: application/json' --data "$body")
  [[ $code == 200 || $code == 201 ]] || { cat "$TMP/admin.json" >&2; die "PUT /certificates -> HTTP $code"; }
  left=100
  until [[ $(served_fingerprint "$GH_TLS_PORT") == "$want" ]]; do
    (( left-- > 0 )) || die "Gatehouse does not serve the $KIND certificate"
    sleep 0.1
  done
  start_nginx "tls_$KIND" "$HERE/nginx/tls.conf" "$TMP/$KIND.crt" "$TMP/$KIND.key"
  NGINX_TLS_PID=${PIDS[-1]}
  left=100
  until [[ $(served_fingerprint "$NGINX_PORT") == "$want" ]]; do
    (( left-- > 0 )) || { cat "$TMP/tls_$KIND.err" >&2; die "nginx does not serve the $KIND certificate"; }
    sleep 0.1
  done
  for port in "$GH_TLS_PORT" "$NGINX_PORT"; do
    got=$(curl -sS --cacert "$TMP/$KIND.crt" --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/")
    [[ $got == hello ]] || die "https://localhost:$port/ answers '$got', not the upstream's hello"
  done
  log "$KIND: both proxies serve the same certificate ($want) and answer the upstream's hello"
  for proxy in gatehouse nginx; do
    port=$GH_TLS_PORT; [[ $proxy == gatehouse ]] || port=$NGINX_PORT
    wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "https://localhost:$port/" >/dev/null 2>&1 || true
  done
  for mode in keepalive handshake; do
    gh=() ng=()
    for (( ROUND = 1; ROUND <= ROUNDS; ROUND++ )); do
      order=(gatehouse nginx); (( ROUND % 2 )) || order=(nginx gatehouse)
      for proxy in "${order[@]}"; do
        sleep "$PAUSE"
        rps=$(run_wrk "$proxy" "$mode")
        log "$KIND $mode round $ROUND: $proxy $rps req/s"
        if [[ $proxy == gatehouse ]]; then gh+=("$rps"); else ng+=("$rps"); fi
      done
    done
    gh_m=$(printf '%s\n' "${gh[@]}" | median)
    ng_m=$(printf '%s\n' "${ng[@]}" | median)
    ratio=$(awk -v a="$gh_m" -v b="$ng_m" 'BEGIN {printf "%.2f", a / b}')
    SUMMARY+=("$(printf '%-6s %-10s gatehouse %10.0f  nginx %10.0f  ratio %s  (rounds: gatehouse %s; nginx %s)' \
      "$KIND" "$mode" "$gh_m" "$ng_m" "$ratio" "${gh[*]}" "${ng[*]}")")
  done
  stop_pid "$NGINX_TLS_PID"
done

log "medians of $ROUNDS rounds, wrk -t$THREADS, ${DURATION} each; keepalive -c$CONNS, handshake -c$HS_CONNS with Connection: close (requests/s = handshakes/s)"
printf '%s\n' "${SUMMARY[@]}"
gh_warnings || true
