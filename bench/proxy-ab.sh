#!/usr/bin/env bash
# Two Gatehouse builds, A and B, on the proxy bench: bench/proxy.sh runs alternately with each binary (A, B, A, B,
# ...), each run measuring that binary against nginx in the same way. A change too small to see in one run's noise
# shows in the medians of several: the CPU time per request and its ratio to nginx's are the figures to compare.
#
#   bench/proxy-ab.sh OLD_BINARY NEW_BINARY
#   e.g. git worktree add /tmp/base HEAD~1 && (cd /tmp/base && cargo build --release -p gatehouse)
#        bench/proxy-ab.sh /tmp/base/target/release/gatehouse target/release/gatehouse
#
# Knobs (environment): PAIRS (4: runs per binary), ROUNDS (2 per run), and every knob of bench/proxy.sh (AUTH,
# DURATION, ...). The strict response check is skipped (CHECK_DURATION=0) unless set.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
[[ $# -eq 2 ]] || { echo "usage: $0 BINARY_A BINARY_B" >&2; exit 2; }
A=$1
B=$2
for bin in "$A" "$B"; do [[ -x $bin ]] || { echo "not an executable: $bin" >&2; exit 2; }; done
PAIRS=${PAIRS:-4}
export ROUNDS=${ROUNDS:-2} CHECK_DURATION=${CHECK_DURATION:-0}
OUT=$(mktemp -d /tmp/gatehouse-proxy-ab.XXXXXX)

# One run: "<label> <req/s ratio GH/NG> <GH cpu us/req> <NG cpu us/req> <cpu ratio>".
run() {
  local label=$1 bin=$2 n=$3 log
  log="$OUT/$label-$n.txt"
  GH_BIN=$bin "$HERE/proxy.sh" >"$log" 2>&1 || { echo "bench/proxy.sh failed for $label, see $log" >&2; exit 1; }
  awk -v label="$label" '
    $1 == "median" { ratio = $6 }
    /^CPU per request/ { gsub(/[(),]/, ""); gh = $11; ng = $13; cpu = $15 }
    END { print label, ratio, gh, ng, cpu }' "$log"
}

echo "A = $A"
echo "B = $B"
echo "$PAIRS runs each, alternating, $ROUNDS rounds per run; logs in $OUT"
printf '%-5s %12s %12s %12s %10s\n' run "req/s GH/NG" "GH us/req" "NG us/req" "CPU GH/NG"
for ((i = 1; i <= PAIRS; i++)); do
  for label in A B; do
    bin=$A
    [[ $label == B ]] && bin=$B
    line=$(run "$label" "$bin" "$i")
    echo "$line" >>"$OUT/results"
    read -r l ratio gh ng cpu <<<"$line"
    printf '%-5s %12s %12s %12s %10s\n' "$l$i" "$ratio" "$gh" "$ng" "$cpu"
  done
done
echo "--- medians"
for label in A B; do
  awk -v label="$label" '$1 == label { r[++n] = $2; g[n] = $3; c[n] = $5 }
    function median(a, n,   i, j, t) {
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END { printf "%-5s req/s GH/NG %.3f   GH CPU %.1f us/req   CPU GH/NG %.2f\n", label, median(r, n), median(g, n), median(c, n) }' \
    "$OUT/results"
done
