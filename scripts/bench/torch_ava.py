#!/usr/bin/env python3
"""PyTorch reference for `cycletime bench ava`: one AVA training iteration (forward, backward, SGD
step) of a ResNet-18 backbone + mmaction2's AVA RoI head (time-averaged feature, RoIAlign 8x8
aligned, adaptive sampling, scale 1/16, max pool, dropout 0.5, Linear to 81 outputs, BCE with
logits over slots 1...), 2 boxes per clip. Backbones, the same networks as the Swift ones:
  2d        torchvision resnet18 (layer4 stride 1) per frame, features averaged over time (T 4)
  slowonly  the SlowOnly ResNet-18 of scripts/fixtures/ava.py (T 4)
  slowfast  the SlowFast ResNet-18 of scripts/fixtures/slowfast.py, alpha 8 (fast T 32, slow 4)
Relation heads on the 2d backbone (RoIAlign as above before them where they use it):
  2d-acrn   mmaction2's ACRNHead (512 channels, stride 1, one (1, 3, 3) conv) then BBoxHeadAVA's
            pooling and classifier: the module of scripts/fixtures/acrn.py
  2d-acar   ACAR-Net's ACARHead (reduce 1024, hidden 512, two HR2O layers, roi 7, torchvision's
            roi_align in feature coordinates): the module of scripts/fixtures/acar.py
  2d-lfb    the long-term feature bank head (mmaction2's AVA LFB recipe: FBOHead with FBO-NL,
            latent 512, two non-local layers, pre-activation, dropout 0.2, over a window of 300
            fixed bank features per box, 60 s x 5): the module of scripts/fixtures/lfb.py between
            the pooled RoI feature and the classifier (dropout 0.5, Linear 1024 -> 81)
--precision bf16 runs the forward (and so the backward) inside torch.autocast("cpu", torch.bfloat16).
--channels-last keeps weights and activations channels-last (torch.channels_last for the 2-D
convolutions of the 2d backbone, torch.channels_last_3d for the 3-D ones), PyTorch's fastest layout
on the CPU for many convolutions.

Usage: torch_ava.py --case 2d|slowonly|slowfast|2d-acrn|2d-acar|2d-lfb [--threads 2] [--batch 2] [--size 256] [--steps 3]
       [--precision fp32|bf16] [--channels-last] [--lfb-long-term 300] [--lfb-latent 512]
Prints one JSON object: median seconds per iteration over the timed steps (after one warm-up) and
the process's peak resident memory. Needs torch and torchvision."""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torchvision
from torchvision.ops import roi_align

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fixtures.ava import SlowOnly18  # noqa: E402
from fixtures.slowfast import SlowFast18  # noqa: E402
from fixtures.acrn import ACRN  # noqa: E402
from fixtures.acar import ACAR  # noqa: E402
from fixtures.lfb import FBONonLocal  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--case", choices=["2d", "slowonly", "slowfast", "2d-acrn", "2d-acar", "2d-lfb"], required=True)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=2)
ap.add_argument("--size", type=int, default=256)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--classes", type=int, default=80)
ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
ap.add_argument("--channels-last", action="store_true")
ap.add_argument("--lfb-long-term", type=int, default=300)
ap.add_argument("--lfb-latent", type=int, default=512)
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)


class FrameAveraged(torch.nn.Module):
    def __init__(self):
        super().__init__()
        r = torchvision.models.resnet18()
        r.layer4[0].conv1.stride = (1, 1)
        r.layer4[0].downsample[0].stride = (1, 1)
        self.trunk = torch.nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3, r.layer4)

    def forward(self, x):
        n, c, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        if args.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        f = self.trunk(frames)
        return f.reshape(n, t, *f.shape[1:]).mean(dim=1).unsqueeze(2)


frames = 32 if args.case == "slowfast" else 4
backbone = {"2d": FrameAveraged, "slowonly": SlowOnly18, "slowfast": lambda: SlowFast18(alpha=8),
            "2d-acrn": FrameAveraged, "2d-acar": FrameAveraged, "2d-lfb": FrameAveraged}[args.case]()
channels = 576 if args.case == "slowfast" else 512
fc = torch.nn.Linear(channels, args.classes + 1)
dropout = torch.nn.Dropout(0.5)
if args.case == "2d-acrn":
    fc = ACRN(c=channels, out=channels, stride=1, convs=1, classes=args.classes)
elif args.case == "2d-acar":
    fc = ACAR(width=channels, reduce=1024, hidden=512, roi=7, depth=2, out=args.classes + 1,
              align=lambda f, r, size: roi_align(f, r, output_size=(size, size)))
elif args.case == "2d-lfb":
    fbo = FBONonLocal(channels, channels, args.lfb_latent, 1, args.lfb_long_term, layers=2, pre_activate=True, dropout=0.2)
    fc = torch.nn.ModuleList([fbo, torch.nn.Linear(channels + args.lfb_latent, args.classes + 1)])
model = torch.nn.ModuleList([backbone, fc]).train()
if args.channels_last:
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() in (4, 5):
                p.data = p.data.contiguous(memory_format=torch.channels_last if p.dim() == 4 else torch.channels_last_3d)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

b, s = args.batch, args.size
x = torch.randn(b, 3, frames, s, s)
if args.channels_last and args.case in ("slowonly", "slowfast"):
    x = x.contiguous(memory_format=torch.channels_last_3d)
boxes = []
for i in range(b):
    boxes += [[i, 0.1 * s, 0.2 * s, 0.6 * s, 0.9 * s], [i, 0.4 * s, 0.1 * s, 0.95 * s, 0.8 * s]]
rois = torch.tensor(boxes, dtype=torch.float32)
normalized = rois.clone()
normalized[:, 1:] /= s
targets = (torch.rand(rois.shape[0], args.classes) < 0.05).float()
targets[:, 0] = 1  # every region has a positive label
# The bank's window per box: fixed features (the bank is read, not trained).
long_term = torch.randn(rois.shape[0], channels, args.lfb_long_term, 1, 1)

times, loss = [], None
for i in range(args.steps + 1):
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
        f = backbone(x).mean(dim=2)
        if args.case == "2d-acar":
            logits = fc(f, normalized)
        else:
            r = roi_align(f, rois, output_size=(8, 8), spatial_scale=1 / 16, sampling_ratio=0, aligned=True)
            if args.case == "2d-acrn":
                logits = fc(dropout(r), f, rois[:, 0].long())  # ACRN's fixture module has no dropout; BBoxHeadAVA's on its input
            elif args.case == "2d-lfb":
                st = r.amax(dim=(2, 3))
                k = st.shape[0]
                pooled = torch.cat([st, fc[0](st.reshape(k, channels, 1, 1, 1), long_term).reshape(k, -1)], dim=1)
                logits = fc[1](dropout(pooled))
            else:
                logits = fc(dropout(r.amax(dim=(2, 3))))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 1:].float(), targets)
    loss.backward()
    opt.step()
    t1 = time.perf_counter()
    if i > 0:
        times.append(t1 - t0)
    print(f"step {i}{' (warm-up)' if i == 0 else ''}: {t1 - t0:.2f} s, loss {loss.item():.4f}", file=sys.stderr, flush=True)
times.sort()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
print(json.dumps({"torch_version": torch.__version__, "case": args.case, "precision": args.precision,
                  "layout": "channels_last" if args.channels_last else "default", "batch": b, "frames": frames, "size": s,
                  "seconds_per_step": times[len(times) // 2], "step_seconds": times,
                  "peak_rss_bytes": peak, "loss": float(loss.detach())}))
