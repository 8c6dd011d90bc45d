#!/usr/bin/env bash
# The README's GAN results: mode collapse on the 2-D ring of 8 Gaussians (the original GAN
# against WGAN, scatter plots side by side), and DCGAN on Fashion-MNIST with its sample grid and
# its class and Fréchet measures under the LeNet-5 that `aics train` writes.
#
#   bash scripts/gan-demo.sh [OUT]        (default runs/gan-demo; about an hour on 2 cores)
#
# Needs `bash scripts/setup.sh` (Fashion-MNIST) and a release build. TOY_ONLY=1 skips DCGAN.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/runs/gan-demo}"
AICS="$ROOT/target/release/aics"
[ -x "$AICS" ] || (cd "$ROOT" && cargo build --release)
mkdir -p "$OUT"
cd "$ROOT"

# the original GAN (non-saturating, Adam 1e-3) and WGAN (RMSprop 5e-5, c = 0.01, n_critic 5),
# both fully connected, on freshly drawn points; 500 generator steps an epoch
"$AICS" gan train --model gan --dataset ring8 --epochs 40 --checkpoint "$OUT/gan-ring8.safetensors"
"$AICS" gan train --model gan --loss minimax --dataset ring8 --epochs 40 --checkpoint "$OUT/gan-minimax-ring8.safetensors"
"$AICS" gan train --model wgan --dataset ring8 --epochs 100 --checkpoint "$OUT/wgan-ring8.safetensors"
"$AICS" gan eval --checkpoint "$OUT/gan-ring8.safetensors" --checkpoint "$OUT/gan-minimax-ring8.safetensors" \
    --checkpoint "$OUT/wgan-ring8.safetensors" --plot "$OUT/ring8.png" --curves "$OUT/ring8-modes.png"

[ "${TOY_ONLY:-0}" = 1 ] && exit 0
# the classifier that scores generated images
[ -f runs/lenet5-fashion-mnist.safetensors ] || "$AICS" train
"$AICS" gan train --model dcgan --dataset fashion-mnist --epochs "${DCGAN_EPOCHS:-5}" \
    --checkpoint "$OUT/dcgan-fashion-mnist.safetensors"
"$AICS" gan eval --checkpoint "$OUT/dcgan-fashion-mnist.safetensors"
"$AICS" gan interpolate --checkpoint "$OUT/dcgan-fashion-mnist.safetensors" --out "$OUT/interpolate.png"
