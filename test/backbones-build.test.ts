/** Backbones: shapes, named configurations, BatchNorm's closed-form gradient and running statistics. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { BACKBONES, createBackbone } from "../src/backbones";
import { BatchNorm, fusedBatchNormStatus } from "../src/backbones/batchnorm";
import { tf } from "../src/backend";

type T = import("@tensorflow/tfjs-node").Tensor;

test("small backbones: output shapes, determinism from the seed, train/inference modes", () => {
  for (const name of ["lenet++", "iresnet-small", "mobilefacenet-small"] as const) {
    const inputShape = name === "lenet++" ? ([28, 28, 1] as const) : ([32, 32, 1] as const);
    const dim = name === "lenet++" ? 3 : 16;
    const a = createBackbone({ name, inputShape, embeddingDim: dim, seed: 4 });
    const b = createBackbone({ name, inputShape, embeddingDim: dim, seed: 4 });
    const x = tf.randomNormal([3, ...inputShape], 0, 1, "float32", 1) as import("@tensorflow/tfjs-node").Tensor4D;
    const ya = a.apply(x, false);
    const yb = b.apply(x, false);
    assert.equal(ya.shape, [3, dim], name);
    assert.equal(ya.arraySync(), yb.arraySync(), `${name}: same seed, same weights`);
    assert.ok(a.parameterCount() > 0);
    assert.ok(a.trainableVariables().length > 0);
    const before = tf.memory().numTensors;
    const yt = a.apply(x, true);
    yt.dispose();
    assert.is(tf.memory().numTensors, before, `${name}: training forward leaves no tensors`);
    tf.dispose([x, ya, yb]);
    a.dispose();
    b.dispose();
  }
});

test("every named backbone builds; iResNet-18 at 112x112 has InsightFace's 24.0 M parameters", () => {
  for (const name of BACKBONES) {
    // r50/r100/mbf_large differ from r18/r34/mbf only in block counts and take seconds each to initialise
    if (name === "iresnet50" || name === "iresnet100" || name === "mobilefacenet-large") continue;
    // full sizes at 32x32 inputs (building them at 112x112 is slow on 2 cores), r18 at its real size
    const shape =
      name === "lenet++"
        ? ([28, 28, 1] as const)
        : name === "iresnet18"
          ? ([112, 112, 3] as const)
          : ([32, 32, 3] as const);
    const b = createBackbone({ name, inputShape: shape, embeddingDim: name === "lenet++" ? 2 : 512 });
    assert.is(b.inputShape[0], shape[0]);
    assert.is(b.embeddingDim, name === "lenet++" ? 2 : 512);
    if (name === "iresnet18")
      assert.ok(Math.abs(b.parameterCount() - 24.0e6) < 0.2e6, `r18 has ${b.parameterCount()} parameters`);
    b.dispose();
  }
});

for (const fused of [true, false])
  test(`BatchNorm (${fused ? "fused TensorFlow kernels" : "closed form"}): gradient equals autodiff of the formula; running stats as PyTorch`, () => {
    const layer = new BatchNorm({ momentum: 0.1, fused });
    const input = tf.input({ shape: [3, 3, 4] });
    const model = tf.model({
      inputs: input,
      outputs: layer.apply(input) as import("@tensorflow/tfjs-node").SymbolicTensor,
    });
    const x = tf.randomNormal([5, 3, 3, 4], 1, 2, "float32", 7);
    const dy = tf.randomNormal([5, 3, 3, 4], 0, 1, "float32", 8);
    const [gamma, beta] = layer.trainableWeights.map((w) => w.read() as import("@tensorflow/tfjs-node").Variable);
    gamma.assign(tf.tensor1d([1.5, 0.5, -1, 2]));
    beta.assign(tf.tensor1d([0.1, 0.2, 0.3, 0.4]));
    const ours = tf.grads((xi: T, g: T, b: T) => {
      void g;
      void b;
      return tf.sum(tf.mul(model.apply(xi, { training: true }) as T, dy));
    })([x, gamma, beta]);
    const ref = tf.grads((xi: T, g: T, b: T) => {
      const mean = tf.mean(xi, [0, 1, 2]);
      const variance = tf.mean(tf.square(tf.sub(xi, mean)), [0, 1, 2]);
      const y = tf.add(tf.mul(tf.div(tf.sub(xi, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b);
      return tf.sum(tf.mul(y, dy));
    })([x, gamma, beta]);
    const close = (a: T, b: T, tol: number) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] < tol;
    assert.ok(close(ours[0], ref[0], 1e-4), "dx");
    // our layer reads gamma/beta as variables inside, so compare their grads through variableGrads
    const vg = tf.variableGrads(
      () => tf.sum(tf.mul(model.apply(x, { training: true }) as T, dy)) as import("@tensorflow/tfjs-node").Scalar,
      [gamma, beta],
    );
    const rg = tf.grads((g: T, b: T) => {
      const mean = tf.mean(x, [0, 1, 2]);
      const variance = tf.mean(tf.square(tf.sub(x, mean)), [0, 1, 2]);
      return tf.sum(tf.mul(tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b), dy));
    })([gamma, beta]);
    assert.ok(close(vg.grads[gamma.name], rg[0], 1e-3), "dgamma");
    assert.ok(close(vg.grads[beta.name], rg[1], 1e-4), "dbeta");
    // running statistics after the two training-mode calls above: mean_k = 0.9^k * 0 + (1 - 0.9^k) * batch mean
    const moving = layer.nonTrainableWeights.map((w) => w.read());
    const bm = tf.mean(x, [0, 1, 2]);
    const n = 5 * 9;
    const bv = tf.mul(tf.mean(tf.square(tf.sub(x, bm)), [0, 1, 2]), n / (n - 1));
    const k = 2;
    assert.ok(close(moving[0], tf.mul(bm, 1 - 0.9 ** k), 1e-5), "running mean");
    assert.ok(close(moving[1], tf.add(tf.mul(bv, 1 - 0.9 ** k), 0.9 ** k), 1e-4), "running variance (unbiased)");
    // inference uses the running statistics
    const yi = model.apply(x, { training: false }) as T;
    const expect = tf.add(tf.mul(tf.div(tf.sub(x, moving[0]), tf.sqrt(tf.add(moving[1], 1e-5))), gamma), beta);
    assert.ok(close(yi, expect, 1e-4), "inference");
    if (fused) assert.is(fusedBatchNormStatus(), true, "the native backend runs the fused kernels");
  });

test("iResNet's embedding BN has gamma fixed at 1 (not trainable), as InsightFace's features BN1d", () => {
  const b = createBackbone({ name: "iresnet", inputShape: [16, 16, 1], layers: [1], widths: [4], embeddingDim: 6 });
  const all = b.variables();
  const fixed = all.filter((v) => !v.trainable && v.variable.shape[0] === 6);
  assert.is(fixed.length, 3, "gamma + moving mean + moving variance of the 6-D BN");
  b.dispose();
  const raw = createBackbone({
    name: "iresnet",
    inputShape: [16, 16, 1],
    layers: [1],
    widths: [4],
    embeddingDim: 6,
    embeddingBN: false,
  });
  assert.is(raw.variables().filter((v) => v.variable.shape[0] === 6).length, 1, "only the FC bias is 6-long");
  raw.dispose();
});

test.run();
