#!/usr/bin/env python3
"""PyTorch CPU reference timings for the workloads of `aics bench`.

    /usr/bin/python3 bench/torch_bench.py --threads 2

Prints one JSON object per line: first {"workload": "_info", ...}, then
{"workload": NAME, "seconds": MEDIAN, "gflop_s": ...} for each workload
("images_s" is added for the LeNet-5 step). Everything runs in float32 after
warm-up; the reported time is the median over the timed repeats. The whole run
takes well under a minute at 2 threads.

yolov3_tiny_416_fwd (bench/yolov3_tiny.py, darknet's weights from .cache/weights) has two more
peers: its ONNX export in onnxruntime (WORKLOAD@onnxruntime, as the torchvision models, with
onnxruntime importable by this python) and darknet itself (WORKLOAD@darknet, libdarknet.so from
.cache/darknet-deb through ctypes, single-threaded). A missing peer is noted on stderr.
`--filter yolov3_tiny` runs that workload alone (no aics numbers are needed).

Debian's python3-torch does its matrix products through the system BLAS
(libblas.so.3). Install libopenblas0-pthread for it; with the reference BLAS
alone sgemm runs at only a few GFLOP/s. The "_info" line names the BLAS
library that was loaded.
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def measure(fn, budget_s, min_reps=3, max_reps=50, warmup=2, setup=None):
    """Median seconds of fn() over repeats; repeats stop once budget_s of timed
    work is spent (but at least min_reps). setup() runs untimed before each."""
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    times = []
    spent = 0.0
    while len(times) < max_reps and (len(times) < min_reps or spent < budget_s):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
    return statistics.median(times), len(times)


def blas_info():
    """PyTorch's BLAS_INFO build setting, plus the shared BLAS libraries mapped
    into this process (Linux only; a statically linked MKL shows no file)."""
    m = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    info = [m.group(1)] if m else []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if re.match(r"lib(open)?blas", path.rsplit("/", 1)[-1]):
                    item = "/".join(path.rsplit("/", 2)[-2:])
                    if item not in info:
                        info.append(item)
    except OSError:
        pass
    return " ".join(info) or None


def conv_flops(n, c, h, w, o, k, oh, ow):
    return 2.0 * n * o * oh * ow * c * k * k


FILTER = [""]
NO_ORT = [False]


def wanted(*names):
    """Whether any of these workloads passes --filter (a substring, as `aics bench --filter`)."""
    return any(FILTER[0] in n for n in names)


_MEM_TAKEN = [False]


def _status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024.0
    return None


def mem_mark():
    """The resident set before a workload is built, with the peak reset (Linux), as `aics
    bench` marks it. Only the first workload a process measures gets a mark: freed memory
    stays mapped in the allocators for reuse, so a later workload would reuse it."""
    if _MEM_TAKEN[0]:
        return None
    _MEM_TAKEN[0] = True
    try:
        # hand freed heap memory (the ONNX export's, before onnxruntime's mark) back first
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_mb("VmRSS")
    except OSError:
        return None


def mem_peak(base):
    """MB the workload added at its peak since `mem_mark` (None without a mark)."""
    if base is None:
        return None
    hwm = _status_mb("VmHWM")
    return None if hwm is None else hwm - base


def emit(name, seconds, reps, flop=None, **extra):
    if not wanted(name):
        return
    rec = {"workload": name, "seconds": seconds,
           "gflop_s": (flop / seconds / 1e9) if flop else None, "repeats": reps}
    rec.update(extra)
    print(json.dumps(rec), flush=True)


def bench_sgemm(n, budget):
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.empty(n, n)
    s, r = measure(lambda: torch.mm(a, b, out=c), budget)
    emit(f"sgemm_{n}", s, r, 2.0 * n ** 3)


def bench_conv(name_fwd, name_other, n, c, h, w, o, budget, other="fwdbwd"):
    x = torch.randn(n, c, h, w, requires_grad=True)
    wt = (torch.randn(o, c, 3, 3) * 0.05).requires_grad_()
    g = torch.randn(n, o, h, w)
    fwd = conv_flops(n, c, h, w, o, 3, h, w)

    with torch.no_grad():
        s, r = measure(lambda: F.conv2d(x, wt, None, padding=1), budget)
    emit(name_fwd, s, r, fwd)

    if other == "fwdbwd":
        def step():
            out = F.conv2d(x, wt, None, padding=1)
            torch.autograd.grad(out, (x, wt), grad_outputs=g)

        s, r = measure(step, budget)
        emit(name_other, s, r, 3.0 * fwd)
    else:
        # Backward only: the forward graph is built once, outside the timed
        # region, and kept alive with retain_graph.
        out = F.conv2d(x, wt, None, padding=1)
        s, r = measure(
            lambda: torch.autograd.grad(out, (x, wt), grad_outputs=g, retain_graph=True),
            budget)
        emit(name_other, s, r, 2.0 * fwd)


def bench_maxpool(budget):
    x = torch.randn(1, 64, 112, 112, requires_grad=True)
    g = torch.randn(1, 64, 56, 56)

    def step():
        out = F.max_pool2d(x, 3, 2, 1)
        torch.autograd.grad(out, x, grad_outputs=g)

    s, r = measure(step, budget, max_reps=200)
    emit("maxpool3s2_fwdbwd", s, r)


def hashed(key, n):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
    import hashinit
    return hashinit, hashinit.uniform(key, n)


def bench_detection_ops(budget):
    """torchvision's NMS and ROI ops on the same key-hashed inputs as `aics bench`."""
    try:
        from torchvision.ops import nms, roi_align, roi_pool
    except ImportError:
        print("torchvision not installed; skipping the detection ops", file=sys.stderr)
        return
    if wanted("nms_10k"):
        n = 10_000
        _, u = hashed("bench.nms", 5 * n)
        x, y = u[:n] * 1000.0, u[n:2 * n] * 1000.0
        w, h = 10.0 + u[2 * n:3 * n] * 100.0, 10.0 + u[3 * n:4 * n] * 100.0
        boxes = torch.tensor(np.stack([x, y, x + w, y + h], axis=1), dtype=torch.float32)
        scores = torch.tensor(u[4 * n:], dtype=torch.float32)
        s, r = measure(lambda: nms(boxes, scores, 0.5), budget, max_reps=200)
        emit("nms_10k", s, r)
    if wanted("roi_pool_512x38x50_300", "roi_align_512x38x50_300"):
        hashinit, u = hashed("bench.roi.boxes", 4 * 300)
        feats = hashinit.fill("bench.roi.x", (1, 512, 38, 50))
        u = u.reshape(300, 4)
        x0, y0 = u[:, 0] * 700.0, u[:, 1] * 500.0
        w, h = 16.0 + u[:, 2] * 300.0, 16.0 + u[:, 3] * 300.0
        rois = torch.tensor(np.stack([np.zeros(300), x0, y0, x0 + w, y0 + h], axis=1),
                            dtype=torch.float32)
        with torch.no_grad():
            if wanted("roi_pool_512x38x50_300"):
                s, r = measure(lambda: roi_pool(feats, rois, (7, 7), 1.0 / 16), budget, max_reps=200)
                emit("roi_pool_512x38x50_300", s, r)
            if wanted("roi_align_512x38x50_300"):
                s, r = measure(lambda: roi_align(feats, rois, (7, 7), 1.0 / 16, 2, False), budget,
                               max_reps=200)
                emit("roi_align_512x38x50_300", s, r)


def bench_lenet(budget):
    mark = mem_mark()
    torch.manual_seed(0)
    model = LeNet5()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    s, r = measure(step, budget, warmup=5, max_reps=200)
    emit("lenet5_train_b64", s, r, images_s=64.0 / s, peak_mb=mem_peak(mark))


# (workload, torchvision constructor name, batch): eval-mode forward at 224x224
MODEL_FWD = [
    ("vgg19_fwd_b1", "vgg19", 1),
    ("resnet50_fwd_b1", "resnet50", 1),
    ("resnet50_fwd_b8", "resnet50", 8),
    ("mobilenet_v2_fwd_b1", "mobilenet_v2", 1),
]


def onnx_session(model, x, threads, path):
    """The model exported to ONNX and loaded in onnxruntime, or None (with a
    note on stderr) when either is unavailable; with the memory mark made after
    the export, before the session is built."""
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed; skipping its columns", file=sys.stderr)
        return None
    try:
        try:
            torch.onnx.export(model, x, path, input_names=["x"], dynamo=False)
        except TypeError:  # torch versions without the dynamo argument
            torch.onnx.export(model, x, path, input_names=["x"])
    except Exception as e:  # noqa: BLE001 - report and go on without ONNX
        print(f"ONNX export failed: {e}", file=sys.stderr)
        return None
    onnx_session.mark = mem_mark()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


# The ONNX workloads: the files bench/export_onnx.py writes, which aics runs with its ONNX
# runner (onnx_*) and onnxruntime here (onnx_*@onnxruntime).
ONNX_FILES = [("onnx_resnet50_b1", "resnet50.onnx"), ("onnx_mobilenet_v2_b1", "mobilenet_v2.onnx")]


def bench_onnx_files(budget, threads):
    import os
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed; skipping the onnx_* workloads", file=sys.stderr)
        return
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".cache", "onnx-bench")
    for name, file in ONNX_FILES:
        if not wanted(name + "@onnxruntime"):
            continue
        path = os.path.join(root, file)
        if not os.path.exists(path):
            print(f"{name}@onnxruntime: {path} not found (bench/export_onnx.py); skipped",
                  file=sys.stderr)
            continue
        mark = mem_mark()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        torch.manual_seed(0)
        feed = {sess.get_inputs()[0].name: torch.randn(1, 3, 224, 224).numpy()}
        s, r = measure(lambda: sess.run(None, feed), budget)
        emit(name + "@onnxruntime", s, r, images_s=1.0 / s, peak_mb=mem_peak(mark))


def bench_models(budget, threads, tmpdir):
    try:
        import torchvision
    except ImportError:
        print("torchvision not installed; skipping the model workloads", file=sys.stderr)
        return
    import os
    for name, arch, batch in MODEL_FWD:
        if not wanted(name, name + "@onnxruntime"):
            continue
        mark = mem_mark() if wanted(name) else None
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)().eval()
        x = torch.randn(batch, 3, 224, 224)
        if wanted(name):
            with torch.no_grad():
                s, r = measure(lambda: model(x), budget)
            emit(name, s, r, images_s=batch / s, peak_mb=mem_peak(mark))
        if NO_ORT[0] or not wanted(name + "@onnxruntime"):
            continue
        sess = onnx_session(model, x, threads, os.path.join(tmpdir, arch + ".onnx"))
        if sess is not None:
            feed = {"x": x.numpy()}
            s, r = measure(lambda: sess.run(None, feed), budget)
            emit(name + "@onnxruntime", s, r, images_s=batch / s,
                 peak_mb=mem_peak(onnx_session.mark))
    if not wanted("resnet18_train_32_b64"):
        return
    mark = mem_mark()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(64, 3, 32, 32)
    y = torch.randint(0, 10, (64,))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    s, r = measure(step, budget)
    emit("resnet18_train_32_b64", s, r, images_s=64.0 / s, peak_mb=mem_peak(mark))


YOLO = "yolov3_tiny_416_fwd"


def bench_yolov3_tiny(budget, threads):
    """YOLOv3-tiny as `aics bench` times it: batch 1, a 3x416x416 input of key-hashed uniform
    values, darknet's COCO weights (.cache/weights), batch norm folded, the forward pass to the
    inputs of the two [yolo] layers (no decoding, no NMS). Peers: the PyTorch port
    (bench/yolov3_tiny.py), its ONNX export in onnxruntime (YOLO@onnxruntime) and darknet itself
    (YOLO@darknet: libdarknet.so from .cache/darknet-deb, network_predict, single-threaded C
    without OpenMP, batch norm not folded, its time includes the [yolo] layers' logistic). A
    missing peer gets a note on stderr and the others go on."""
    import warnings
    import yolov3_tiny as Y
    for p in (Y.CFG, Y.WEIGHTS):
        if not os.path.exists(p):
            print(f"{YOLO}: {p} not found (scripts/fetch-assets.sh fetches it); "
                  "skipping the workload and all its peers", file=sys.stderr)
            return
    model = Y.build()
    x = Y.bench_input()
    flop = sum(2.0 * m.weight.numel() * model.shapes[i][1] * model.shapes[i][2]
               for i, (k, m) in enumerate(zip(model.kinds, model.layers)) if k == "convolutional")
    with torch.no_grad():
        ref = [h.numpy() for h in model(x)]
        if wanted(YOLO):
            s, r = measure(lambda: model(x), budget)
            emit(YOLO, s, r, flop, images_s=1.0 / s)

    if wanted(YOLO + "@onnxruntime"):
        try:
            import onnxruntime as ort
        except ImportError:
            ort = None
            print(f"{YOLO}@onnxruntime: onnxruntime is not installed for {sys.executable}; "
                  "skipping this peer", file=sys.stderr)
        if ort is not None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    path = Y.export_onnx(model, Y.ONNX_PATH, opset=13)
                sess = Y.ort_session(path, threads)
                feed = {"x": x.numpy()}
                diff = max(float(np.abs(g - e).max()) for g, e in zip(sess.run(None, feed), ref))
                s, r = measure(lambda: sess.run(None, feed), budget)
                emit(YOLO + "@onnxruntime", s, r, flop, images_s=1.0 / s,
                     onnxruntime=ort.__version__, max_abs_diff_vs_torch=diff)
            except Exception as e:  # noqa: BLE001 - report and go on with the other peers
                print(f"{YOLO}@onnxruntime: failed ({e}); skipping this peer", file=sys.stderr)

    if wanted(YOLO + "@darknet"):
        try:
            dn = Y.DarknetNet()
        except (OSError, RuntimeError) as e:  # FileNotFoundError is an OSError
            print(f"{YOLO}@darknet: no darknet ({e}; fixtures/gen_darknet.py unpacks the Debian "
                  "package into .cache/darknet-deb); skipping this peer", file=sys.stderr)
            return
        dn.set_input(x.numpy())
        # network_predict returns the last [yolo] layer's output: the port's second head
        # with darknet's logistic applied
        out = dn.output(dn.predict(), ref[-1].size)
        last = Y.yolo_activate(torch.from_numpy(ref[-1]),
                               len(model.anchor_mask[model.heads[-1]])).numpy().reshape(-1)
        diff = float(np.abs(out - last).max())
        s, r = measure(dn.predict, budget)
        dn.close()
        emit(YOLO + "@darknet", s, r, flop, images_s=1.0 / s, threads=1,
             max_abs_diff_vs_torch=diff)


def vgg_features(convs, x, wanted, last):
    """The ReLU outputs named in `wanted` of a VGG trunk (`convs`: blocks of (weight, bias)
    pairs, 3x3 with padding 1, 2x2 max pooling between blocks), computed up to `last`."""
    out, h = {}, x
    for b, block in enumerate(convs):
        for i, (w, bias) in enumerate(block):
            h = F.relu(F.conv2d(h, w, bias, padding=1))
            name = f"relu{b + 1}_{i + 1}"
            if name in wanted:
                out[name] = h
            if name == last:
                return out
        h = F.max_pool2d(h, 2, 2)
    return out


def gram(f, normalise=True):
    """Gram matrices (N, C, C) of feature maps (N, C, H, W), divided by C*H*W if `normalise`."""
    n, c, hh, ww = f.shape
    m = f.reshape(n, c, hh * ww)
    g = m @ m.transpose(1, 2)
    return g / (c * hh * ww) if normalise else g


def bench_gatys(budget):
    """One Gatys step as `aics bench` times it: VGG19 (random weights) to relu5_1, content loss
    at relu4_2, Gram style losses at relu1_1..relu5_1, TV on the decoded image, backward to the
    image. Textbook: unnormalised Gram, no TV."""
    blocks = [(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)]
    convs, c = [], 3
    torch.manual_seed(0)
    for n, o in blocks:
        convs.append([(torch.randn(o if i else o, c if i == 0 else o, 3, 3) * 0.05,
                       torch.zeros(o)) for i in range(n)])
        c = o
    style_layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]

    def features(x):
        return vgg_features(convs, x, set(style_layers) | {"relu4_2"}, "relu5_1")

    for name, h, w, textbook in [("gatys_step_256", 256, 256, False),
                                 ("gatys_step_512", 512, 512, False),
                                 ("gatys_step_textbook", 192, 320, True)]:
        if not wanted(name):
            continue
        photo = torch.rand(1, 3, h, w) * 255 - 120
        painting = torch.rand(1, 3, h, w) * 255 - 120
        with torch.no_grad():
            pf = features(photo)["relu4_2"]
            sg = {k: gram(v, not textbook) for k, v in features(painting).items() if k in style_layers}
        x = photo.clone().requires_grad_(True)

        def step():
            x.grad = None
            f = features(x)
            lc = ((f["relu4_2"] - pf) ** 2).mean()
            ls = sum(0.2 * ((gram(f[k], not textbook) - sg[k]) ** 2).sum() / f[k].shape[1] ** 2
                     for k in style_layers)
            loss = lc + 500.0 * ls
            if not textbook:
                img = x / 255.0
                loss = loss + 100.0 * (((img[:, :, 1:] - img[:, :, :-1]) ** 2).mean()
                                       + ((img[:, :, :, 1:] - img[:, :, :, :-1]) ** 2).mean())
            loss.backward()

        s, r = measure(step, budget)
        emit(name, s, r)


def fast_style_net():
    """Johnson et al.'s transformation network as `aics_style::fast::transform_net` builds it:
    reflection padding, instance norm, nearest upsampling, 0-255 output scaled to [0, 1]."""
    import torch.nn as nn

    def unit(c, o, k, stride=1):
        return [nn.ReflectionPad2d(k // 2), nn.Conv2d(c, o, k, stride),
                nn.InstanceNorm2d(o, affine=True), nn.ReLU()]

    class Scale(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, x):
            return x * self.k

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(*unit(c, c, 3)[:3], nn.ReLU(), *unit(c, c, 3)[:3])

        def forward(self, x):
            return x + self.body(x)

    torch.manual_seed(0)
    net = nn.Sequential(*unit(3, 32, 9), *unit(32, 64, 3, 2), *unit(64, 128, 3, 2),
                        *[Res(128) for _ in range(5)],
                        nn.Upsample(scale_factor=2, mode="nearest"), *unit(128, 64, 3),
                        nn.Upsample(scale_factor=2, mode="nearest"), *unit(64, 32, 3),
                        nn.ReflectionPad2d(4), nn.Conv2d(32, 3, 9), Scale(1.0 / 255.0))
    return net


def bench_fast_style(budget):
    """The fast-style transformation network (Johnson et al.; random weights) on one 512²
    image, forward only, as `aics bench` times it: reflection padding, instance norm, nearest
    upsampling."""
    net = fast_style_net().eval()
    x = torch.rand(1, 3, 512, 512)
    with torch.no_grad():
        s, r = measure(lambda: net(x), budget)
    emit("fast_style_512", s, r, images_s=1.0 / s)


def bench_fast_style_train(budget):
    """One fast-style training step as `aics bench` times it: the transformation network on 4
    photos at 256², VGG19 (random weights, Caffe input) to relu4_3, content loss at relu2_2,
    Gram style losses at relu1_2, relu2_2, relu3_3, relu4_3 per image, TV, backward, Adam."""
    torch.manual_seed(0)
    net = fast_style_net().train()
    blocks = [(2, 64), (2, 128), (4, 256), (4, 512)]
    convs, c = [], 3
    for n, o in blocks:
        block = []
        for _ in range(n):
            b = (1.0 / (c * 9)) ** 0.5
            block.append((torch.empty(o, c, 3, 3).uniform_(-b, b), torch.empty(o).uniform_(-b, b)))
            c = o
        convs.append(block)
    style_layers = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    mean_bgr = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)

    def features(rgb):
        return vgg_features(convs, rgb.flip(1) * 255.0 - mean_bgr, set(style_layers), "relu4_3")

    with torch.no_grad():
        grams = {k: gram(v) for k, v in features(torch.rand(1, 3, 256, 256)).items()}
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(4, 3, 256, 256)

    def step():
        opt.zero_grad()
        y = net(x)
        with torch.no_grad():
            target = features(x)["relu2_2"]
        f = features(y)
        content = ((f["relu2_2"] - target) ** 2).mean()
        style = sum(((gram(f[k]) - grams[k]) ** 2).sum() / f[k].shape[1] ** 2 for k in style_layers)
        style = style * 5.0 / (x.shape[0] * len(style_layers))
        tv = ((y[:, :, 1:] - y[:, :, :-1]) ** 2).mean() + ((y[:, :, :, 1:] - y[:, :, :, :-1]) ** 2).mean()
        (content + style + 1e2 * tv).backward()
        opt.step()

    s, r = measure(step, budget, min_reps=3, warmup=1)
    emit("fast_style_train_256_b4", s, r, images_s=4.0 / s)


# (workload, torchvision model) for the detectors' forward: one 480×640 image in [0, 1], batch 1,
# eval mode, each model's own resize and post-processing, key-hashed weights on both sides
# (fixtures/hashinit.py's fill, scaled as the parity fixtures do; the aics side uses hash_fill)
# so that both see the same scores
TV_DETECTORS = [
    ("faster_rcnn_mobilenet_320_fwd", "fasterrcnn_mobilenet_v3_large_320_fpn"),
    ("ssd300_fwd", "ssd300_vgg16"),
    ("ssdlite320_fwd", "ssdlite320_mobilenet_v3_large"),
]


def tv_detector(name):
    """torchvision's detector as built for its published COCO weights (frozen batch norm for
    Faster R-CNN, SSDlite's reduced tail), without downloading them."""
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor
    from torchvision.models.detection.faster_rcnn import FasterRCNN
    from torchvision.ops import misc as misc_nn_ops
    if name == "ssd300_vgg16":
        return ssd300_vgg16(weights=None, weights_backbone=None)
    if name == "ssdlite320_mobilenet_v3_large":
        return ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    body = _mobilenet_extractor(
        mobilenet_v3_large(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d), True, 3)
    sizes = ((32, 64, 128, 256, 512),) * 3
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    return FasterRCNN(body, num_classes=91, rpn_anchor_generator=anchors, min_size=320,
                      max_size=640, rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=150,
                      rpn_score_thresh=0.05)


def detector_scales(name):
    """The (key prefix, factor) pairs by which the parity fixtures scale the hashed weights
    (fixtures/rcnn/*.json), so that heads see unsaturated scores."""
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "rcnn")
    try:
        if name.startswith("fasterrcnn"):
            with open(os.path.join(d, "faster_rcnn.json")) as f:
                e = json.load(f)["models"][name.replace("_320_fpn", "_fpn")]
            return [("backbone.fpn.inner_blocks.", e["lateral_scale"])]
        with open(os.path.join(d, "ssd.json")) as f:
            return [tuple(p) for p in json.load(f)["models"][name]["scaled"]]
    except (OSError, KeyError):
        return []


def bench_tv_detectors(budget):
    for workload, name in TV_DETECTORS:
        if not wanted(workload):
            continue
        hashinit, u = hashed(workload + "/input", 3 * 480 * 640)
        x = torch.from_numpy(u.astype(np.float32).reshape(3, 480, 640))
        m = tv_detector(name)
        scaled = detector_scales(name)
        for k, t in m.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                t.copy_(hashinit.fill(k, tuple(t.shape)))
                for prefix, f in scaled:
                    if k.startswith(prefix):
                        t.mul_(f)
                        break
        m.eval()
        with torch.no_grad():
            s, r = measure(lambda: m([x]), budget)
        emit(workload, s, r, images_s=1.0 / s)


# The chapter detectors' training workloads (crates/cli/src/bench_detect.rs): one Adam step at
# 192², the same networks built from torchvision's parts, the same images, boxes and proposals
DET_SIZE, DET_CLASSES = 192, 5
CHAPTER_DETECTORS = ["yolov1_train_192_b16", "ssd_train_192_b16", "faster_rcnn_train_192_b8",
                     "fast_rcnn_train_192_b2", "rcnn_regions_96_b64"]


def det_images(n):
    _, u = hashed("bench.detect.images", n * 3 * DET_SIZE * DET_SIZE)
    return torch.from_numpy(u.astype(np.float32).reshape(n, 3, DET_SIZE, DET_SIZE))


def det_targets(n):
    out = []
    for i in range(n):
        boxes, labels = [], []
        for j in range(3):
            x0, y0 = 12 + 56 * j + 4 * (i % 4), 20 + 44 * j
            w, h = 28 + 8 * j, 44 - 6 * j
            boxes.append([x0, y0, x0 + w, y0 + h])
            labels.append(1 + (i + j) % DET_CLASSES)
        out.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                    "labels": torch.tensor(labels, dtype=torch.int64)})
    return out


def det_proposals():
    p = []
    for k in range(200):
        x0, y0 = (k * 37) % 150, (k * 53) % 150
        w, h = 16 + (k * 7) % 48, 16 + (k * 11) % 48
        p.append([x0, y0, min(x0 + w, 192), min(y0 + h, 192)])
    return torch.tensor(p, dtype=torch.float32)


def small_stages(widths, act=nn.ReLU):
    """aics_detect::ssd::small_stages: 3×3 conv (no bias) + BN + activation, the first with
    stride 2, the later ones after a 2×2 max pool."""
    stages, c = [], 3
    for i, w in enumerate(widths):
        layers = [nn.MaxPool2d(2, 2)] if i > 0 else []
        layers += [nn.Conv2d(c, w, 3, 2 if i == 0 else 1, 1, bias=False), nn.BatchNorm2d(w), act()]
        stages.append(nn.Sequential(*layers))
        c = w
    return nn.ModuleList(stages)


class SmallBackbone(nn.Module):
    """The small backbone's last `maps` stages as an OrderedDict, with an optional FPN."""

    def __init__(self, widths, maps, fpn=None):
        super().__init__()
        from collections import OrderedDict
        self.stages, self.maps, self.fpn = small_stages(widths), maps, fpn
        self.out_channels = 128 if fpn is not None else widths[-maps:]
        self.od = OrderedDict

    def forward(self, x):
        outs = []
        for i, st in enumerate(self.stages):
            x = st(x)
            if i + self.maps >= len(self.stages):
                outs.append(x)
        d = self.od((str(i), t) for i, t in enumerate(outs))
        return self.fpn(d) if self.fpn is not None else d


def small_faster_rcnn():
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FasterRCNN, TwoMLPHead, FastRCNNPredictor
    from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
    s = float(DET_SIZE)
    body = SmallBackbone([32, 64, 128, 256], 1, FeaturePyramidNetwork([256], 128))
    return FasterRCNN(
        body, num_classes=None,
        rpn_anchor_generator=AnchorGenerator(((s / 8, s / 4, s / 2),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
        box_head=TwoMLPHead(128 * 49, 256), box_predictor=FastRCNNPredictor(256, DET_CLASSES + 1),
        min_size=DET_SIZE, max_size=DET_SIZE, fixed_size=(DET_SIZE, DET_SIZE),
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=1000,
        box_batch_size_per_image=128)


class RoiMaxPool(nn.Module):
    """Fast R-CNN's ROI max pooling to 7×7 from the stride-16 map, called as torchvision's
    RoIHeads calls its pooler."""

    def forward(self, features, proposals, image_shapes):
        from torchvision.ops import roi_pool
        return roi_pool(features["0"], proposals, 7, 1.0 / 16)


def small_ssd():
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD, SSDHead
    anchors = DefaultBoxGenerator([[2], [2, 3], [2, 3], [2]], min_ratio=0.08, max_ratio=0.9)
    widths = [32, 64, 128, 256, 256, 256]
    body = SmallBackbone(widths, 4)
    head = SSDHead(widths[-4:], anchors.num_anchors_per_location(), DET_CLASSES + 1)
    return SSD(body, anchors, (DET_SIZE, DET_SIZE), DET_CLASSES + 1, image_mean=[0.5] * 3,
               image_std=[0.5] * 3, head=head)


def yolov1_net():
    """crates/cli/src/detect_train.rs's yolov1_cfg with the conv head: darknet's tiny layout."""
    layers, c = [], 3
    for f in [16, 32, 64, 128, 256]:
        layers += [nn.Conv2d(c, f, 3, 1, 1, bias=False), nn.BatchNorm2d(f), nn.LeakyReLU(0.1),
                   nn.MaxPool2d(2, 2)]
        c = f
    for f in [512, 1024, 256]:
        layers += [nn.Conv2d(c, f, 3, 1, 1, bias=False), nn.BatchNorm2d(f), nn.LeakyReLU(0.1)]
        c = f
    layers += [nn.Conv2d(256, DET_CLASSES + 10, 1)]
    return nn.Sequential(*layers)


def yolov1_loss(out, targets):
    """YOLOv1's sum-squared loss (λcoord 5, λnoobj 0.5, √w √h, the responsible box by IoU, the
    confidence target its IoU), as crates/detect/src/yolov1.rs computes it, vectorised."""
    n, _, S, _ = out.shape
    C, B = DET_CLASSES, 2
    t = out.permute(0, 2, 3, 1)
    cls, conf = t[..., :C], t[..., C:C + B]
    box = t[..., C + B:].reshape(n, S, S, B, 4)
    has = torch.zeros(n, S, S, dtype=torch.bool)
    tcls = torch.zeros(n, S, S, C)
    tbox = torch.zeros(n, S, S, 4)
    for i, tg in enumerate(targets):
        for b, l in zip(tg["boxes"].tolist(), tg["labels"].tolist()):
            cx, cy = (b[0] + b[2]) / 2 / DET_SIZE, (b[1] + b[3]) / 2 / DET_SIZE
            w, h = (b[2] - b[0]) / DET_SIZE, (b[3] - b[1]) / DET_SIZE
            gx, gy = int(cx * S), int(cy * S)
            has[i, gy, gx] = True
            tcls[i, gy, gx] = 0
            tcls[i, gy, gx, l - 1] = 1
            tbox[i, gy, gx] = torch.tensor([cx * S - gx, cy * S - gy, w, h])
    # predicted boxes in image units: x, y offsets in the cell, √w, √h
    gy, gx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    px = (box[..., 0] + gx[None, :, :, None]) / S
    py = (box[..., 1] + gy[None, :, :, None]) / S
    pw, ph = box[..., 2] ** 2, box[..., 3] ** 2
    tx = (tbox[..., 0] + gx) / S
    ty = (tbox[..., 1] + gy) / S
    tw, th = tbox[..., 2], tbox[..., 3]
    ix = (torch.min(px + pw / 2, (tx + tw / 2)[..., None]) - torch.max(px - pw / 2, (tx - tw / 2)[..., None])).clamp(min=0)
    iy = (torch.min(py + ph / 2, (ty + th / 2)[..., None]) - torch.max(py - ph / 2, (ty - th / 2)[..., None])).clamp(min=0)
    inter = ix * iy
    iou = inter / (pw * ph + (tw * th)[..., None] - inter + 1e-9)
    resp = F.one_hot(iou.detach().argmax(-1), B).bool() & has[..., None]
    noobj = 0.5 * (conf[~resp] ** 2).sum()
    obj = ((conf[resp] - iou.detach()[resp]) ** 2).sum()
    cl = ((cls[has] - tcls[has]) ** 2).sum()
    tgt = torch.stack([tbox[..., 0], tbox[..., 1], tbox[..., 2].sqrt(), tbox[..., 3].sqrt()], -1)
    coord = 5 * ((box[resp] - tgt[..., None, :].expand(-1, -1, -1, B, -1)[resp]) ** 2).sum()
    return noobj + obj + cl + coord


def bench_chapter_detectors(budget):
    def adam_step(model, loss_fn):
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            opt.step()
        return step

    torch.manual_seed(0)
    if wanted("yolov1_train_192_b16"):
        m, x, t = yolov1_net(), det_images(16), det_targets(16)
        s, r = measure(adam_step(m, lambda: yolov1_loss(m(x), t) / 16), budget)
        emit("yolov1_train_192_b16", s, r, images_s=16 / s)
    if wanted("ssd_train_192_b16"):
        m, x, t = small_ssd(), list(det_images(16)), det_targets(16)
        s, r = measure(adam_step(m, lambda: sum(m(x, t).values())), budget)
        emit("ssd_train_192_b16", s, r, images_s=16 / s)
    if wanted("faster_rcnn_train_192_b8"):
        m, x, t = small_faster_rcnn(), list(det_images(8)), det_targets(8)
        s, r = measure(adam_step(m, lambda: sum(m(x, t).values())), budget)
        emit("faster_rcnn_train_192_b8", s, r, images_s=8 / s)
    if wanted("fast_rcnn_train_192_b2"):
        m, x, t = small_faster_rcnn(), list(det_images(2)), det_targets(2)
        m.roi_heads.box_roi_pool = RoiMaxPool()
        m.roi_heads.fg_bg_sampler.batch_size_per_image = 64
        m.roi_heads.fg_bg_sampler.positive_fraction = 0.25
        props = [det_proposals(), det_proposals()]

        def fast_loss():
            images, targets = m.transform(x, t)
            feats = m.backbone(images.tensors)
            _, losses = m.roi_heads(feats, props, images.image_sizes, targets)
            return sum(losses.values())
        s, r = measure(adam_step(m, fast_loss), budget)
        emit("fast_rcnn_train_192_b2", s, r, images_s=2 / s)
    if wanted("rcnn_regions_96_b64"):
        from torchvision.models import mobilenet_v2
        from torchvision.ops import roi_align
        feats = mobilenet_v2(weights=None).features.eval()
        img = det_images(1)
        p = det_proposals()[:64]
        # the warp with 16 px of context around the box's 64 px (as roi_align's bilinear crop)
        c = (p[:, 2:] - p[:, :2]) * (16 / 64)
        rois = torch.cat([torch.zeros(64, 1), p[:, :2] - c, p[:, 2:] + c], 1)

        def regions():
            with torch.no_grad():
                w = roi_align(img, rois, 96, 1.0, 1, aligned=True)
                return feats(w).mean((2, 3))
        s, r = measure(regions, budget)
        emit("rcnn_regions_96_b64", s, r, images_s=64 / s)


RNN_WORKLOADS = ("lstm_charlm_train", "gru_charlm_train", "lstm_infer_b1")


class CharLm(nn.Module):
    """aics's CharLm (crates/text/src/lm.rs): embedding, recurrent layers, linear read-out."""

    def __init__(self, cell, vocab=65, embed=64, hidden=256, layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](embed, hidden, layers)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):
        y, _ = self.rnn(self.embed(x))
        return self.head(y.reshape(-1, y.shape[-1]))


def bench_rnn(budget):
    """The recurrent workloads of crates/cli/src/bench_rnn.rs."""
    T, N, V = 100, 32, 65
    k = torch.arange(T * N)
    x = ((k * 7 + 3) % V).reshape(T, N)
    y = ((k * 7 + 4) % V)
    for cell in ("lstm", "gru"):
        name = cell + "_charlm_train"
        if not wanted(name):
            continue
        m = CharLm(cell)
        opt = torch.optim.Adam(m.parameters(), lr=2e-3)

        def step():
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
        s, r = measure(step, budget)
        emit(name, s, r, tokens_s=T * N / s)
    if wanted("lstm_infer_b1"):
        m = nn.LSTM(512, 512).eval()
        xi = torch.rand(T, 1, 512) * 2 - 1

        def infer():
            with torch.no_grad():
                m(xi)
        s, r = measure(infer, budget)
        emit("lstm_infer_b1", s, r, tokens_s=T / s)


def bench_dcgan(budget):
    """dcgan64_step_b64 of crates/cli/src/bench_gan.rs: one iteration of PyTorch's DCGAN example
    (64², nz 100, ngf = ndf = 64, batch 64, BCELoss, Adam 2e-4 β (0.5, 0.999))."""
    nz, ngf, ndf, nc, b = 100, 64, 64, 3, 64
    g = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    d = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())
    crit = nn.BCELoss()
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.sin(torch.arange(b * nc * 64 * 64, dtype=torch.float32) * 0.001).reshape(b, nc, 64, 64)
    z = torch.randn(b, nz, 1, 1)
    ones, zeros = torch.ones(b), torch.zeros(b)

    def step():
        d.zero_grad()
        crit(d(real).view(-1), ones).backward()
        fake = g(z)
        crit(d(fake.detach()).view(-1), zeros).backward()
        opt_d.step()
        g.zero_grad()
        crit(d(fake).view(-1), ones).backward()
        opt_g.step()
    s, r = measure(step, budget)
    emit("dcgan64_step_b64", s, r, images_s=b / s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=3.0,
                    help="timed seconds per workload before stopping repeats (default 3)")
    ap.add_argument("--filter", default="",
                    help="only workloads whose name contains this text (as `aics bench --filter`)")
    ap.add_argument("--no-onnxruntime", action="store_true",
                    help="leave out the onnxruntime runs of the model workloads")
    args = ap.parse_args()
    NO_ORT[0] = args.no_onnxruntime

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))  # load the BLAS before looking
    print(json.dumps({"workload": "_info", "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "blas": blas_info()}),
          flush=True)

    b = args.budget
    FILTER[0] = args.filter
    with torch.no_grad():
        if wanted("sgemm_1024"):
            bench_sgemm(1024, b)
        if wanted("sgemm_2048"):
            bench_sgemm(2048, b)
    if wanted("conv3x3_256_56_fwd", "conv3x3_256_56_fwdbwd"):
        bench_conv("conv3x3_256_56_fwd", "conv3x3_256_56_fwdbwd", 1, 256, 56, 56, 256, b)
    if wanted("conv_lab33_fwd", "conv_lab33_bwd"):
        bench_conv("conv_lab33_fwd", "conv_lab33_bwd", 1, 256, 24, 40, 256, b, other="bwd")
    if wanted("maxpool3s2_fwdbwd"):
        bench_maxpool(b)
    if wanted("nms_10k", "roi_pool_512x38x50_300", "roi_align_512x38x50_300"):
        bench_detection_ops(b)
    if wanted("lenet5_train_b64"):
        bench_lenet(b)
    if wanted(*(w for w, _ in TV_DETECTORS)):
        bench_tv_detectors(b)
    if wanted(*CHAPTER_DETECTORS):
        bench_chapter_detectors(b)
    if wanted(*RNN_WORKLOADS):
        bench_rnn(b)
    if wanted("dcgan64_step_b64"):
        bench_dcgan(b)
    models = [m[0] for m in MODEL_FWD]
    if wanted(*models, *(m + "@onnxruntime" for m in models), "resnet18_train_32_b64"):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            bench_models(b, args.threads, d)
    if wanted(*(w + "@onnxruntime" for w, _ in ONNX_FILES)):
        bench_onnx_files(b, args.threads)
    if wanted("gatys_step_256", "gatys_step_512", "gatys_step_textbook"):
        bench_gatys(b)
    if wanted("fast_style_512"):
        bench_fast_style(b)
    if wanted("fast_style_train_256_b4"):
        bench_fast_style_train(b)
    if wanted(YOLO, YOLO + "@onnxruntime", YOLO + "@darknet"):
        bench_yolov3_tiny(b, args.threads)

if __name__ == "__main__":
    sys.exit(main())
