/**
 * Checkpoints and resume for every kind of head step, and damaged checkpoints.
 * - A run stopped at step k and resumed by fresh objects (new backbone, head and head step; everything comes
 *   from the checkpoint) reaches bit-identically the losses and weights of an uninterrupted run: the autodiff
 *   step (AdamW, a regularizer, clipScope "all"), the fused step (cosine schedule with warm-up) and Partial FC
 *   (r = 0.5: host W, momentum, lazy catch-up and sampling state; step decay).
 * - resume with a missing, empty or damaged pointer or checkpoint is a CheckpointError naming the path and
 *   the problem; nothing is trained, nothing is pruned; "<dir>/latest" passes over a damaged newest
 *   checkpoint to the older good one and says so through onWarning.
 */
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Backbone } from "../src/backbones/backbone";
import { tf } from "../src/backend";
import type { Dataset } from "../src/data/dataset";
import { syntheticFaces } from "../src/data/synthetic";
import { ArcFace } from "../src/losses/arcface";
import { CosFace } from "../src/losses/cosface";
import type { Head, Scalar, Tensor2D } from "../src/losses/head";
import { PartialFC } from "../src/losses/partial-fc";
import { CheckpointError } from "../src/train/checkpoint";
import type { HeadStep } from "../src/train/head-step";
import { type StepMetrics, type TrainCallback, type TrainConfig, type TrainWarning, train } from "../src/train/trainer";
import { smallBackbone } from "./train-helpers";

const tmp = mkdtempSync(path.join(os.tmpdir(), "marginlab-checkpoint-"));
let data: Dataset;
const D = 8;
const C = 12;

test.before(async () => {
  data = await syntheticFaces({ identities: C, imagesPerIdentity: 4, size: 16, channels: 1, seed: 3, cacheDir: false });
});
test.after(() => rmSync(tmp, { recursive: true, force: true }));

const backbone = () => smallBackbone(D);

interface Model {
  backbone: Backbone;
  head: Head;
  step?: HeadStep;
}

const wnorm = {
  name: "wnorm",
  weight: 0.01,
  fn: (w: Tensor2D) => tf.sum(tf.square(w)) as Scalar,
};

const arcFaceModel = (): Model => ({
  backbone: backbone(),
  head: new ArcFace({ numClasses: C, embeddingDim: D, s: 16, m: 0.3, seed: 6 }),
});

/** The three kinds, each as a function of fresh objects to a train config. */
const kinds: Record<string, { model: () => Model; config: (m: Model) => Partial<TrainConfig> }> = {
  autodiff: {
    model: arcFaceModel,
    config: (m) => ({
      head: m.head,
      optimizer: { type: "adamw", lr: 0.01, weightDecay: 0.05 },
      regularizers: [wnorm],
      clipGradNorm: 2,
      clipScope: "all",
      schedule: { type: "cosine", warmupSteps: 2 },
    }),
  },
  fused: {
    model: arcFaceModel,
    config: (m) => ({
      head: m.head,
      optimizer: { type: "sgd", lr: 0.05, momentum: 0.9, weightDecay: 5e-4 },
      schedule: { type: "cosine", warmupSteps: 2 },
      clipGradNorm: 5,
    }),
  },
  "partial-fc": {
    model: () => {
      const head = new CosFace({ numClasses: C, embeddingDim: D, s: 16, m: 0.35, seed: 2 });
      const step = new PartialFC({ head, sampleRate: 0.5, seed: 9, optimizer: { learningRate: 0.1 } });
      return { backbone: backbone(), head, step };
    },
    config: (m) => ({
      headStep: m.step,
      optimizer: { type: "sgd", lr: 0.05, momentum: 0.9, weightDecay: 5e-4 },
      schedule: { type: "step", milestones: [4], gamma: 0.5, warmupSteps: 1 },
    }),
  },
};

function config(m: Model, kind: string, extra: Partial<TrainConfig>): TrainConfig {
  return {
    backbone: m.backbone,
    data,
    pipeline: { batchSize: 8, augment: { flip: true, cropPad: 1 }, prefetch: 1 },
    steps: 7,
    optimizer: { type: "sgd", lr: 0.05 },
    seed: 11,
    ...kinds[kind].config(m),
    ...extra,
  };
}

/** Every number that defines the model's state: backbone variables and the head step's saved arrays. */
function state(backbone: Backbone, step: HeadStep): number[] {
  const out: number[] = [];
  for (const { variable } of backbone.variables()) out.push(...variable.dataSync());
  for (const a of Object.values(step.saveState().arrays)) out.push(...a.data);
  return out;
}

const key = (h: StepMetrics[]) => h.map((m) => [m.step, m.loss, m.headLoss, m.lr, m.gradNorm, m.activeClasses]);

function dispose(m: Model): void {
  m.step?.dispose();
  m.head.dispose();
  m.backbone.dispose();
}

for (const kind of Object.keys(kinds)) {
  test(`${kind}: stopped at step 3 and resumed by fresh objects = uninterrupted, bit for bit`, async () => {
    // read at the end of training, while the step train() made is still alive
    let final: number[] = [];
    const capture: TrainCallback = {
      onEnd: (_r, ctx) => {
        final = state(ctx.backbone, ctx.headStep);
      },
    };
    const mA = kinds[kind].model();
    const a = await train(config(mA, kind, { callbacks: [capture] }));
    assert.is(a.headStep, kind);
    const sA = final;

    const dir = path.join(tmp, `resume-${kind}`);
    const m1 = kinds[kind].model();
    const first = await train(
      config(m1, kind, {
        checkpoint: { dir, every: 3 },
        callbacks: [{ onStep: (m, ctx) => (m.step === 3 ? ctx.stop() : undefined) }],
      }),
    );
    assert.is(first.steps, 3);
    dispose(m1);
    const m2 = kinds[kind].model(); // fresh: nothing of the first run's objects survives
    const second = await train(config(m2, kind, { resume: dir, callbacks: [capture] }));
    assert.ok(second.resumedFrom?.endsWith("step-00000003"), second.resumedFrom);
    assert.equal(key([...first.history, ...second.history]), key(a.history));
    const sB = final;
    assert.is(sB.length, sA.length);
    assert.ok(
      sB.every((v, i) => Object.is(v, sA[i])),
      "the weights and the head step's state are bit-identical",
    );
    // the run moved: the comparison is not of two untouched initialisations
    assert.ok(a.history[6].loss !== a.history[0].loss);
    dispose(mA);
    dispose(m2);
  });
}

/** A folder with checkpoints of steps 2 and 4 (latest -> step-00000004), written by a real run. */
async function checkpoints(name: string): Promise<string> {
  const dir = path.join(tmp, name);
  const m = kinds.fused.model();
  await train(config(m, "fused", { steps: 4, checkpoint: { dir, every: 2, keep: 3 } }));
  dispose(m);
  return dir;
}

const listing = (dir: string) => readdirSync(dir, { recursive: true }).map(String).sort();

/** resume must fail with a CheckpointError naming `where` and matching `problem`; nothing trained or pruned. */
async function refuses(dir: string, resume: string, where: string, problem: RegExp): Promise<void> {
  const before = listing(dir);
  const m = kinds.fused.model();
  const tensors = tf.memory().numTensors;
  let err: unknown;
  let trained = 0;
  try {
    await train(
      config(m, "fused", {
        steps: 6,
        resume,
        checkpoint: { dir, every: 1 },
        callbacks: [{ onStep: () => void trained++ }],
      }),
    );
  } catch (e) {
    err = e;
  }
  assert.instance(err, CheckpointError, `resume ${resume}: ${String(err)}`);
  const e = err as CheckpointError;
  assert.is(e.path, where);
  assert.match(e.message, where);
  assert.match(e.problem, problem);
  assert.is(trained, 0, "no step was trained");
  assert.equal(listing(dir), before, "nothing was pruned or written");
  assert.is(tf.memory().numTensors, tensors, "nothing was left allocated");
  dispose(m);
}

test("a truncated tensors.bin is refused, naming the file", async () => {
  const dir = await checkpoints("truncated");
  const file = path.join(dir, "step-00000004", "tensors.bin");
  truncateSync(file, Math.floor(readFileSync(file).length / 2));
  await refuses(dir, dir, file, /bytes, the manifest says .*truncated/);
});

test("64 overwritten bytes in tensors.bin are refused (sha256), naming the file", async () => {
  const dir = await checkpoints("flipped");
  const file = path.join(dir, "step-00000004", "tensors.bin");
  const fd = openSync(file, "r+");
  const b = readFileSync(file)
    .subarray(100, 164)
    .map((x) => x ^ 0xff);
  writeSync(fd, b, 0, 64, 100);
  closeSync(fd);
  await refuses(dir, dir, file, /damaged: sha256/);
  await refuses(dir, path.join(dir, "step-00000004"), file, /damaged: sha256/);
});

test("an empty latest, a latest naming a missing folder and a mistyped path are refused", async () => {
  const dir = await checkpoints("pointers");
  const latest = path.join(dir, "latest");
  writeFileSync(latest, "");
  await refuses(dir, dir, latest, /is empty/);
  writeFileSync(latest, "step-00000009");
  await refuses(dir, dir, latest, /names step-00000009, which does not exist/);
  writeFileSync(latest, "step-00000004");
  const typo = path.join(dir, "step-0000004");
  await refuses(dir, typo, typo, /does not exist .*holds: .*step-00000004/);
  await refuses(dir, path.join(tmp, "no-such-run"), path.join(tmp, "no-such-run"), /does not exist/);
});

test("a corrupt state.json or manifest.json is refused, naming the file", async () => {
  const dir = await checkpoints("json");
  const state = path.join(dir, "step-00000004", "state.json");
  writeFileSync(state, readFileSync(state, "utf8").slice(0, 40));
  await refuses(dir, dir, state, /bytes, the manifest says/);
  const manifest = path.join(dir, "step-00000002", "manifest.json");
  writeFileSync(manifest, "{ not json");
  await refuses(dir, path.join(dir, "step-00000002"), manifest, /is not valid JSON/);
});

test("a checkpoint of another kind of head step is refused, naming the checkpoint", async () => {
  const dir = await checkpoints("kind");
  const m = kinds.fused.model();
  let err: unknown;
  await train(config(m, "fused", { headStep: "autodiff", resume: dir })).catch((e) => {
    err = e;
  });
  assert.instance(err, CheckpointError);
  assert.is((err as CheckpointError).path, path.join(dir, "step-00000004"));
  assert.match((err as Error).message, /written by a fused head step, this run trains with the autodiff step/);
  dispose(m);
});

test('"<dir>/latest" resumes from the older good checkpoint when the newest is damaged, and says so', async () => {
  const dir = await checkpoints("fallback");
  const bad = path.join(dir, "step-00000004", "tensors.bin");
  truncateSync(bad, 10);
  const warnings: TrainWarning[] = [];
  const m = kinds.fused.model();
  const r = await train(
    config(m, "fused", {
      steps: 5,
      resume: path.join(dir, "latest"),
      callbacks: [{ onWarning: (w) => void warnings.push(w) }],
    }),
  );
  assert.ok(r.resumedFrom?.endsWith("step-00000002"), r.resumedFrom);
  assert.is(r.history[0].step, 3, "training continued after step 2");
  assert.is(warnings.length, 1);
  assert.is(warnings[0].code, "resumed-from-older-checkpoint");
  assert.is(warnings[0].skipped[0].path, bad);
  assert.match(warnings[0].message, /step-00000002/);
  assert.match(warnings[0].message, /tensors\.bin/);
  dispose(m);
  // every checkpoint damaged: an error listing each
  truncateSync(path.join(dir, "step-00000002", "tensors.bin"), 10);
  await refuses(
    dir,
    path.join(dir, "latest"),
    path.join(dir, "latest"),
    /no usable checkpoint.*step-00000004.*step-00000002/,
  );
});

test("a checkpoint is complete and verifiable: manifest with sha256 of each file, no temporary files left", async () => {
  const dir = await checkpoints("layout");
  assert.equal(
    readdirSync(dir).sort(),
    ["latest", "step-00000002", "step-00000004"],
    "no .tmp folders or pointer files left behind",
  );
  const ck = path.join(dir, "step-00000004");
  const manifest = JSON.parse(readFileSync(path.join(ck, "manifest.json"), "utf8"));
  const { createHash } = await import("node:crypto");
  for (const f of ["state.json", "tensors.bin"]) {
    const b = readFileSync(path.join(ck, f));
    assert.is(manifest.files[f].bytes, b.length);
    assert.is(manifest.files[f].sha256, createHash("sha256").update(b).digest("hex"));
  }
  assert.ok(existsSync(path.join(ck, "state.json")));
  assert.is(JSON.parse(readFileSync(path.join(ck, "state.json"), "utf8")).headStep.kind, "fused");
});

test.run();
