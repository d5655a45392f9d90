// FusedHeadStep: the full-softmax step with W in TensorFlow equals the head's own autodiff loss under
// PyTorch's SGD rule, and PartialFC with r = 1; bad heads and inputs are named errors; nothing leaks.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { tf } from "../src/backend";
import { ArcFace } from "../src/losses/arcface";
import { CosFace } from "../src/losses/cosface";
import { FusedHeadStep } from "../src/losses/fused-step";
import type { CosineHead } from "../src/losses/head";
import { NormFace } from "../src/losses/normface";
import { PartialFC } from "../src/losses/partial-fc";
import { SubCenterArcFace } from "../src/losses/subcenter-arcface";

type T1 = import("@tensorflow/tfjs-node").Tensor1D;
type T2 = import("@tensorflow/tfjs-node").Tensor2D;

const C = 30;
const D = 8;
const B = 9;
const OPT = { learningRate: 0.2, momentum: 0.9, weightDecay: 5e-3 };

function close(a: ArrayLike<number>, b: ArrayLike<number>, rtol: number, atol: number, what: string): void {
  assert.is(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++)
    if (!(Math.abs(a[i] - b[i]) <= atol + rtol * Math.abs(b[i])))
      assert.unreachable(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

function batch(step: number): { x: T2; y: T1 } {
  const x = tf.randomNormal([B, D], 0, 1, "float32", 100 + step) as T2;
  const y = tf.tensor1d(
    Array.from({ length: B }, (_, i) => (i * 7 + step * 3) % C),
    "int32",
  ) as T1;
  return { x, y };
}

const HEADS: [string, () => CosineHead][] = [
  ["ArcFace", () => new ArcFace({ numClasses: C, embeddingDim: D, seed: 4, s: 16 })],
  [
    "ArcFace straight-through",
    () => new ArcFace({ numClasses: C, embeddingDim: D, seed: 4, s: 16, gradient: "straight-through" }),
  ],
  ["CosFace", () => new CosFace({ numClasses: C, embeddingDim: D, seed: 4, s: 16 })],
  ["NormFace", () => new NormFace({ numClasses: C, embeddingDim: D, seed: 4, s: 16 })],
];

test("three steps equal head.loss + autodiff + PyTorch's SGD rule (W, momentum, loss, dL/dx)", () => {
  for (const [name, make] of HEADS) {
    const fusedHead = make();
    const refHead = make();
    const fused = new FusedHeadStep(fusedHead, { ...OPT, lossCap: false });
    let w = refHead.weight.clone() as T2;
    let m = tf.zerosLike(w) as T2;
    for (let t = 0; t < 3; t++) {
      const { x, y } = batch(t);
      const got = fused.update(x, y, { embeddingGrad: true });
      // reference: autodiff of the head's own loss wrt W and x, then g' = g + wd w; m = mu m + g'; w -= lr m
      refHead.weight.assign(w);
      const { value, grads } = tf.variableGrads(() => refHead.loss(x, y), [refHead.weight]);
      const dx = tf.grad((xx) => refHead.loss(xx as T2, y))(x);
      const g = tf.add(grads[refHead.weight.name], tf.mul(w, OPT.weightDecay));
      const m2 = tf.add(tf.mul(m, OPT.momentum), g) as T2;
      const w2 = tf.sub(w, tf.mul(m2, OPT.learningRate)) as T2;
      close([got.loss], [value.dataSync()[0]], 1e-5, 1e-6, `${name} step ${t} loss`);
      close(got.embeddingGrad!.dataSync(), dx.dataSync(), 1e-3, 1e-6, `${name} step ${t} dL/dx`);
      close(fusedHead.weight.dataSync(), w2.dataSync(), 1e-4, 1e-6, `${name} step ${t} W`);
      const mom = fused.momentumValues();
      close(mom.dataSync(), m2.dataSync(), 1e-3, 1e-6, `${name} step ${t} momentum`);
      tf.dispose([x, y, value, dx, g, grads[refHead.weight.name], got.embeddingGrad!, mom, w, m]);
      w = w2;
      m = m2;
    }
    assert.is(fused.steps, 3);
    tf.dispose([w, m]);
    fused.dispose();
    fusedHead.dispose();
    refHead.dispose();
  }
});

test("equals PartialFC with r = 1 (dense semantics), which keeps W on the host", () => {
  const a = new ArcFace({ numClasses: C, embeddingDim: D, seed: 6 });
  const b = new ArcFace({ numClasses: C, embeddingDim: D, seed: 6 });
  const pfc = new PartialFC({ head: a, sampleRate: 1, optimizer: OPT });
  const fused = new FusedHeadStep(b, OPT);
  for (let t = 0; t < 4; t++) {
    const { x, y } = batch(t);
    const r1 = pfc.update(x, y);
    const r2 = fused.update(x, y);
    close([r2.loss], [r1.loss], 1e-5, 1e-6, `step ${t} loss`);
    tf.dispose([x, y]);
  }
  close(b.weight.dataSync(), pfc.weightValues(), 1e-4, 1e-6, "W after 4 steps");
  const mom = fused.momentumValues();
  close(mom.dataSync(), pfc.momentumValues(), 1e-3, 1e-6, "momentum after 4 steps");
  tf.dispose([mom]);
  fused.dispose();
  a.dispose();
  b.dispose();
});

test("training with it lowers the loss and leaks no tensors", () => {
  const head = new CosFace({ numClasses: C, embeddingDim: D, seed: 2, s: 16 });
  const fused = new FusedHeadStep(head, { learningRate: 0.5, momentum: 0.9, weightDecay: 0 });
  const { x, y } = batch(0);
  const first = fused.update(x, y).loss;
  const before = tf.memory().numTensors;
  let last = first;
  for (let t = 0; t < 30; t++) last = fused.update(x, y).loss;
  assert.is(tf.memory().numTensors, before, "no tensor leak per step");
  assert.ok(last < 0.5 * first, `loss ${first} -> ${last}`);
  const r = fused.update(x, y, { embeddingGrad: true });
  assert.equal(r.embeddingGrad!.shape, [B, D]);
  tf.dispose([x, y, r.embeddingGrad!]);
  fused.dispose();
  head.dispose();
});

test("bad heads, options and batches are named errors", () => {
  const head = new ArcFace({ numClasses: C, embeddingDim: D, seed: 1 });
  const throwsWith = (f: () => unknown, ...parts: string[]) =>
    assert.throws(f, (e: Error) => parts.every((p) => e.message.includes(p)), parts.join(" / "));
  throwsWith(() => new FusedHeadStep(head, { momentum: 1 }), "momentum", "[0, 1)");
  throwsWith(() => new FusedHeadStep(head, { learningRate: -1 }), "learningRate");
  throwsWith(() => new FusedHeadStep(head, { lr: 0.1 } as never), "lr", "unknown option");
  const learn = new NormFace({ numClasses: C, embeddingDim: D, learnScale: true });
  throwsWith(() => new FusedHeadStep(learn), "trainableVariables", "must be 1");
  const sub = new SubCenterArcFace({ numClasses: C, embeddingDim: D, K: 3 });
  throwsWith(() => new FusedHeadStep(sub), "head", "one row per class");
  const fused = new FusedHeadStep(head);
  const x = tf.zeros([2, D]) as T2;
  throwsWith(() => fused.update(x, tf.tensor1d([0, C], "int32") as T1), "labels[1]", `[0, ${C - 1}]`);
  throwsWith(() => fused.update(x, tf.tensor1d([0], "int32") as T1), "labels.shape");
  throwsWith(() => fused.update(tf.zeros([2, D + 1]) as T2, tf.tensor1d([0, 1], "int32") as T1), "embeddings.shape");
  fused.dispose();
  for (const h of [head, learn, sub]) h.dispose();
});

test("NaN or Inf in embeddings: an error naming the rows, and nothing is updated (FusedHeadStep and PartialFC)", () => {
  for (const make of [
    (h: CosineHead) => new FusedHeadStep(h, OPT),
    (h: CosineHead) => new PartialFC({ head: h, sampleRate: 0.5, optimizer: OPT }),
  ]) {
    const head = new ArcFace({ numClasses: C, embeddingDim: D, seed: 1 });
    const step = make(head);
    const rows = Array.from({ length: 4 }, (_, i) => Array.from({ length: D }, (_, k) => Math.sin(i + k)));
    rows[1][3] = Number.NaN;
    rows[3][0] = Number.POSITIVE_INFINITY;
    const x = tf.tensor2d(rows) as T2;
    const y = tf.tensor1d([0, 1, 2, 3], "int32") as T1;
    const before = step instanceof PartialFC ? step.weightValues() : head.weight.dataSync().slice();
    const tensors = tf.memory().numTensors;
    assert.throws(
      () => step.step(x, y, 0),
      (e: Error) => e.name === "NonFiniteLossError" && e.message.includes("rows [1, 3]"),
      `${step.kind}: names rows 1 and 3`,
    );
    assert.is(tf.memory().numTensors, tensors, `${step.kind}: no tensor left behind`);
    const after = step instanceof PartialFC ? step.weightValues() : head.weight.dataSync();
    assert.equal(Array.from(after), Array.from(before), `${step.kind}: W unchanged`);
    assert.is((step as FusedHeadStep | PartialFC).steps, 0);
    tf.dispose([x, y]);
    step.dispose();
    head.dispose();
  }
});

test.run();
