#!/usr/bin/env python3
"""PyTorch reference for `cycletime bench`: one forward+backward of the ResNet-18 trunk
(conv1..layer3, layer3 stride 1) on a batch of 8x3x240x240, default and channels-last layouts, and
with a 4th argument `bf16` also under torch.autocast("cpu", dtype=torch.bfloat16), channels-last.
Prints one JSON object. Needs torch; `cycletime bench` skips it otherwise."""
import json
import sys
import time

import torch
from torch import nn

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 8
size = int(sys.argv[3]) if len(sys.argv) > 3 else 240
precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
runs = 3


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (the same layers and order), so torchvision is not needed."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def trunk():
    """ResNet-18 conv1..layer3 with layer3 at stride 1 (torchvision's resnet18 layers)."""
    torch.manual_seed(0)
    stages = []
    for cin, cout, stride in [(64, 64, 1), (64, 128, 2), (128, 256, 1)]:
        stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
    return nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                         nn.MaxPool2d(3, 2, 1), *stages).train()


def step_time(channels_last, autocast=False):
    model = trunk()
    x = torch.randn(batch, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(runs + 1):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = model(x)
        y.float().sum().backward()
        t1 = time.perf_counter()
        if i > 0:
            times.append(t1 - t0)
    times.sort()
    return times[len(times) // 2], tuple(y.shape)


default, shape = step_time(False)
cl, _ = step_time(True)
result = {"torch_version": torch.__version__, "default_seconds": default,
          "channels_last_seconds": cl, "output_shape": list(shape)}
if precision == "bf16":
    result["autocast_channels_last_seconds"], _ = step_time(True, autocast=True)
print(json.dumps(result))
