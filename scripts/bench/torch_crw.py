#!/usr/bin/env python3
"""PyTorch reference for the CRW case of `cycletime bench train`: one training step (forward, backward,
Adam) of the contrastive random walk on resnet18 (layer3/layer4 stride 1), batch 4, clip 4, 49 patches
of 64x64 per frame, edge dropout 0.1, tau 0.05: the objective of scripts/fixtures/crw.py (the released
code's formulation), with masks drawn each step as the released code does.

Usage: torch_crw.py [--threads 2] [--batch 4] [--clip 4] [--patches 49] [--size 64] [--steps 2]
                    [--channels-last] [--padding reflect|zeros] [--precision fp32|bf16]
--precision bf16 runs the forward (and so the backward) inside torch.autocast("cpu", torch.bfloat16).
Prints one JSON object: median seconds per step over the timed steps (after one warm-up step) and
the process's peak resident memory. Needs torch and torchvision."""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fixtures.crw import CRWRef, DROP  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=4)
ap.add_argument("--clip", type=int, default=4)
ap.add_argument("--patches", type=int, default=49)
ap.add_argument("--size", type=int, default=64)
ap.add_argument("--steps", type=int, default=2)
ap.add_argument("--channels-last", action="store_true")
ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
ap.add_argument("--padding", choices=["reflect", "zeros"], default="reflect")
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

model = CRWRef(padding=args.padding, channels_last=args.channels_last).train()
if args.channels_last:
    model = model.to(memory_format=torch.channels_last)
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
b, t, n, s = args.batch, args.clip, args.patches, args.size
patches = torch.randn(b, t, n, 3, s, s)

times, loss = [], None
for i in range(args.steps + 1):
    t0 = time.perf_counter()
    mf = (torch.rand(t - 1, b, n, n) < DROP).float()
    mb = (torch.rand(t - 1, b, n, n) < DROP).float()
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
        _, loss, _, _ = model(patches, mf, mb)
    loss.backward()
    opt.step()
    t1 = time.perf_counter()
    if i > 0:
        times.append(t1 - t0)
    print(f"step {i}{' (warm-up)' if i == 0 else ''}: {t1 - t0:.2f} s, loss {loss.item():.4f}", file=sys.stderr, flush=True)
times.sort()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
print(json.dumps({"torch_version": torch.__version__, "layout": "channels_last" if args.channels_last else "default", "precision": args.precision,
                  "padding": args.padding, "batch": b, "clip": t, "patches": n, "patch_size": s,
                  "seconds_per_step": times[len(times) // 2], "step_seconds": times,
                  "peak_rss_bytes": peak, "loss": loss.item()}))
