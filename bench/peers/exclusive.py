"""PyTorch peer of `marginlab bench exclusive`: pytorch-metric-learning's dense RegularFaceRegularizer.

One evaluation = value + backward wrt W (C x D, rows = classes, as PML's weight regularizer receives
W.t()). It builds the C x C cosine matrix, so its memory grows with C^2.
Usage: python bench/peers/exclusive.py --classes 10000 --dim 512
"""

import argparse

import torch
from common_peer import report, time_steps
from pytorch_metric_learning.regularizers import RegularFaceRegularizer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--classes", type=int, default=10000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(a.classes, a.dim))
    reg = RegularFaceRegularizer()
    value = {}

    def step():
        w.grad = None
        loss = reg(w)
        loss.backward()
        value["v"] = loss.item()

    steps = time_steps(step, a.warmup, a.repeats)
    report(f"PML RegularFace dense C={a.classes}", steps, classes=a.classes, dim=a.dim, value=value["v"])


if __name__ == "__main__":
    main()
