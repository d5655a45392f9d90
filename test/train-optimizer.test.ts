/**
 * The optimizer's flat path (a group's small variables updated as one vector, src/train/optimizers.ts)
 * against its per-variable path: the same trajectory over several steps of SGD (momentum, weight decay,
 * Nesterov) and AdamW with gradient clipping as the trainer does it; the same checkpoint arrays; an exact
 * resume from them; no tensor left behind; and the op count it exists for.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { opProbe } from "../bench/common";
import { createBackbone } from "../src/backbones";
import { tf } from "../src/backend";
import { Rng } from "../src/data/rng";
import type { Variable } from "../src/losses/head";
import { clipScale, FUSE_MAX_SIZE, Optimizer, type OptimizerConfig } from "../src/train/optimizers";

/** An iResNet's variables: convolutions above FUSE_MAX_SIZE, BatchNorm/PReLU vectors and small kernels below. */
const INIT = (() => {
  const b = createBackbone({
    name: "iresnet",
    inputShape: [16, 16, 1],
    layers: [1, 1],
    widths: [8, 48],
    embeddingDim: 8,
  });
  const values = b.trainableVariables().map((v) => ({ shape: [...v.shape], data: v.dataSync() as Float32Array }));
  b.dispose();
  return values;
})();

function variables(): Variable[] {
  return INIT.map(({ shape, data }) => tf.tidy(() => tf.variable(tf.tensor(data, shape))));
}

/** Seeded gradients of each step, large enough that clipping at 1 applies. */
function gradients(steps: number): Float32Array[][] {
  const rng = new Rng(11);
  return Array.from({ length: steps }, (_, t) =>
    INIT.map(({ data }) => Float32Array.from(data, () => (rng.next() - 0.5) * (t % 2 ? 4 : 0.01))),
  );
}

/** One trainer-like step: prepare, global norm, clip to `clip`, apply. Returns the norm. */
function step(opt: Optimizer, grads: Float32Array[], vars: Variable[], lr: number, clip: number): number {
  const gs = grads.map((g, k) => tf.tensor(g, vars[k].shape));
  const update = opt.prepare(gs);
  tf.dispose(gs); // the update holds what it needs
  const sq = update.squaredNorm();
  const norm = Math.sqrt(sq.dataSync()[0]);
  sq.dispose();
  update.apply(lr, clipScale(norm, clip));
  return norm;
}

function closeArrays(a: ArrayLike<number>, b: ArrayLike<number>, what: string, tol = 1e-5): void {
  assert.is(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++)
    if (!(Math.abs(a[i] - b[i]) <= tol * (1e-3 + Math.abs(b[i]))))
      assert.unreachable(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

const CONFIGS: Record<string, OptimizerConfig> = {
  "SGD momentum 0.9, weight decay 5e-4": { type: "sgd", lr: 0.1, momentum: 0.9, weightDecay: 5e-4 },
  "SGD Nesterov, weight decay 0.01": { type: "sgd", lr: 0.05, momentum: 0.8, nesterov: true, weightDecay: 0.01 },
  "SGD without momentum": { type: "sgd", lr: 0.1, momentum: 0, weightDecay: 5e-4 },
  "AdamW, weight decay 0.05": { type: "adamw", lr: 0.01, weightDecay: 0.05 },
};

test("the backbone has variables on both sides of FUSE_MAX_SIZE", () => {
  const sizes = INIT.map(({ data }) => data.length);
  assert.ok(sizes.some((n) => n > FUSE_MAX_SIZE) && sizes.filter((n) => n <= FUSE_MAX_SIZE).length > 10, `${sizes}`);
});

for (const [name, config] of Object.entries(CONFIGS)) {
  test(`flat and per-variable updates take the same trajectory: ${name}, clipped, 6 steps, two groups`, () => {
    const steps = 6;
    const grads = gradients(steps);
    const run = (fuseMaxSize: number | undefined) => {
      const vars = variables();
      // two groups, as the backbone and head groups: each has its own weight decay and its own flat vector
      const half = Math.floor(vars.length / 2);
      const wd = (config.weightDecay ?? 0) * 2;
      const opt = new Optimizer(
        config,
        [
          { variables: vars.slice(0, half), weightDecay: config.weightDecay ?? 0 },
          { variables: vars.slice(half), weightDecay: wd },
        ],
        { fuseMaxSize },
      );
      const norms = grads.map((g, t) => step(opt, g, vars, config.lr / (1 + t), 1));
      return { vars, opt, norms };
    };
    const before = tf.memory().numTensors;
    const flat = run(undefined);
    const perVariable = run(0);
    assert.ok(flat.norms.some((n) => n > 1) && flat.norms.some((n) => n < 1), "some steps clip, some do not");
    closeArrays(flat.norms, perVariable.norms, "gradient norms", 1e-6);
    for (const [k, v] of flat.vars.entries())
      closeArrays(v.dataSync(), perVariable.vars[k].dataSync(), `variable ${k}`);
    const [fs, ps] = [flat.opt.saveState(), perVariable.opt.saveState()];
    assert.is(fs.length, ps.length);
    assert.equal(flat.opt.stateShapes(), perVariable.opt.stateShapes());
    for (const [k, a] of fs.entries()) closeArrays(a.data, ps[k].data, `state array ${k}`);
    for (const r of [flat, perVariable]) {
      r.opt.dispose();
      tf.dispose(r.vars);
    }
    assert.is(tf.memory().numTensors, before, "dispose frees slots and indices");
  });
}

test("a step leaves the tensor count unchanged; a discarded update changes nothing", () => {
  const vars = variables();
  const opt = new Optimizer(CONFIGS["SGD momentum 0.9, weight decay 5e-4"], [{ variables: vars, weightDecay: 5e-4 }]);
  const grads = gradients(3);
  step(opt, grads[0], vars, 0.1, 1);
  const count = tf.memory().numTensors;
  step(opt, grads[1], vars, 0.1, 1);
  assert.is(tf.memory().numTensors, count, "a step");
  const values = vars.map((v) => v.dataSync().slice());
  const gs = grads[2].map((g, k) => tf.tensor(g, vars[k].shape));
  const update = opt.prepare(gs);
  tf.dispose(gs);
  update.discard();
  assert.is(tf.memory().numTensors, count, "a discarded update");
  for (const [k, v] of vars.entries()) assert.equal(v.dataSync(), values[k], `variable ${k} untouched`);
  assert.is(opt.step, 2);
  assert.throws(() => update.apply(0.1), /already applied or discarded/);
  assert.throws(() => opt.prepare([]), /got 0 gradients for/);
  opt.dispose();
  tf.dispose(vars);
});

test("the saved state resumes exactly: a fresh optimizer loaded from it continues bit-identically", () => {
  const config = CONFIGS["AdamW, weight decay 0.05"];
  const grads = gradients(5);
  const a = variables();
  const optA = new Optimizer(config, [{ variables: a, weightDecay: 0.05 }]);
  for (const g of grads.slice(0, 3)) step(optA, g, a, 0.01, 1);
  const saved = optA.saveState();
  const savedVars = a.map((v) => v.dataSync().slice());
  for (const g of grads.slice(3)) step(optA, g, a, 0.01, 1);

  const b = variables();
  for (const [k, v] of b.entries()) v.assign(tf.tensor(savedVars[k], v.shape));
  const optB = new Optimizer(config, [{ variables: b, weightDecay: 0.05 }]);
  optB.loadState(saved.map((a) => a.data));
  optB.step = 3;
  for (const g of grads.slice(3)) step(optB, g, b, 0.01, 1);
  for (const [k, v] of a.entries()) assert.equal(b[k].dataSync(), v.dataSync(), `variable ${k}`);
  const [stateA, stateB] = [optA.saveState(), optB.saveState()];
  for (const [k, s] of stateB.entries()) assert.equal(s, stateA[k], `state array ${k}`);
  assert.throws(() => optB.loadState(saved.slice(1).map((a) => a.data)), /state arrays for/);
  optA.dispose();
  optB.dispose();
  tf.dispose([...a, ...b]);
});

test("the flat path runs a fraction of the per-variable path's TensorFlow ops (an iResNet backbone's update + clip)", async () => {
  const counts: number[] = [];
  for (const fuseMaxSize of [undefined, 0]) {
    const vars = variables();
    const opt = new Optimizer(
      CONFIGS["SGD momentum 0.9, weight decay 5e-4"],
      [{ variables: vars, weightDecay: 5e-4 }],
      {
        fuseMaxSize,
      },
    );
    const grads = gradients(1)[0];
    step(opt, grads, vars, 0.1, 1e-3);
    const probe = opProbe(tf);
    probe.start();
    step(opt, grads, vars, 0.1, 1e-3);
    const p = await probe.stop();
    counts.push(p.nativeOps.reduce((a, o) => a + o.count, 0));
    opt.dispose();
    tf.dispose(vars);
  }
  const [flat, perVariable] = counts;
  const n = INIT.length;
  // per variable: 2 for the norm, 1 for the clip, 6 for SGD; flat: one gather back per small variable + a few
  assert.ok(perVariable >= 8 * n, `per-variable ${perVariable} ops for ${n} variables`);
  assert.ok(flat < perVariable / 3, `flat ${flat} ops against per-variable ${perVariable}`);
});

test.run();
