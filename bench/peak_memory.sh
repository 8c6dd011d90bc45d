#!/usr/bin/env bash
# Peak memory of the model workloads in aics, PyTorch and onnxruntime, beside their times.
#
#   bench/peak_memory.sh [THREADS [WORKLOAD ...]]
#
# Each workload runs alone in a fresh process on each side (`aics bench --filter W`, and
# bench/torch_bench.py once for PyTorch and once for onnxruntime), because allocators keep freed
# memory mapped for reuse and a second workload in the same process would reuse the first one's.
# Each side reports the resident memory the workload added at its peak: the peak resident set
# (Linux's VmHWM, reset just before the workload is built) less the resident set at that moment.
# So the weights, activations and workspaces count, and the interpreter and libraries do not.
# onnxruntime's mark is made after the export, before its session is built. Needs a release
# build and, for the onnxruntime column, a $PYTHON with onnxruntime (see bench/run.sh).
set -euo pipefail
THREADS="${1:-2}"
shift || true
WORKLOADS=("$@")
if [ ${#WORKLOADS[@]} -eq 0 ]; then
    WORKLOADS=(vgg19_fwd_b1 resnet50_fwd_b1 resnet50_fwd_b8 mobilenet_v2_fwd_b1
               resnet18_train_32_b64 lenet5_train_b64)
fi
PYTHON="${PYTHON:-/usr/bin/python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AICS="$ROOT/target/release/aics"
[ -x "$AICS" ] || { echo "error: $AICS not found; build it with: cargo build --release" >&2; exit 1; }
A="${TMPDIR:-/tmp}/aics_mem_t${THREADS}.jsonl"
T="${TMPDIR:-/tmp}/torch_mem_t${THREADS}.jsonl"
: > "$A"
: > "$T"
for W in "${WORKLOADS[@]}"; do
    echo "== $W" >&2
    "$AICS" bench --json --threads "$THREADS" --filter "$W" --min-time 0.5 >> "$A"
    "$PYTHON" "$ROOT/bench/torch_bench.py" --threads "$THREADS" --filter "$W" \
        --no-onnxruntime --budget 0.5 >> "$T"
    case "$W" in
        *_fwd_b*)
            "$PYTHON" "$ROOT/bench/torch_bench.py" --threads "$THREADS" \
                --filter "$W@onnxruntime" --budget 0.5 >> "$T" ;;
    esac
done
"$PYTHON" "$ROOT/bench/compare.py" "$A" "$T"
