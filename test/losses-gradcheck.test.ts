/**
 * Finite differences against the analytic gradients, for every head and option (float32, central
 * differences with Richardson extrapolation along random directions in x, W and every extra variable).
 * Inputs put the target angles at 25, 70, 110, 140 and 170 degrees, away from every kink (easy margin at
 * 90, ArcFace's fallback at 180 - m, ...), so the loss is smooth within the step. Straight-through options
 * are not the gradient of their loss by design; they are checked against s (softmax - onehot) / B.
 */
import type { Tensor, Tensor1D, Tensor2D, Variable } from "@tensorflow/tfjs-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { tf } from "../src/backend";
import type { CosineHead } from "../src/losses/head";
import { extraVariables, type HeadName, makeHead } from "./losses-helpers";

const D = 6;
const C = 4;
const ANGLES = [25, 70, 110, 140, 170].map((d) => (d * Math.PI) / 180);
const LABELS = [0, 1, 3, 1, 2];

/** Deterministic pseudo-random numbers (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

/** W rows random; x_i at ANGLES[i] from the centre of its label (rows = classes * K; sub-centre 0 is the target's). */
function inputs(rows: number, K: number, seed: number): { x: number[][]; w: number[][] } {
  const r = rng(seed);
  const w = Array.from({ length: rows }, () => Array.from({ length: D }, () => gauss(r)));
  const x = LABELS.map((y, i) => {
    const c = w[y * K];
    const n = Math.hypot(...c);
    const u = c.map((v) => v / n);
    let v = Array.from({ length: D }, () => gauss(r));
    const dot = v.reduce((s, vi, j) => s + vi * u[j], 0);
    v = v.map((vi, j) => vi - dot * u[j]);
    const nv = Math.hypot(...v);
    const norm = 1.5 + r() * 2;
    return u.map((ui, j) => norm * (Math.cos(ANGLES[i]) * ui + (Math.sin(ANGLES[i]) * v[j]) / nv));
  });
  return { x, w };
}

function directional(f: () => number, v: Variable, dir: Tensor, h: number): number {
  const base = v.clone();
  const at = (t: number): number => {
    tf.tidy(() => v.assign(tf.add(base, tf.mul(dir, t))));
    return f();
  };
  const d1 = (at(h) - at(-h)) / (2 * h);
  const d2 = (at(h / 2) - at(-h / 2)) / h;
  v.assign(base);
  base.dispose();
  return (4 * d2 - d1) / 3;
}

interface Spec {
  head: HeadName;
  options: Record<string, unknown>;
  K?: number;
}

const SPECS: Spec[] = [
  { head: "Softmax", options: {} },
  { head: "Softmax", options: { bias: true, initialBias: [0.1, -0.2, 0.3, 0] } },
  { head: "L2Softmax", options: { alpha: 6 } },
  { head: "L2Softmax", options: { alpha: 6, learnAlpha: true, bias: true } },
  { head: "NormFace", options: { s: 8 } },
  { head: "NormFace", options: { s: 8, learnScale: true } },
  { head: "SphereFace", options: { m: 4, lambda: 0 } },
  { head: "SphereFace", options: { m: 3, lambda: 5 } },
  { head: "SphereFace", options: { m: 2, scale: 0.7 } },
  { head: "SphereFace", options: {} },
  { head: "CosFace", options: { s: 8, m: 0.35 } },
  ...(["fallback", "easy", "none"] as const).map((fallback) => ({
    head: "ArcFace" as HeadName,
    options: { s: 8, m: 0.5, fallback, gradient: "exact" },
  })),
  { head: "CombinedMargin", options: { s: 8, m1: 1, m2: 0.3, m3: 0.2 } },
  { head: "CombinedMargin", options: { s: 8, m1: 0.9, m2: 0.4, m3: 0.15 } },
  { head: "CombinedMargin", options: { s: 8, m1: 1.35, m2: 0, m3: 0 } },
  { head: "CombinedMargin", options: { s: 8, m1: 2, m2: 0.1, m3: 0.1 } },
  { head: "SubCenterArcFace", options: { s: 8, m: 0.5, K: 3 }, K: 3 },
  { head: "SubCenterArcFace", options: { s: 8, m: 0.5, K: 1, fallback: "none" }, K: 1 },
  { head: "CenterLoss", options: { update: "gradient" } },
];

for (const [n, spec] of SPECS.entries()) {
  test(`finite differences: ${spec.head} ${JSON.stringify(spec.options)}`, () => {
    const K = spec.K ?? 1;
    const { x: xs, w } = inputs(C * K, K, 100 + n);
    const head = makeHead(spec.head, { numClasses: C, embeddingDim: D, initialWeight: w, ...spec.options });
    const xv = tf.variable(tf.tensor2d(xs), true);
    const y = tf.tensor1d(LABELS, "int32") as Tensor1D;
    const lossAt = (): number => {
      if (spec.head === "SphereFace") head.setStep?.(0);
      const l = head.loss(xv as Tensor as Tensor2D, y);
      const v = l.dataSync()[0];
      l.dispose();
      return v;
    };
    if (spec.head === "SphereFace") head.setStep?.(0);
    const vars = [xv, head.weight, ...extraVariables(head)];
    const { value, grads } = tf.variableGrads(() => head.loss(xv as Tensor as Tensor2D, y), vars);
    const r = rng(7 + n);
    for (const v of vars) {
      const dir = tf.tensor(
        Array.from({ length: v.size }, () => gauss(r)),
        v.shape,
      );
      const analytic = tf.sum(tf.mul(grads[v.name], dir)).dataSync()[0];
      const h = v.rank === 0 ? 1e-2 : 2e-3;
      const numeric = directional(lossAt, v, dir, h);
      const scale = Math.max(
        Math.abs(analytic),
        tf.norm(grads[v.name]).dataSync()[0] * tf.norm(dir).dataSync()[0] * 0.05,
        1e-4,
      );
      assert.ok(Math.abs(analytic - numeric) <= 2e-3 * scale, `${v.name}: analytic ${analytic} vs numeric ${numeric}`);
      dir.dispose();
    }
    tf.dispose([value, ...Object.values(grads), xv, y]);
    head.dispose();
  });
}

for (const [name, extra] of [
  ["ArcFace", { fallback: "fallback" }],
  ["ArcFace", { fallback: "easy" }],
  ["ArcFace", { fallback: "none" }],
  ["CombinedMargin", { m1: 1.35, m2: 0.2, m3: 0.1 }],
  ["SubCenterArcFace", { K: 2 }],
] as const) {
  test(`straight-through: ${name} ${JSON.stringify(extra)} d loss / d cos = s (softmax(logits) - onehot) / B`, () => {
    const head = makeHead(name, {
      numClasses: 6,
      embeddingDim: 3,
      s: 16,
      gradient: "straight-through",
      ...extra,
    }) as CosineHead;
    const r = rng(3);
    const cos = tf.tensor2d(Array.from({ length: 4 }, () => Array.from({ length: 6 }, () => 2 * r() - 1)));
    const y = tf.tensor1d([0, 5, 5, 2], "int32") as Tensor1D;
    const g = tf.grad((c: Tensor) => head.lossFromCosine(c as Tensor2D, y))(cos);
    const want = tf.tidy(() =>
      tf.div(tf.mul(tf.sub(tf.softmax(head.logitsFromCosine(cos as Tensor2D, y)), tf.oneHot(y, 6)), 16), 4),
    );
    const diff = tf.max(tf.abs(tf.sub(g, want))).dataSync()[0];
    assert.ok(diff < 1e-5, `max diff ${diff}`);
    tf.dispose([cos, y, g, want]);
    head.dispose();
  });
}

test.run();
