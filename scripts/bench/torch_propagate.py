#!/usr/bin/env python3
"""Reference for `cycletime bench propagate`: the contrastive-random-walk label propagation written
straightforwardly in PyTorch (dense affinity to every context frame, radius mask on the preceding
frames, joint top-k, softmax, weighted labels), resnet18 layer3 at stride 8 with the given weights.
Prints one JSON line: frames, seconds, fps, peak_rss_bytes."""
import argparse, json, os, resource, time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from safetensors.torch import load_file


def encoder(weights):
    net = torchvision.models.resnet18()
    net.layer3[0].conv1.stride = (1, 1)
    net.layer3[0].downsample[0].stride = (1, 1)
    net.load_state_dict(load_file(weights), strict=False)
    net.eval()
    return lambda x: net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--weights", required=True)
    p.add_argument("--davis-root", required=True)
    p.add_argument("--sequence", required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--context", type=int, default=20)
    p.add_argument("--radius", type=float, default=12)
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--chunk", type=int, default=500)
    a = p.parse_args()
    torch.set_grad_enabled(False)
    enc = encoder(a.weights)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    fdir = os.path.join(a.davis_root, "JPEGImages/480p", a.sequence)
    names = sorted(os.listdir(fdir))[: a.frames]
    ann = Image.open(os.path.join(a.davis_root, "Annotations/480p", a.sequence, names[0].rsplit(".", 1)[0] + ".png"))
    palette = ann.getpalette()
    mask = np.array(ann).astype(np.int64)
    mask[mask == 255] = 0
    ids = sorted(set(np.unique(mask).tolist()) | {0})
    H, W = mask.shape

    def feats(i):
        img = torch.from_numpy(np.array(Image.open(os.path.join(fdir, names[i])).convert("RGB"))).permute(2, 0, 1).float() / 255
        f = enc(((img - mean) / std)[None])[0]
        f = F.normalize(f, dim=0)
        return f.flatten(1).t().contiguous()  # [hw, C]

    os.makedirs(os.path.join(a.out, a.sequence), exist_ok=True)
    t0 = time.time()
    f0 = feats(0)
    h, w = H, W
    # grid size from the encoder
    probe = enc(torch.zeros(1, 3, H, W))
    h, w = probe.shape[-2:]
    onehot = torch.stack([torch.from_numpy(mask == i).float() for i in ids])[None]
    l0 = F.interpolate(onehot, size=(h, w), mode="bilinear", align_corners=False)[0].flatten(1).t()  # [hw, L]
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], 1).float()
    dist = torch.cdist(pos, pos)  # [hw(query), hw(key)]
    ctx_f = [f0] * a.context
    ctx_l = [l0] * a.context
    for t in range(1, len(names)):
        q = feats(t)
        keys = torch.stack([f0] + ctx_f)  # [1+n, hw, C]
        labels = torch.cat([l0] + ctx_l)  # [(1+n)*hw, L]
        pred = torch.zeros(h * w, len(ids))
        for s in range(0, h * w, a.chunk):
            qc = q[s : s + a.chunk]
            A = torch.einsum("qc,skc->qsk", qc, keys)  # [chunk, 1+n, hw]
            A[:, 1:] += torch.where(dist[s : s + a.chunk] < a.radius, 0.0, -1e10)[:, None]
            A = A.flatten(1) / a.temperature
            v, i = torch.topk(A, a.topk, dim=1)
            wts = F.softmax(v, dim=1)
            pred[s : s + a.chunk] = (labels[i] * wts[..., None]).sum(1)
        ctx_f = ctx_f[1:] + [q]
        ctx_l = ctx_l[1:] + [pred]
        up = F.interpolate(pred.t().reshape(1, len(ids), h, w), size=(H, W), mode="bilinear", align_corners=False)[0]
        out = np.array(ids, dtype=np.uint8)[up.argmax(0).numpy()]
        im = Image.fromarray(out, mode="P")
        im.putpalette(palette)
        im.save(os.path.join(a.out, a.sequence, names[t].rsplit(".", 1)[0] + ".png"))
    sec = time.time() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"frames": len(names) - 1, "seconds": sec, "fps": (len(names) - 1) / sec, "peak_rss_bytes": rss}))


if __name__ == "__main__":
    main()
