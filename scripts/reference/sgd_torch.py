"""Reference trajectories of torch.optim.SGD for marginlab's one SGD rule (src/train/optimizers.ts sgdUpdate).

Each case runs a few steps on a seeded float32 parameter [3, 4] with given gradients and a learning
rate that changes per step (set in the param group, as a scheduler does), and records the parameter
and the momentum buffer after each step. The "rowDecay" case adds a per-row multiple of p to the
gradient before the step (as the head steps fold the normalisation's projection into the rule).
Usage: .venv-peers/bin/python scripts/reference/sgd_torch.py > test/fixtures/sgd-torch.json
"""

import json

import torch

torch.manual_seed(0)
STEPS = 4
LRS = [0.1, 0.05, 0.2, 0.01]


def case(name, momentum, weight_decay, nesterov=False, row_decay=None):
    p0 = torch.randn(3, 4, dtype=torch.float32)
    grads = [torch.randn(3, 4, dtype=torch.float32) for _ in range(STEPS)]
    p = p0.clone().requires_grad_(True)
    opt = torch.optim.SGD([p], lr=LRS[0], momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    params, buffers = [], []
    for t in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = LRS[t]
        g = grads[t].clone()
        if row_decay is not None:
            g = g + torch.tensor(row_decay, dtype=torch.float32).reshape(3, 1) * p.detach()
        p.grad = g
        opt.step()
        params.append(p.detach().clone().flatten().tolist())
        buf = opt.state[p].get("momentum_buffer")
        buffers.append(None if buf is None else buf.flatten().tolist())
    return {
        "name": name,
        "momentum": momentum,
        "weightDecay": weight_decay,
        "nesterov": nesterov,
        "rowDecay": row_decay,
        "lrs": LRS,
        "p0": p0.flatten().tolist(),
        "grads": [g.flatten().tolist() for g in grads],
        "params": params,
        "buffers": buffers,
    }


cases = [
    case("momentum 0.9, weight decay 5e-4", 0.9, 5e-4),
    case("plain SGD", 0.0, 0.0),
    case("weight decay, no momentum", 0.0, 1e-2),
    case("nesterov", 0.9, 1e-3, nesterov=True),
    case("momentum with a per-row decay (the projection)", 0.9, 5e-4, row_decay=[-0.5, 0.0, 0.25]),
]
print(json.dumps({"torch": torch.__version__, "cases": cases}, indent=1))
