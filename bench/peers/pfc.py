"""PyTorch peer of `marginlab bench pfc`: InsightFace's PartialFC_V2 on one device, with ArcFace.

The sampling of partial_fc_v2.py (positives forced in, top-k of uniform scores, sorted, labels
re-indexed by searchsorted), the gather of the active rows of one dense weight Parameter, normalised
linear, ArcFace margin on the target cosines, cross-entropy, backward (a dense [C, D] gradient, zero
for unsampled rows) and torch.optim.SGD(momentum 0.9, weight decay 5e-4) over every row (V2 semantics).
Usage: python bench/peers/pfc.py --classes 1000000 --rate 0.1
"""

import argparse
import math

import torch
import torch.nn.functional as F
from common_peer import report, time_steps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--classes", type=int, default=1000000)
    p.add_argument("--rate", type=float, default=0.1)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--embedding-grad", action="store_true", help="x requires grad (a training step's dL/dx)")
    a = p.parse_args()
    torch.manual_seed(0)
    s, m = 64.0, 0.5
    cos_m, sin_m = math.cos(m), math.sin(m)
    th, mm = math.cos(math.pi - m), math.sin(math.pi - m) * m
    weight = torch.nn.Parameter(torch.normal(0, 0.01, (a.classes, a.dim)))
    opt = torch.optim.SGD([weight], lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(a.batch, a.dim, requires_grad=a.embedding_grad)
    num_sample = int(a.rate * a.classes)
    rows = torch.arange(a.batch)

    def step():
        labels = torch.randint(0, a.classes, (a.batch,))
        if a.rate < 1:
            with torch.no_grad():
                positive = torch.unique(labels, sorted=True)
                perm = torch.rand(a.classes)
                perm[positive] = 2.0
                index = torch.topk(perm, k=num_sample)[1].sort()[0]
                labels = torch.searchsorted(index, labels)
            w = weight[index]
        else:
            w = weight
        logits = F.linear(F.normalize(x), F.normalize(w)).clamp(-1, 1)
        c = logits[rows, labels]
        sin_t = torch.sqrt((1 - c) * (1 + c)).clamp_min(1e-4)
        t = torch.where(c > th, c * cos_m - sin_t * sin_m, c - mm)
        loss = F.cross_entropy(logits.index_put((rows, labels), t) * s, labels)
        opt.zero_grad(set_to_none=True)
        x.grad = None
        loss.backward()
        opt.step()

    steps = time_steps(step, a.warmup, a.repeats)
    dx = " + dx" if a.embedding_grad else ""
    report(f"PartialFC_V2 r={a.rate} C={a.classes}{dx}", steps, classes=a.classes, rate=a.rate)


if __name__ == "__main__":
    main()
