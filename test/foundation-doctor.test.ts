// `marginlab doctor` reports what is missing, with the fix, and exits non-zero; all green when complete.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as gpuEnv from "../scripts/setup/gpu-env.cjs";
import type { BackendInfo } from "../src/backend";
import { describeBackend, doctorPassed, formatDoctorTable, runDoctor } from "../src/doctor";

const root = path.resolve(__dirname, "..");
// A PATH with node but no system-wide jupyter/mlflow, so only the (missing) venv could provide them.
const bareEnv = { ...process.env, PATH: path.dirname(process.execPath), MARGINLAB_VENV: "/nonexistent/venv" };

test("a missing Python environment is reported as missing, with the fix, and fails the doctor", async () => {
  const results = await runDoctor({ env: bareEnv });
  const byName = Object.fromEntries(results.map((r) => [r.name, r]));
  assert.is(byName["Python environment"].status, "missing");
  assert.match(byName["Python environment"].fix ?? "", /npm install/);
  assert.is(byName.JupyterLab.status, "missing");
  assert.is(byName.MLflow.status, "missing");
  assert.is(byName["TensorFlow backend"].status, "ok", "the backend does not depend on Python");
  assert.is(doctorPassed(results), false);
  const table = formatDoctorTable(results);
  assert.match(table, /Python environment\s+MISSING/);
  assert.match(table, /fix: run `npm install`/);
});

test("an unreachable tracking server is a warning, not a failure, and hides credentials", async () => {
  const results = await runDoctor({ trackingUri: "http://alice:s3cret@127.0.0.1:9/", timeoutMs: 500 });
  const server = results.find((r) => r.name === "Tracking server")!;
  assert.is(server.status, "warn");
  assert.not.match(server.detail, /s3cret/);
  assert.is(server.required, false);
});

test("`marginlab doctor` exits 1 when something required is missing and 0 on this installed checkout", () => {
  const cli = path.join(root, "bin", "marginlab.cjs");
  const missing = spawnSync(process.execPath, [cli, "doctor"], { encoding: "utf8", env: bareEnv, cwd: root });
  assert.is(missing.status, 1, missing.stdout + missing.stderr);
  assert.match(missing.stdout, /some required checks failed/);
  const { MLFLOW_TRACKING_URI: _unused, ...env } = process.env;
  const green = spawnSync(process.execPath, [cli, "doctor"], { encoding: "utf8", env, cwd: root });
  assert.is(green.status, 0, green.stdout + green.stderr);
  assert.match(green.stdout, /all required checks passed/);
  assert.not.match(green.stdout, /MISSING/);
});

test("a backend that refuses to load shows its own message, not the code around the throw", async () => {
  const results = await runDoctor({ env: { ...process.env, MARGINLAB_BACKEND: "tpu" }, timeoutMs: 500 });
  const backend = results.find((r) => r.name === "TensorFlow backend")!;
  assert.is(backend.status, "missing");
  assert.match(backend.detail, /^MARGINLAB_BACKEND=tpu is not valid: allowed are "cpu", "gpu" and "tfjs-node-gpu"/);
});

test("the backend row names the package, the device and where libtensorflow came from", async () => {
  const results = await runDoctor({ timeoutMs: 500 });
  const backend = results.find((r) => r.name === "TensorFlow backend")!;
  assert.is(backend.status, "ok", backend.detail);
  assert.match(backend.detail, /^@tensorflow\/tfjs-node(-gpu)? on (CPU|GPU \(.+\)): libtensorflow 2\.21\.0 from /);
  assert.match(
    backend.detail,
    /from (the tensorflow(-cpu)? 2\.21\.0 wheel|the package's own download) \(\/.+libtensorflow/,
  );
  const gpuRow = results.find((r) => r.name === "GPU build");
  assert.is(gpuRow !== undefined, gpuEnv.gpuBuildInstalled(root), "a GPU build row exactly when it is installed");
  const gpu: BackendInfo = {
    name: "tensorflow",
    package: "@tensorflow/tfjs-node-gpu",
    tensorflowVersion: "2.21.0",
    libtensorflow: {
      path: "/x/.cache/libtensorflow-gpu-2.21.0/lib/libtensorflow_cc.so.2",
      origin: "the tensorflow 2.21.0 wheel",
    },
    tfjsVersion: "4.22.0",
    device: "GPU",
    gpus: ["NVIDIA H200", "NVIDIA H200"],
    reason: "MARGINLAB_BACKEND=gpu",
  };
  assert.is(
    describeBackend(gpu),
    "@tensorflow/tfjs-node-gpu on GPU (NVIDIA H200): libtensorflow 2.21.0 from the tensorflow 2.21.0 wheel (/x/.cache/libtensorflow-gpu-2.21.0/lib/libtensorflow_cc.so.2), tfjs 4.22.0 [MARGINLAB_BACKEND=gpu]",
  );
});

test.run();
