"""onnxruntime's own time per node for one of the bench's ONNX models, to set beside
`aics bench --profile`: `.cache/venv-ort/bin/python bench/ort_profile.py .cache/onnx-bench/resnet50.onnx`.

Runs 30 passes at batch 1 on 2 threads with onnxruntime's profiler on, and prints the total,
the time by op type and the slowest nodes (the median of each node's passes, in µs)."""
import collections
import json
import os
import sys

import numpy as np
import onnxruntime as ort

model = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.enable_profiling = True
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
inp = s.get_inputs()[0]
x = np.random.rand(1, 3, 224, 224).astype(np.float32)
for _ in range(30):
    s.run(None, {inp.name: x})
path = s.end_profiling()
with open(path) as f:
    events = json.load(f)
os.remove(path)
times = collections.defaultdict(list)
for e in events:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        times[(e["name"][: -len("_kernel_time")], e["args"].get("op_name"))].append(e["dur"])
rows = sorted(((sorted(v)[len(v) // 2], k) for k, v in times.items()), reverse=True)
print(f"total {sum(r[0] for r in rows)} us over {len(rows)} nodes ({threads} threads)")
by_op = collections.Counter()
for t, (_, op) in rows:
    by_op[op] += t
print("by op:", ", ".join(f"{op} {t} us" for op, t in by_op.most_common()))
for t, (name, op) in rows[:40]:
    print(f"{t:6d} us  {op:10s} {name}")
