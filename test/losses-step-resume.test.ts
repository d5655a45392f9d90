// The head steps (FusedHeadStep, PartialFC) as HeadStep: a state saved after k steps and loaded into a
// fresh step continues bit-identically (W, momentum, losses, dL/dx, Partial FC's sampling and lazy
// catch-up); a state of another configuration is a named error.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { tf } from "../src/backend";
import { ArcFace } from "../src/losses/arcface";
import { CosFace } from "../src/losses/cosface";
import { FusedHeadStep } from "../src/losses/fused-step";
import { PartialFC } from "../src/losses/partial-fc";
import type { HeadStep } from "../src/train/head-step";

type T1 = import("@tensorflow/tfjs-node").Tensor1D;
type T2 = import("@tensorflow/tfjs-node").Tensor2D;

const C = 40;
const D = 8;
const B = 6;
const N = 7;
const K = 3;

function batch(t: number): { x: T2; y: T1 } {
  const x = tf.randomNormal([B, D], 0, 1, "float32", 50 + t) as T2;
  const y = tf.tensor1d(
    Array.from({ length: B }, (_, i) => (i * 11 + t * 5) % C),
    "int32",
  ) as T1;
  return { x, y };
}

/** Runs steps [from, to) of `s` with a learning rate that changes every step; returns losses and dL/dx. */
function run(s: HeadStep, from: number, to: number): { losses: number[]; grads: Float32Array[] } {
  const losses: number[] = [];
  const grads: Float32Array[] = [];
  for (let t = from; t < to; t++) {
    s.learningRate = 0.3 / (1 + t);
    const { x, y } = batch(t);
    const r = s.step(x, y, t);
    losses.push(r.loss);
    grads.push(r.embeddingGrad.dataSync() as Float32Array);
    tf.dispose([x, y, r.embeddingGrad]);
  }
  return { losses, grads };
}

function same(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  assert.is(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++)
    if (!Object.is(a[i], b[i])) assert.unreachable(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

const OPT = { learningRate: 0.3, momentum: 0.9, weightDecay: 5e-3 };
const CASES: [string, () => HeadStep][] = [
  ["FusedHeadStep", () => new FusedHeadStep(new ArcFace({ numClasses: C, embeddingDim: D, seed: 3, s: 16 }), OPT)],
  ...(["dense", "frozen"] as const).map((semantics): [string, () => HeadStep] => [
    `PartialFC r = 0.3 ${semantics} + exclusive`,
    () =>
      new PartialFC({
        head: new CosFace({ numClasses: C, embeddingDim: D, seed: 3, s: 16 }),
        sampleRate: 0.3,
        seed: 5,
        exclusiveWeight: 0.5,
        optimizer: { ...OPT, semantics },
      }),
  ]),
];

function weightOf(s: HeadStep): ArrayLike<number> {
  return s instanceof PartialFC ? s.weightValues() : (s as FusedHeadStep).head.weight.dataSync();
}

function momentumOf(s: HeadStep): ArrayLike<number> {
  if (s instanceof PartialFC) return s.momentumValues();
  const m = (s as FusedHeadStep).momentumValues();
  const v = m.dataSync();
  m.dispose();
  return v;
}

function disposeAll(s: HeadStep): void {
  s.dispose();
  (s as FusedHeadStep | PartialFC).head.dispose();
}

for (const [name, make] of CASES) {
  test(`${name}: saved after ${K} steps and restored into a fresh step, it continues bit-identically`, () => {
    const straight = make();
    const all = run(straight, 0, N);
    const first = make();
    run(first, 0, K);
    const state = first.saveState();
    disposeAll(first);
    const resumed = make();
    resumed.loadState(state);
    const rest = run(resumed, K, N);
    same(rest.losses, all.losses.slice(K), "losses after the restore");
    for (let i = 0; i < rest.grads.length; i++) same(rest.grads[i], all.grads[K + i], `dL/dx of step ${K + i}`);
    same(weightOf(resumed), weightOf(straight), "W");
    same(momentumOf(resumed), momentumOf(straight), "momentum");
    assert.is((resumed as FusedHeadStep | PartialFC).steps, N);
    disposeAll(straight);
    disposeAll(resumed);
  });
}

test("a state of another step kind, size or semantics is a named error", () => {
  const fused = CASES[0][1]();
  const dense = CASES[1][1]();
  const frozen = CASES[2][1]();
  const throwsWith = (f: () => unknown, ...parts: string[]) =>
    assert.throws(f, (e: Error) => parts.every((p) => e.message.includes(p)), parts.join(" / "));
  throwsWith(() => fused.loadState(dense.saveState()), "FusedHeadStep", "state.meta.kind", '"fused"');
  throwsWith(() => dense.loadState(frozen.saveState()), "PartialFC", "state.meta.semantics", '"dense"');
  const small = new FusedHeadStep(new ArcFace({ numClasses: C - 1, embeddingDim: D, seed: 3 }));
  throwsWith(() => small.loadState(fused.saveState()), "state.arrays.weight.shape", `[${C - 1}, ${D}]`);
  for (const s of [fused, dense, frozen, small]) disposeAll(s);
});

test.run();
