/**
 * Safety of the heads: no NaN/Inf anywhere (zero embeddings, cos = +-1, tiny and huge norms, one class
 * per batch), bad configuration and bad batches rejected before any tensor work with an error naming the
 * field, the value and what is allowed, no tensor leak across training steps, the scale warning channel.
 */
import type { Tensor, Tensor1D, Tensor2D } from "@tensorflow/tfjs-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { tf } from "../src/backend";
import type { CenterLoss } from "../src/losses/center-loss";
import type { CosineHead, Head } from "../src/losses/head";
import { alphaLow, cosFaceScaleBound } from "../src/losses/scale";
import type { SubCenterArcFace } from "../src/losses/subcenter-arcface";
import { type LossWarning, onLossWarning } from "../src/losses/warnings";
import { allFinite, HEADS, type HeadName, makeHead } from "./losses-helpers";

const C = 4;
const D = 6;

/** Every head with every option value (the sweep set). */
const SWEEP: [HeadName, Record<string, unknown>][] = [
  ["Softmax", {}],
  ["Softmax", { bias: true }],
  ["L2Softmax", {}],
  ["L2Softmax", { learnAlpha: true, bias: true }],
  ["NormFace", {}],
  ["NormFace", { learnScale: true }],
  ["SphereFace", {}],
  ["SphereFace", { lambda: 0, m: 4 }],
  ["SphereFace", { lambda: 5, m: 3, scale: 2 }],
  ["SphereFace", { m: 1 }],
  ["CosFace", {}],
  ...(["fallback", "easy", "none"] as const).flatMap((fallback) =>
    (["exact", "straight-through"] as const).map(
      (gradient) => ["ArcFace", { fallback, gradient }] as [HeadName, Record<string, unknown>],
    ),
  ),
  ["CombinedMargin", {}],
  ["CombinedMargin", { m1: 0.9, m2: 0.4, m3: 0.15 }],
  ["CombinedMargin", { m1: 1.35, m2: 0, m3: 0 }],
  ["CombinedMargin", { m1: 2, m2: 0.2, m3: 0, gradient: "straight-through" }],
  ["SubCenterArcFace", {}],
  ["SubCenterArcFace", { K: 1, fallback: "none" }],
  ["SubCenterArcFace", { K: 2, fallback: "easy", gradient: "straight-through" }],
  ["CenterLoss", { update: "gradient" }],
  ["CenterLoss", { update: "alpha" }],
];

/** W rows: class c (and each of its sub-centres) = 2 e_c, so cosines of axis-aligned x are exactly 0 or +-1. */
function axisWeight(rows: number, K: number): number[][] {
  return Array.from({ length: rows }, (_, r) => {
    const row = new Array<number>(D).fill(0);
    row[Math.floor(r / K)] = 2;
    if (r % K) row[C + (r % K) - 1] = 0.5 * (r % K); // sub-centres differ slightly
    return row;
  });
}

/** x rows: along its class (cos +1), against it (cos -1), along another class (non-target cos +1), zero. */
function edgeBatch(scale: number): { x: number[][]; y: number[] } {
  const e = (i: number, v: number) => Array.from({ length: D }, (_, j) => (j === i ? v : 0));
  const x = [e(0, 1), e(1, -1), e(2, 1), new Array<number>(D).fill(0), e(3, 1), e(0, -1)].map((r) =>
    r.map((v) => v * scale),
  );
  return { x, y: [0, 1, 3, 2, 2, 0] };
}

function checkFinite(head: Head, x: Tensor2D, y: Tensor1D, what: string): void {
  const xv = tf.variable(x, true);
  const vars = [xv, ...head.trainableVariables()];
  const { value, grads } = tf.variableGrads(() => head.loss(xv as Tensor as Tensor2D, y), vars);
  assert.ok(allFinite(value.dataSync()), `${what}: loss ${value.dataSync()[0]}`);
  for (const v of vars) assert.ok(allFinite(grads[v.name].dataSync()), `${what}: gradient wrt ${v.name}`);
  const lg = head.logits(x, y);
  const cs = head.cosine(x);
  assert.ok(allFinite(lg.dataSync()), `${what}: logits`);
  assert.ok(allFinite(cs.dataSync()), `${what}: cosine`);
  tf.dispose([value, ...Object.values(grads), xv, lg, cs]);
}

for (const [name, options] of SWEEP) {
  test(`no NaN/Inf: ${name} ${JSON.stringify(options)}`, () => {
    const K = (options.K as number | undefined) ?? (name === "SubCenterArcFace" ? 3 : 1);
    const head = makeHead(name, { numClasses: C, embeddingDim: D, initialWeight: axisWeight(C * K, K), ...options });
    // CenterLoss's value is ||x - c||^2 itself, beyond float32 past |x| ~ 1e18
    const scales = name === "CenterLoss" ? [0, 1e-30, 1e-13, 1, 1e15] : [0, 1e-30, 1e-13, 1, 1e15, 1e30];
    for (const s of scales) {
      const { x, y } = edgeBatch(s);
      const xt = tf.tensor2d(x) as Tensor2D;
      const yt = tf.tensor1d(y, "int32") as Tensor1D;
      checkFinite(head, xt, yt, `|x| = ${s}`);
      tf.dispose([xt, yt]);
    }
    const zeros = tf.zeros([3, D]) as Tensor2D;
    const one = tf.tensor1d([1, 1, 1], "int32") as Tensor1D;
    checkFinite(head, zeros, one, "all-zero embeddings, one class");
    if ("lossFromCosine" in head) {
      const ch = head as CosineHead;
      for (const fill of [1, -1]) {
        const cos = tf.fill([3, C], fill) as Tensor2D;
        const g = tf.grad((c: Tensor) => ch.lossFromCosine(c as Tensor2D, one))(cos);
        const lg = ch.logitsFromCosine(cos, one);
        assert.ok(allFinite(g.dataSync()) && allFinite(lg.dataSync()), `cos = ${fill}`);
        tf.dispose([cos, g, lg]);
      }
    }
    tf.dispose([zeros, one]);
    head.dispose();
  });
}

const BAD: [HeadName, Record<string, unknown>, string][] = [
  ["NormFace", { s: 0 }, "s"],
  ["NormFace", { s: -3 }, "s"],
  ["CosFace", { s: Number.NaN }, "s"],
  ["ArcFace", { s: -64 }, "s"],
  ["L2Softmax", { alpha: 0 }, "alpha"],
  ["ArcFace", { m: 2 }, "m"],
  ["ArcFace", { m: -0.1 }, "m"],
  ["CosFace", { m: 1.5 }, "m"],
  ["CombinedMargin", { m1: 0 }, "m1"],
  ["CombinedMargin", { m2: 2 }, "m2"],
  ["CombinedMargin", { m3: 1.2 }, "m3"],
  ["SphereFace", { m: 2.5 }, "m"],
  ["SphereFace", { m: 0 }, "m"],
  ["SphereFace", { lambda: -1 }, "lambda"],
  ["SphereFace", { lambda: { base: 1000, gamma: 0.12, power: 1 } }, "lambda.lambdaMin"],
  ["SubCenterArcFace", { K: 0 }, "K"],
  ["SubCenterArcFace", { K: 1.5 }, "K"],
  ["ArcFace", { fallback: "clamp" }, "fallback"],
  ["ArcFace", { gradient: "detached" }, "gradient"],
  ["CenterLoss", { alpha: 2 }, "alpha"],
  ["CenterLoss", { update: "sgd" }, "update"],
  ["ArcFace", { numClasses: 1 }, "numClasses"],
  ["Softmax", { numClasses: 2.5 }, "numClasses"],
  ["NormFace", { embeddingDim: 0 }, "embeddingDim"],
  ["CosFace", { margin: 0.35 }, "margin"],
  ["ArcFace", { initialWeight: [[1, 2]] }, "initialWeight"],
];

for (const [name, bad, field] of BAD) {
  test(`bad configuration: ${name} ${JSON.stringify(bad)} names ${field}`, () => {
    const before = tf.memory().numTensors;
    let message = "";
    try {
      makeHead(name, { numClasses: C, embeddingDim: D, ...bad });
    } catch (e) {
      message = (e as Error).message;
    }
    assert.ok(message.includes(`${name}`), message);
    assert.ok(message.includes(`${field} = `), `names the field: ${message}`);
    assert.ok(/must|unknown/.test(message), `says what is allowed: ${message}`);
    assert.is(tf.memory().numTensors, before, "no tensor created");
  });
}

test("bad batches: labels out of range / not integers, shape mismatches (before any tensor work)", () => {
  for (const name of Object.keys(HEADS) as HeadName[]) {
    const head = makeHead(name, { numClasses: C, embeddingDim: D });
    const x = tf.ones([3, D]) as Tensor2D;
    const cases: [Tensor2D, Tensor1D, RegExp][] = [
      [x, tf.tensor1d([0, 4, 1], "int32") as Tensor1D, /labels\[1\] = 4 .*must be in \[0, 3\]/],
      [x, tf.tensor1d([0, -1, 1], "int32") as Tensor1D, /labels\[1\] = -1/],
      [x, tf.tensor1d([0, 1.5, 1], "float32") as Tensor1D, /labels\[1\] = 1.5 .*integer/],
      [x, tf.tensor1d([0, 1], "int32") as Tensor1D, /labels.shape = \[2\] .*must be \[3\]/],
      [
        tf.ones([3, D + 1]) as Tensor2D,
        tf.tensor1d([0, 1, 2], "int32") as Tensor1D,
        /embeddings.shape = \[3,7\] .*must be \[B, 6\]/,
      ],
      [tf.ones([D]) as unknown as Tensor2D, tf.tensor1d([0, 1, 2], "int32") as Tensor1D, /embeddings.shape/],
    ];
    for (const [xe, ye, re] of cases) {
      const before = tf.memory().numTensors;
      assert.throws(() => head.loss(xe, ye), re, `${name} ${re}`);
      assert.is(tf.memory().numTensors, before, `${name}: no tensor created`);
      if (xe !== x) xe.dispose();
      ye.dispose();
    }
    x.dispose();
    head.dispose();
  }
});

test("no tensor leak: forward/backward/update loops keep tf.memory().numTensors constant", () => {
  for (const [name, options] of SWEEP) {
    const head = makeHead(name, { numClasses: C, embeddingDim: D, ...options });
    const x = tf.randomNormal([5, D], 0, 1, "float32", 3) as Tensor2D;
    const y = tf.tensor1d([0, 1, 1, 3, 2], "int32") as Tensor1D;
    const opt = tf.train.momentum(0.05, 0.9);
    const step = () => {
      head.setStep?.(1);
      const vars = head.trainableVariables();
      if (vars.length) {
        const l = opt.minimize(() => head.loss(x, y), true, vars);
        l?.dispose();
      } else {
        head.loss(x, y).dispose();
      }
      if (name === "CenterLoss" && options.update === "alpha") (head as CenterLoss).updateCenters(x, y);
      tf.dispose([head.logits(x, y), head.cosine(x)]);
      if ("lossFromCosine" in head) {
        const cos = tf.tidy(() => tf.clipByValue(tf.randomNormal([5, C], 0, 0.5, "float32", 1), -1, 1)) as Tensor2D;
        tf.dispose([(head as CosineHead).lossFromCosine(cos, y), (head as CosineHead).logitsFromCosine(cos, y), cos]);
      }
    };
    step(); // the optimizer creates its slots on the first step
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) step();
    assert.is(tf.memory().numTensors, before, `${name} ${JSON.stringify(options)}`);
    opt.dispose();
    tf.dispose([x, y]);
    head.dispose();
  }
});

test("scale bounds: alpha_low and CosFace's s_low (values from the formulas)", () => {
  assert.ok(Math.abs(alphaLow(10, 0.9) - Math.log((0.9 * 8) / 0.1)) < 1e-12);
  assert.ok(Math.abs(alphaLow(1000, 0.9) - 9.1) < 0.01, "research/papers.md table: 9.10");
  assert.ok(Math.abs(cosFaceScaleBound(10572, 0.9) - 11.46) < 0.01, "table: 11.46");
  assert.ok(Math.abs(cosFaceScaleBound(10, 0.9) - 0.9 * Math.log(81)) < 1e-12);
  assert.throws(() => alphaLow(2), /numClasses = 2/);
  assert.throws(() => cosFaceScaleBound(100, 1), /p = 1/);
});

test("scale warning channel: own listener, global listeners, never the console", () => {
  const printed: unknown[] = [];
  const saved = { log: console.log, warn: console.warn, error: console.error };
  console.log = console.warn = console.error = (...a: unknown[]) => printed.push(a);
  const global: LossWarning[] = [];
  const off = onLossWarning((w) => global.push(w));
  try {
    const own: LossWarning[] = [];
    const a = makeHead("ArcFace", {
      numClasses: 1000,
      embeddingDim: 4,
      s: 4,
      onWarning: (w: LossWarning) => own.push(w),
    });
    assert.is(own.length, 1);
    assert.is(own[0].code, "scale-below-bound");
    assert.is(own[0].value, 4);
    assert.ok(Math.abs(own[0].bound - cosFaceScaleBound(1000)) < 1e-12);
    assert.is(global.length, 0, "own listener takes it");
    a.dispose();
    const Ctor = HEADS.L2Softmax;
    const b = new Ctor({ numClasses: 10, embeddingDim: 4, alpha: 4 });
    assert.is(global.length, 1, "global listener");
    assert.ok(Math.abs(global[0].bound - alphaLow(10)) < 1e-12);
    assert.is(b.warnings.length, 1);
    b.dispose();
    const ok = new HEADS.CosFace({ numClasses: 1000, embeddingDim: 4, s: 64 });
    assert.is(ok.warnings.length, 0, "s = 64 is above the bound");
    ok.dispose();
    for (const [name, opts] of [
      ["NormFace", { s: 2 }],
      ["CosFace", { s: 2 }],
      ["CombinedMargin", { s: 2 }],
      ["SubCenterArcFace", { s: 2 }],
    ] as const) {
      const h = new HEADS[name]({ numClasses: 100, embeddingDim: 4, ...opts });
      assert.is(h.warnings.length, 1, name);
      h.dispose();
    }
  } finally {
    off();
    Object.assign(console, saved);
  }
  assert.is(printed.length, 0, "nothing printed");
});

test("SubCenterArcFace.clean: dominant sub-centre and outliers beyond the threshold angle", () => {
  // class 0: sub-centre 1 along e0; class 1: sub-centre 0 along e1 (K = 2, D = 3)
  const w = [
    [0, 0, 1],
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, -1],
  ];
  const head = makeHead("SubCenterArcFace", {
    numClasses: 2,
    embeddingDim: 3,
    K: 2,
    initialWeight: w,
  }) as SubCenterArcFace;
  const deg = (d: number) => (d * Math.PI) / 180;
  const x = tf.tensor2d([
    [1, 0, 0.1], // class 0, near sub-centre 1
    [1, 0.2, 0], // class 0, near sub-centre 1
    [Math.cos(deg(80)), Math.sin(deg(80)), 0], // class 0, 80 deg from sub-centre 1 (outlier at 75)
    [0.1, 0.1, 1], // class 0, nearest to sub-centre 0 (but the dominant is 1): ~84 deg from e0
    [0, 1, 0], // class 1
  ]) as Tensor2D;
  const y = tf.tensor1d([0, 0, 0, 0, 1], "int32") as Tensor1D;
  const r = head.clean(x, y);
  assert.equal(Array.from(r.dominant), [1, 0]);
  assert.equal(r.outlier, [false, false, true, true, false]);
  assert.ok(Math.abs(r.cosineToDominant[2] - Math.cos(deg(80))) < 1e-6);
  assert.equal(head.clean(x, y, 90).outlier, [false, false, false, false, false]);
  assert.throws(() => head.clean(x, y, 200), /thresholdDegrees = 200/);
  tf.dispose([x, y]);
  head.dispose();
});

test("CenterLoss alpha mode: centres not trainable, updateCenters moves c_y towards its samples", () => {
  const head = makeHead("CenterLoss", { numClasses: 3, embeddingDim: 2, update: "alpha", alpha: 0.5 }) as CenterLoss;
  assert.equal(head.trainableVariables(), []);
  const x = tf.tensor2d([
    [2, 0],
    [4, 0],
    [0, 3],
  ]) as Tensor2D;
  const y = tf.tensor1d([0, 0, 2], "int32") as Tensor1D;
  assert.ok(Math.abs(head.loss(x, y).dataSync()[0] - (0.5 * (4 + 16 + 9)) / 3) < 1e-5);
  head.updateCenters(x, y);
  // c0 = 0 - 0.5 * ((0-2) + (0-4)) / (1 + 2) = 1; c2 = 0 - 0.5 * (0 - 3) / 2 = 0.75
  assert.equal(Array.from(head.weight.dataSync()), [1, 0, 0, 0, 0, 0.75]);
  const gradient = makeHead("CenterLoss", { numClasses: 3, embeddingDim: 2, update: "gradient" });
  assert.throws(() => (gradient as CenterLoss).updateCenters(x, y), /update = "alpha"/);
  assert.is(gradient.trainableVariables().length, 1);
  tf.dispose([x, y]);
  head.dispose();
  gradient.dispose();
});

test.run();
