#!/usr/bin/env python3
"""PyTorch reference for the TimeCycle cases of `cycletime bench train`: one training step
(forward, backward, gradient-norm clipping at 10, Adam 2e-4 betas 0.5/0.999) of the TimeCycle model
of scripts/fixtures/timecycle.py (the authors' formulation: every cycle's backward chain recomputed,
the inlier mask warped by grid_sample) at full size: 240x240 frames, 4 clip frames + target image,
80x80 patch, localizer 128/64 with 4x4 kernels; resnet18 (D 256) or resnet50 (D 512) to layer3 with
layer3 stride 1.

Usage: torch_timecycle.py [--threads 2] [--depth 18|50] [--batch 4] [--steps 2] [--channels-last]
                          [--precision fp32|bf16]
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
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fixtures.timecycle as tc  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--depth", type=int, choices=[18, 50], default=18)
ap.add_argument("--batch", type=int, default=4)
ap.add_argument("--steps", type=int, default=2)
ap.add_argument("--channels-last", action="store_true")
ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

# The fixture's model reads its sizes from module constants: set the full-size recipe.
tc.B, tc.T, tc.FRAME, tc.PATCH = args.batch, 4, 240, 80
tc.D = 256 if args.depth == 18 else 512
tc.LOC_WIDTHS, tc.LOC_KERNELS = (128, 64), (4, 4)


model = tc.TimeCycleRef()
if args.depth == 50:
    model.encoder = tc.Trunk("resnet50")
    model.head = nn.Conv2d(1024, tc.D, 1, bias=False)
model.train()
b = args.batch
clip = torch.randn(b, 4, 3, 240, 240)
image = torch.randn(b, 3, 240, 240)
patch = torch.randn(b, 3, 80, 80)
theta = torch.tensor([[1 / 3, 0, 0.2], [0, 1 / 3, -0.1]]).expand(b, 2, 3).contiguous()
if args.channels_last:
    model = model.to(memory_format=torch.channels_last)
    image = image.contiguous(memory_format=torch.channels_last)
    patch = patch.contiguous(memory_format=torch.channels_last)
opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))

times = []
for i in range(args.steps + 1):
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
        out = model(clip, patch, image, theta)
    out["total"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()
    t1 = time.perf_counter()
    if i > 0:
        times.append(t1 - t0)
times.sort()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"torch_version": torch.__version__, "layout": "channels_last" if args.channels_last else "default", "precision": args.precision,
                  "depth": args.depth, "batch": b, "seconds_per_step": times[len(times) // 2],
                  "peak_rss_bytes": peak, "loss": float(out["total"].detach())}))
