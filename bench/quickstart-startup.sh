#!/usr/bin/env bash
# Start-up time of `gatehouse quickstart`: from exec to the line `Gatehouse Ready`, on a fresh data dir (first
# start: creates the database, the master key and the control plane) and on the same data dir again (restart).
# Usage: bench/quickstart-startup.sh [path/to/gatehouse] [runs]   (default target/release/gatehouse, 10 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/gatehouse}
RUNS=${2:-10}
[ -x "$BIN" ] || { echo "build first: cargo build --release -p gatehouse" >&2; exit 1; }
BIN=$(realpath "$BIN")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# One start: prints milliseconds until `Gatehouse Ready`, then stops the process with SIGINT.
start_once() {
    local dir=$1 fifo="$WORK/out.$RANDOM" start end pid line
    mkfifo "$fifo"
    start=$(date +%s%N)
    GATEHOUSE_PLATFORM__LISTEN=127.0.0.1:0 GATEHOUSE_ISSUER__LISTEN=127.0.0.1:0 GATEHOUSE_PROXY__LISTEN=127.0.0.1:0 \
        GATEHOUSE_ADMIN__LISTEN=127.0.0.1:0 GATEHOUSE_ECHO__LISTEN=127.0.0.1:0 GATEHOUSE_STATUS__LISTEN=127.0.0.1:0 \
        GATEHOUSE_PROXY__LISTEN_TLS=127.0.0.1:0 \
        "$BIN" quickstart --data-dir "$dir" >"$fifo" 2>/dev/null &
    pid=$!
    while IFS= read -r line; do
        if [ "$line" = "Gatehouse Ready" ]; then
            end=$(date +%s%N)
            break
        fi
    done <"$fifo"
    kill -INT "$pid"
    wait "$pid" || true
    rm -f "$fifo"
    echo $(( (end - start) / 1000000 ))
}

summarise() { sort -n | awk '{a[NR]=$1} END {printf "min %d ms, median %d ms, max %d ms (n=%d)\n", a[1], a[int((NR+1)/2)], a[NR], NR}'; }

fresh=(); again=()
for i in $(seq 1 "$RUNS"); do
    fresh+=("$(start_once "$WORK/data-$i")")
    again+=("$(start_once "$WORK/data-$i")")
done
echo "fresh data dir:  $(printf '%s\n' "${fresh[@]}" | summarise)"
echo "existing data:   $(printf '%s\n' "${again[@]}" | summarise)"
