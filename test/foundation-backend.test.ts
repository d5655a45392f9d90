// The native backend loads, trains a conv layer, and refuses bad configuration loudly. These tests run on
// whichever build is installed: the CPU one (`npm install`) or the GPU one (`npm run test:gpu-build`).
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as gpuEnv from "../scripts/setup/gpu-env.cjs";
import { backendInfo, filterStartupLog, tf } from "../src/backend";

const root = path.resolve(__dirname, "..");
const gpuInstalled = gpuEnv.gpuBuildInstalled(root);

/** Imports src/backend in a fresh process; stderr goes to a file when asked (a socket cannot be filtered). */
function importBackendWith(env: NodeJS.ProcessEnv, script = "require('./src/backend')") {
  return spawnSync(process.execPath, ["--require", "tsx/cjs", "-e", script], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, ...env },
  });
}

function stderrOfImportToFile(env: NodeJS.ProcessEnv): string {
  const dir = mkdtempSync(path.join(tmpdir(), "marginlab-stderr-"));
  const file = path.join(dir, "stderr.txt");
  const fd = openSync(file, "w");
  const { TF_CPP_MIN_LOG_LEVEL: _unset, ...inherited } = process.env;
  const result = spawnSync(process.execPath, ["--require", "tsx/cjs", "-e", "require('./src/backend')"], {
    cwd: root,
    env: { ...inherited, ...env },
    stdio: ["ignore", "ignore", fd],
  });
  closeSync(fd);
  const text = readFileSync(file, "utf8");
  rmSync(dir, { recursive: true, force: true });
  assert.is(result.status, 0, text);
  return text;
}

test("the backend is native libtensorflow, not the pure-JS fallback, and says which file it mapped", () => {
  assert.is(tf.getBackend(), "tensorflow");
  assert.is(backendInfo.name, "tensorflow");
  assert.ok(/^\d+\.\d+/.test(backendInfo.tensorflowVersion), `TF version: ${backendInfo.tensorflowVersion}`);
  assert.ok(["CPU", "GPU"].includes(backendInfo.device));
  assert.ok(existsSync(backendInfo.libtensorflow.path), backendInfo.libtensorflow.path);
  assert.match(backendInfo.libtensorflow.path, /libtensorflow(_cc)?\.so/);
  assert.is.not(backendInfo.libtensorflow.origin, "unknown");
  assert.is(backendInfo.gpus.length > 0, backendInfo.device === "GPU");
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
  assert.match(result.stderr, /MARGINLAB_BACKEND=tpu is not valid: allowed are "cpu", "gpu" and "tfjs-node-gpu"/);
});

test("MARGINLAB_BACKEND=gpu with no visible device fails with the fix, never falls back silently", () => {
  // CUDA_VISIBLE_DEVICES=-1 hides every device, on a GPU machine too.
  const result = importBackendWith({ MARGINLAB_BACKEND: "gpu", CUDA_VISIBLE_DEVICES: "-1" });
  assert.is.not(result.status, 0);
  if (gpuInstalled) {
    assert.match(result.stderr, /MARGINLAB_BACKEND=gpu but no CUDA device is visible/);
    assert.match(result.stderr, /CUDA_VISIBLE_DEVICES="-1" hides them/);
  } else {
    assert.match(result.stderr, /MARGINLAB_BACKEND=gpu but @tensorflow\/tfjs-node-gpu is not installed/);
    assert.match(result.stderr, /MARGINLAB_GPU=1 npm run setup/);
  }
});

test("MARGINLAB_BACKEND=tfjs-node-gpu loads the GPU build on whatever device there is, or says it is missing", () => {
  const result = importBackendWith(
    { MARGINLAB_BACKEND: "tfjs-node-gpu", CUDA_VISIBLE_DEVICES: "-1" },
    "process.stdout.write(JSON.stringify(require('./src/backend').backendInfo))",
  );
  if (!gpuInstalled) {
    assert.is.not(result.status, 0);
    assert.match(result.stderr, /MARGINLAB_BACKEND=tfjs-node-gpu but @tensorflow\/tfjs-node-gpu is not installed/);
    return;
  }
  assert.is(result.status, 0, result.stderr);
  const info = JSON.parse(result.stdout);
  assert.is(info.package, "@tensorflow/tfjs-node-gpu");
  assert.is(info.device, "CPU");
  assert.is(info.libtensorflow.origin, "the tensorflow 2.21.0 wheel");
});

test("TensorFlow's start-up lines are hidden by default and shown with TF_CPP_MIN_LOG_LEVEL=0", () => {
  const quiet = stderrOfImportToFile({});
  assert.not.match(quiet, /oneDNN custom operations|absl::InitializeLog|cpu_feature_guard/);
  const chatty = stderrOfImportToFile({ TF_CPP_MIN_LOG_LEVEL: "0" });
  assert.match(chatty, /oneDNN custom operations are on/);
});

test("the start-up filter keeps what TF_CPP_MIN_LOG_LEVEL lets through, continuation lines with their record", () => {
  const log = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796160701.179991   25550 port.cc:153] oneDNN custom operations are on.",
    "2026-12-01 21:00:00.000001: I tensorflow/core/platform/cpu_feature_guard.cc:210] optimized to use",
    "To enable the following instructions: AVX2",
    "E0000 00:00:1796160626.066297   23778 cuda_platform.cc:52] failed call to cuInit",
    "  detail of the error",
    "2026-12-01 21:00:00.000002: W tensorflow/x.cc:1] a warning",
  ].join("\n");
  assert.is(filterStartupLog(log, 3), "");
  assert.is(
    filterStartupLog(log, 2),
    "E0000 00:00:1796160626.066297   23778 cuda_platform.cc:52] failed call to cuInit\n  detail of the error\n",
  );
  const warnings = filterStartupLog(log, 1);
  assert.match(warnings, /^WARNING: All log messages/);
  assert.match(warnings, /a warning\n$/);
  assert.not.match(warnings, /oneDNN|AVX2/);
  assert.is(filterStartupLog("a line that is not TensorFlow's\n", 3), "a line that is not TensorFlow's\n");
});

test("TF_FORCE_GPU_ALLOW_GROWTH defaults to true and a user's value is kept", () => {
  const script = "require('./src/backend'); process.stdout.write(String(process.env.TF_FORCE_GPU_ALLOW_GROWTH))";
  const { TF_FORCE_GPU_ALLOW_GROWTH: _unset, ...inherited } = process.env;
  const byDefault = spawnSync(process.execPath, ["--require", "tsx/cjs", "-e", script], {
    cwd: root,
    encoding: "utf8",
    env: inherited,
  });
  assert.is(byDefault.stdout, "true", byDefault.stderr);
  assert.is(importBackendWith({ TF_FORCE_GPU_ALLOW_GROWTH: "false" }, script).stdout, "false");
});

test("the loader path: CUDA folders from deps/nvidia, restart only when the GPU build would run on a GPU", () => {
  const fake = mkdtempSync(path.join(tmpdir(), "marginlab-gpu-env-"));
  const pkg = path.join(fake, "node_modules", "@tensorflow", "tfjs-node-gpu");
  for (const lib of ["cublas", "cudnn"]) mkdirSync(path.join(pkg, "deps", "nvidia", lib, "lib"), { recursive: true });
  mkdirSync(path.join(pkg, "deps", "nvidia", "__pycache__"));
  assert.is(gpuEnv.gpuBuildInstalled(fake), false, "no package.json yet");
  writeFileSync(path.join(pkg, "package.json"), "{}");
  const dirs = gpuEnv.cudaLibraryDirs(fake);
  assert.equal(
    dirs.map((d) => path.basename(path.dirname(d))),
    ["cublas", "cudnn"],
  );
  const env = { LD_LIBRARY_PATH: "/opt/other" };
  assert.equal(gpuEnv.missingLoaderDirs(fake, env), dirs);
  assert.is(gpuEnv.loaderPathWithCuda(fake, env), [...dirs, "/opt/other"].join(":"));
  assert.is(gpuEnv.loaderPathWithCuda(fake, { LD_LIBRARY_PATH: dirs.join(":") }), dirs.join(":"), "no duplicates");
  assert.is(gpuEnv.needsLoaderRestart(fake, { ...env, MARGINLAB_BACKEND: "gpu" }), true);
  assert.is(gpuEnv.needsLoaderRestart(fake, { LD_LIBRARY_PATH: dirs.join(":"), MARGINLAB_BACKEND: "gpu" }), false);
  assert.is(gpuEnv.needsLoaderRestart(fake, { ...env, MARGINLAB_BACKEND: "cpu" }), false);
  assert.is(gpuEnv.needsLoaderRestart(fake, { ...env, CUDA_VISIBLE_DEVICES: "-1" }), false, "no device, no restart");
  assert.is(gpuEnv.cudaDeviceVisible({ CUDA_VISIBLE_DEVICES: "" }), false);
  rmSync(fake, { recursive: true, force: true });
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
