/**
 * train() with a Partial FC or fused head step: at r = 1 it takes the same steps as the autodiff step with
 * the same head (the backprop of the step's embedding gradient into the backbone is right, one forward pass
 * per step: BatchNorm statistics agree), "frozen" semantics leave never-sampled rows untouched, bad options
 * are named errors, no tensors leak across steps, the head's learning rate follows the schedule.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Backbone } from "../src/backbones/backbone";
import { tf } from "../src/backend";
import type { Dataset } from "../src/data/dataset";
import { syntheticFaces } from "../src/data/synthetic";
import { ArcFace } from "../src/losses/arcface";
import { CosFace } from "../src/losses/cosface";
import { FusedHeadStep } from "../src/losses/fused-step";
import { PartialFC } from "../src/losses/partial-fc";
import { type TrainConfig, TrainingError, train } from "../src/train/trainer";
import { smallBackbone } from "./train-helpers";

let data: Dataset;

const D = 8;
const LR = 0.05;
const WD = 5e-4;

test.before(async () => {
  data = await syntheticFaces({ identities: 6, imagesPerIdentity: 8, size: 16, channels: 1, seed: 3, cacheDir: false });
});

const backbone = () => smallBackbone(D);

function close(a: ArrayLike<number>, b: ArrayLike<number>, what: string, rtol = 2e-3, atol = 2e-5): void {
  assert.is(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    const err = Math.abs(a[i] - b[i]) - rtol * Math.abs(b[i]);
    if (!(err <= atol)) assert.unreachable(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

function values(b: Backbone): Float32Array[] {
  return b.variables().map((v) => v.variable.dataSync() as Float32Array);
}

const pipeline = { batchSize: 12, augment: false as const, prefetch: 1 };

for (const fused of ["PartialFC", "FusedHeadStep", "headStep: fused"] as const) {
  test(`r = 1 equals the autodiff step: same backbone (BatchNorm statistics too) and W after 4 steps (${fused})`, async () => {
    // 4 steps: at this lr (gradient norms ~40) float round-off between the paths grows ~4x per step
    // (largest relative difference 5e-5 after 1 step, 8e-4 after 4, 4e-2 after 6)
    const steps = 4;
    const headA = new ArcFace({ numClasses: 6, embeddingDim: D, s: 16, m: 0.3, seed: 6 });
    const bbA = backbone();
    const ref = await train({
      backbone: bbA,
      head: headA,
      data,
      pipeline,
      steps,
      optimizer: { type: "sgd", lr: LR, momentum: 0.9, weightDecay: WD },
      seed: 4,
      headStep: "autodiff",
    });
    assert.is(ref.headStep, "autodiff");
    const headB = new ArcFace({ numClasses: 6, embeddingDim: D, s: 16, m: 0.3, seed: 6 });
    const bbB = backbone();
    const optimizer = { learningRate: LR, momentum: 0.9, weightDecay: WD };
    const pfc =
      fused === "headStep: fused"
        ? undefined
        : fused === "FusedHeadStep"
          ? new FusedHeadStep(headB, optimizer)
          : new PartialFC({ head: headB, sampleRate: 1, optimizer });
    const out = await train({
      backbone: bbB,
      ...(pfc ? { headStep: pfc } : { head: headB, headStep: "fused" as const }),
      data,
      pipeline,
      steps,
      optimizer: { type: "sgd", lr: LR, momentum: 0.9, weightDecay: WD },
      seed: 4,
    });
    assert.is(out.history.length, steps);
    assert.is(out.headStep, pfc?.kind ?? "fused");
    out.history.forEach((m, i) => {
      assert.ok(Math.abs(m.loss - ref.history[i].loss) < 1e-3 * Math.max(1, ref.history[i].loss), `loss at ${i + 1}`);
      assert.is(m.activeClasses, 6);
      assert.ok(m.headMs > 0 && m.stepMs >= m.headMs, `times ${m.headMs} ${m.stepMs}`);
    });
    const a = values(bbA);
    const b = values(bbB);
    for (const [k, v] of bbA.variables().entries()) close(b[k], a[k], v.name);
    const w = pfc instanceof PartialFC ? pfc.weightValues() : (headB.weight.dataSync() as Float32Array);
    close(w, headA.weight.dataSync() as Float32Array, "W");
    // the weights moved: the comparison is not of two untouched initialisations
    const fresh = values(backbone());
    assert.ok(
      a.some((v, k) => v.some((x, i) => Math.abs(x - fresh[k][i]) > 1e-4)),
      "training changed the backbone",
    );
    if (pfc instanceof FusedHeadStep) pfc.dispose();
    if (pfc instanceof PartialFC) pfc.dispose();
    for (const h of [headA, headB]) h.dispose();
    for (const bb of [bbA, bbB]) bb.dispose();
  });
}

test('r < 1 with "frozen" semantics: rows outside every sampled set are bit-identical; active classes = trunc(rC)', async () => {
  const C = 200;
  const head = new CosFace({ numClasses: C, embeddingDim: D, s: 16, m: 0.35, seed: 2 });
  const before = Float32Array.from(head.weight.dataSync() as Float32Array);
  const pfc = new PartialFC({ head, sampleRate: 0.1, seed: 9, optimizer: { learningRate: 0.1, semantics: "frozen" } });
  const sampled = new Set<number>();
  const sample = pfc.sample.bind(pfc);
  pfc.sample = (labels, scores) => {
    const set = sample(labels, scores);
    for (const c of set.index) sampled.add(c);
    return set;
  };
  const bb = backbone();
  const out = await train({
    backbone: bb,
    headStep: pfc,
    data,
    pipeline,
    steps: 5,
    optimizer: { type: "sgd", lr: 0.05 },
    seed: 1,
  });
  for (const m of out.history) assert.is(m.activeClasses, 20);
  assert.ok(sampled.size > 20 && sampled.size < C, `${sampled.size} rows sampled in all`);
  const after = pfc.weightValues();
  let changed = 0;
  for (let c = 0; c < C; c++) {
    let same = true;
    for (let k = 0; k < D; k++) if (after[c * D + k] !== before[c * D + k]) same = false;
    if (sampled.has(c)) changed += same ? 0 : 1;
    else assert.ok(same, `row ${c} was never sampled but changed`);
  }
  assert.is(changed, sampled.size, "every sampled row moved");
  head.dispose();
  bb.dispose();
});

test("no tensor leak across steps; the head's learning rate follows the schedule and is restored", async () => {
  const head = new CosFace({ numClasses: 6, embeddingDim: D, seed: 2 });
  const pfc = new PartialFC({ head, sampleRate: 0.5, optimizer: { learningRate: 0.2 } });
  const bb = backbone();
  const counts: number[] = [];
  const headLrs: number[] = [];
  await train({
    backbone: bb,
    headStep: pfc,
    data,
    pipeline,
    steps: 6,
    optimizer: { type: "sgd", lr: 0.1 },
    schedule: { type: "cosine", warmupSteps: 2 },
    clipGradNorm: 1,
    callbacks: [
      {
        onStep: (m) => {
          counts.push(tf.memory().numTensors);
          headLrs.push((pfc.learningRate * 0.1) / 0.2 - m.lr);
          assert.ok(m.gradNorm > 0 && Number.isFinite(m.loss));
        },
      },
    ],
  });
  assert.ok(
    counts.slice(1).every((n) => n === counts[1]),
    `tensor counts ${counts}`,
  );
  for (const d of headLrs) assert.ok(Math.abs(d) < 1e-9, "head lr = pfc lr x schedule factor");
  assert.is(pfc.learningRate, 0.2);
  head.dispose();
  bb.dispose();
});

test("a non-finite loss stops with a TrainingError naming the step", async () => {
  const head = new CosFace({ numClasses: 6, embeddingDim: D, seed: 2 });
  const pfc = new PartialFC({ head, sampleRate: 1 });
  const bb = backbone();
  const last = bb.trainableVariables().at(-1)!;
  last.assign(tf.fill(last.shape, Number.NaN));
  try {
    await train({ backbone: bb, headStep: pfc, data, pipeline, steps: 3, optimizer: { type: "sgd", lr: 0.1 } });
    assert.unreachable("should have thrown");
  } catch (e) {
    assert.instance(e, TrainingError);
    assert.is((e as TrainingError).step, 1);
    assert.match((e as Error).message, /step 1/);
  }
  head.dispose();
  bb.dispose();
});

test("bad options throw errors naming the field", async () => {
  const head = new CosFace({ numClasses: 6, embeddingDim: D, seed: 2 });
  const small = new CosFace({ numClasses: 3, embeddingDim: D, seed: 2 });
  const wide = new CosFace({ numClasses: 6, embeddingDim: 4, seed: 2 });
  const bb = backbone();
  const base: TrainConfig = {
    backbone: bb,
    headStep: new PartialFC({ head, sampleRate: 1 }),
    data,
    pipeline,
    steps: 2,
    optimizer: { type: "sgd", lr: 0.1 },
  };
  const cases: Array<[Partial<TrainConfig>, RegExp]> = [
    [{ steps: 0 }, /steps = 0/],
    [{ clipGradNorm: -1 }, /clipGradNorm = -1/],
    [{ headStep: head as unknown as PartialFC }, /headStep = "object"/],
    [{ headStep: new PartialFC({ head: small, sampleRate: 1 }) }, /headStep\.numClasses = 3/],
    [{ headStep: new PartialFC({ head: wide, sampleRate: 1 }) }, /headStep\.embeddingDim = 4/],
    [{ clipScope: "all" }, /clipScope = "all" .*defer/],
    [{ regularizers: [{ name: "r", weight: 1, fn: (w) => tf.sum(w) as never }] }, /regularizers .*autodiff step only/],
    [{ head, headStep: "fused", optimizer: { type: "adamw", lr: 0.1 } }, /headStep = "fused" .*AdamW/],
    [{ optimizer: { type: "sgd", lr: -1 } }, /optimizer\.lr = -1/],
    [{ pipeline: { batchSize: 0 } }, /batchSize/],
  ];
  for (const [patch, re] of cases) {
    const before = tf.memory().numTensors;
    let message = "";
    try {
      await train({ ...base, ...patch });
    } catch (e) {
      message = (e as Error).message;
    }
    assert.match(message, re, JSON.stringify(Object.keys(patch)));
    assert.is(tf.memory().numTensors, before, "no tensors left behind");
  }
  for (const h of [head, small, wide]) h.dispose();
  bb.dispose();
});

test.run();
