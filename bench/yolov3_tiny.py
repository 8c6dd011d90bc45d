#!/usr/bin/env python3
"""YOLOv3-tiny in PyTorch, built from a darknet cfg and loaded from darknet's .weights file,
for `bench/torch_bench.py` (workload yolov3_tiny_416_fwd), with darknet itself (libdarknet.so
through ctypes) as a second peer.

    /usr/bin/python3 bench/yolov3_tiny.py                   # check against .cache/darknet-ref
    PY=.cache/venv-ort/bin/python                           # torch + onnxruntime in one python
    $PY bench/yolov3_tiny.py --onnx .cache/bench/yolov3_tiny.onnx --ort --darknet

The port follows darknet 61c9d02e (the Debian build in .cache/darknet-deb) layer by layer:

* [convolutional]: conv (no bias) then, with batch_normalize, (x - mean) / (sqrt(var) + 1e-6)
  * scale (darknet's eps is added to the standard deviation, not to the variance), then the bias;
  leaky is max(x, 0.1 x), linear is the identity. With fold_bn (the default, for inference) the
  normalisation is folded into the convolution in float64: w' = w * s, b' = bias - mean * s with
  s = scale / (sqrt(var) + 1e-6).
* [maxpool]: darknet's window for output i starts at i*stride - padding/2 (padding defaults to
  size - 1) and ignores cells outside the input; out = (h + padding - size) / stride + 1. Here:
  edge padding (a repeated border cell changes no maximum) then max_pool2d. For yolov3-tiny the
  stride-2 pools need no padding and the size-2 stride-1 pool pads right and bottom by one.
* [upsample]: nearest, x stride; [route]: channel concat (negative indices are relative).
* [yolo]: not applied: forward() returns the inputs of the [yolo] layers, raw (no logistic).

Weights (src/parser.c load_weights_upto): int32 major, minor, revision, then `seen` as uint64
if (major*10 + minor) >= 2 and major < 1000 and minor < 1000 else int32; then per
[convolutional] layer in cfg order: biases[n], if batch_normalize scales[n], rolling_mean[n],
rolling_variance[n]; weights [n][c][k][k]. All float32 little endian.
"""

import argparse
import ctypes
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache")
CFG = os.path.join(CACHE, "weights", "yolov3-tiny.cfg")
WEIGHTS = os.path.join(CACHE, "weights", "yolov3-tiny.weights")
DARKNET_LIB = os.path.join(CACHE, "darknet-deb", "usr", "lib", "darknet", "libdarknet.so")
REF_DIR = os.path.join(CACHE, "darknet-ref")
ONNX_PATH = os.path.join(CACHE, "bench", "yolov3_tiny.onnx")
INPUT_KEY = "yolov3_tiny_416_fwd/input"


def parse_cfg(path):
    """[(section, {key: value})] of a darknet cfg, [net] first."""
    sections = []
    with open(path) as f:
        for line in f:
            line = line.split("#")[0].split(";")[0].strip()
            if not line:
                continue
            if line.startswith("["):
                sections.append((line.strip("[]").strip(), {}))
            else:
                k, v = line.split("=", 1)
                sections[-1][1][k.strip()] = v.strip()
    return sections


def read_weights(path):
    """The float32 values after the header of a darknet .weights file."""
    with open(path, "rb") as f:
        major, minor, _rev = np.frombuffer(f.read(12), "<i4")
        if major * 10 + minor >= 2 and major < 1000 and minor < 1000:
            f.read(8)   # seen: size_t
        else:
            f.read(4)   # seen: int
        if major > 1000 or minor > 1000:
            raise ValueError(f"{path}: transposed weights (major {major}, minor {minor}) "
                             "are not supported")
        return np.frombuffer(f.read(), "<f4").astype(np.float32)


class Conv(nn.Module):
    """darknet [convolutional]: conv, batch norm with darknet's eps placement, bias, activation."""

    def __init__(self, c, o, opts):
        super().__init__()
        self.size = int(opts.get("size", 1))
        self.stride = int(opts.get("stride", 1))
        self.pad = self.size // 2 if int(opts.get("pad", 0)) else int(opts.get("padding", 0))
        if int(opts.get("groups", 1)) != 1:
            raise ValueError("grouped [convolutional] is not supported")
        self.bn = bool(int(opts.get("batch_normalize", 0)))
        self.act = opts.get("activation", "logistic")
        if self.act not in ("leaky", "linear"):
            raise ValueError(f"activation {self.act} is not supported")
        self.weight = nn.Parameter(torch.zeros(o, c, self.size, self.size), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(o), requires_grad=False)
        self.folded = True  # set by load(): whether weight/bias already hold the batch norm
        for name in ("scale", "mean", "std_eps"):
            self.register_buffer(name, torch.zeros(o) if self.bn else None)

    def load(self, wf, pos, fold_bn):
        """Reads this layer's values from the flat weights at pos; returns the new pos."""
        o, c, k, _ = self.weight.shape

        def take(n):
            nonlocal pos
            if pos + n > wf.size:
                raise ValueError("the weights file is shorter than the cfg needs")
            v = wf[pos:pos + n]
            pos += n
            return v

        bias = take(o)
        if self.bn:
            scale, mean, var = take(o), take(o), take(o)
        w = take(o * c * k * k).reshape(o, c, k, k)
        if self.bn and fold_bn:
            s = scale.astype(np.float64) / (np.sqrt(var.astype(np.float64)) + np.float64(np.float32(1e-6)))
            w = w.astype(np.float64) * s[:, None, None, None]
            bias = bias.astype(np.float64) - mean.astype(np.float64) * s
            for name in ("scale", "mean", "std_eps"):
                setattr(self, name, None)
        elif self.bn:
            self.scale.copy_(torch.from_numpy(scale))
            self.mean.copy_(torch.from_numpy(mean))
            self.std_eps.copy_(torch.from_numpy(np.sqrt(var) + np.float32(1e-6)))
        self.folded = fold_bn or not self.bn
        self.weight.data.copy_(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))
        self.bias.data.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32)))
        return pos

    def forward(self, x):
        if self.folded:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.pad)
        else:
            y = F.conv2d(x, self.weight, None, self.stride, self.pad)
            y = (y - self.mean.view(1, -1, 1, 1)) / self.std_eps.view(1, -1, 1, 1)
            y = y * self.scale.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return F.leaky_relu(y, 0.1) if self.act == "leaky" else y


class MaxPool(nn.Module):
    """darknet [maxpool] (see the module docstring)."""

    def __init__(self, opts, h, w):
        super().__init__()
        self.stride = int(opts.get("stride", 1))
        self.size = int(opts.get("size", self.stride))
        padding = int(opts.get("padding", self.size - 1))
        self.out_h = (h + padding - self.size) // self.stride + 1
        self.out_w = (w + padding - self.size) // self.stride + 1
        top = padding // 2
        bottom = max(0, (self.out_h - 1) * self.stride + self.size - h - top)
        right = max(0, (self.out_w - 1) * self.stride + self.size - w - top)
        # edge padding equals darknet's "ignore cells outside" only while every window keeps
        # at least one real cell
        assert max(top, bottom, right) < self.size
        self.pads = (top, right, top, bottom)

    def forward(self, x):
        if any(self.pads):
            x = F.pad(x, self.pads, mode="replicate")
        y = F.max_pool2d(x, self.size, self.stride)
        if y.shape[2] != self.out_h or y.shape[3] != self.out_w:
            y = y[:, :, :self.out_h, :self.out_w]
        return y


class YoloV3Tiny(nn.Module):
    """A darknet YOLO network (conv, maxpool, upsample, route, yolo layers) from its cfg; call
    load_weights() for darknet's values. forward(x) gives the inputs of the [yolo] layers."""

    def __init__(self, cfg_path=CFG):
        super().__init__()
        secs = parse_cfg(cfg_path)
        if secs[0][0] not in ("net", "network"):
            raise ValueError(f"{cfg_path}: the first section is not [net]")
        net = secs[0][1]
        self.in_shape = (int(net.get("channels", 3)), int(net.get("height", 416)),
                         int(net.get("width", 416)))
        self.kinds, self.layers, self.routes, self.heads = [], nn.ModuleList(), {}, []
        self.anchor_mask = {}
        shapes = []
        c, h, w = self.in_shape
        for i, (kind, o) in enumerate(secs[1:]):
            mod = nn.Identity()
            if kind in ("convolutional", "conv"):
                kind = "convolutional"
                mod = Conv(c, int(o["filters"]), o)
                h = (h + 2 * mod.pad - mod.size) // mod.stride + 1
                w = (w + 2 * mod.pad - mod.size) // mod.stride + 1
                c = int(o["filters"])
            elif kind in ("maxpool", "max"):
                kind = "maxpool"
                mod = MaxPool(o, h, w)
                h, w = mod.out_h, mod.out_w
            elif kind == "upsample":
                s = int(o.get("stride", 2))
                if s <= 0 or float(o.get("scale", 1)) != 1.0:
                    raise ValueError("only [upsample] with stride > 0 and scale 1 is supported")
                mod = nn.Upsample(scale_factor=s, mode="nearest")
                h, w = h * s, w * s
            elif kind == "route":
                ids = [int(t) for t in o["layers"].split(",")]
                ids = [j + i if j < 0 else j for j in ids]
                if any(not 0 <= j < i for j in ids):
                    raise ValueError(f"layer {i}: route to {ids}")
                self.routes[i] = ids
                c = sum(shapes[j][0] for j in ids)
                h, w = shapes[ids[0]][1:]
                if any(shapes[j][1:] != (h, w) for j in ids):
                    raise ValueError(f"layer {i}: route of different sizes")
            elif kind == "yolo":
                self.heads.append(i)
                self.anchor_mask[i] = [int(t) for t in o["mask"].split(",")]
            else:
                raise ValueError(f"layer {i}: [{kind}] is not supported")
            self.kinds.append(kind)
            self.layers.append(mod)
            shapes.append((c, h, w))
        self.shapes = shapes
        # which outputs later layers read (the rest are dropped as soon as they are used)
        self.keep = set(j for ids in self.routes.values() for j in ids)

    def load_weights(self, path=WEIGHTS, fold_bn=True):
        wf = read_weights(path)
        pos = 0
        for kind, mod in zip(self.kinds, self.layers):
            if kind == "convolutional":
                pos = mod.load(wf, pos, fold_bn)
        if pos != wf.size:
            raise ValueError(f"{path}: {wf.size - pos} values left after the last layer")
        return self

    def forward_all(self, x):
        """Every layer's output; a [yolo] layer's entry is its (raw) input."""
        outs = []
        for i, (kind, mod) in enumerate(zip(self.kinds, self.layers)):
            if kind == "route":
                ids = self.routes[i]
                x = outs[ids[0]] if len(ids) == 1 else torch.cat([outs[j] for j in ids], 1)
            else:
                x = mod(x)
            outs.append(x)
        return outs

    def forward(self, x):
        saved, heads = {}, []
        for i, (kind, mod) in enumerate(zip(self.kinds, self.layers)):
            if kind == "route":
                ids = self.routes[i]
                x = saved[ids[0]] if len(ids) == 1 else torch.cat([saved[j] for j in ids], 1)
            elif kind == "yolo":
                heads.append(x)
            else:
                x = mod(x)
            if i in self.keep:
                saved[i] = x
        return tuple(heads)


def build(cfg_path=CFG, weights_path=WEIGHTS, fold_bn=True):
    """The network in eval mode with darknet's weights."""
    return YoloV3Tiny(cfg_path).load_weights(weights_path, fold_bn).eval()


def yolo_activate(raw, n_anchors):
    """darknet's [yolo] forward: logistic on tx, ty, objectness and the classes of each anchor."""
    n, c, h, w = raw.shape
    y = raw.reshape(n, n_anchors, c // n_anchors, h, w).clone()
    y[:, :, 0:2] = torch.sigmoid(y[:, :, 0:2])
    y[:, :, 4:] = torch.sigmoid(y[:, :, 4:])
    return y.reshape(n, c, h, w)


def bench_input(shape=(1, 3, 416, 416)):
    """The workload's input: key-hashed uniform [0, 1) values, as `aics bench` makes them."""
    sys.path.insert(0, os.path.join(ROOT, "fixtures"))
    import hashinit
    n = int(np.prod(shape))
    return torch.from_numpy(hashinit.uniform(INPUT_KEY, n).astype(np.float32).reshape(shape))


def export_onnx(model, path=ONNX_PATH, opset=13):
    """torch.onnx.export with a static 1x3xHxW input named x and outputs head0, head1..."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    x = torch.zeros(1, *model.in_shape)
    names = [f"head{k}" for k in range(len(model.heads))]
    kw = dict(input_names=["x"], output_names=names, opset_version=opset,
              do_constant_folding=True)
    with torch.no_grad():
        try:
            torch.onnx.export(model, x, path, dynamo=False, **kw)
        except TypeError:  # torch versions without the dynamo argument
            torch.onnx.export(model, x, path, **kw)
    return path


def ort_session(path, threads):
    """onnxruntime CPU session: intra_op threads, sequential execution, all graph optimisations."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


class _Quiet:
    """Sends the process's stdout and stderr (the C ones too) to /dev/null for a while."""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = [os.dup(1), os.dup(2)]
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc):
        ctypes.CDLL(None).fflush(None)
        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)
            os.close(saved)


class DarknetNet:
    """libdarknet.so's network through ctypes: load_network(cfg, weights), batch 1, and
    network_predict on a float32 CHW buffer. The Debian build (upstream 61c9d02e, OPENMP=0,
    GPU=0, -Ofast) runs single-threaded with darknet's own gemm."""

    def __init__(self, cfg=CFG, weights=WEIGHTS, lib=DARKNET_LIB, quiet=True):
        for p in (lib, cfg, weights):
            if not os.path.exists(p):
                raise FileNotFoundError(f"{p} not found")
        dn = ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
        vp, fp = ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)
        dn.load_network.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        dn.load_network.restype = vp
        dn.set_batch_network.argtypes = [vp, ctypes.c_int]
        dn.network_predict.argtypes = [vp, fp]
        dn.network_predict.restype = fp
        dn.free_network.argtypes = [vp]
        self.dn = dn
        if quiet:
            with _Quiet():  # load_network prints its layer table and "Loading weights..."
                self.net = dn.load_network(cfg.encode(), weights.encode(), 0)
        else:
            self.net = dn.load_network(cfg.encode(), weights.encode(), 0)
        if not self.net:
            raise RuntimeError("load_network failed")
        dn.set_batch_network(self.net, 1)
        self._x = None

    def set_input(self, x):
        """Keeps a C-contiguous float32 copy of x (N=1 CHW) for predict()."""
        self._x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1))
        self._xp = self._x.ctypes.data_as(ctypes.POINTER(ctypes.c_float))

    def predict(self):
        """network_predict: returns net->output (the last layer's output, not copied)."""
        return self.dn.network_predict(self.net, self._xp)

    def output(self, ptr, n):
        return np.ctypeslib.as_array(ptr, shape=(n,)).copy()

    def close(self):
        if self.net:
            self.dn.free_network(self.net)
            self.net = None


def measure(fn, budget_s, min_reps=3, max_reps=50, warmup=2):
    """Median seconds of fn() (as bench/torch_bench.py measures)."""
    for _ in range(warmup):
        fn()
    times, spent = [], 0.0
    while len(times) < max_reps and (len(times) < min_reps or spent < budget_s):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
    return statistics.median(times), len(times)


def verify(ref_dir=REF_DIR):
    """Max abs differences of every layer (folded and unfolded batch norm) to darknet's dumps."""
    x = np.fromfile(os.path.join(ref_dir, "input.f32"), "<f4").reshape(1, 3, 416, 416)
    x = torch.from_numpy(x)
    rows = []
    with torch.no_grad():
        model = build()
        outs_f = model.forward_all(x)
        outs_u = build(fold_bn=False).forward_all(x)
        heads = model(x)
    files = sorted(f for f in os.listdir(ref_dir) if f.startswith("layer"))
    worst = 0.0
    print(f"{'layer':<28} {'shape':>16} {'max|ref|':>10} {'folded':>10} {'unfolded':>10}")
    for f in files:
        i = int(f[5:7])
        ref = np.fromfile(os.path.join(ref_dir, f), "<f4")
        yf, yu = outs_f[i], outs_u[i]
        if model.kinds[i] == "yolo":
            a = len(model.anchor_mask[i])
            yf, yu = yolo_activate(yf, a), yolo_activate(yu, a)
        yf, yu = yf.numpy().reshape(-1), yu.numpy().reshape(-1)
        assert ref.size == yf.size, (f, ref.size, yf.size)
        df = float(np.abs(yf - ref).max())
        du = float(np.abs(yu - ref).max())
        worst = max(worst, df)
        shape = "x".join(map(str, model.shapes[i]))
        print(f"{f[:-4]:<28} {shape:>16} {np.abs(ref).max():10.3f} {df:10.2e} {du:10.2e}")
        rows.append((f, df, du))
    for k, i in enumerate(model.heads):
        ref = np.fromfile(os.path.join(ref_dir, f"layer{i - 1:02d}_convolutional.f32"), "<f4")
        d = float(np.abs(heads[k].numpy().reshape(-1) - ref).max())
        print(f"forward() head{k} (input of [yolo] layer {i}) vs layer{i - 1:02d}: max abs {d:.2e}")
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-verify", action="store_true", help="skip the darknet-ref check")
    ap.add_argument("--onnx", metavar="PATH", help=f"export to PATH (e.g. {ONNX_PATH})")
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--ort", action="store_true",
                    help="check and time the ONNX file (--onnx, or the default path) in onnxruntime")
    ap.add_argument("--darknet", action="store_true", help="check and time libdarknet.so")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=3.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.no_verify:
        verify()
    model = build()
    x = bench_input()
    with torch.no_grad():
        ref = [h.numpy() for h in model(x)]
        s, r = measure(lambda: model(x), args.budget)
    print(f"pytorch {torch.__version__} ({torch.get_num_threads()} threads): "
          f"{s * 1e3:.2f} ms (median of {r})")
    path = args.onnx or ONNX_PATH
    if args.onnx:
        export_onnx(model, path, args.opset)
        print(f"exported {path} (opset {args.opset})")
    if args.ort:
        import onnxruntime as ort
        sess = ort_session(path, args.threads)
        feed = {"x": x.numpy()}
        got = sess.run(None, feed)
        for k, (g, e) in enumerate(zip(got, ref)):
            print(f"onnxruntime head{k} {g.shape} vs port: max abs {np.abs(g - e).max():.2e}")
        s, r = measure(lambda: sess.run(None, feed), args.budget)
        print(f"onnxruntime {ort.__version__} ({args.threads} intra-op threads): "
              f"{s * 1e3:.2f} ms (median of {r})")
    if args.darknet:
        dn = DarknetNet()
        dn.set_input(x.numpy())
        out = dn.output(dn.predict(), ref[-1].size)
        last = yolo_activate(torch.from_numpy(ref[-1]), len(model.anchor_mask[model.heads[-1]]))
        print(f"darknet network_predict output (layer {model.heads[-1]}, logistic applied) vs "
              f"port: max abs {np.abs(out - last.numpy().reshape(-1)).max():.2e}")
        s, r = measure(dn.predict, args.budget)
        print(f"darknet (1 thread): {s * 1e3:.2f} ms (median of {r})")
        dn.close()


if __name__ == "__main__":
    main()
