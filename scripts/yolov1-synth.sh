#!/usr/bin/env bash
# YOLOv1 trained on synthetic scenes (5 classes, up to 4 objects, 192²) to mAP@0.5 above 0.9 on
# 200 held-out ones, in the three stages the README reports (about 2.5 hours on 2 cores):
#   1. S = 6: 20 epochs on 4,000 scenes, Adam 1e-3 (1e-4 for the last third);
#   2. fine-tuning on 8,000 fresh scenes, 4 epochs, Adam 1e-4 (1e-5 for the last third);
#   3. S = 12 (--grid 12: the same weights, cells half as wide): 3 epochs on 6,000 fresh scenes.
#
#   bash scripts/yolov1-synth.sh [OUT_DIR]      (default runs/yolov1-synth)
#
# Each stage's checkpoint resumes, so the script can be stopped and started again. Score the
# result with `aics detect --model yolov1 --weights OUT_DIR/s12.safetensors --score 0.01
# --coco-results r.json --out OUT_DIR/val/boxes OUT_DIR/val/images/*.png` and `aics map --gt OUT_DIR/val/annotations.json
# --dt r.json --metric voc`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-runs/yolov1-synth}"
AICS=target/release/aics
cargo build --release -q
mkdir -p "$OUT"
scenes() { # folder, images, seed
    [ -f "$OUT/$1/annotations.json" ] ||
        "$AICS" data synth-detect --out "$OUT/$1" --images "$2" --size 192 --max-objects 4 --seed "$3"
}
scenes val 200 2
scenes s4k 4000 1
scenes s8k 8000 3
scenes s6k 6000 4
stage() { # checkpoint name, then detect-train options
    local ck="$OUT/$1.safetensors"
    shift
    local resume=()
    [ -f "$ck" ] && resume=(--resume)
    "$AICS" detect-train --model yolov1 --head conv --size 192 --batch 16 \
        --val "synth:$OUT/val" --checkpoint "$ck" "${resume[@]}" "$@"
}
stage s6 --dataset "synth:$OUT/s4k" --epochs 20 --lr 1e-3
stage s6ft --dataset "synth:$OUT/s8k" --epochs 4 --lr 1e-4 --init "$OUT/s6.safetensors"
stage s12 --dataset "synth:$OUT/s6k" --epochs 3 --lr 1e-4 --grid 12 --init "$OUT/s6ft.safetensors"
