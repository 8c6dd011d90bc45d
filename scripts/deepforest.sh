#!/usr/bin/env bash
# Fine-tune a detector on aerial photos of trees (DeepForest's annotated NEON crops, fetched by
# scripts/setup.sh): Faster R-CNN on MobileNetV2's ImageNet weights, trained on 384-px tiles of
# the two other photos and tested on the whole OSBS_029 photo. Prints AP50 and writes the test
# photo with its boxes.
#
#   bash scripts/deepforest.sh [OUT_DIR]      (default runs/deepforest; minutes on 2 cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-runs/deepforest}"
SRC=.cache/deepforest
AICS=target/release/aics
EPOCHS="${EPOCHS:-40}"
[ -f "$SRC/OSBS_029.xml" ] || { echo "$SRC: missing; run bash scripts/setup.sh" >&2; exit 1; }
cargo build --release -q
mkdir -p "$OUT/train_xml" "$OUT/test_xml"
for f in "$SRC"/*.xml; do
    case "$(basename "$f")" in
        OSBS_029.xml) cp "$f" "$OUT/test_xml/" ;;
        *) cp "$f" "$OUT/train_xml/" ;;
    esac
done
[ -f "$OUT/tiles/annotations.json" ] ||
    "$AICS" data tile --dataset "voc:$OUT/train_xml:$SRC" --out "$OUT/tiles" --tile 384 --stride 192 \
        --one-class Tree
ck="$OUT/faster_rcnn.safetensors"
resume=()
[ -f "$ck" ] && resume=(--resume)
"$AICS" detect-train --model faster_rcnn --backbone mobilenet_v2 --augment yolo \
    --dataset "synth:$OUT/tiles" --val "voc:$OUT/test_xml:$SRC" --size 384 \
    --epochs "$EPOCHS" --batch 4 --checkpoint "$ck" "${resume[@]}"
"$AICS" detect --model faster_rcnn --weights "$ck" --score 0.5 --out "$OUT" "$SRC/OSBS_029.png"
echo "picture: $OUT/detections.png"
