# shellcheck shell=bash
# Helpers shared by bench/run.sh and bench/proxy.sh: `source "$HERE/lib.sh"`. Sourcing only defines functions.
#
# The caller sets LOG_TAG (the tag of its log lines), BIN, ROOT and KEEP before using them; bench_tmp sets TMP and
# PIDS, start_gatehouse sets GH_PID. A caller that defines cleanup_extra has it run first on exit.

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- prerequisites ------------------------------------------------------------------------------------------
# The scripts only check that the release binary exists; they never build it.
require_gatehouse() {
  [[ -x $BIN ]] || die "no release binary at $BIN; build it first: (cd $ROOT && cargo build --release -p gatehouse)"
}

# require_cmd CMD [WHAT_FOR]
require_cmd() { command -v "$1" >/dev/null || die "$1 is required${2:+ ($2)}"; }

apt_install() {
  local pkg=$1 sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  log "installing $pkg (apt-get)"
  "${sudo[@]}" apt-get install -y "$pkg" >/dev/null 2>&1 \
    || { "${sudo[@]}" apt-get update >/dev/null 2>&1 && "${sudo[@]}" apt-get install -y "$pkg" >/dev/null 2>&1; }
}

# ensure_cmd CMD: installs the package of the same name with apt-get when CMD is missing
ensure_cmd() {
  command -v "$1" >/dev/null || apt_install "$1" || true
  command -v "$1" >/dev/null || die "$1 is required and could not be installed"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# require_free_ports PORT...
require_free_ports() {
  local p
  for p in "$@"; do
    if port_busy "$p"; then die "port $p on 127.0.0.1 is already in use"; fi
  done
}

# require_nginx -> NGINX: the nginx binary, installed with apt-get when missing
require_nginx() {
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  [[ -x $NGINX ]] || { apt_install nginx || true; NGINX=$(command -v nginx || echo /usr/sbin/nginx); }
  [[ -x $NGINX ]] || die "nginx is required and could not be installed"
}

# start_upstream: the benches' upstream (nginx, bench/nginx/upstream.conf) on 127.0.0.1:$UPSTREAM_PORT, after
# require_nginx and bench_tmp; returns once it answers.
start_upstream() {
  local user=()
  log "starting the upstream (nginx, bench/nginx/upstream.conf) on 127.0.0.1:$UPSTREAM_PORT"
  mkdir -p "$TMP/upstream/tmp"
  sed "s/127\.0\.0\.1:18281/127.0.0.1:$UPSTREAM_PORT/g" "$HERE/nginx/upstream.conf" >"$TMP/upstream.conf"
  [[ $(id -u) -ne 0 ]] || user=(-g 'user root;')
  "$NGINX" -p "$TMP/upstream/" -c "$TMP/upstream.conf" -e stderr "${user[@]}" >"$TMP/upstream.out" 2>"$TMP/upstream.err" &
  PIDS+=("$!")
  wait_http "http://127.0.0.1:$UPSTREAM_PORT/" "$!" 20 || { cat "$TMP/upstream.err" >&2; die "the upstream did not start"; }
}

# --- callgrind ----------------------------------------------------------------------------------------------
# callgrind_bin: from now on BIN starts Gatehouse under callgrind, counting nothing until callgrind_count; REAL_BIN
# is the binary itself. After bench_tmp.
callgrind_bin() {
  cat >"$TMP/under-callgrind" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$TMP/callgrind.out.%p "$BIN" "\$@"
SH
  chmod +x "$TMP/under-callgrind"
  REAL_BIN=$BIN
  BIN=$TMP/under-callgrind
}

# callgrind_count COMMAND... -> IR: the instructions Gatehouse (GH_PID) executes while COMMAND runs; COMMAND's
# output goes to stdout. With CALLGRIND_OUT=DIR, the profile is kept there as NAME.PID (NAME: CALLGRIND_NAME).
callgrind_count() {
  rm -f "$TMP"/callgrind.out.*
  callgrind_control -z "$GH_PID" >/dev/null 2>&1
  callgrind_control -i on "$GH_PID" >/dev/null 2>&1
  "$@"
  callgrind_control -d "$GH_PID" >/dev/null 2>&1
  callgrind_control -i off "$GH_PID" >/dev/null 2>&1
  IR=$(for f in "$TMP"/callgrind.out.*; do sed -n 's/^summary: //p' "$f"; done | awk '{s += $1} END {print s}')
  if [[ -n ${CALLGRIND_OUT:-} ]]; then
    mkdir -p "$CALLGRIND_OUT"
    for f in "$TMP"/callgrind.out.*; do cp "$f" "$CALLGRIND_OUT/${CALLGRIND_NAME:-run}.${f##*.}"; done
  fi
}

# --- processes and cleanup ----------------------------------------------------------------------------------
# bench_tmp NAME: TMP, a new temp dir ${TMPDIR:-/tmp}/NAME.XXXXXX, and PIDS, the processes to stop on exit. On exit
# (Ctrl-C and TERM included) they are stopped; the temp dir is removed, or kept on failure or with KEEP=1.
bench_tmp() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  PIDS=()
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}
cleanup() {
  local rc=$?
  if declare -F cleanup_extra >/dev/null; then cleanup_extra; fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $rc -ne 0 || $KEEP == 1 ]]; then
    log "logs and raw results kept in $TMP"
  else
    rm -rf "$TMP"
  fi
}

# wait_until PID SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds; fails if PID exits or time runs out
wait_until() {
  local pid=$1 left=$(( $2 * 10 ))
  shift 2
  until "$@"; do
    kill -0 "$pid" 2>/dev/null || return 1
    (( left-- > 0 )) || return 1
    sleep 0.1
  done
}

# wait_for FILE PATTERN PID SECONDS: until FILE has a line matching PATTERN
wait_for() { wait_until "$3" "$4" grep -qs "$2" "$1"; }

# wait_http URL PID SECONDS: until URL answers anything
wait_http() { wait_until "$2" "$3" curl -s -o /dev/null --max-time 1 "$1"; }

# --- Gatehouse ----------------------------------------------------------------------------------------------
# start_gatehouse VAR=VALUE...: `gatehouse quickstart` with data in $TMP/gh-data, output in $TMP/gh.out and gh.err,
# these settings (its listen addresses) and log level warn unless GATEHOUSE_LOG__LEVEL is set; returns once it is
# ready, with its pid in GH_PID.
start_gatehouse() {
  log "starting Gatehouse quickstart ($BIN)"
  mkdir -p "$TMP/gh-data"
  env "$@" GATEHOUSE_LOG__LEVEL="${GATEHOUSE_LOG__LEVEL:-warn}" \
    "$BIN" quickstart --data-dir "$TMP/gh-data" >"$TMP/gh.out" 2>"$TMP/gh.err" &
  GH_PID=$!
  PIDS+=("$GH_PID")
  wait_for "$TMP/gh.out" "Gatehouse Ready" "$GH_PID" 120 || { tail -20 "$TMP/gh.err" >&2; die "Gatehouse did not become ready"; }
}

# start_proxy_gatehouse VAR=VALUE...: start_gatehouse with every listener on the proxy benches' ports
# (GH_PROXY_PORT, GH_ADMIN_PORT, GH_PLATFORM_PORT, GH_ISSUER_PORT, GH_ECHO_PORT) and these settings; ADMIN is then
# its Admin API.
start_proxy_gatehouse() {
  start_gatehouse "$@" \
    GATEHOUSE_PROXY__LISTEN="127.0.0.1:$GH_PROXY_PORT" \
    GATEHOUSE_ADMIN__LISTEN="127.0.0.1:$GH_ADMIN_PORT" \
    GATEHOUSE_PLATFORM__LISTEN="127.0.0.1:$GH_PLATFORM_PORT" \
    GATEHOUSE_ISSUER__LISTEN="127.0.0.1:$GH_ISSUER_PORT" \
    GATEHOUSE_ECHO__LISTEN="127.0.0.1:$GH_ECHO_PORT" \
    GATEHOUSE_STATUS__LISTEN=127.0.0.1:0 GATEHOUSE_PROXY__LISTEN_TLS=127.0.0.1:0
  ADMIN=http://127.0.0.1:$GH_ADMIN_PORT
}

# admin METHOD PATH BODY: a Kong Admin API call (at ADMIN) that must answer 201
admin() {
  local code
  code=$(curl -sS -o "$TMP/admin.json" -w '%{http_code}' -X "$1" "$ADMIN$2" -H 'content-type: application/json' --data "$3")
  [[ $code == 201 ]] || { cat "$TMP/admin.json" >&2; die "admin API: $1 $2 -> HTTP $code"; }
}

# --- the quickstart's management API and issuer -------------------------------------------------------------
# platform_login: KONNECT_TOKEN and PLATFORM from the quickstart's exports (after start_gatehouse).
platform_login() {
  KONNECT_TOKEN=$(sed -n "s/^export KONNECT_TOKEN='\(.*\)'$/\1/p" "$TMP/gh.out")
  PLATFORM=$(sed -n "s/^export KONNECT_CONTROL_PLANE_URL=\(.*\)$/\1/p" "$TMP/gh.out")
  [[ -n $KONNECT_TOKEN && -n $PLATFORM ]] || die "could not read KONNECT_TOKEN / KONNECT_CONTROL_PLANE_URL from quickstart output"
}

# api METHOD PATH BODY OUTFILE: a platform API call that must answer 201
api() {
  local code
  code=$(curl -sS -o "$4" -w '%{http_code}' -X "$1" "$PLATFORM$2" -H "Authorization: Bearer $KONNECT_TOKEN" \
    -H 'Content-Type: application/json' --data "$3")
  [[ $code == 201 ]] || { cat "$4" >&2; die "$1 $2 -> HTTP $code"; }
}

# json_get FILE EXPR: evaluates EXPR on the parsed JSON `j` of FILE.
json_get() { node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); const v=('"$2"'); if (v===undefined) process.exit(1); console.log(v)' "$1"; }

# provision ALG AUDIENCE -> GH_ISSUER_<ALG>, GH_AUTH_<ALG>: an auth server signing with ALG, scope my-scope and a
# client_credentials client allowed it (GH_AUTH_<ALG> is its Basic authorization value)
provision() {
  local alg=$1 id issuer scope client secret
  api POST /v1/auth-servers "{\"name\":\"bench-$alg\",\"audience\":\"$2\",\"signing_algorithm\":\"$alg\"}" "$TMP/as-$alg.json"
  id=$(json_get "$TMP/as-$alg.json" j.id)
  issuer=$(json_get "$TMP/as-$alg.json" j.issuer)
  api POST "/v1/auth-servers/$id/scopes" '{"name":"my-scope"}' "$TMP/scope-$alg.json"
  scope=$(json_get "$TMP/scope-$alg.json" j.id)
  api POST "/v1/auth-servers/$id/clients" \
    "{\"name\":\"bench-client\",\"grant_types\":[\"client_credentials\"],\"allow_scopes\":[\"$scope\"],\"access_token_duration\":3600}" \
    "$TMP/client-$alg.json"
  client=$(json_get "$TMP/client-$alg.json" j.id)
  secret=$(json_get "$TMP/client-$alg.json" j.client_secret)
  printf -v "GH_ISSUER_$alg" '%s' "$issuer"
  printf -v "GH_AUTH_$alg" 'Basic %s' "$(printf '%s:%s' "$client" "$secret" | base64 -w0)"
  log "Gatehouse auth server $alg: $issuer"
}

# fetch_token URL AUTH [BODY] -> prints access_token (BODY: client_credentials with scope my-scope)
fetch_token() {
  local out=$TMP/fetch.json code
  code=$(curl -sS -o "$out" -w '%{http_code}' -X POST "$1" -H "Authorization: $2" \
    -H 'Content-Type: application/x-www-form-urlencoded' --data "${3:-grant_type=client_credentials&scope=my-scope}")
  [[ $code == 200 ]] || { cat "$out" >&2; die "POST $1 -> HTTP $code"; }
  json_get "$out" j.access_token
}

# gh_warnings [GREP_OPTION...]: the lines of Gatehouse's stderr that mention warn or error, colours stripped
gh_warnings() { sed 's/\x1b\[[0-9;]*m//g' "$TMP/gh.err" | grep "$@" -iE 'warn|error'; }

# field NAME LINE: the value of NAME=... in a RESULT line of the wrk scripts
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# --- wrk rounds ---------------------------------------------------------------------------------------------
# wrk_rounds BASELINE [WRK ARGS…]: warms up each of ROUTES, then runs ROUNDS rounds of wrk on each (the order
# rotating per round, PAUSE between runs) against $PROXY/ROUTE with the extra wrk arguments, measuring the CPU the
# Gatehouse process (GH_PID) used per request, and prints each run and a summary of medians with per-round ratios
# against /BASELINE. Reads THREADS, CONNS, DURATION, WARMUP, PAUSE, ROUNDS, TMP, BIN and HERE.
wrk_rounds() {
  local baseline=$1
  shift
  WRK_EXTRA=("$@")
  CLK_TCK=$(getconf CLK_TCK)
  cpu_ticks() { awk '{print $14 + $15}' "/proc/$GH_PID/stat"; }
  RESULTS=$TMP/results.tsv
  : >"$RESULTS"
  # run_wrk ROUTE DURATION ROUND: one run, appended to RESULTS as "round route rps cpu_us_per_req errors"
  run_wrk() {
    local cpu0 cpu1 line requests errors
    cpu0=$(cpu_ticks)
    wrk -t"$THREADS" -c"$CONNS" -d"$2" --latency --timeout 5s "${WRK_EXTRA[@]}" -s "$HERE/proxy.lua" "$PROXY/$1" >"$TMP/wrk-$1-$3.txt"
    cpu1=$(cpu_ticks)
    line=$(grep '^RESULT' "$TMP/wrk-$1-$3.txt") || die "wrk gave no result for /$1: $(cat "$TMP/wrk-$1-$3.txt")"
    [[ $3 == warmup ]] && return 0
    requests=$(field requests "$line")
    errors=$(( $(field non2xx "$line") + $(field connect "$line") + $(field read "$line") + $(field write "$line") + $(field timeout "$line") ))
    printf '%s\t%s\t%s\t%s\t%s\n' "$3" "$1" "$(field rps "$line")" \
      "$(awk -v t=$(( cpu1 - cpu0 )) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')" "$errors" >>"$RESULTS"
  }

  log "warm-up: $WARMUP per route"
  for route in "${ROUTES[@]}"; do run_wrk "$route" "$WARMUP" warmup; done
  log "measuring: $ROUNDS rounds x [${ROUTES[*]}] (the order rotates each round), wrk -t$THREADS -c$CONNS -d$DURATION"
  printf '\n%-5s %-12s %10s %11s %7s\n' round route req/s cpu_us/req errors
  for ((r = 1; r <= ROUNDS; r++)); do
    order=("${ROUTES[@]:$(( (r - 1) % ${#ROUTES[@]} ))}" "${ROUTES[@]:0:$(( (r - 1) % ${#ROUTES[@]} ))}")
    for route in "${order[@]}"; do
      sleep "$PAUSE"
      run_wrk "$route" "$DURATION" "$r"
      tail -1 "$RESULTS" | awk -F'\t' '{ printf "%-5s %-12s %10.0f %11s %7d%s\n", $1, "/" $2, $3, $4, $5, ($5 > 0 ? "   <- INVALID (errors)" : "") }'
    done
  done

  printf '\nsummary (%s; medians over %d rounds; ratios are per round, against /%s in the same round):\n' "$("$BIN" --version)" "$ROUNDS" "$baseline"
  printf '%-12s %10s %11s %14s %16s\n' route req/s cpu_us/req "req/s vs $baseline" "cpu/req vs $baseline"
  awk -F'\t' -v routes="${ROUTES[*]}" -v base="$baseline" '
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { rps[$1, $2] = $3; cpu[$1, $2] = $4; rounds[$1] = 1 }
    END {
      n = split(routes, names, " ")
      for (k = 1; k <= n; k++) {
        route = names[k]; r_list = ""; c_list = ""; rr = ""; cr = ""
        for (round in rounds) {
          r_list = r_list " " rps[round, route]; c_list = c_list " " cpu[round, route]
          rr = rr " " rps[round, route] / rps[round, base]; cr = cr " " cpu[round, route] / cpu[round, base]
        }
        printf "%-12s %10.0f %11.1f %14.3f %16.3f\n", "/" route, median(r_list), median(c_list), median(rr), median(cr)
      }
    }' "$RESULTS"
}
