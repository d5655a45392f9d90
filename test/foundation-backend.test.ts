// The native backend loads, trains a conv layer, and refuses bad configuration loudly.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { backendInfo, tf } from "../src/backend";

const root = path.resolve(__dirname, "..");

function importBackendWith(env: NodeJS.ProcessEnv) {
  return spawnSync(process.execPath, ["--require", "tsx/cjs", "-e", "require('./src/backend')"], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, ...env },
  });
}

test("the backend is native libtensorflow, not the pure-JS fallback", () => {
  assert.is(tf.getBackend(), "tensorflow");
  assert.is(backendInfo.name, "tensorflow");
  assert.ok(/^\d+\.\d+/.test(backendInfo.tensorflowVersion), `TF version: ${backendInfo.tensorflowVersion}`);
  assert.ok(["CPU", "GPU"].includes(backendInfo.device));
});

test("a conv layer trains one step: weights move and the loss drops", () => {
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({
        inputShape: [16, 16, 3],
        filters: 8,
        kernelSize: 3,
        activation: "relu",
        kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }),
      }),
      tf.layers.globalAveragePooling2d({}),
      tf.layers.dense({ units: 4, kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
    ],
  });
  const optimizer = tf.train.sgd(0.1);
  const x = tf.randomNormal([8, 16, 16, 3], 0, 1, "float32", 3);
  const y = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 0, 1, 2, 3], "int32"), 4);
  const lossOf = () =>
    tf.losses.softmaxCrossEntropy(
      y,
      model.apply(x) as import("@tensorflow/tfjs-node").Tensor,
    ) as import("@tensorflow/tfjs-node").Scalar;
  const before = model.layers[0].getWeights()[0].dataSync().slice();
  const loss0 = tf.tidy(() => lossOf().dataSync()[0]);
  const numTensors = tf.memory().numTensors;
  tf.tidy(() => {
    optimizer.minimize(lossOf);
  });
  const loss1 = tf.tidy(() => lossOf().dataSync()[0]);
  const after = model.layers[0].getWeights()[0].dataSync();
  assert.ok(
    before.some((v, i) => v !== after[i]),
    "conv kernel changed",
  );
  assert.ok(loss1 < loss0, `loss dropped: ${loss0} -> ${loss1}`);
  // The optimizer creates its slots on the first step; nothing else may leak.
  assert.ok(tf.memory().numTensors - numTensors <= 0, "no tensors leaked by the step");
  tf.dispose([x, y]);
  model.dispose();
  optimizer.dispose();
});

test("MARGINLAB_BACKEND with a bad value is an error naming the allowed values", () => {
  const result = importBackendWith({ MARGINLAB_BACKEND: "tpu" });
  assert.is.not(result.status, 0);
  assert.match(result.stderr, /MARGINLAB_BACKEND=tpu is not valid: allowed are "cpu" and "gpu"/);
});

test("MARGINLAB_BACKEND=gpu without tfjs-node-gpu fails with the fix, never falls back silently", () => {
  const result = importBackendWith({ MARGINLAB_BACKEND: "gpu" });
  assert.is.not(result.status, 0);
  assert.match(result.stderr, /@tensorflow\/tfjs-node-gpu is not installed/);
  assert.match(result.stderr, /npm install @tensorflow\/tfjs-node-gpu/);
});

test("MARGINLAB_BACKEND=cpu loads tfjs-node", () => {
  const result = spawnSync(
    process.execPath,
    ["--require", "tsx/cjs", "-e", "process.stdout.write(JSON.stringify(require('./src/backend').backendInfo))"],
    { cwd: root, encoding: "utf8", env: { ...process.env, MARGINLAB_BACKEND: "cpu" } },
  );
  assert.is(result.status, 0, result.stderr);
  const info = JSON.parse(result.stdout);
  assert.is(info.package, "@tensorflow/tfjs-node");
  assert.is(info.reason, "MARGINLAB_BACKEND=cpu");
});

test.run();
