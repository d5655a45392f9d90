// `marginlab doctor` reports what is missing, with the fix, and exits non-zero; all green when complete.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { doctorPassed, formatDoctorTable, runDoctor } from "../src/doctor";

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

test.run();
