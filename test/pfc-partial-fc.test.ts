import { test } from "uvu";
import * as assert from "uvu/assert";
import { tf } from "../src/backend";
import { ArcFace } from "../src/losses/arcface";
import { CosFace } from "../src/losses/cosface";
import { exclusiveStochastic } from "../src/losses/exclusive";
import type { CosineHead } from "../src/losses/head";
import { LOSS_CAP, meanLoss } from "../src/losses/margin-kernel";
import { softmaxCrossEntropyRows as sparseSoftmaxCrossEntropy } from "../src/losses/margin-softmax";
import { NormFace } from "../src/losses/normface";
import { PartialFC } from "../src/losses/partial-fc";
import { numSampled, seededUniform, selectActive } from "../src/losses/partial-fc-sampling";
import marginVectors from "./fixtures/vectors/insightface_combined_margin.json";
import pfcVector from "./fixtures/vectors/insightface_pfc_sampling.json";

type T1 = import("@tensorflow/tfjs-node").Tensor1D;
type T2 = import("@tensorflow/tfjs-node").Tensor2D;

function close(a: ArrayLike<number>, b: ArrayLike<number>, rtol: number, atol: number, what: string): void {
  assert.is(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    if (!(Math.abs(a[i] - b[i]) <= atol + rtol * Math.abs(b[i])))
      assert.unreachable(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

const C = 24;
const D = 8;
const B = 7;
const LABELS = [3, 11, 11, 0, 23, 7, 3];

function batch(seed: number): { x: T2; y: T1 } {
  return { x: tf.randomNormal([B, D], 0, 1, "float32", seed) as T2, y: tf.tensor1d(LABELS, "int32") };
}

/** The wrapped head's own loss on a head holding only the active rows: value and grads wrt those rows and x. */
function headReference(
  make: (init: T2) => CosineHead,
  w: Float32Array,
  index: Int32Array,
  x: T2,
  remapped: Int32Array,
) {
  const rows = new Float32Array(index.length * D);
  for (let k = 0; k < index.length; k++) rows.set(w.subarray(index[k] * D, index[k] * D + D), k * D);
  const init = tf.tensor2d(rows, [index.length, D]);
  const head = make(init);
  const y = tf.tensor1d(remapped, "int32");
  const { value, grads } = tf.variableGrads(() => head.loss(x, y), [head.weight]);
  const dx = tf.grad((xx) => head.loss(xx as T2, y))(x);
  const out = { loss: value.dataSync()[0], dw: grads[head.weight.name].dataSync(), dx: dx.dataSync() };
  tf.dispose([init, y, value, dx, grads[head.weight.name]]);
  head.dispose();
  return out;
}

test("sampling replays InsightFace PartialFC_V2.sample on the research vector", () => {
  const head = new CosFace({ numClasses: pfcVector.num_local, embeddingDim: 4 });
  const pfc = new PartialFC({ head, sampleRate: pfcVector.sample_rate });
  const set = pfc.sample(pfcVector.local_labels, pfcVector.uniform_scores);
  assert.equal(Array.from(set.index), pfcVector.selected_index);
  assert.equal(Array.from(set.remapped), pfcVector.remapped_labels);
  assert.equal(Array.from(set.positives), pfcVector.positive_local_labels);
  assert.is(numSampled(pfcVector.num_local, pfcVector.sample_rate), pfcVector.num_sample);
  assert.is(numSampled(100, 0.29), 28, "same truncation as Python's int(0.29 * 100)");
  head.dispose();
});

test("seeded sampling: size trunc(rC), positives kept, sorted, re-indexed, reproducible, uniform negatives", () => {
  const labels = [2, 9, 9, 4];
  const draw = (seed: number) => selectActive(labels, 30, 0.3, seededUniform(seed));
  const a = draw(1);
  assert.is(a.index.length, 9);
  for (const p of [2, 4, 9]) assert.ok(a.index.includes(p), `positive ${p} kept`);
  for (let i = 1; i < a.index.length; i++) assert.ok(a.index[i] > a.index[i - 1], "sorted, distinct");
  labels.forEach((l, i) => {
    assert.is(a.index[a.remapped[i]], l, "re-indexed");
  });
  assert.equal(Array.from(draw(1).index), Array.from(a.index), "same seed, same set");
  assert.not.equal(Array.from(draw(2).index), Array.from(a.index), "other seed, other set");
  // each of the 27 negatives is kept with probability 6/27
  const counts = new Array(30).fill(0);
  const rand = seededUniform(5);
  const n = 3000;
  for (let t = 0; t < n; t++) for (const c of selectActive(labels, 30, 0.3, rand).index) counts[c]++;
  for (let c = 0; c < 30; c++) {
    if ([2, 4, 9].includes(c)) assert.is(counts[c], n);
    else assert.ok(Math.abs(counts[c] / n - 6 / 27) < 0.04, `class ${c}: ${counts[c] / n}`);
  }
  // more positives than trunc(rC): the positives alone; r = 1: every class, labels unchanged
  assert.equal(Array.from(selectActive([5, 1, 7], 30, 0.05, rand).index), [1, 5, 7]);
  const full = selectActive([5, 1], 6, 1, rand);
  assert.equal(Array.from(full.index), [0, 1, 2, 3, 4, 5]);
  assert.equal(Array.from(full.remapped), [5, 1]);
});

test("native fused cross-entropy and the loss cap match InsightFace's reported loss and gradient (vector)", () => {
  const v = marginVectors;
  const y = tf.tensor1d(v.labels, "int32");
  for (const key of ["arcface_m2_0_5", "cosface_m3_0_4"] as const) {
    const e = v[key] as { logits: number[][]; loss_ce: number; loss_pfc_clamped: number; grad_cos: number[][] };
    const [rows, p] = sparseSoftmaxCrossEntropy(tf.tensor2d(e.logits), y);
    const r = rows.dataSync();
    close([meanLoss(r, false)], [e.loss_ce], 1e-5, 0, `${key} loss_ce`);
    close([meanLoss(r, true)], [e.loss_pfc_clamped], 1e-5, 0, `${key} loss_pfc_clamped`);
    // both margins' gradient wrt cos is s (p - onehot) / B (current InsightFace: straight-through)
    const g = tf.mul(p, v.s / v.labels.length).dataSync();
    close(g, e.grad_cos.flat(), 1e-4, 1e-5, `${key} grad_cos`);
    tf.dispose([rows, p]);
  }
  assert.ok(Math.abs(LOSS_CAP - 69.0775527898) < 1e-9);
  y.dispose();
});

const HEADS: [string, (init?: T2, c?: number) => CosineHead][] = [
  [
    "ArcFace (exact gradient)",
    (init, c = C) => new ArcFace({ numClasses: c, embeddingDim: D, seed: 1, initialWeight: init }),
  ],
  [
    "ArcFace (straight-through, no fallback)",
    (init, c = C) =>
      new ArcFace({
        numClasses: c,
        embeddingDim: D,
        seed: 1,
        initialWeight: init,
        gradient: "straight-through",
        fallback: "none",
      }),
  ],
  ["CosFace", (init, c = C) => new CosFace({ numClasses: c, embeddingDim: D, seed: 1, initialWeight: init })],
  ["NormFace", (init, c = C) => new NormFace({ numClasses: c, embeddingDim: D, seed: 1, initialWeight: init })],
];

test("loss and gradients equal the wrapped head's own loss on the active rows", () => {
  const { x, y } = batch(3);
  for (const [name, make] of HEADS) {
    for (const fused of [true]) {
      const head = make();
      const pfc = new PartialFC({ head, sampleRate: 0.5, seed: 9, lossCap: false });
      const g = pfc.gradients(x, y);
      assert.is(g.active.index.length, 12);
      const ref = headReference(
        (init) => make(init, g.active.index.length),
        pfc.weightValues(),
        g.active.index,
        x,
        g.active.remapped,
      );
      close([g.loss], [ref.loss], 1e-5, 1e-6, `${name} fused=${fused} loss`);
      close(g.weightGrad, ref.dw, 1e-3, 2e-5, `${name} fused=${fused} dW`);
      close(g.embeddingGrad.dataSync(), ref.dx, 1e-3, 2e-5, `${name} fused=${fused} dx`);
      g.embeddingGrad.dispose();
      head.dispose();
    }
  }
  tf.dispose([x, y]);
});

test("rows outside the active set get exactly zero gradient; frozen semantics leaves them untouched", () => {
  const { x, y } = batch(4);
  const head = HEADS[0][1]();
  const pfc = new PartialFC({ head, sampleRate: 0.25, seed: 2, optimizer: { semantics: "frozen", learningRate: 0.5 } });
  // dense gradient through a gather of the full W: unsampled rows must come out exactly 0
  const set = pfc.sample(LABELS);
  const w0 = pfc.weightValues();
  const dense = tf.tidy(() => {
    const w = tf.tensor2d(w0, [C, D]);
    const yy = tf.tensor1d(set.remapped, "int32");
    return tf
      .grad((ww) => {
        const wa = tf.gather(ww, tf.tensor1d(set.index, "int32")) as T2;
        const wn = tf.div(wa, tf.norm(wa, 2, 1, true));
        const cos = tf.clipByValue(tf.matMul(tf.div(x, tf.norm(x, 2, 1, true)), wn, false, true), -1, 1) as T2;
        return tf.losses.softmaxCrossEntropy(tf.oneHot(yy, set.index.length), head.logitsFromCosine(cos, yy));
      })(w)
      .arraySync() as number[][];
  });
  const g = pfc.gradients(x, y, set);
  g.embeddingGrad.dispose();
  for (let c = 0; c < C; c++) {
    const k = set.index.indexOf(c);
    if (k < 0)
      assert.ok(
        dense[c].every((v) => v === 0),
        `row ${c} zero in the dense reference`,
      );
    else close(g.weightGrad.subarray(k * D, k * D + D), dense[c], 1e-3, 2e-5, `row ${c}`);
  }
  for (let t = 0; t < 3; t++) {
    const before = pfc.weightValues();
    const m0 = pfc.momentumValues();
    const s = pfc.sample(LABELS);
    pfc.update(x, y, { active: s });
    const after = pfc.weightValues();
    const m1 = pfc.momentumValues();
    for (let c = 0; c < C; c++) {
      const rowA = Array.from(after.subarray(c * D, c * D + D));
      const rowB = Array.from(before.subarray(c * D, c * D + D));
      if (s.index.includes(c)) assert.not.equal(rowA, rowB, `active row ${c} moved`);
      else {
        assert.equal(rowA, rowB, `frozen row ${c} unchanged`);
        assert.equal(Array.from(m1.subarray(c * D, c * D + D)), Array.from(m0.subarray(c * D, c * D + D)));
      }
    }
  }
  head.dispose();
  tf.dispose([x, y]);
});

test("dense semantics (V2): lazy catch-up equals PyTorch SGD stepping every row, lr changing", () => {
  const { x, y } = batch(5);
  const head = HEADS[2][1]();
  const opt = { learningRate: 0.2, momentum: 0.9, weightDecay: 0.05, semantics: "dense" as const };
  const pfc = new PartialFC({ head, sampleRate: 0.25, seed: 7, optimizer: opt });
  const w = Float64Array.from(pfc.weightValues());
  const m = new Float64Array(C * D);
  const lrs = [0.2, 0.2, 0.1, 0.3, 0.05, 0.2];
  for (const lr of lrs) {
    const set = pfc.sample(LABELS);
    // the reference: the full dense gradient (zero for unsampled rows) and torch.optim.SGD on every row
    const g = pfc.gradients(x, y, set);
    g.embeddingGrad.dispose();
    const full = new Float64Array(C * D);
    set.index.forEach((c, k) => {
      for (let i = 0; i < D; i++) full[c * D + i] = g.weightGrad[k * D + i];
    });
    for (let i = 0; i < C * D; i++) {
      m[i] = opt.momentum * m[i] + full[i] + opt.weightDecay * w[i];
      w[i] -= lr * m[i];
    }
    pfc.learningRate = lr;
    pfc.update(x, y, { active: set });
  }
  close(pfc.weightValues(), w, 1e-4, 1e-6, "W");
  close(pfc.momentumValues(), m, 1e-4, 1e-6, "momentum");
  head.dispose();
  tf.dispose([x, y]);
});

test("stochastic exclusive term inside the step: value and gradient of exclusiveStochastic on the active set", () => {
  const { x, y } = batch(6);
  const make = HEADS[3][1];
  const plain = new PartialFC({ head: make(), sampleRate: 0.5, seed: 3 });
  const withEx = new PartialFC({ head: make(), sampleRate: 0.5, seed: 3, exclusiveWeight: 0.7 });
  const set = plain.sample(LABELS);
  const a = plain.gradients(x, y, set);
  const b = withEx.gradients(x, y, set);
  assert.is(a.exclusive, null);
  const local = Array.from(set.positives, (p) => set.index.indexOf(p));
  const wa = tf.tensor2d(withEx.weightValues(set.index), [set.index.length, D]);
  const { value, grads } = tf.valueAndGrads((w) => exclusiveStochastic(w as T2, local))([wa]);
  close([b.exclusive ?? Number.NaN], [value.dataSync()[0]], 1e-6, 1e-7, "exclusive value");
  const want = Array.from(a.weightGrad, (v, i) => v + 0.7 * grads[0].dataSync()[i]);
  close(b.weightGrad, want, 1e-4, 1e-6, "weight gradient with the exclusive term");
  assert.ok(
    b.weightGrad.some((v, i) => v !== a.weightGrad[i]),
    "the exclusive term changes the gradient",
  );
  // the weight may change between steps: switched off, the same step as without the term
  withEx.exclusiveWeight = 0;
  const c = withEx.gradients(x, y, set);
  assert.is(c.exclusive, null);
  close(c.weightGrad, a.weightGrad, 1e-6, 1e-9, "exclusiveWeight set to 0");
  assert.throws(() => {
    withEx.exclusiveWeight = -1;
  }, /exclusiveWeight = -1 is not valid/);
  assert.is(withEx.exclusiveWeight, 0, "a rejected value leaves the weight as it was");
  tf.dispose([x, y, wa, value, grads[0], a.embeddingGrad, b.embeddingGrad, c.embeddingGrad]);
  plain.head.dispose();
  withEx.head.dispose();
});

/**
 * The filtered loss by autodiff: the head's logits on cosines times a constant 0/1 mask (entries above t
 * with the targets kept, built off the tape, so filtered entries pass no gradient); value and grads wrt W, x.
 */
function filteredReference(head: CosineHead, w: Float32Array, x: T2, labels: T1, t: number) {
  const out = tf.tidy(() => {
    const wt = tf.tensor2d(w, [C, D]);
    const onehot = tf.oneHot(labels, C);
    const unit = (v: T2) => tf.div(v, tf.norm(v, 2, 1, true)) as T2;
    const mask = tf.maximum(tf.cast(tf.lessEqual(tf.matMul(unit(x), unit(wt), false, true), t), "float32"), onehot);
    const f = (ww: T2, xx: T2) => {
      const cos = tf.mul(tf.clipByValue(tf.matMul(unit(xx), unit(ww), false, true), -1, 1), mask) as T2;
      const logits = head.logitsFromCosine(cos, labels);
      return tf.mean(tf.sub(tf.logSumExp(logits, 1), tf.sum(tf.mul(logits, onehot), 1)));
    };
    const { value, grads } = tf.valueAndGrads(
      (ww, xx) => f(ww as T2, xx as T2) as import("@tensorflow/tfjs-node").Scalar,
    )([wt, x]);
    return [value, grads[0], grads[1]];
  });
  const [loss, dw, dx] = out.map((v) => v.dataSync());
  tf.dispose(out);
  return { loss: loss[0], dw, dx };
}

test("inter-class filter: the loss with non-target cosines above t set to 0, which pass no gradient (autodiff reference)", () => {
  const { x, y } = batch(8);
  const t = 0.3;
  const s0 = 16;
  const m0 = 0.35;
  const make = () => new CosFace({ numClasses: C, embeddingDim: D, seed: 5, s: s0, m: m0 });
  const run = (filter: number) => {
    const pfc = new PartialFC({ head: make(), sampleRate: 1, lossCap: false, interclassFilter: filter });
    const g = pfc.gradients(x, y);
    return { pfc, g };
  };
  const a = run(t);
  const b = filteredReference(a.pfc.head, a.pfc.weightValues(), x, y, t);
  close([a.g.loss], [b.loss], 1e-5, 1e-6, "loss vs autodiff reference");
  close(a.g.weightGrad, b.dw, 1e-3, 1e-6, "dW vs autodiff reference");
  close(a.g.embeddingGrad.dataSync(), b.dx, 1e-3, 1e-6, "dx vs autodiff reference");
  // host reference of the value, and which rows can have a gradient
  const w = a.pfc.weightValues();
  const xs = x.arraySync();
  const unit = (v: ArrayLike<number>) => {
    const n = Math.hypot(...Array.from(v));
    return Array.from(v, (e) => e / n);
  };
  let loss = 0;
  let filtered = 0;
  const touched = new Set<number>(LABELS);
  xs.forEach((row, i) => {
    const xi = unit(row);
    const logits = Array.from({ length: C }, (_, j) => {
      const wj = unit(w.subarray(j * D, j * D + D));
      const c = xi.reduce((acc, e, k) => acc + e * wj[k], 0);
      if (j === LABELS[i]) return s0 * (c - m0);
      if (c > t) {
        filtered++;
        return 0;
      }
      touched.add(j);
      return s0 * c;
    });
    const mx = Math.max(...logits);
    loss += mx + Math.log(logits.reduce((acc, z) => acc + Math.exp(z - mx), 0)) - logits[LABELS[i]];
  });
  assert.ok(filtered > 5, `the threshold filters some entries (${filtered})`);
  close([a.g.loss], [loss / B], 1e-5, 1e-6, "loss vs host reference");
  for (let j = 0; j < C; j++) {
    if (touched.has(j)) continue;
    const row = a.g.weightGrad.subarray(j * D, j * D + D);
    assert.ok(
      row.every((v) => v === 0),
      `class ${j}: filtered for every sample, no gradient`,
    );
  }
  // off, and a threshold no cosine exceeds, give the unfiltered step
  const off = run(0);
  const high = run(0.9999);
  assert.ok(Math.abs(off.g.loss - a.g.loss) > 1e-3, "the filter changes the loss");
  close([high.g.loss], [off.g.loss], 1e-6, 1e-7, "t near 1 = off");
  assert.throws(() => run(1), /interclassFilter = 1 is not valid/);
  for (const r of [a, off, high]) {
    r.g.embeddingGrad.dispose();
    r.pfc.head.dispose();
  }
  tf.dispose([x, y]);
});

test("bad configuration names the field, the value and what is allowed", () => {
  const head = HEADS[2][1]();
  const mk = (o: object) => () => new PartialFC({ head, sampleRate: 0.5, ...o });
  assert.throws(mk({ sampleRate: 0 }), /sampleRate = 0 is not valid: must be a finite number in \(0, 1\]/);
  assert.throws(mk({ sampleRate: 1.5 }), /sampleRate = 1.5/);
  assert.throws(mk({ sampleRate: Number.NaN }), /sampleRate = NaN/);
  assert.throws(mk({ optimizer: { semantics: "sparse" } }), /optimizer.semantics = "sparse".*"dense", "frozen"/);
  assert.throws(mk({ optimizer: { momentum: 1 } }), /optimizer.momentum = 1.*\[0, 1\)/);
  assert.throws(mk({ optimizer: { learningRate: -1 } }), /optimizer.learningRate = -1/);
  assert.throws(mk({ exclusiveWeight: -0.1 }), /exclusiveWeight = -0.1/);
  assert.throws(
    mk({ numClasses: 10, init: "head" }),
    /numClasses = 10.*must equal head.numClasses \(24\) with init "head"/,
  );
  assert.throws(mk({ rate: 0.1 }), /rate = 0.1.*unknown option/);
  const learn = new NormFace({ numClasses: C, embeddingDim: D, learnScale: true });
  assert.throws(() => new PartialFC({ head: learn, sampleRate: 0.5 }), /head.trainableVariables\(\).length = 2/);
  learn.dispose();
  const pfc = new PartialFC({ head, sampleRate: 0.5 });
  const x = tf.zeros([2, D]) as T2;
  assert.throws(() => pfc.update(x, tf.tensor1d([0, 24], "int32")), /labels\[1\] = 24.*\[0, 24\)/);
  assert.throws(() => pfc.update(x, tf.tensor1d([0], "int32")), /labels.shape = \[1\].*\[2\]/);
  assert.throws(
    () => pfc.update(tf.zeros([2, 3]) as T2, tf.tensor1d([0, 1], "int32")),
    /embeddings.shape = \[2,3\].*\[B, 8\]/,
  );
  tf.dispose(x);
  head.dispose();
});

test("no NaN for zero embeddings and zero rows; no tensor leak over steps; larger-than-W init from a small head", () => {
  const head = HEADS[0][1](undefined, 2);
  // a head of 2 classes only lends its margin; W (50 x 8) is PartialFC's own, N(0, 0.01^2)
  const pfc = new PartialFC({ head, numClasses: 50, sampleRate: 0.2, seed: 1, exclusiveWeight: 0.5 });
  const y = tf.tensor1d([1, 1, 40], "int32");
  const x = tf.tensor2d([
    [0, 0, 0, 0, 0, 0, 0, 0],
    [1, 2, 3, 4, 5, 6, 7, 8],
    [1, 2, 3, 4, 5, 6, 7, 8],
  ]);
  const step = () => {
    const r = pfc.update(x, y, { embeddingGrad: true });
    assert.ok(Number.isFinite(r.loss) && Number.isFinite(r.exclusive ?? Number.NaN));
    assert.ok(r.embeddingGrad!.dataSync().every(Number.isFinite));
    r.embeddingGrad!.dispose();
  };
  step();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 4; i++) step();
  assert.is(tf.memory().numTensors, before);
  assert.ok(pfc.weightValues().every(Number.isFinite));
  assert.is(pfc.steps, 5);
  tf.dispose([x, y]);
  head.dispose();
});

test.run();
