#!/usr/bin/env python3
"""PyTorch reference for `cycletime bench`: one forward+backward of the ResNet-18 trunk
(conv1..layer3, layer3 stride 1) on a batch of 8x3x240x240, default and channels-last layouts.
Prints one JSON object. Needs torch and torchvision; `cycletime bench` skips it otherwise."""
import json
import sys
import time

import torch
import torchvision

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 8
size = int(sys.argv[3]) if len(sys.argv) > 3 else 240
runs = 3


def trunk():
    torch.manual_seed(0)
    m = torchvision.models.resnet18()
    m.layer3[0].conv1.stride = (1, 1)
    m.layer3[0].downsample[0].stride = (1, 1)
    return torch.nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3).train()


def step_time(channels_last):
    model = trunk()
    x = torch.randn(batch, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(runs + 1):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        y = model(x)
        y.sum().backward()
        t1 = time.perf_counter()
        if i > 0:
            times.append(t1 - t0)
    times.sort()
    return times[len(times) // 2], tuple(y.shape)


default, shape = step_time(False)
cl, _ = step_time(True)
print(json.dumps({"torch_version": torch.__version__, "default_seconds": default,
                  "channels_last_seconds": cl, "output_shape": list(shape)}))
