/**
 * The backbones' fused kernels against their op-by-op references: BatchNorm's native kernels (training
 * and inference, rank 4 and rank 2) against the closed form, the running averages the forward kernel
 * updates against the closed form's, inference gradients against autodiff of the formula.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { BatchNorm, fusedBatchNormStatus } from "../src/backbones/batchnorm";
import { Conv2D } from "../src/backbones/conv";
import { PReLU, prelu } from "../src/backbones/prelu";
import { tf } from "../src/backend";

type T = import("@tensorflow/tfjs-node").Tensor;
type V = import("@tensorflow/tfjs-node").Variable;

const maxDiff = (a: T, b: T) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

function layer(fused: boolean, shape: number[], momentum = 0.1): BatchNorm {
  const l = new BatchNorm({ momentum, fused });
  l.apply(tf.input({ shape: shape.slice(1) }));
  const c = shape[shape.length - 1];
  const [gamma, beta] = l.trainableWeights.map((w) => w.read() as V);
  gamma.assign(tf.linspace(-1.5, 2, c));
  beta.assign(tf.linspace(0.3, -0.2, c));
  return l;
}

for (const shape of [
  [6, 5, 4, 3],
  [9, 7],
]) {
  test(`BatchNorm ${shape.length === 4 ? "[B,H,W,C]" : "[B,C]"}: fused kernels equal the closed form (outputs, gradients, running averages over 3 steps)`, () => {
    const fused = layer(true, shape);
    const ref = layer(false, shape);
    for (let step = 0; step < 3; step++) {
      const x = tf.randomNormal(shape, 0.5 * step, 1 + step, "float32", 11 + step);
      const dy = tf.randomNormal(shape, 0, 1, "float32", 21 + step);
      const before = tf.memory().numTensors;
      const run = (l: BatchNorm) => {
        const vars = l.trainableWeights.map((w) => w.read() as V);
        const { value, grads } = tf.variableGrads(
          () => tf.sum(tf.mul(l.apply(x, { training: true }) as T, dy)) as import("@tensorflow/tfjs-node").Scalar,
          vars,
        );
        const dx = tf.grad((xi: T) => tf.sum(tf.mul(l.apply(xi, { training: true }) as T, dy)))(x);
        return { value, dgamma: grads[vars[0].name], dbeta: grads[vars[1].name], dx };
      };
      const a = run(fused);
      const b = run(ref);
      assert.ok(maxDiff(a.value, b.value) < 1e-3, `loss at step ${step}`);
      assert.ok(maxDiff(a.dx, b.dx) < 1e-4, `dx at step ${step}: ${maxDiff(a.dx, b.dx)}`);
      assert.ok(maxDiff(a.dgamma, b.dgamma) < 1e-3, `dgamma at step ${step}`);
      assert.ok(maxDiff(a.dbeta, b.dbeta) < 1e-4, `dbeta at step ${step}`);
      tf.dispose([a.value, a.dx, a.dgamma, a.dbeta, b.value, b.dx, b.dgamma, b.dbeta]);
      assert.is(tf.memory().numTensors, before, "a training call leaves the tensor count unchanged");
      // two calls per step (variableGrads and grad) update the running averages twice in both
      const [fm, fv] = fused.nonTrainableWeights.map((w) => w.read());
      const [rm, rv] = ref.nonTrainableWeights.map((w) => w.read());
      assert.ok(maxDiff(fm, rm) < 1e-5, `running mean after step ${step}: ${maxDiff(fm, rm)}`);
      assert.ok(maxDiff(fv, rv) < 1e-4, `running variance after step ${step}: ${maxDiff(fv, rv)}`);
      tf.dispose([x, dy]);
    }
    assert.is(fusedBatchNormStatus(), true, "the native backend ran the fused kernels");
  });

  test(`BatchNorm ${shape.length === 4 ? "[B,H,W,C]" : "[B,C]"} inference: fused kernel and its gradient equal the formula's (autodiff)`, () => {
    const fused = layer(true, shape);
    // move the running statistics away from 0 / 1 first
    fused.apply(tf.randomNormal(shape, 2, 3, "float32", 5), { training: true });
    const x = tf.randomNormal(shape, 1, 2, "float32", 6);
    const dy = tf.randomNormal(shape, 0, 1, "float32", 7);
    const [gamma, beta] = fused.trainableWeights.map((w) => w.read() as V);
    const [mean, variance] = fused.nonTrainableWeights.map((w) => w.read().clone());
    const formula = (xi: T, g: T, b: T) =>
      tf.add(tf.mul(tf.div(tf.sub(xi, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b);
    assert.ok(maxDiff(fused.apply(x, { training: false }) as T, formula(x, gamma, beta)) < 1e-4, "inference output");
    const ours = tf.variableGrads(
      () => tf.sum(tf.mul(fused.apply(x, { training: false }) as T, dy)) as import("@tensorflow/tfjs-node").Scalar,
      [gamma, beta],
    );
    const dxOurs = tf.grad((xi: T) => tf.sum(tf.mul(fused.apply(xi, { training: false }) as T, dy)))(x);
    const [dx, dg, db] = tf.grads((xi: T, g: T, b: T) => tf.sum(tf.mul(formula(xi, g, b), dy)))([x, gamma, beta]);
    assert.ok(maxDiff(dxOurs, dx) < 1e-4, "dx");
    assert.ok(maxDiff(ours.grads[gamma.name], dg) < 1e-3, "dgamma");
    assert.ok(maxDiff(ours.grads[beta.name], db) < 1e-4, "dbeta");
    const [m2, v2] = fused.nonTrainableWeights.map((w) => w.read());
    assert.ok(maxDiff(m2, mean) === 0 && maxDiff(v2, variance) === 0, "inference leaves the running statistics alone");
  });
}

for (const shape of [
  [4, 5, 6, 3],
  [7, 5],
]) {
  test(`PReLU ${shape.length === 4 ? "[B,H,W,C]" : "[B,C]"}: output and gradients equal tfjs' prelu (autodiff), slopes of both signs, x = 0 included`, () => {
    const c = shape[shape.length - 1];
    const alpha = tf.reshape(tf.linspace(-0.5, 1.5, c), shape.length === 4 ? [1, 1, c] : [c]);
    // a grid with exact zeros and both signs
    const x = tf.tidy(() => {
      const r = tf.randomNormal(shape, 0, 1, "float32", 3);
      return tf.where(tf.less(tf.abs(r), 0.3), tf.zerosLike(r), r);
    });
    assert.ok(tf.sum(tf.equal(x, 0)).dataSync()[0] > 0, "the input has exact zeros");
    const dy = tf.randomNormal(shape, 0, 1, "float32", 4);
    const loss = (fn: (a: T, b: T) => T) => (xi: T, a: T) => tf.sum(tf.mul(fn(xi, a), dy));
    assert.ok(maxDiff(prelu(x, alpha), tf.prelu(x, alpha)) < 1e-7, "forward");
    const before = tf.memory().numTensors;
    const [dx, da] = tf.grads(loss(prelu))([x, alpha]);
    const [rx, ra] = tf.grads(loss(tf.prelu))([x, alpha]);
    assert.ok(maxDiff(dx, rx) < 1e-6, "dx");
    assert.ok(maxDiff(da, ra) < 1e-4, `dalpha: ${maxDiff(da, ra)}`);
    assert.equal(da.shape, alpha.shape);
    tf.dispose([dx, da, rx, ra]);
    assert.is(tf.memory().numTensors, before, "no tensors left behind");
  });
}

test("PReLU layer: weight 'alpha' of tfjs' shape ([1,1,C] for images, [C] for vectors), initialised at 0.25", () => {
  for (const [shape, alphaShape] of [
    [
      [8, 8, 5],
      [1, 1, 5],
    ],
    [[6], [6]],
  ]) {
    const l = new PReLU(0.25);
    l.apply(tf.input({ shape }));
    const [w] = l.trainableWeights;
    assert.ok(w.originalName.endsWith("/alpha"), w.originalName);
    assert.equal(w.shape, alphaShape);
    assert.equal(Array.from(w.read().dataSync()), new Array(alphaShape[alphaShape.length - 1]).fill(0.25));
  }
});

test("Conv2D layer: tfjs' Conv2D layer's weight, output and gradients; no input gradient where the input is data", async () => {
  for (const [strides, padding] of [
    [1, "same"],
    [2, "same"],
    [2, "valid"],
  ] as const) {
    const opts = { filters: 4, kernelSize: 3, strides, padding };
    const ours = new Conv2D({ ...opts, kernelInitializer: tf.initializers.heNormal({ seed: 5 }) });
    const ref = tf.layers.conv2d({ ...opts, useBias: false, kernelInitializer: tf.initializers.heNormal({ seed: 5 }) });
    const input = tf.input({ shape: [9, 9, 2] });
    const sym = ours.apply(input) as import("@tensorflow/tfjs-node").SymbolicTensor;
    assert.equal(sym.shape, (ref.apply(input) as import("@tensorflow/tfjs-node").SymbolicTensor).shape, "output shape");
    const [k] = ours.trainableWeights;
    const [rk] = ref.trainableWeights;
    assert.ok(k.originalName.endsWith("/kernel"));
    assert.is(maxDiff(k.read(), rk.read()), 0, "same initial kernel from the same initializer");
    const x = tf.randomNormal([3, 9, 9, 2], 0, 1, "float32", 9);
    const dy = tf.randomNormal(
      sym.shape.map((d) => d ?? 3),
      0,
      1,
      "float32",
      10,
    );
    const loss = (l: { apply: (x: T) => unknown }) => (xi: T) => tf.sum(tf.mul(l.apply(xi) as T, dy));
    assert.ok(maxDiff(ours.apply(x) as T, ref.apply(x) as T) < 1e-5, `forward (${strides}, ${padding})`);
    assert.ok(maxDiff(tf.grad(loss(ours))(x), tf.grad(loss(ref))(x)) < 1e-5, "dx");
    const g = tf.variableGrads(() => loss(ours)(x) as import("@tensorflow/tfjs-node").Scalar, [k.read() as V]);
    const rg = tf.variableGrads(() => loss(ref)(x) as import("@tensorflow/tfjs-node").Scalar, [rk.read() as V]);
    assert.ok(maxDiff(g.grads[(k.read() as V).name], rg.grads[(rk.read() as V).name]) < 1e-4, "dkernel");
    const profile = await tf.profile(() => {
      tf.variableGrads(() => loss(ours)(x) as import("@tensorflow/tfjs-node").Scalar, [k.read() as V]);
    });
    const names = profile.kernels.map((kn) => kn.name);
    assert.ok(names.includes("Conv2DBackpropFilter"), "the kernel's gradient is computed");
    assert.not.ok(names.includes("Conv2DBackpropInput"), "the data's gradient is not");
  }
});

test.run();
