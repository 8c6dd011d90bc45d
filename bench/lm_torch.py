#!/usr/bin/env python3
"""The default `aics lm train` run in PyTorch, for the validation-loss comparison.

    /usr/bin/python3 bench/lm_torch.py --steps 1000 [--threads 2] [--cell lstm]

Same data and the same recipe as `aics lm train --max-steps STEPS` with its defaults: the 38
plays fetched by scripts/setup.sh (.cache/shakespeare/plays), markdown stripped as
crates/text/src/corpus.rs strips it, the sorted character vocabulary, the last 5% held out,
the stream cut into 32 columns read 100 characters at a time with the state carried (detached)
and reset at each pass, an embedding of 64, two layers of hidden 256, Adam at 2e-3, the
gradient's norm clipped to 5. Prints one JSON line: steps, validation loss and bits per
character, seconds and tokens a second of training.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def strip_play_markdown(md):
    out = []
    for line in md.splitlines():
        l = line.rstrip().lstrip("#").lstrip()
        if l.startswith("**") and l.endswith("**") and len(l) > 4 and "**" not in l[2:-2]:
            out.append(l[2:-2].strip() + ":")
            continue
        out.append("".join(c for c in l if c not in "_*"))
    return "".join(s + "\n" for s in out)


def shakespeare(root):
    files = []
    for d, _, names in os.walk(root):
        files += [os.path.join(d, n) for n in names if n.endswith(".md")]
    # Rust sorts paths component by component; equal here, as names hold no '/'
    files.sort(key=lambda p: p.split(os.sep))
    return "".join(strip_play_markdown(open(f, encoding="utf-8").read()) + "\n" for f in files)


class CharLm(nn.Module):
    def __init__(self, cell, vocab, embed, hidden, layers):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](embed, hidden, layers)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state):
        y, state = self.rnn(self.embed(x), state)
        return self.head(y.reshape(-1, y.shape[-1])), state


def detach(s):
    if s is None:
        return None
    return tuple(t.detach() for t in s) if isinstance(s, tuple) else s.detach()


def columns(stream, batch):
    rows = len(stream) // batch
    return torch.tensor(stream[: rows * batch]).reshape(batch, rows).t().contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--corpus", default=".cache/shakespeare/plays")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    text = shakespeare(a.corpus)
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = [index[c] for c in text]
    nv = round(len(ids) * 0.05)
    train, val = columns(ids[:-nv], 32), columns(ids[-nv:], 32)
    seq = 100
    print(f"{len(ids)} characters, vocabulary {len(vocab)}", file=sys.stderr)
    m = CharLm(a.cell, len(vocab), 64, 256, 2)
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    steps_per_epoch = math.ceil((train.shape[0] - 1) / seq)
    state, pos, tokens = None, 0, 0
    t0 = time.perf_counter()
    for step in range(a.steps):
        x = train[pos * seq: pos * seq + seq]
        t = min(seq, train.shape[0] - 1 - pos * seq)
        x, y = train[pos * seq: pos * seq + t], train[pos * seq + 1: pos * seq + 1 + t]
        logits, state = m(x, state)
        loss = F.cross_entropy(logits, y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(m.parameters(), 5.0)
        opt.step()
        state = detach(state)
        tokens += x.numel()
        pos += 1
        if pos == steps_per_epoch:
            pos, state = 0, None
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}: loss {loss.item():.4f}", file=sys.stderr)
    seconds = time.perf_counter() - t0
    m.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for k in range(math.ceil((val.shape[0] - 1) / seq)):
            t = min(seq, val.shape[0] - 1 - k * seq)
            x, y = val[k * seq: k * seq + t], val[k * seq + 1: k * seq + 1 + t]
            logits, state = m(x, state)
            total += F.cross_entropy(logits, y.reshape(-1), reduction="sum").item()
            count += y.numel()
    v = total / count
    print(json.dumps({"framework": "torch " + torch.__version__, "cell": a.cell, "steps": a.steps,
                      "val_loss": v, "val_bpc": v / math.log(2), "seconds": seconds,
                      "tokens_s": tokens / seconds}))


if __name__ == "__main__":
    main()
