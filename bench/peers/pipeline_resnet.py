"""PyTorch peer of `bench/pipeline.ts train`: one training step of an InsightFace iResNet
(recognition/arcface_torch/backbones/iresnet.py: IBasicBlock, BN-dropout-FC-BN features head) with an
ArcFace head (CombinedMarginLoss(64, 1, 0.5, 0) + linear on normalised W and x, cross-entropy) and SGD
momentum 0.9, weight decay 5e-4, on the same CPU. Layers/widths/input size as the marginlab case.
Prints one JSON line (common_peer.report)."""

import argparse
import math
import time

import torch
from torch import nn
import torch.nn.functional as F

from common_peer import report, time_steps


class IBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.bn1(x)
        out = self.conv1(out)
        out = self.bn2(out)
        out = self.prelu(out)
        out = self.conv2(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    def __init__(self, layers, widths, in_ch, size, emb):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=1e-05)
        self.prelu = nn.PReLU(widths[0])
        blocks = []
        inplanes = widths[0]
        for n, w in zip(layers, widths):
            for b in range(n):
                stride = 2 if b == 0 else 1
                down = None
                if b == 0:
                    down = nn.Sequential(nn.Conv2d(inplanes, w, 1, stride, bias=False), nn.BatchNorm2d(w, eps=1e-05))
                blocks.append(IBasicBlock(inplanes, w, stride, down))
                inplanes = w
            size = (size + 1) // 2
        self.layers = nn.Sequential(*blocks)
        self.bn2 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(inplanes * size * size, emb)
        self.features = nn.BatchNorm1d(emb, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = self.bn2(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        return self.features(self.fc(x))


class LeNetPP(nn.Module):
    """LeNet++ (Wen et al. 2016) as src/backbones/lenet.ts: per stage two 5x5 "same" convs + PReLU(C), 2x2 max-pool; linear."""

    def __init__(self, widths, in_ch, size, emb):
        super().__init__()
        layers = []
        c = in_ch
        for w in widths:
            layers += [nn.Conv2d(c, w, 5, 1, 2), nn.PReLU(w), nn.Conv2d(w, w, 5, 1, 2), nn.PReLU(w)]
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            c = w
            size = (size + 1) // 2
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c * size * size, emb)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class ArcFaceHead(nn.Module):
    """insightface CombinedMarginLoss(s=64, m1=1, m2=0.5, m3=0) on cos = linear(normalize(x), normalize(W))."""

    def __init__(self, classes, emb, s=64.0, m=0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.normal(0, 0.01, (classes, emb)))
        self.s, self.m = s, m

    def forward(self, x, labels):
        cos = F.linear(F.normalize(x), F.normalize(self.weight)).clamp(-1, 1)
        idx = torch.arange(cos.size(0))
        target = cos[idx, labels]
        with torch.no_grad():
            theta = target.acos()
            final = torch.cos(theta + self.m)
        cos = cos.clone()
        cos[idx, labels] = target + (final - target).detach()
        return F.cross_entropy(cos * self.s, labels)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--backbone", default="iresnet", choices=["iresnet", "lenet++"])
    p.add_argument("--layers", default="1,1,1,1")
    p.add_argument("--widths", default="16,32,64,128")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--emb", type=int, default=64)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--name", default="pytorch")
    a = p.parse_args()
    torch.manual_seed(0)
    if a.backbone == "iresnet":
        layers = [int(v) for v in a.layers.split(",")]
        widths = [int(v) for v in a.widths.split(",")]
        net = IResNet(layers, widths, a.channels, a.size, a.emb)
    else:
        widths = [int(v) for v in a.widths.split(",")] if a.widths else [32, 64, 128]
        net = LeNetPP(widths, a.channels, a.size, a.emb)
    head = ArcFaceHead(a.classes, a.emb)
    opt = torch.optim.SGD(list(net.parameters()) + list(head.parameters()), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(a.batch, a.channels, a.size, a.size)
    y = torch.arange(a.batch) * 7919 % a.classes
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = head(net(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5)
        opt.step()
        assert math.isfinite(loss.item())

    for _ in range(a.warmup):
        step()
    c0 = time.process_time()
    ms = time_steps(step, 0, a.repeats)
    cpu_ms = (time.process_time() - c0) * 1000 / a.repeats
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    report(
        a.name,
        ms,
        imagesPerSecond=a.batch / (sorted(ms)[len(ms) // 2] / 1000),
        cpuMsPerStep=cpu_ms,
        backboneParams=params,
        batch=a.batch,
    )


if __name__ == "__main__":
    main()
