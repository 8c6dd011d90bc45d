#!/usr/bin/env bash
# The chapter's comparison of detectors on one synthetic test set: each detector aics can
# train is trained on the same synthetic scenes and scored on the same 200 held-out ones, and
# one table is printed from the training logs (mAP@0.5 by the VOC all-point rule, COCO AP,
# proposals an image, seconds an image at inference and in training, all on this machine), and
# each detector's boxes on the same held-out scene (OUT_DIR/pictures/, and side by side in
# OUT_DIR/pictures/all.png when python3 with PIL is there to paste them).
#
#   bash scripts/compare-detectors.sh [OUT_DIR]      (default runs/compare; hours on 2 cores)
#
# Runs that are already complete are kept (each checkpoint resumes), so the script can be
# stopped and started again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-runs/compare}"
AICS=target/release/aics
cargo build --release -q
mkdir -p "$OUT"
[ "${EVAL_ONLY:-0}" = 1 ] || [ -f "$OUT/train/annotations.json" ] || "$AICS" data synth-detect --out "$OUT/train" --images 2000 --size 192 --max-objects 4 --seed 1
[ -f "$OUT/val/annotations.json" ] || "$AICS" data synth-detect --out "$OUT/val" --images 200 --size 192 --max-objects 4 --seed 2

# EVAL_ONLY=1: score the checkpoints already in OUT_DIR (OUT_DIR/NAME.safetensors and its .jsonl
# for each detector, OUT_DIR/val) without training
train() { # name, then detect-train options
    [ "${EVAL_ONLY:-0}" = 1 ] && return 0
    local name="$1"; shift
    local ck="$OUT/$name.safetensors"
    local resume=()
    [ -f "$ck" ] && resume=(--resume)
    "$AICS" detect-train --dataset "synth:$OUT/train" --val "synth:$OUT/val" --size 192 \
        --checkpoint "$ck" "${resume[@]}" "$@"
}
train rcnn --model rcnn --batch 64
train ssd --model ssd --epochs 15 --batch 16
train fast_rcnn --model fast_rcnn --epochs 10 --batch 2
train faster_rcnn --model faster_rcnn --epochs 8 --batch 8
train yolov1 --model yolov1 --head conv --epochs 40 --batch 16

# every detector through `aics detect` on the held-out scenes (reading the PNGs, resizing,
# proposals, the network, NMS) and scored by `aics map`; training seconds from the logs
VAL_IMAGES=("$OUT"/val/images/*.png)
NVAL=${#VAL_IMAGES[@]}
mkdir -p "$OUT/pictures"
rows=()
for name in rcnn fast_rcnn faster_rcnn yolov1 ssd; do
    # the lowest scores mAP counts: SVM margins above -1.5 for R-CNN, 0.01 for the others
    score=(--score 0.01)
    [ "$name" = rcnn ] && score=(--score=-1.5)
    t0=$(date +%s.%N)
    "$AICS" detect --model "$name" --weights "$OUT/$name.safetensors" "${score[@]}" \
        --coco-results "$OUT/$name.results.json" --out "$OUT/eval_pictures/$name" "${VAL_IMAGES[@]}" >/dev/null
    t1=$(date +%s.%N)
    voc=$("$AICS" map --gt "$OUT/val/annotations.json" --dt "$OUT/$name.results.json" --metric voc --json)
    coco=$("$AICS" map --gt "$OUT/val/annotations.json" --dt "$OUT/$name.results.json" --json)
    # the first "KEY": number of a JSON line (the top-level one: per-class values come later)
    num() { grep -o "\"$1\":[0-9.e+-]*" <<<"$2" | head -n 1 | cut -d: -f2; }
    last=$(tail -n 1 "$OUT/$name.jsonl")
    field() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p" <<<"$last"; }
    case "$name" in
        rcnn|fast_rcnn)
            pp=$(field proposals_per_image)
            props="selective search${pp:+, $(printf %.0f "$pp")}" ;;
        faster_rcnn) props="RPN, ≤ 1000" ;;
        *) props="none" ;;
    esac
    ps=$(field proposal_seconds_per_image)
    train_s=$(awk "BEGIN{print $(field seconds_per_image) + ${ps:-0}}")
    rows+=("$(printf "| %s | %.3f | %.3f | %s | %.3f | %.3f |" "$name" "$(num mAP "$voc")" \
        "$(num AP "$coco")" "$props" "$(awk "BEGIN{print ($t1 - $t0) / $NVAL}")" "$train_s")")
    # the picture of the first held-out scene, at a score that shows what the detector believes
    # (YOLOv1's score is a class probability times a predicted IoU, so its sure boxes score lower)
    pic=(--score 0.3)
    [ "$name" = rcnn ] && pic=(--score 0)
    [ "$name" = yolov1 ] && pic=(--score 0.2)
    "$AICS" detect --model "$name" --weights "$OUT/$name.safetensors" "${pic[@]}" \
        --out "$OUT/pictures/$name" "${VAL_IMAGES[0]}" >/dev/null
done
echo
echo "| detector | mAP@0.5 (VOC) | COCO AP | proposals / image | s / image, inference | s / image, training |"
echo "|---|---|---|---|---|---|"
printf "%s\n" "${rows[@]}"
if /usr/bin/python3 -c "import PIL" 2>/dev/null; then
    /usr/bin/python3 - "$OUT/pictures" <<'PY'
import sys
from PIL import Image, ImageDraw
d = sys.argv[1]
names = ["rcnn", "fast_rcnn", "faster_rcnn", "yolov1", "ssd"]
ims = [Image.open(f"{d}/{n}/detections.png").convert("RGB") for n in names]
w, h = ims[0].size
out = Image.new("RGB", (w * len(ims), h + 20), "white")
for i, (n, im) in enumerate(zip(names, ims)):
    out.paste(im.resize((w, h)), (i * w, 20))
    ImageDraw.Draw(out).text((i * w + 4, 4), n, fill="black")
out.save(f"{d}/all.png")
PY
    echo "pictures: $OUT/pictures/all.png"
fi
