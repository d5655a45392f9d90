// `MARGINLAB_GPU=1 npm install` / `npm run setup`: @tensorflow/tfjs-node-gpu with its binding built against the
// TensorFlow 2.21 GPU wheel's libtensorflow (CUDA 12, SASS for sm_60 to sm_90), and the CUDA 12 libraries of that
// wheel's `and-cuda` extra in .venv. The package's own install script is skipped: it downloads libtensorflow 2.9.1
// for CUDA 11.2 / cuDNN 8.1, which has no code for current GPUs. See docs/gpu.md.
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { GPU_BUILD, setupNativeBackend } from "./native-backend.mjs";
import { ensureVenv, venvDir, venvPython } from "./python-env.mjs";
import { lastLines, log, root, run, SetupError } from "./util.mjs";

const gpuEnv = createRequire(import.meta.url)("./gpu-env.cjs");

export const TFJS_NODE_GPU_VERSION = "4.22.0";

// nvcc brings ptxas for XLA's just-in-time compilation, which the tfjs binding never runs.
const SKIPPED_CUDA_WHEELS = new Set(["nvidia-cuda-nvcc-cu12"]);

/** The libraries libtensorflow opens at run time (by soname); each must be in one of the wheels' lib folders. */
export const CUDA_SONAMES = [
  "libcudart.so.12",
  "libcublas.so.12",
  "libcublasLt.so.12",
  "libcudnn.so.9",
  "libcufft.so.11",
  "libcurand.so.10",
  "libcusolver.so.11",
  "libcusparse.so.12",
  "libnccl.so.2",
  "libcupti.so.12",
  "libnvrtc.so.12",
  "libnvJitLink.so.12",
];

const RETRY = "then run `MARGINLAB_GPU=1 npm run setup` again";

/** npm itself: the one running this script (npm_execpath) when there is one. */
function npmCommand() {
  const cli = process.env.npm_execpath;
  return cli && /\.c?js$/.test(cli) ? [process.execPath, cli] : ["npm"];
}

function installGpuPackage() {
  const manifest = path.join(GPU_BUILD.dir, "package.json");
  if (existsSync(manifest) && JSON.parse(readFileSync(manifest, "utf8")).version === TFJS_NODE_GPU_VERSION) {
    log(`GPU build: ${GPU_BUILD.pkg}@${TFJS_NODE_GPU_VERSION} is installed, nothing to do`);
    return;
  }
  log(`GPU build: npm install --no-save --ignore-scripts ${GPU_BUILD.pkg}@${TFJS_NODE_GPU_VERSION}`);
  const [command, ...prefix] = npmCommand();
  const args = ["install", "--no-save", "--ignore-scripts", "--no-audit", "--no-fund"];
  const result = run(command, [...prefix, ...args, `${GPU_BUILD.pkg}@${TFJS_NODE_GPU_VERSION}`], {
    cwd: root,
    timeout: 15 * 60 * 1000,
  });
  if (result.status !== 0 || !existsSync(manifest)) {
    throw new SetupError(
      `GPU build: installing ${GPU_BUILD.pkg}`,
      `npm install ${GPU_BUILD.pkg}@${TFJS_NODE_GPU_VERSION} failed:\n${lastLines(result.stdout + result.stderr, 8)}`,
      `check that npm reaches its registry (\`npm config get registry\`), ${RETRY}`,
    );
  }
}

/** `name<upper,>=lower` for each CUDA wheel of the `and-cuda` extra, read from the wheel's METADATA. */
export function cudaRequirements(metadata = readFileSync(path.join(GPU_BUILD.cache, "METADATA"), "utf8")) {
  const requirements = [];
  for (const line of metadata.split("\n")) {
    const match = /^Requires-Dist: (nvidia-[A-Za-z0-9_.-]+)\s*\(?([^;)]*)\)?;\s*extra == "and-cuda"/.exec(line.trim());
    if (match && !SKIPPED_CUDA_WHEELS.has(match[1])) requirements.push(`${match[1]}${match[2].replace(/\s+/g, "")}`);
  }
  if (requirements.length === 0) {
    throw new SetupError(
      "GPU build: reading the CUDA requirements",
      `no "and-cuda" requirements in ${path.join(GPU_BUILD.cache, "METADATA")}`,
      `remove ${path.relative(root, GPU_BUILD.cache)}, ${RETRY}`,
    );
  }
  return requirements;
}

function sitePackages() {
  const probe = run(venvPython, ["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]);
  if (probe.status !== 0) {
    throw new SetupError(
      "GPU build: locating .venv's site-packages",
      lastLines(probe.stderr, 4),
      `remove .venv, ${RETRY}`,
    );
  }
  return probe.stdout.trim();
}

function installCudaWheels(requirements) {
  ensureVenv();
  const stamp = path.join(venvDir, ".marginlab-cuda-wheels.sha256");
  const wanted = createHash("sha256").update(requirements.join("\n")).digest("hex");
  const nvidia = path.join(sitePackages(), "nvidia");
  if (existsSync(nvidia) && existsSync(stamp) && readFileSync(stamp, "utf8").trim() === wanted) {
    log("GPU build: the CUDA 12 wheels in .venv are up to date, nothing to do");
    return nvidia;
  }
  log(
    `GPU build: installing ${requirements.length} CUDA 12 wheels of TensorFlow's "and-cuda" extra into .venv (about 2.8 GB to download, 4.1 GB on disk)`,
  );
  const install = run(venvPython, ["-m", "pip", "install", "--disable-pip-version-check", "-q", ...requirements], {
    timeout: 60 * 60 * 1000,
  });
  if (install.status !== 0 || !existsSync(nvidia)) {
    throw new SetupError(
      "GPU build: pip install of the CUDA wheels",
      lastLines(install.stdout + install.stderr, 10),
      `check that pip reaches the Python package index and that about 7 GB of disk are free (pip unpacks beside the download), ${RETRY}`,
    );
  }
  writeFileSync(stamp, `${wanted}\n`);
  return nvidia;
}

/** deps/nvidia -> site-packages/nvidia: the one record of where the CUDA libraries are (see gpu-env.cjs). */
function linkCudaWheels(nvidia) {
  const link = gpuEnv.cudaWheelsDir(root);
  let current;
  try {
    current = lstatSync(link).isSymbolicLink() ? readlinkSync(link) : "(not a link)";
  } catch {
    current = undefined;
  }
  if (current !== nvidia) {
    rmSync(link, { recursive: true, force: true });
    symlinkSync(nvidia, link);
  }
  const dirs = gpuEnv.cudaLibraryDirs(root);
  const missing = CUDA_SONAMES.filter((soname) => !dirs.some((dir) => existsSync(path.join(dir, soname))));
  if (missing.length > 0) {
    throw new SetupError(
      "GPU build: checking the CUDA libraries",
      `not found in ${nvidia}/*/lib: ${missing.join(", ")}`,
      `remove ${path.join(venvDir, ".marginlab-cuda-wheels.sha256")}, ${RETRY}`,
    );
  }
  return dirs;
}

export function setupGpuBuild() {
  installGpuPackage();
  setupNativeBackend(GPU_BUILD);
  const dirs = linkCudaWheels(installCudaWheels(cudaRequirements()));
  log(
    `GPU build: ready (${dirs.length} CUDA library folders, put on LD_LIBRARY_PATH by \`npx marginlab\` and the kernel spec; \`npx marginlab doctor\` shows the device)`,
  );
}

/** Said on a plain set-up when npm has removed the GPU package (it is installed with --no-save). */
export function gpuBuildHint() {
  if (existsSync(path.join(GPU_BUILD.cache, "COMPLETE")) && !gpuEnv.gpuBuildInstalled(root)) {
    log(
      "GPU build: not installed (a plain `npm install` removes it: it is installed with --no-save); `MARGINLAB_GPU=1 npm run setup` puts it back from .cache",
    );
  }
}
