#!/usr/bin/env python3
"""Reference values for marginlab's loss heads (test/fixtures/reference/heads.json).

Run:  .venv-peers/bin/python scripts/reference/heads.py  [out.json]

PyTorch (CPU, float64) and pytorch-metric-learning compute loss values and gradients wrt the embeddings
and the class matrix (and bias / scale where a head has one) over three input sets:
  random     B=6, D=5, C=7, repeated labels
  edge       target cos = +1 and -1 exactly, target angles 175 deg and 179.9 deg, a zero embedding, an
             embedding of norm 1e-13 (< F.normalize's eps), a non-target cos = +1, repeated labels
  one_class  every sample of the batch has the same label
Inputs are rounded to float32 before use (the TS side runs float32), then everything is float64.

Sources per head:
  * PML (unmodified, pytorch-metric-learning from PyPI): NormalizedSoftmaxLoss (NormFace, T = 1/s),
    CosFaceLoss, ArcFaceLoss (margin in DEGREES, W stored [D, C]), SphereFaceLoss (lambda = 0),
    SubCenterArcFaceLoss (+ get_outliers). PML's ArcFace/SubCenter gradients are NaN at cos = +-1
    (d acos), so on the edge set those heads use the formula below instead.
  * InsightFace arcface_torch CombinedMarginLoss (current, copied verbatim below) for ArcFace
    { fallback: none, gradient: straight-through }; InsightFace's 2022 formula (sqrt(1 - cos^2), th / mm
    fallback, easy margin) for easy/exact; the MXNet combined formula cos(m1 acos(c) + m2) - m3 with
    autograd for CombinedMargin; the sphereface_pytorch AngleLoss target (lambda|x|cos + |x|psi)/(1+lambda)
    for SphereFace with lambda > 0.
  * "formula": where the upstream gradient is NaN (|cos| = 1 with exact angular margins) the reference is
    the loss written out in torch with the margin's slope defined as marginlab documents it (sin theta
    floored at 1e-4, the limits for CombinedMargin). Off the edge set, formula and upstream agree (asserted).
"""
import json
import math
import sys

import numpy as np
import pytorch_metric_learning
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml

torch.set_default_dtype(torch.float64)
SIN_FLOOR = 1e-4


def f32(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float32), dtype=torch.float64)


def make_inputs():
    g = np.random.default_rng(20261123)
    d, c = 5, 7
    sets = {}
    x = g.normal(size=(6, d)) * 2.5
    w = g.normal(size=(c, d))
    sets["random"] = (x, w, [0, 3, 3, 6, 2, 3])
    w = g.normal(size=(c, d))
    w[0] = [2, 0, 0, 0, 0]
    w[1] = [0, 1.5, 0, 0, 0]
    a175, a1799 = math.radians(175), math.radians(179.9)
    x = np.array(
        [
            [3, 0, 0, 0, 0],  # target cos = +1 (class 0)
            [-3, 0, 0, 0, 0],  # target cos = -1 (class 0)
            [2 * math.cos(a175), 0, 2 * math.sin(a175), 0, 0],  # target angle 175 deg
            [0, 0, 0, 0, 0],  # zero embedding
            [0, 0.7, 0, 0, 0],  # non-target cos = +1 (class 1), label 3
            [0, -2, 0, 0, 0],  # target cos = -1 (class 1)
            [math.cos(a1799), 0, 0, math.sin(a1799), 0],  # target angle 179.9 deg
            list(1e-13 * np.array([1.0, -2.0, 0.5, 3.0, 1.0])),  # norm < 1e-12
        ]
    )
    sets["edge"] = (x, w, [0, 0, 0, 2, 3, 1, 0, 3])
    x = g.normal(size=(5, d)) * 1.7
    w = g.normal(size=(c, d))
    sets["one_class"] = (x, w, [4, 4, 4, 4, 4])
    return {k: (f32(x), f32(w), torch.tensor(y)) for k, (x, w, y) in sets.items()}


def cosine(x, w):
    return F.normalize(x) @ F.normalize(w).t()


# ---- margin functions: value(c) and slope(c), float64, c already clamped -------------------------------


def arc_value(m, fallback):
    def v(c):
        th = torch.acos(c)
        arc = torch.cos(th + m)
        if fallback == "fallback":
            return torch.where(c > math.cos(math.pi - m), arc, c - m * math.sin(m))
        if fallback == "easy":
            return torch.where(c > 0, arc, c)
        return arc

    return v


def arc_slope(m, fallback, gradient):
    def s(c):
        if gradient == "straight-through":
            return torch.ones_like(c)
        sin_t = torch.sqrt(torch.clamp((1 - c) * (1 + c), min=0))
        d = math.cos(m) + c * math.sin(m) / torch.clamp(sin_t, min=SIN_FLOOR)
        if fallback == "fallback":
            return torch.where(c > math.cos(math.pi - m), d, torch.ones_like(c))
        if fallback == "easy":
            return torch.where(c > 0, d, torch.ones_like(c))
        return d

    return s


def combined_value(m1, m2, m3):
    return lambda c: torch.cos(m1 * torch.acos(c) + m2) - m3


def combined_slope(m1, m2, m3, gradient):
    def s(c):
        if gradient == "straight-through":
            return torch.ones_like(c)
        sin_t = torch.sqrt(torch.clamp((1 - c) * (1 + c), min=0))
        fl = torch.clamp(sin_t, min=SIN_FLOOR)
        if m1 == 1:
            return math.cos(m2) + c * math.sin(m2) / fl
        th = torch.acos(c)
        a = m1 * th
        if float(m1).is_integer():
            near_pi = torch.full_like(c, m1 * (1 if int(m1) % 2 == 1 else -1))
        else:
            near_pi = torch.sin(a) / SIN_FLOOR
        limit = torch.where(c > 0, torch.full_like(c, m1), near_pi)
        ratio = torch.where(sin_t < SIN_FLOOR, limit, torch.sin(a) / fl)
        return m1 * (ratio * math.cos(m2) + torch.cos(a) * math.sin(m2) / fl)

    return s


def margin_formula_loss(cos, y, s, value, slope):
    """Mean CE of s * cos with the target entry replaced by value(c), whose gradient is slope(c)."""
    cy = cos.gather(1, y[:, None]).squeeze(1)
    c = cy.clamp(-1, 1)
    cd = c.detach()
    t = value(cd) + slope(cd) * (c - cd)
    logits = cos.scatter(1, y[:, None], t[:, None]) * s
    return F.cross_entropy(logits, y), logits


def rel(a, b):
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def with_f32_error(out, out32):
    """Attach PyTorch's own float32 error (same code, float32 inputs) per array: the conditioning floor."""
    out["torch_f32_rel_error"] = {
        k: rel(out32[k], out[k]) for k in ("loss", "grad_embeddings", "grad_weight", "logits") if k in out and k in out32
    }
    return out


def run(fn, x, w, extra=(), f32_check=True):
    """fn(x, w, *extra) -> (loss, logits or None); returns loss, grads and logits (+ float32 error)."""
    if f32_check:
        out32 = run(fn, x.float(), w.float(), [e.float() for e in extra], f32_check=False)
        return with_f32_error(run(fn, x, w, extra, f32_check=False), out32)
    x = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    extra = [e.clone().requires_grad_(True) for e in extra]
    loss, logits = fn(x, w, *extra)
    loss.backward()
    out = {
        "loss": loss.item(),
        "grad_embeddings": x.grad.tolist(),
        "grad_weight": w.grad.tolist(),
    }
    if extra:
        out["grad_extra"] = [e.grad.tolist() for e in extra]
    if logits is not None:
        out["logits"] = logits.detach().tolist()
    if x.dtype == torch.float64:
        assert math.isfinite(out["loss"]), (fn, out)
        assert torch.isfinite(x.grad).all() and torch.isfinite(w.grad).all()
    return out


def pml_run(loss_obj, x, w_cd, f32_check=True):
    """PML loss with W given as [C, D] (PML stores [D, C]); grads returned in marginlab's [C, D] layout."""
    if f32_check:
        out32 = pml_run(loss_obj, x.float(), w_cd.float(), f32_check=False)
        loss_obj.W.grad = None
        return with_f32_error(pml_run(loss_obj, x, w_cd, f32_check=False), out32)
    loss_obj.W.data = w_cd.t().clone().contiguous()
    x = x.clone().requires_grad_(True)
    loss = loss_obj(x, LABELS)
    loss.backward()
    return {
        "loss": loss.item(),
        "grad_embeddings": x.grad.tolist(),
        "grad_weight": loss_obj.W.grad.t().tolist(),
    }


def close(a, b, tol=1e-9):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.max(np.abs(a - b)) <= tol * max(1.0, np.max(np.abs(b)))


# ---- InsightFace arcface_torch CombinedMarginLoss forward (master 7fadd420), verbatim logic -------------


def insightface_combined_margin(logits, labels, s, m1, m2, m3):
    index_positive = torch.where(labels != -1)[0]
    target_logit = logits[index_positive, labels[index_positive].view(-1)]
    if m1 == 1.0 and m3 == 0.0:
        with torch.no_grad():
            target_logit.arccos_()
            logits.arccos_()
            final_target_logit = target_logit + m2
            logits[index_positive, labels[index_positive].view(-1)] = final_target_logit
            logits.cos_()
        logits = logits * s
    elif m3 > 0:
        final_target_logit = target_logit - m3
        logits[index_positive, labels[index_positive].view(-1)] = final_target_logit
        logits = logits * s
    else:
        raise ValueError("unsupported")
    return logits


def insightface_2022_arcface(cos, labels, s, m, easy_margin):
    """arcface_torch losses.py ArcFace between Jan and Dec 2022 (true gradient, th/mm fallback)."""
    cos_m, sin_m = math.cos(m), math.sin(m)
    th, mm = math.cos(math.pi - m), math.sin(math.pi - m) * m
    target = cos.gather(1, labels[:, None]).squeeze(1)
    sin_theta = torch.sqrt(1.0 - target**2)
    cos_theta_m = target * cos_m - sin_theta * sin_m
    if easy_margin:
        final = torch.where(target > 0, cos_theta_m, target)
    else:
        final = torch.where(target > th, cos_theta_m, target - mm)
    logits = cos.scatter(1, labels[:, None], final[:, None]) * s
    return F.cross_entropy(logits, labels), logits


def main():
    global LABELS
    out_path = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/reference/heads.json"
    inputs = make_inputs()
    cases = []

    def add(case, head, options, source, result, **more):
        entry = {"case": case, "head": head, "options": options, "source": source, **result, **more}
        cases.append(entry)

    for case, (x, w, y) in inputs.items():
        LABELS = y
        n, d = x.shape
        c = w.shape[0]
        edge = case == "edge"
        g = torch.Generator().manual_seed(7)

        # Softmax with bias
        b = f32(torch.randn(c, generator=g).numpy())
        add(case, "Softmax", {"bias": True, "initialBias": b.tolist()}, "torch F.cross_entropy(x W^T + b)",
            run(lambda x_, w_, b_: (F.cross_entropy(x_ @ w_.t() + b_, y), x_ @ w_.t() + b_), x, w, [b]))
        add(case, "Softmax", {}, "torch F.cross_entropy(x W^T)",
            run(lambda x_, w_: (F.cross_entropy(x_ @ w_.t(), y), x_ @ w_.t()), x, w))

        # L2Softmax: alpha fixed / learnable (grad wrt alpha)
        for alpha, learn in ((16.0, False), (4.0, True)):
            a = torch.tensor(alpha)
            fn = lambda x_, w_, a_: (F.cross_entropy(a_ * F.normalize(x_) @ w_.t(), y), a_ * F.normalize(x_) @ w_.t())
            r = run(fn, x, w, [a])
            if not learn:
                r.pop("grad_extra")
            add(case, "L2Softmax", {"alpha": alpha, "learnAlpha": learn}, "torch alpha * normalize(x) W^T, F.cross_entropy", r)

        # NormFace: PML NormalizedSoftmaxLoss(T = 1/s); learnable scale via the formula
        for s in (20.0, 10.0):
            r = pml_run(pml.NormalizedSoftmaxLoss(c, d, temperature=1.0 / s), x, w)
            rf = run(lambda x_, w_: (F.cross_entropy(s * cosine(x_, w_), y), s * cosine(x_, w_)), x, w)
            assert close(r["loss"], rf["loss"]) and close(r["grad_weight"], rf["grad_weight"])
            r["logits"] = rf["logits"]
            r["torch_f32_rel_error"]["logits"] = rf["torch_f32_rel_error"]["logits"]
            add(case, "NormFace", {"s": s}, f"PML NormalizedSoftmaxLoss(temperature={1.0 / s})", r)
        sv = torch.tensor(12.0)
        add(case, "NormFace", {"s": 12.0, "learnScale": True}, "torch s * cos, F.cross_entropy (grad wrt s)",
            run(lambda x_, w_, s_: (F.cross_entropy(s_ * cosine(x_, w_), y), s_ * cosine(x_, w_)), x, w, [sv]))

        # CosFace: PML
        for s, m in ((64.0, 0.35), (30.0, 0.2)):
            r = pml_run(pml.CosFaceLoss(c, d, margin=m, scale=s), x, w)
            rf = run(lambda x_, w_: margin_formula_loss(cosine(x_, w_), y, s, lambda t: t - m, torch.ones_like), x, w)
            assert close(r["loss"], rf["loss"]) and close(r["grad_embeddings"], rf["grad_embeddings"])
            r["logits"] = rf["logits"]
            r["torch_f32_rel_error"]["logits"] = rf["torch_f32_rel_error"]["logits"]
            add(case, "CosFace", {"s": s, "m": m}, f"PML CosFaceLoss(margin={m}, scale={s})", r)

        # ArcFace: every fallback x gradient
        for m in (0.5, 0.3):
            for fb in ("fallback", "easy", "none"):
                for gr in ("exact", "straight-through"):
                    opts = {"s": 64.0, "m": m, "fallback": fb, "gradient": gr}
                    fn = lambda x_, w_: margin_formula_loss(cosine(x_, w_), y, 64.0, arc_value(m, fb), arc_slope(m, fb, gr))
                    rf = run(fn, x, w)
                    source = "formula (slope floored at sin theta = 1e-4)"
                    if fb == "fallback" and gr == "exact" and not edge:
                        r = pml_run(pml.ArcFaceLoss(c, d, margin=math.degrees(m), scale=64.0), x, w)
                        assert close(r["loss"], rf["loss"]) and close(r["grad_weight"], rf["grad_weight"], 1e-7)
                        r["logits"] = rf["logits"]
                        r["torch_f32_rel_error"]["logits"] = rf["torch_f32_rel_error"]["logits"]
                        rf, source = r, f"PML ArcFaceLoss(margin={math.degrees(m)} deg, scale=64)"
                    elif fb == "none" and gr == "straight-through":
                        fi = lambda x_, w_: (lambda lg: (F.cross_entropy(lg, y), lg))(
                            insightface_combined_margin(cosine(x_, w_).clamp(-1, 1), y, 64.0, 1.0, m, 0.0))
                        r = run(fi, x, w)
                        assert close(r["loss"], rf["loss"], 1e-7) and close(r["grad_weight"], rf["grad_weight"], 1e-7)
                        rf, source = r, "InsightFace arcface_torch CombinedMarginLoss(1, m, 0) (current)"
                    elif fb in ("fallback", "easy") and gr == "exact" and not edge:
                        r = run(lambda x_, w_: insightface_2022_arcface(cosine(x_, w_), y, 64.0, m, fb == "easy"), x, w)
                        assert close(r["loss"], rf["loss"]) and close(r["grad_weight"], rf["grad_weight"], 1e-7)
                        rf, source = r, "InsightFace arcface_torch ArcFace (2022, true gradient)"
                    elif fb == "none" and gr == "exact" and not edge:
                        def mxarc(x_, w_):
                            cs = cosine(x_, w_)
                            t = torch.cos(torch.acos(cs.gather(1, y[:, None]).clamp(-1, 1)) + m)
                            lg = cs.scatter(1, y[:, None], t) * 64.0
                            return F.cross_entropy(lg, y), lg
                        r = run(mxarc, x, w)
                        assert close(r["loss"], rf["loss"]) and close(r["grad_weight"], rf["grad_weight"], 1e-7)
                        rf, source = r, "torch autograd of s cos(acos(c) + m) (MXNet formula)"
                    add(case, "ArcFace", opts, source, rf)

        # CombinedMargin
        for (m1, m2, m3) in ((1.0, 0.3, 0.2), (0.9, 0.4, 0.15), (2.0, 0.0, 0.0), (1.35, 0.0, 0.0), (1.0, 0.0, 0.35)):
            for gr in ("exact", "straight-through"):
                fn = lambda x_, w_: margin_formula_loss(cosine(x_, w_), y, 64.0, combined_value(m1, m2, m3),
                                                        combined_slope(m1, m2, m3, gr))
                rf = run(fn, x, w)
                source = "formula (MXNet cos(m1 theta + m2) - m3; slope limits at sin theta < 1e-4)"
                if gr == "exact" and not edge:
                    def mx(x_, w_):
                        cs = cosine(x_, w_)
                        t = torch.cos(m1 * torch.acos(cs.gather(1, y[:, None]).clamp(-1, 1)) + m2) - m3
                        lg = cs.scatter(1, y[:, None], t) * 64.0
                        return F.cross_entropy(lg, y), lg
                    r = run(mx, x, w)
                    assert close(r["loss"], rf["loss"]) and close(r["grad_weight"], rf["grad_weight"], 1e-7)
                    rf, source = r, "torch autograd of the MXNet combined margin (arcface_mxnet/train.py)"
                add(case, "CombinedMargin", {"s": 64.0, "m1": m1, "m2": m2, "m3": m3, "gradient": gr}, source, rf)

        # SphereFace: PML (lambda = 0), and the annealed target (sphereface_pytorch's formula)
        for m in (4, 3):
            r = pml_run(pml.SphereFaceLoss(c, d, margin=m, scale=1), x, w)
            add(case, "SphereFace", {"m": m, "lambda": 0}, f"PML SphereFaceLoss(margin={m}, scale=1)", r)
        for lam in (892.8571428571428, 5.0, 0.5):
            def sph(x_, w_, m=4, lam=lam):
                cs = cosine(x_, w_)
                xn = torch.norm(x_, dim=1, keepdim=True)
                cy = cs.gather(1, y[:, None]).clamp(-1, 1)
                with torch.no_grad():
                    k = torch.floor(m * torch.acos(cy) / math.pi)
                cm = 8 * cy**4 - 8 * cy**2 + 1  # T_4 (sphereface_pytorch mlambda[4])
                psi = (-1) ** k * cm - 2 * k
                t = (lam * cy + psi) / (1 + lam)
                lg = cs.scatter(1, y[:, None], t) * xn
                return F.cross_entropy(lg, y), lg
            add(case, "SphereFace", {"m": 4, "lambda": lam}, "sphereface_pytorch AngleLinear+AngleLoss target formula",
                run(sph, x, w))

        # SubCenterArcFace: PML (random / one_class), formula on edges
        K = 3
        wk = f32(torch.randn(c * K, d, generator=g).numpy())
        if edge:
            wk[0] = torch.tensor([2.0, 0, 0, 0, 0])
            wk[1 * K + 2] = torch.tensor([0, 1.5, 0, 0, 0])
        for gr in ("exact", "straight-through"):
            def sc(x_, w_):
                cs = cosine(x_, w_).view(x_.shape[0], c, K).max(dim=2).values
                return margin_formula_loss(cs, y, 64.0, arc_value(0.5, "fallback"), arc_slope(0.5, "fallback", gr))
            rf = run(sc, x, wk)
            source = "formula (max over K, then ArcFace)"
            extra = {}
            if gr == "exact" and not edge:
                lo = pml.SubCenterArcFaceLoss(num_classes=c, embedding_size=d, margin=math.degrees(0.5), scale=64.0, sub_centers=K)
                r = pml_run(lo, x, wk)
                assert close(r["loss"], rf["loss"]) and close(r["grad_weight"], rf["grad_weight"], 1e-7)
                outliers, dom = lo.get_outliers(x, y, threshold=75)
                dom_idx = []
                for cl in range(c):
                    if (y == cl).any():
                        col = dom[:, cl]
                        dom_idx.append(int(np.argmin([float(torch.norm(lo.W[:, cl * K + k] - col)) for k in range(K)])))
                    else:
                        dom_idx.append(-1)
                extra = {"outliers": sorted(outliers.tolist()), "dominant": dom_idx}
                rf, source = r, "PML SubCenterArcFaceLoss(margin=28.65 deg, scale=64, sub_centers=3) + get_outliers(75)"
            add(case, "SubCenterArcFace", {"K": K, "s": 64.0, "m": 0.5, "gradient": gr}, source, rf,
                weight=wk.tolist(), **extra)

        # CenterLoss: 0.5 mean ||x - c_y||^2; gradient and the alpha rule (Wen et al. Algorithm 1)
        centers = f32(torch.randn(c, d, generator=g).numpy())
        r = run(lambda x_, w_: (0.5 * ((x_ - w_[y]) ** 2).sum(1).mean(), None), x, centers)
        diff = centers[y] - x
        delta = torch.zeros_like(centers).index_add_(0, y, diff)
        counts = torch.zeros(c).index_add_(0, y, torch.ones(n))
        updated = centers - 0.5 * delta / (1 + counts)[:, None]
        add(case, "CenterLoss", {"update": "gradient"}, "torch 0.5 mean ||x - c_y||^2; Wen et al. Alg. 1 update",
            r, weight=centers.tolist(), updated_alpha_0_5=updated.tolist())

    doc = {
        "generator": "scripts/reference/heads.py",
        "torch": torch.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "dtype": "float64 (inputs rounded to float32)",
        "weight_layout": "[C, D] (marginlab); PML's [D, C] transposed",
        "inputs": {k: {"embeddings": x.tolist(), "weight": w.tolist(), "labels": y.tolist()} for k, (x, w, y) in inputs.items()},
        "cases": cases,
    }
    with open(out_path, "w") as fh:
        json.dump(doc, fh, indent=0)
        fh.write("\n")
    print(f"wrote {len(cases)} cases to {out_path}")


if __name__ == "__main__":
    main()
