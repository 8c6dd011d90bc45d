#!/usr/bin/env python3
"""Compare `aics bench --json` output with bench/torch_bench.py output.

    python3 bench/compare.py AICS_JSONL TORCH_JSONL

Both files hold one JSON object per line with "workload", "seconds" and
"gflop_s" (lines that are not JSON objects are ignored; "_info" lines are
printed as a header: aics's gives the measured FMA peak, and "aics % peak" each
workload's GFLOP/s as a share of it). ratio = torch_seconds / aics_seconds, so a ratio above 1
means aics is faster. Rows named WORKLOAD@onnxruntime in the torch file give
an onnxruntime column (ratio ort = onnxruntime_seconds / aics_seconds), rows
named WORKLOAD@darknet a darknet column (ratio dn = darknet_seconds /
aics_seconds), rows named WORKLOAD@tract a tract column (bench/tract). Records with "peak_mb" (the resident memory a workload added at
its peak, bench/peak_memory.sh) give the "aics MB", "torch MB" and "ort MB"
columns.
"""

import json
import sys


def load(path):
    info, rows = [], {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            name = rec.get("workload")
            if name is None:
                continue
            if name.startswith("_"):
                info.append(rec)
            else:
                rows[name] = rec
    return info, rows


def fmt_s(v):
    if v is None:
        return "-"
    if v >= 1.0:
        return f"{v:.3f} s"
    if v >= 1e-3:
        return f"{v * 1e3:.2f} ms"
    return f"{v * 1e6:.1f} us"


def fmt_num(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    a_info, aics = load(argv[1])
    t_info, torch = load(argv[2])
    for label, info in (("aics", a_info), ("torch", t_info)):
        for rec in info:
            rest = {k: v for k, v in rec.items() if k != "workload"}
            print(f"# {label}: " + ", ".join(f"{k}={v}" for k, v in rest.items()))

    ORT, DN, TR = "@onnxruntime", "@darknet", "@tract"
    names = list(aics) + [n for n in torch if n not in aics and not n.endswith((ORT, DN, TR))]
    header = ["workload", "aics", "torch", "ratio", "onnxruntime", "ratio ort",
              "darknet", "ratio dn", "tract", "ratio tract",
              "aics GFLOP/s", "torch GFLOP/s", "aics % peak", "aics img/s", "torch img/s",
              "aics MB", "torch MB", "ort MB"]
    table = []
    for n in names:
        a, t = aics.get(n, {}), torch.get(n, {})
        o, d, tr = torch.get(n + ORT, {}), torch.get(n + DN, {}), torch.get(n + TR, {})
        sa, st = a.get("seconds"), t.get("seconds")
        so, sd, s_tr = o.get("seconds"), d.get("seconds"), tr.get("seconds")
        ratio_tr = s_tr / sa if sa and s_tr else None
        ratio = st / sa if sa and st else None
        ratio_o = so / sa if sa and so else None
        ratio_d = sd / sa if sa and sd else None
        table.append([n, fmt_s(sa), fmt_s(st), fmt_num(ratio, 2), fmt_s(so),
                      fmt_num(ratio_o, 2), fmt_s(sd), fmt_num(ratio_d, 2),
                      fmt_s(s_tr), fmt_num(ratio_tr, 2),
                      fmt_num(a.get("gflop_s")), fmt_num(t.get("gflop_s")),
                      fmt_num(None if a.get("peak_share") is None else 100 * a["peak_share"], 0),
                      fmt_num(a.get("images_s"), 0), fmt_num(t.get("images_s"), 0),
                      fmt_num(a.get("peak_mb"), 0), fmt_num(t.get("peak_mb"), 0),
                      fmt_num(o.get("peak_mb"), 0)])
    # Drop the onnxruntime, darknet, images/s and memory columns when no workload reports them.
    keep = [i for i in range(len(header))
            if not ((i in (4, 5, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17)) and all(r[i] == "-" for r in table))]
    header = [header[i] for i in keep]
    table = [[r[i] for i in keep] for r in table]
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h)
              for i, h in enumerate(header)]
    line = lambda cells: "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in table:
        print(line(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
