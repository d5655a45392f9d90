#!/usr/bin/env node
// `npm run test:gpu-build`: the opt-in check of the GPU build (docs/gpu.md), not part of `npm test`.
// Clones this checkout's committed HEAD into a scratch folder, runs `MARGINLAB_GPU=1 npm install` there, checks
// what the GPU build installed, then runs the whole suite on @tensorflow/tfjs-node-gpu (on the CPU when the
// machine has no GPU). Downloads about 3.7 GB the first time; a second run reuses the folder and its caches.
// Usage: node scripts/test-gpu-build.mjs [--dir <folder>]   (default: $TMPDIR/marginlab-gpu-build)
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const source = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dirFlag = process.argv.indexOf("--dir");
const dir = path.resolve(dirFlag > 0 ? process.argv[dirFlag + 1] : path.join(tmpdir(), "marginlab-gpu-build"));
const results = [];

function step(name, command, args, options = {}) {
  const t0 = Date.now();
  process.stdout.write(`\n== ${name}: ${command} ${args.join(" ")}\n`);
  const result = spawnSync(command, args, {
    cwd: dir,
    stdio: options.capture ? "pipe" : "inherit",
    encoding: "utf8",
    ...options,
  });
  const secs = (Date.now() - t0) / 1000;
  process.stdout.write(`== ${name}: exit ${result.status} after ${secs.toFixed(0)} s\n`);
  return { ...result, secs };
}

function check(name, ok, detail) {
  results.push({ name, ok });
  process.stdout.write(`${ok ? "ok  " : "FAIL"} ${name}${detail ? `: ${detail}` : ""}\n`);
}

function du(target) {
  const out = spawnSync("du", ["-sh", "-L", target], { encoding: "utf8" }).stdout.split("\t")[0];
  return out || "?";
}

const started = Date.now();
const head = spawnSync("git", ["rev-parse", "HEAD"], { cwd: source, encoding: "utf8" }).stdout.trim();
if (existsSync(path.join(dir, ".git"))) {
  step("update clone", "git", ["fetch", "--quiet", source, head]);
  step("update clone", "git", ["reset", "--quiet", "--hard", head]);
} else {
  const clone = spawnSync("git", ["clone", "--quiet", source, dir], { stdio: "inherit" });
  if (clone.status !== 0) process.exit(1);
  step("checkout", "git", ["checkout", "--quiet", head]);
}
process.stdout.write(`GPU build of ${head.slice(0, 12)} in ${dir}\n`);

const install = step("install", "npm", ["install", "--no-audit", "--no-fund"], {
  env: { ...process.env, MARGINLAB_GPU: "1" },
});
check("MARGINLAB_GPU=1 npm install", install.status === 0, `${install.secs.toFixed(0)} s`);
if (install.status !== 0) process.exit(1);

const gpuEnv = createRequire(import.meta.url)(path.join(dir, "scripts", "setup", "gpu-env.cjs"));
const cudaDirs = gpuEnv.cudaLibraryDirs(dir);
const loaderEnv = { ...process.env, LD_LIBRARY_PATH: gpuEnv.loaderPathWithCuda(dir) };

const probe = step(
  "load",
  process.execPath,
  ["-e", "const tf=require('@tensorflow/tfjs-node-gpu');process.stdout.write(tf.backend().binding.TF_Version)"],
  { capture: true, env: { ...loaderEnv, TF_CPP_MIN_LOG_LEVEL: "3" } },
);
check("@tensorflow/tfjs-node-gpu loads libtensorflow 2.21.0", probe.stdout === "2.21.0", probe.stdout || probe.stderr);

// Every library of the CUDA wheels resolves all its dependencies on the loader path, except the driver's libcuda.
const unresolved = new Set();
for (const libDir of cudaDirs) {
  for (const file of readdirSync(libDir).filter((f) => /\.so(\.\d+)*$/.test(f))) {
    const ldd = spawnSync("ldd", [path.join(libDir, file)], { encoding: "utf8", env: loaderEnv });
    for (const line of ldd.stdout.split("\n")) {
      const lib = /^\s*(\S+) => not found/.exec(line)?.[1];
      if (lib && lib !== "libcuda.so.1") unresolved.add(`${file} needs ${lib}`);
    }
  }
}
check(
  `the ${cudaDirs.length} CUDA library folders resolve every dependency but the driver's libcuda.so.1`,
  cudaDirs.length >= 11 && unresolved.size === 0,
  [...unresolved].join(", "),
);

const kernelFile = path.join(dir, ".venv", "share", "jupyter", "kernels", "marginlab", "kernel.json");
const kernelPath = existsSync(kernelFile)
  ? (JSON.parse(readFileSync(kernelFile, "utf8")).env.LD_LIBRARY_PATH ?? "")
  : "";
check(
  "the kernel spec puts the CUDA folders on LD_LIBRARY_PATH",
  cudaDirs.every((d) => kernelPath.split(":").includes(d)),
);

// The CLI restarts itself with the loader path when the GPU build would run on a GPU (forced here).
const doctor = step("doctor", process.execPath, ["bin/marginlab.cjs", "doctor", "--json"], {
  capture: true,
  env: { ...process.env, MARGINLAB_BACKEND: "gpu" },
});
const rows = JSON.parse(doctor.stdout || "[]");
const gpuRow = rows.find((r) => r.name === "GPU build");
const backendRow = rows.find((r) => r.name === "TensorFlow backend");
check(
  "`npx marginlab` restarts with the CUDA folders on LD_LIBRARY_PATH",
  /all on LD_LIBRARY_PATH/.test(gpuRow?.detail),
);
const hasGpu = gpuEnv.cudaDeviceVisible();
check(
  hasGpu ? "MARGINLAB_BACKEND=gpu runs on the GPU" : "MARGINLAB_BACKEND=gpu without a device is a clear error",
  hasGpu ? / on GPU/.test(backendRow?.detail) : /no CUDA device is visible/.test(backendRow?.detail),
  backendRow?.detail,
);

const suite = step("npm test on tfjs-node-gpu", "npm", ["test"], {
  capture: true,
  env: { ...loaderEnv, MARGINLAB_BACKEND: "tfjs-node-gpu" },
  maxBuffer: 256 * 1024 * 1024,
});
// run-tests.mjs ends with the suite's own "N passed, N failed" line (each file's line has more before it).
const summary = /^(\d+) passed, (\d+) failed$/m.exec(suite.stdout);
process.stdout.write(
  suite.stdout
    .split("\n")
    .filter((l) => /^(FAIL|ok)/.test(l))
    .join("\n"),
);
check("the whole suite passes on tfjs-node-gpu", summary !== null && summary[2] === "0", summary?.[0]);

process.stdout.write(
  `\nsizes: ${du(path.join(dir, ".cache", "libtensorflow-gpu-2.21.0"))} libtensorflow (GPU wheel), ` +
    `${du(gpuEnv.cudaWheelsDir(dir))} CUDA wheels in .venv\n` +
    `times: install ${install.secs.toFixed(0)} s, tests ${suite.secs.toFixed(0)} s, all ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
);
const failed = results.filter((r) => !r.ok).length;
process.stdout.write(`${results.length - failed} passed, ${failed} failed\n`);
process.exit(failed > 0 ? 1 : 0);
