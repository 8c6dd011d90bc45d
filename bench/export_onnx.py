"""Writes .cache/onnx-bench/{resnet50,mobilenet_v2}.onnx: torchvision's ResNet-50 and
MobileNetV2 (weights as torch.manual_seed(0) initialises them; the speed does not depend on
them) exported by PyTorch in evaluation mode (batch norms folded into the convolutions), input
"x" of 1×3×224×224. `aics bench` runs them as onnx_resnet50_b1 and onnx_mobilenet_v2_b1 with
its ONNX runner, and bench/torch_bench.py in onnxruntime.

    python3 bench/export_onnx.py      # Debian's python3-torch and python3-torchvision
"""
import os
import sys

import torch
import torchvision

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, ".cache", "onnx-bench")
MODELS = ["resnet50", "mobilenet_v2"]


def main():
    os.makedirs(OUT, exist_ok=True)
    for arch in MODELS:
        path = os.path.join(OUT, arch + ".onnx")
        if os.path.exists(path):
            continue
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)().eval()
        x = torch.randn(1, 3, 224, 224)
        tmp = path + ".part"
        torch.onnx.export(model, x, tmp, input_names=["x"], opset_version=13)
        os.replace(tmp, path)
        print("wrote", path, file=sys.stderr)


if __name__ == "__main__":
    main()
