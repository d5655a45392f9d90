"""PyTorch peer of `marginlab bench heads`: one ArcFace head training step on the CPU.

Step = normalize(x), normalize(W), linear, clamp, ArcFace margin on the target, cross-entropy,
backward, SGD(momentum 0.9) update of W. Two margin variants:
  insightface: arcface_torch's current CombinedMarginLoss (arccos/cos of the whole [B, C] logits
               under no_grad, margin added to the target angles; gradient straight-through);
  lean:        the margin computed on the B target cosines only (gather + scatter), true gradient.
Usage: python bench/peers/heads.py --classes 100000 --dim 512 --batch 256 --variant lean
"""

import argparse
import math

import torch
import torch.nn.functional as F
from common_peer import report, time_steps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--classes", type=int, default=100000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--variant", choices=["insightface", "lean"], default="insightface")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    torch.manual_seed(0)
    s, m = 64.0, 0.5
    weight = torch.nn.Parameter(torch.normal(0, 0.01, (a.classes, a.dim)))
    opt = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    x = torch.randn(a.batch, a.dim)
    labels = torch.randint(0, a.classes, (a.batch,))
    rows = torch.arange(a.batch)
    cos_m, sin_m = math.cos(m), math.sin(m)
    th, mm = math.cos(math.pi - m), math.sin(math.pi - m) * m

    def step():
        logits = F.linear(F.normalize(x), F.normalize(weight)).clamp(-1, 1)
        if a.variant == "insightface":
            target = logits[rows, labels].view(-1, 1)
            with torch.no_grad():
                target.arccos_()
                logits.arccos_()
                final = target + m
                logits[rows, labels.view(-1)] = final.view(-1)
                logits.cos_()
            out = logits * s
        else:
            c = logits[rows, labels]
            sin_t = torch.sqrt((1 - c) * (1 + c)).clamp_min(1e-4)
            t = torch.where(c > th, c * cos_m - sin_t * sin_m, c - mm)
            out = logits.index_put((rows, labels), t) * s
        loss = F.cross_entropy(out, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    steps = time_steps(step, a.warmup, a.repeats)
    report(f"arcface-step {a.variant}", steps, classes=a.classes, dim=a.dim, batch=a.batch)


if __name__ == "__main__":
    main()
