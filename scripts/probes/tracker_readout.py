#!/usr/bin/env python3
"""PyTorch check of the localizer readout of `TimeCycleProbe.trainReadout` (issue 18 part 5).

The original localizer (conv 900->128 k4, LeakyReLU 0.1, conv 128->64 k4, LeakyReLU 0.1, Linear
-> (tx, ty, angle), theta = [[s cos a, -s sin a, tx], [s sin a, s cos a, ty]], s = 1/3) fed
affinities that are Gaussians (sigma 3 base cells) over the 30x30 base grid, peaked where the
ground-truth theta puts each of the 10x10 patch cells (base position k = x * 30 + y); targets drawn
as the data recipe draws them with every window equally likely; grid loss on a 20x20 grid; Adam
2e-4, betas (0.5, 0.999); batch 4, 100 steps. Prints the held-out grid loss and the best constant's.
Not needed by CI (the Swift test asserts < 0.08 on its own); run: python3 scripts/probes/tracker_readout.py
"""
import argparse
import math

import torch
import torch.nn as nn


def sample_targets(n, g):
    """Thetas [n, 2, 3]: window (ix, iy) uniform over 7x7, location idx/6 + U(-1/12, 1/12) clamped
    to [0, 1], translation (2 loc - 1)(1 - 1/3), rotation U(-45, 45) degrees, scale 1/3."""
    s = 1.0 / 3.0
    idx = torch.randint(0, 49, (n,), generator=g)
    ix, iy = (idx // 7).double(), (idx % 7).double()
    jx = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) / 12
    jy = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) / 12
    xloc = (ix / 6 + jx).clamp(0, 1)
    yloc = (iy / 6 + jy).clamp(0, 1)
    a = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * math.pi / 4
    th = torch.zeros(n, 2, 3, dtype=torch.float64)
    th[:, 0, 0], th[:, 0, 1], th[:, 0, 2] = s * a.cos(), -s * a.sin(), (2 * xloc - 1) * (1 - s)
    th[:, 1, 0], th[:, 1, 1], th[:, 1, 2] = s * a.sin(), s * a.cos(), (2 * yloc - 1) * (1 - s)
    return th


def gaussian_affinity(theta, G, P, sigma):
    """[N, G*G, P, P], channel k = x * G + y, normalized over k."""
    ps = torch.linspace(-1, 1, P, dtype=torch.float64)
    yy, xx = torch.meshgrid(ps, ps, indexing="ij")            # patch cell (i, j) at (x_j, y_i)
    pts = torch.stack([xx, yy, torch.ones_like(xx)], 0).reshape(3, -1)
    w = theta @ pts                                             # [N, 2, P*P]
    c = (w + 1) * (G - 1) / 2
    gx = torch.arange(G, dtype=torch.float64).view(G, 1).expand(G, G).reshape(-1)   # k = x * G + y
    gy = torch.arange(G, dtype=torch.float64).view(1, G).expand(G, G).reshape(-1)
    d2 = (gx.view(1, -1, 1) - c[:, 0:1, :]) ** 2 + (gy.view(1, -1, 1) - c[:, 1:2, :]) ** 2
    a = torch.exp(-d2 / (2 * sigma * sigma))
    a = a / a.sum(1, keepdim=True)
    return a.reshape(theta.shape[0], G * G, P, P).float()


class Localizer(nn.Module):
    def __init__(self, G, P):
        super().__init__()
        self.conv1 = nn.Conv2d(G * G, 128, 4, bias=False)
        self.conv2 = nn.Conv2d(128, 64, 4, bias=False)
        self.fc = nn.Linear(64 * (P - 6) ** 2, 3)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        nn.init.kaiming_normal_(self.conv2.weight, mode="fan_out", nonlinearity="relu")
        self.fc.weight.data.normal_(0, 0.01)
        self.fc.bias.data.zero_()

    def forward(self, x):
        y = nn.functional.leaky_relu(self.conv1(x), 0.1)
        y = nn.functional.leaky_relu(self.conv2(y), 0.1)
        p = self.fc(y.flatten(1))
        s = 1.0 / 3.0
        c, si = s * p[:, 2].cos(), s * p[:, 2].sin()
        return torch.stack([c, -si, p[:, 0], si, c, p[:, 1]], 1).view(-1, 2, 3)


def grid_loss(theta, target, n=20):
    xs = torch.linspace(-1, 1, n)
    yy, xx = torch.meshgrid(xs, xs, indexing="ij")
    pts = torch.stack([xx, yy, torch.ones_like(xx)], 0).reshape(3, -1)
    d = (theta - target) @ pts
    return (d * d).sum(1).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-grid", type=int, default=30)
    ap.add_argument("--patch-grid", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    G, P = args.base_grid, args.patch_grid
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        loc = Localizer(G, P)
        opt = torch.optim.Adam(loc.parameters(), lr=2e-4, betas=(0.5, 0.999))
        for _ in range(args.steps):
            t = sample_targets(4, g)
            loss = grid_loss(loc(gaussian_affinity(t, G, P, 3.0)), t.float())
            opt.zero_grad()
            loss.backward()
            opt.step()
        held = sample_targets(64, g)
        with torch.no_grad():
            h = grid_loss(loc(gaussian_affinity(held, G, P, 3.0)), held.float()).item()
            c = grid_loss(held.float().mean(0, keepdim=True).expand_as(held), held.float()).item()
        print(f"seed {seed}: grid {G}/{P}, {args.steps} steps: held-out grid loss {h:.4f}, best constant {c:.4f}")


if __name__ == "__main__":
    main()
