#!/usr/bin/env python3
"""PyTorch reference for `cycletime bench detect`: torchvision's Faster R-CNN with a ResNet-FPN body,
as fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None) builds it (nn.BatchNorm2d in the body,
91 classes) but with trainable_backbone_layers 3, torchvision's default for a pretrained body
(weights=None alone would train all 5), and any ResNet depth. Cases:
  infer  eval mode, one image per call: seconds per image
  train  one training iteration, batch 2 (the image and its horizontal flip, two person boxes each,
         label 1): the four losses, backward, SGD step (lr 0.001, momentum 0.9, weight decay 1e-4)
The image: a PNG or JPEG read with PIL as RGB / 255 (the Swift side reads the same bytes with libpng
/ libjpeg). --precision bf16 runs the forward (and so the backward) inside
torch.autocast("cpu", torch.bfloat16); --channels-last converts the model (and so the activations of
every convolution) to channels-last.

Usage: torch_detect.py --case infer|train --image IMG [--depth 50] [--min-size 480] [--max-size 800]
       [--steps 3] [--threads 2] [--precision fp32|bf16] [--channels-last] [--boxes x1,y1,x2,y2;...]
       [--rpn-post-nms-top-n N] [--box-batch-size-per-image N]
Prints one JSON object: the median seconds per step over the timed steps (after one warm-up) and the
process's peak resident memory. Needs torch, torchvision and PIL."""
import argparse
import json
import resource
import sys
import time

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

ap = argparse.ArgumentParser()
ap.add_argument("--case", choices=["infer", "train"], required=True)
ap.add_argument("--image", required=True)
ap.add_argument("--depth", type=int, default=50)
ap.add_argument("--min-size", type=int, default=480)
ap.add_argument("--max-size", type=int, default=800)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
ap.add_argument("--channels-last", action="store_true")
ap.add_argument("--rpn-post-nms-top-n", type=int, help="rpn_post_nms_top_n_train and _test (default torchvision's)")
ap.add_argument("--box-batch-size-per-image", type=int, help="default torchvision's")
ap.add_argument("--boxes", default="", help="the first image's ground truth in pixels: x1,y1,x2,y2;...")
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

body = getattr(torchvision.models, f"resnet{args.depth}")(weights=None)
sizes = {}
if args.rpn_post_nms_top_n is not None:
    sizes.update(rpn_post_nms_top_n_train=args.rpn_post_nms_top_n, rpn_post_nms_top_n_test=args.rpn_post_nms_top_n)
if args.box_batch_size_per_image is not None:
    sizes["box_batch_size_per_image"] = args.box_batch_size_per_image
model = FasterRCNN(_resnet_fpn_extractor(body, 3), num_classes=91, min_size=args.min_size, max_size=args.max_size, **sizes)
if args.channels_last:
    model = model.to(memory_format=torch.channels_last)

px = np.array(Image.open(args.image).convert("RGB"))
img = torch.from_numpy(px.copy()).permute(2, 0, 1).float() / 255
width = img.shape[2]
boxes = torch.tensor([[float(v) for v in b.split(",")] for b in args.boxes.split(";") if b] or [[0, 0, width, img.shape[1]]])
flipped = boxes.clone()
flipped[:, 0], flipped[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
images = [img, img.flip(2).contiguous()]
targets = [{"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64)} for b in (boxes, flipped)]
autocast = args.precision == "bf16"

times, losses, detections = [], {}, 0
if args.case == "infer":
    model.eval()
    for i in range(args.steps + 1):
        t0 = time.perf_counter()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model([img])
        t1 = time.perf_counter()
        detections = len(out[0]["boxes"])
        if i > 0:
            times.append(t1 - t0)
        print(f"inference {i}{' (warm-up)' if i == 0 else ''}: {t1 - t0:.2f} s, {detections} detections", file=sys.stderr, flush=True)
else:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=1e-4)
    for i in range(args.steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        losses = {k: float(v.detach()) for k, v in loss_dict.items()}
        if i > 0:
            times.append(t1 - t0)
        print(f"iteration {i}{' (warm-up)' if i == 0 else ''}: {t1 - t0:.2f} s, loss {float(loss.detach()):.4f}", file=sys.stderr, flush=True)
times.sort()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
print(json.dumps({"torch_version": torch.__version__, "torchvision_version": torchvision.__version__, "case": args.case,
                  "precision": args.precision, "channels_last": args.channels_last,
                  "batch_size": list(model.transform(images[:1])[0].tensors.shape[-2:]),
                  "seconds_per_step": times[len(times) // 2], "step_seconds": times, "peak_rss_bytes": peak,
                  "losses": losses, "detections": detections}))
