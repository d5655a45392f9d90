"""Reference values for RegularFace's exclusive regularization from pytorch-metric-learning.

Runs PML's RegularFaceRegularizer (dense C x C, float64) on seeded random class-centre matrices,
including duplicate and zero rows, and writes value and gradient wrt W (rows = classes) as JSON.
Usage: .venv-peers/bin/python scripts/reference/exclusive_pml.py > test/fixtures/exclusive-pml.json
"""

import json

import numpy as np
import torch
from pytorch_metric_learning.regularizers import RegularFaceRegularizer

torch.set_default_dtype(torch.float64)


def case(name, w):
    wt = torch.tensor(w, requires_grad=True)
    reg = RegularFaceRegularizer()
    # PML's regularizer receives W.t() of its (D x C) layout, i.e. rows = classes, as here.
    value = reg(wt)
    value.backward()
    return {"name": name, "weight": w.tolist(), "value": value.item(), "grad": wt.grad.numpy().tolist()}


rng = np.random.default_rng(20190615)
cases = [case("random_40x12", rng.normal(size=(40, 12)))]
w = rng.normal(size=(16, 6))
w[3] = w[7]  # duplicate rows: cosine exactly 1 between them
w[5] = 0.0  # zero row: F.normalize gives 0, cosine 0 with every class
cases.append(case("duplicate_and_zero_rows_16x6", w))
print(json.dumps({"source": "pytorch-metric-learning RegularFaceRegularizer, float64", "torch": torch.__version__, "cases": cases}))
