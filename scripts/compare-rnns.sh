#!/usr/bin/env bash
# The chapter's comparison of recurrent cells: the Elman RNN, the LSTM, its peephole and
# coupled-gate variants and the GRU, each trained as a character-level language model on the
# same Shakespeare text, with the same sizes (2 layers of 256, embedding 64, batches of 32 × 100
# characters) and the same wall-time budget. Prints one table (validation bits per character,
# tokens a second), writes the curves on one plot (OUT_DIR/curves.png) and a sample of each
# model (OUT_DIR/CELL.txt).
#
#   bash scripts/compare-rnns.sh [OUT_DIR] [SECONDS]     (default runs/rnns, 900 s per cell)
#
# A run already complete is kept (its checkpoint resumes and finds nothing left to do).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-runs/rnns}"
BUDGET="${2:-900}"
AICS=target/release/aics
cargo build --release -q
mkdir -p "$OUT"
logs=()
for cell in rnn lstm lstm-peephole lstm-coupled gru; do
    ck="$OUT/$cell.safetensors"
    if [ ! -f "$ck" ]; then
        "$AICS" lm train --cell "$cell" --time-budget "$BUDGET" --epochs 1000 --eval-every 200 \
            --checkpoint "$ck" --log "$OUT/$cell.jsonl"
    fi
    "$AICS" lm sample --checkpoint "$ck" --prompt "ROMEO:" --length 300 --seed 1 > "$OUT/$cell.txt"
    logs+=("$OUT/$cell.jsonl")
done
"$AICS" lm compare "${logs[@]}" --out "$OUT/curves.png"
for cell in rnn lstm lstm-peephole lstm-coupled gru; do
    echo "--- $cell"
    cat "$OUT/$cell.txt"
done
