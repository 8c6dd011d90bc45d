#!/usr/bin/env bash
# Peak resident memory of one workload in aics and in PyTorch: each side runs the workload
# alone (`aics bench --filter W`, `bench/torch_bench.py --filter W`) under GNU time, whose
# "maximum resident set size" includes each process's baseline (the Python interpreter and
# PyTorch's libraries on that side).
#
#   bench/peak_memory.sh WORKLOAD [THREADS]     e.g. bench/peak_memory.sh dcgan64_step_b64
set -euo pipefail
W="${1:?usage: bench/peak_memory.sh WORKLOAD [THREADS]}"
THREADS="${2:-2}"
PYTHON="${PYTHON:-/usr/bin/python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time (Debian package time) is needed" >&2; exit 1; }
peak() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1; }
a=$(peak "$ROOT/target/release/aics" bench --json --threads "$THREADS" --filter "$W" --min-time 0.5)
t=$(peak "$PYTHON" "$ROOT/bench/torch_bench.py" --threads "$THREADS" --filter "$W" --budget 0.5)
printf '{"workload": "%s", "aics_peak_mb": %.1f, "torch_peak_mb": %.1f, "ratio": %.2f}\n' \
    "$W" "$(awk "BEGIN{print $a/1024}")" "$(awk "BEGIN{print $t/1024}")" "$(awk "BEGIN{print $t/$a}")"
