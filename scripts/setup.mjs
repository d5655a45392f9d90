#!/usr/bin/env node
// `npm install` runs this (postinstall); `npm run setup` re-runs it. Each step is idempotent and
// says what it did; a failing step names itself and the fix, and the install exits non-zero.
import { homedir } from "node:os";
import path from "node:path";
import { setupChromium } from "./setup/chromium.mjs";
import { gpuBuildHint, setupGpuBuild } from "./setup/gpu-build.mjs";
import { writeKernelSpec } from "./setup/kernel-spec.mjs";
import { setupNativeBackend } from "./setup/native-backend.mjs";
import { setupPythonEnv, venvDir } from "./setup/python-env.mjs";
import { log, run, SetupError } from "./setup/util.mjs";

function checkNode() {
  const [major, minor] = process.versions.node.split(".").map(Number);
  if (major < 20 || (major === 20 && minor < 19)) {
    throw new SetupError(
      "node version",
      `Node ${process.versions.node} is too old`,
      "install Node.js 20.19 or newer (tslab and require(esm) need it)",
    );
  }
}

function userJupyterDataDir() {
  const fromJupyter = run("jupyter", ["--data-dir"]);
  if (fromJupyter.status === 0 && fromJupyter.stdout.trim()) return fromJupyter.stdout.trim();
  return path.join(homedir(), ".local", "share", "jupyter");
}

function main() {
  const started = Date.now();
  checkNode();
  setupNativeBackend();
  const skipPython = process.env.MARGINLAB_SKIP_PYTHON === "1";
  if (skipPython) {
    log("python environment: skipped (MARGINLAB_SKIP_PYTHON=1); bring your own JupyterLab and MLflow server");
  } else {
    setupPythonEnv();
  }
  // Opt-in (docs/gpu.md); before the kernel spec, which carries the GPU build's loader path.
  if (process.env.MARGINLAB_GPU === "1") setupGpuBuild();
  else gpuBuildHint();
  setupChromium();
  const spec = writeKernelSpec(skipPython ? userJupyterDataDir() : path.join(venvDir, "share", "jupyter"));
  log(`kernel spec: ${spec.changed ? "written" : "unchanged"} at ${spec.file}`);
  log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s. Check with: npx marginlab doctor`);
}

try {
  main();
} catch (error) {
  if (error instanceof SetupError) {
    process.stderr.write(
      `\n[marginlab setup] FAILED at step: ${error.step}\n${error.message}\nWhat to do: ${error.fix}\n\n`,
    );
  } else {
    process.stderr.write(`\n[marginlab setup] FAILED unexpectedly: ${error?.stack ?? error}\n`);
  }
  process.exit(1);
}
