/**
 * The trainer: resume equals uninterrupted (SGD and AdamW), tensor count stable across steps, a
 * non-finite loss stops with a clear error and keeps the last good checkpoint, bad configuration is a
 * clear error before any tensor work, schedules' closed forms.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createBackbone } from "../src/backbones";
import type { Backbone } from "../src/backbones/backbone";
import { tf } from "../src/backend";
import type { Dataset } from "../src/data/dataset";
import { recordIODataset } from "../src/data/recordio";
import { syntheticFaces } from "../src/data/synthetic";
import { ArcFace } from "../src/losses/arcface";
import { CosFace } from "../src/losses/cosface";
import type { Head } from "../src/losses/head";
import { PartialFC } from "../src/losses/partial-fc";
import { convergence } from "../src/train/convergence";
import type { OptimizerConfig } from "../src/train/optimizers";
import { learningRate, type Schedule } from "../src/train/schedules";
import { type StepMetrics, type TrainConfig, TrainingError, train } from "../src/train/trainer";
import { smallBackbone } from "./train-helpers";

const tmp = mkdtempSync(path.join(os.tmpdir(), "marginlab-trainer-"));
let data: Dataset;

test.before(async () => {
  data = await syntheticFaces({ identities: 6, imagesPerIdentity: 8, size: 16, channels: 1, seed: 3, cacheDir: false });
});
test.after(() => rmSync(tmp, { recursive: true, force: true }));

function model(): { backbone: Backbone; head: Head } {
  const backbone = smallBackbone(8);
  const head = new ArcFace({ numClasses: 6, embeddingDim: 8, s: 16, m: 0.3, seed: 6 });
  return { backbone, head };
}

const exclusive = {
  name: "exclusive",
  weight: 0.5,
  fn: (w: import("../src/losses/head").Tensor2D) =>
    tf.tidy(() => {
      const n = tf.div(w, tf.norm(w, 2, 1, true));
      const cos = tf.matMul(n, n, false, true);
      const masked = tf.sub(cos, tf.mul(tf.eye(w.shape[0]), 100));
      return tf.mean(tf.max(masked, 1)) as import("../src/losses/head").Scalar;
    }),
};

function config(extra: Partial<TrainConfig>, m = model()): TrainConfig {
  return {
    ...m,
    data,
    pipeline: { batchSize: 12, augment: { flip: true, cropPad: 1 } },
    steps: 8,
    optimizer: { type: "sgd", lr: 0.05, momentum: 0.9, weightDecay: 5e-4 },
    schedule: { type: "cosine", warmupSteps: 2 },
    clipGradNorm: 5,
    regularizers: [exclusive],
    seed: 11,
    ...extra,
  };
}

async function weights(b: Backbone, h: Head): Promise<number[]> {
  const out: number[] = [];
  for (const { variable } of b.variables()) out.push(...(await variable.data()));
  out.push(...(await h.weight.data()));
  return out;
}

for (const optimizer of [
  { type: "sgd", lr: 0.05, momentum: 0.9, weightDecay: 5e-4 },
  { type: "adamw", lr: 0.01, weightDecay: 0.05 },
] as OptimizerConfig[]) {
  test(`resume equals uninterrupted (${optimizer.type}, checkpoints every 3 steps, stop at 3, resume)`, async () => {
    const dirA = path.join(tmp, `a-${optimizer.type}`);
    const mA = model();
    const a = await train(config({ optimizer, checkpoint: { dir: dirA, every: 3 } }, mA));
    const wA = await weights(mA.backbone, mA.head);

    const dirB = path.join(tmp, `b-${optimizer.type}`);
    const m1 = model();
    const first = await train(
      config(
        {
          optimizer,
          checkpoint: { dir: dirB, every: 3 },
          callbacks: [{ onStep: (m, ctx) => (m.step === 3 ? ctx.stop() : undefined) }],
        },
        m1,
      ),
    );
    assert.is(first.steps, 3);
    assert.ok(first.stopped);
    m1.backbone.dispose();
    m1.head.dispose();
    const m2 = model(); // fresh weights: everything must come from the checkpoint
    const second = await train(config({ optimizer, resume: dirB, checkpoint: { dir: dirB, every: 3 } }, m2));
    assert.ok(second.resumedFrom?.endsWith("step-00000003"));
    const key = (h: StepMetrics[]) =>
      h.map((m) => [m.step, m.epoch, m.loss, m.headLoss, m.lr, m.gradNorm, m.regularizers.exclusive]);
    assert.equal(key([...first.history, ...second.history]), key(a.history));
    assert.equal(await weights(m2.backbone, m2.head), wA);
    assert.ok(a.history[7].loss !== a.history[0].loss);
    for (const m of [mA, m2]) {
      m.backbone.dispose();
      m.head.dispose();
    }
  });
}

test("a training step keeps tf.memory().numTensors constant (autodiff SGD and AdamW, fused); nothing is left after training", async () => {
  for (const [optimizer, headStep] of [
    [{ type: "sgd", lr: 0.05 }, "autodiff"],
    [{ type: "adamw", lr: 0.01 }, "autodiff"],
    [{ type: "sgd", lr: 0.05 }, "fused"],
  ] as Array<[OptimizerConfig, "autodiff" | "fused"]>) {
    const what = `${headStep} ${optimizer.type}`;
    const before = tf.memory().numTensors;
    const counts: number[] = [];
    const m = model();
    const afterModel = tf.memory().numTensors;
    const r = await train(
      config(
        {
          optimizer,
          headStep,
          regularizers: headStep === "fused" ? [] : [exclusive],
          steps: 5,
          callbacks: [{ onStep: () => void counts.push(tf.memory().numTensors) }],
        },
        m,
      ),
    );
    assert.is(r.headStep, headStep);
    assert.is(counts.length, 5);
    assert.ok(
      counts.every((c) => c === counts[0]),
      `${what}: tensor counts ${counts}`,
    );
    assert.is(tf.memory().numTensors, afterModel, `${what}: the optimizer state is freed`);
    m.backbone.dispose();
    m.head.dispose();
    assert.is(tf.memory().numTensors, before);
  }
});

test("a non-finite loss stops training with a clear error and keeps the last good checkpoint", async () => {
  const dir = path.join(tmp, "nan");
  const poison = {
    name: "poison",
    weight: 1,
    fn: (w: import("../src/losses/head").Tensor2D, c: { step: number }) =>
      tf.mul(tf.sum(w), c.step >= 4 ? Number.NaN : 0) as import("../src/losses/head").Scalar,
  };
  const m = model();
  let err: unknown;
  try {
    await train(config({ regularizers: [poison], checkpoint: { dir, every: 2 } }, m));
  } catch (e) {
    err = e;
  }
  assert.instance(err, TrainingError);
  const e = err as TrainingError;
  assert.is(e.step, 5);
  assert.match(e.message, "step 5");
  assert.match(e.message, "loss is NaN");
  assert.ok(e.lastCheckpoint?.endsWith("step-00000004"));
  assert.is(readFileSync(path.join(dir, "latest"), "utf8"), "step-00000004");
  assert.ok(existsSync(path.join(e.lastCheckpoint!, "tensors.bin")));
  // the weights were not touched by the bad step: resuming from the checkpoint and reading them matches
  const w = await weights(m.backbone, m.head);
  assert.ok(w.every(Number.isFinite));
  m.backbone.dispose();
  m.head.dispose();
});

test("bad configuration is a clear error naming the field", async () => {
  assert.throws(
    () => createBackbone({ name: "resnet9000" }),
    /backbone\.name = "resnet9000" is not valid: allowed are lenet\+\+, iresnet-small/,
  );
  const before = tf.memory().numTensors;
  const m = model();
  const n = tf.memory().numTensors;
  const bad = async (extra: Partial<TrainConfig>, re: RegExp) => {
    await train(config(extra, m)).then(
      () => assert.unreachable("should throw"),
      (e: Error) => assert.match(e.message, re),
    );
    assert.is(tf.memory().numTensors, n, "no tensors made before the error");
  };
  await bad({ pipeline: { batchSize: 0 } }, /batchSize = 0 is not valid: expected an integer in \[1, inf\]/);
  await bad({ steps: undefined }, /give exactly one of steps and epochs/);
  await bad(
    { optimizer: { type: "adam" } as unknown as OptimizerConfig },
    /optimizer\.type = "adam" is not valid: allowed are sgd, adamw/,
  );
  await bad({ schedule: { type: "exp" } as unknown as TrainConfig["schedule"] }, /schedule\.type = "exp"/);
  await bad(
    { pipeline: { batchSize: 8, size: [32, 32] } },
    /pipeline\.size .* the backbone expects inputs of \[16, 16, 1\]/,
  );
  await recordIODataset({ path: path.join(tmp, "no-such-data") }).then(
    () => assert.unreachable("should throw"),
    (e: Error) => assert.match(e.message, /recordio\.path = ".*no-such-data" is not valid/),
  );
  m.backbone.dispose();
  m.head.dispose();
  assert.is(tf.memory().numTensors, before);
});

test("schedules: InsightFace polynomial warm-up, step, cosine", () => {
  const T = 100;
  assert.is(learningRate({ type: "polynomial", warmupSteps: 10 }, 0.1, 0, T), 0);
  assert.ok(Math.abs(learningRate({ type: "polynomial", warmupSteps: 10 }, 0.1, 5, T) - 0.05) < 1e-15);
  assert.ok(Math.abs(learningRate({ type: "polynomial", warmupSteps: 10 }, 0.1, 55, T) - 0.05) < 1e-15);
  assert.is(learningRate({ type: "polynomial", warmupSteps: 10 }, 0.1, 100, T), 0);
  assert.ok(Math.abs(learningRate({ type: "step", milestones: [30, 60] }, 0.1, 60, T) - 0.001) < 1e-15);
  assert.ok(Math.abs(learningRate({ type: "cosine", minLr: 0.01 }, 0.1, 50, T) - 0.055) < 1e-12);
});

test("warm-up + cosine and step decay drive every head step: the head's lr follows the backbone's", async () => {
  const schedules: Schedule[] = [
    { type: "cosine", warmupSteps: 2, minLr: 0.001 },
    { type: "step", milestones: [3, 5], gamma: 0.5, warmupSteps: 1 },
  ];
  for (const schedule of schedules) {
    for (const kind of ["autodiff", "fused", "partial-fc"] as const) {
      const m = model();
      const pfc =
        kind === "partial-fc"
          ? new PartialFC({
              head: new CosFace({ numClasses: 6, embeddingDim: 8, seed: 2 }),
              sampleRate: 0.5,
              optimizer: { learningRate: 0.2 },
            })
          : undefined;
      const seen: Array<[number, number]> = [];
      const r = await train(
        config(
          {
            steps: 6,
            schedule,
            regularizers: [],
            headStep: pfc ?? (kind as "autodiff" | "fused"),
            head: pfc ? undefined : m.head,
            callbacks: [{ onStep: (s, ctx) => void seen.push([s.lr, ctx.headStep.learningRate]) }],
          },
          m,
        ),
      );
      assert.is(r.headStep, kind);
      seen.forEach(([lr, headLr], k) => {
        const expected = learningRate(schedule, 0.05, k, 6);
        assert.ok(Math.abs(lr - expected) < 1e-15, `${kind} ${schedule.type} step ${k}: lr ${lr} vs ${expected}`);
        const ratio = pfc ? 0.2 / 0.05 : 1;
        assert.ok(Math.abs(headLr - ratio * lr) < 1e-12, `${kind} ${schedule.type} step ${k}: head lr ${headLr}`);
      });
      assert.ok(r.history.every((h) => Number.isFinite(h.loss)));
      m.backbone.dispose();
      m.head.dispose();
      pfc?.dispose();
    }
  }
});

test("convergence: mean loss of the last 10 % of steps against the 10 % before, relative", () => {
  const losses = Array.from({ length: 100 }, (_, t) => ({ loss: 1 / (1 + t) }));
  const r = convergence(losses);
  const mean = (a: number, b: number) => {
    let s = 0;
    for (let t = a; t < b; t++) s += 1 / (1 + t);
    return s / (b - a);
  };
  assert.is(r.window, 10);
  assert.ok(Math.abs(r.before - mean(80, 90)) < 1e-15 && Math.abs(r.after - mean(90, 100)) < 1e-15);
  assert.ok(Math.abs(r.relativeImprovement - (mean(80, 90) - mean(90, 100)) / mean(80, 90)) < 1e-15);
  assert.ok(r.relativeImprovement > 0.1, "1/t is still falling at the end");
  const plateau = convergence(Array.from({ length: 50 }, (_, t) => ({ loss: 2 + 0.01 * Math.sin(t * 2.1) })));
  assert.ok(Math.abs(plateau.relativeImprovement) < 0.005, `plateau ${plateau.relativeImprovement}`);
  assert.ok(convergence([{ loss: 1 }, { loss: 2 }]).relativeImprovement === -1, "a rising loss is negative");
  assert.ok(Number.isNaN(convergence([{ loss: 1 }, { loss: Number.NaN }]).relativeImprovement));
  assert.throws(() => convergence([{ loss: 1 }]), /history has 1 step; needs at least 2/);
  assert.throws(() => convergence(losses, { fraction: 0.9 }), /fraction = 0.9 is not valid/);
});

test("convergence: a flat tail converges, a still-falling one does not; steps and the share of the fall", () => {
  const falling = Array.from({ length: 101 }, (_, i) => ({ step: i * 10, loss: 5 - i * 0.04 }));
  const r = convergence(falling);
  assert.not.ok(r.converged);
  assert.ok(r.relativeImprovement > 0.01);
  assert.is(r.window, 10);
  assert.equal([r.fromStep, r.toStep], [810, 1000], "the before window starts 20 points from the end");
  // A straight line falls as much in each window: the last window (points 91-100) fell 10 of the 91 points since the first (0-9).
  assert.ok(Math.abs(r.shareOfFall - 10 / 91) < 1e-12, String(r.shareOfFall));
  const flat = Array.from({ length: 101 }, (_, i) => ({ step: i * 10, loss: 1 + Math.exp(-i / 5) }));
  assert.ok(convergence(flat).converged);
  // Fitting towards 0: large relative fall, tiny share of the whole fall (the two kinds of "not converged").
  const toZero = Array.from({ length: 100 }, (_, t) => ({ loss: 30 * Math.exp(-t / 10) }));
  const z = convergence(toZero);
  assert.ok(!z.converged && z.relativeImprovement > 0.5 && z.shareOfFall < 0.01, JSON.stringify(z));
  assert.ok(convergence(falling, { tolerance: 0.5 }).converged, "the tolerance is the threshold");
  assert.throws(() => convergence(falling, { tolerance: 0 }), /tolerance = 0 is not valid/);
});

test.run();
