#!/usr/bin/env bash
# Benchmark aics against PyTorch on the CPU and print a comparison table.
#
#   bench/run.sh [THREADS [FILTER]]   (default 2 threads, all workloads)
#
# Needs a release build (cargo build --release) and PyTorch for $PYTHON
# (default /usr/bin/python3, which has Debian's python3-torch; install
# libopenblas0-pthread too, or its sgemm falls back to the reference BLAS).
# TRACT=1 adds tract's times for the onnx_* workloads (bench/tract, built on first use).
# The onnxruntime columns need onnxruntime importable by the same python, e.g.
#   /usr/bin/python3 -m venv --system-site-packages .cache/venv-ort
#   .cache/venv-ort/bin/pip install onnxruntime
#   PYTHON=.cache/venv-ort/bin/python bench/run.sh 2
set -euo pipefail

THREADS="${1:-2}"
FILTER="${2:-}"
PYTHON="${PYTHON:-/usr/bin/python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AICS="$ROOT/target/release/aics"
AICS_OUT="${TMPDIR:-/tmp}/aics_bench_t${THREADS}.jsonl"
TORCH_OUT="${TMPDIR:-/tmp}/torch_bench_t${THREADS}.jsonl"

if [ ! -x "$AICS" ]; then
    echo "error: $AICS not found; build it with: cargo build --release" >&2
    exit 1
fi

# the ONNX workloads' models (torchvision's exports), written once into .cache/onnx-bench
cd "$ROOT"
if [[ -z "$FILTER" || "onnx_" == *"$FILTER"* || "$FILTER" == onnx* ]]; then
    "$PYTHON" "$ROOT/bench/export_onnx.py" || echo "warning: bench/export_onnx.py failed; the onnx_* workloads are skipped" >&2
fi

echo "== aics ($THREADS threads) -> $AICS_OUT" >&2
"$AICS" bench --json --threads "$THREADS" --filter "$FILTER" > "$AICS_OUT"

echo "== torch ($THREADS threads, $PYTHON) -> $TORCH_OUT" >&2
"$PYTHON" "$ROOT/bench/torch_bench.py" --threads "$THREADS" --filter "$FILTER" > "$TORCH_OUT"

# tract, a Rust ONNX engine, on the ONNX workloads (TRACT=1: its first build takes minutes)
if [[ "${TRACT:-0}" == 1 ]]; then
    echo "== tract (1 thread) -> $TORCH_OUT" >&2
    (cd "$ROOT/bench/tract" && cargo build --release -q) \
        && "$ROOT/bench/tract/target/release/aics-bench-tract" "$FILTER" >> "$TORCH_OUT" \
        || echo "warning: the tract peer failed; its column is left out" >&2
fi

"$PYTHON" "$ROOT/bench/compare.py" "$AICS_OUT" "$TORCH_OUT"
