// The GPU build's run-time facts, in one place for the set-up (kernel spec), the CLI (bin/marginlab.cjs),
// the backend (src/backend.ts) and the doctor: whether @tensorflow/tfjs-node-gpu is installed, whether a CUDA
// device is visible, and the loader path that finds the CUDA libraries of the nvidia-*-cu12 wheels.
// CommonJS and dependency-free: bin/marginlab.cjs requires it before anything else is loaded.
const { existsSync, readdirSync, readFileSync, realpathSync } = require("node:fs");
const path = require("node:path");

const GPU_PACKAGE = "@tensorflow/tfjs-node-gpu";

function gpuPackageDir(root) {
  return path.join(root, "node_modules", "@tensorflow", "tfjs-node-gpu");
}

/**
 * The set-up links `deps/nvidia` in the GPU package to the `nvidia` folder of the CUDA wheels (in .venv's
 * site-packages). libtensorflow's own RUNPATH (`$ORIGIN/../nvidia/<pkg>/lib`) resolves through it as well.
 */
function cudaWheelsDir(root) {
  return path.join(gpuPackageDir(root), "deps", "nvidia");
}

function gpuBuildInstalled(root) {
  return existsSync(path.join(gpuPackageDir(root), "package.json"));
}

/** Each nvidia/<pkg>/lib folder of the CUDA wheels (real paths), sorted; empty when there are none. */
function cudaLibraryDirs(root) {
  const base = cudaWheelsDir(root);
  let names;
  try {
    names = readdirSync(base);
  } catch {
    return [];
  }
  return names
    .map((name) => path.join(base, name, "lib"))
    .filter((dir) => existsSync(dir))
    .map((dir) => realpathSync(dir))
    .sort();
}

/** A CUDA device is visible when the NVIDIA driver lists a GPU and CUDA_VISIBLE_DEVICES does not hide it. */
function cudaDeviceVisible(env = process.env) {
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible !== undefined && (visible.trim() === "" || visible.trim() === "-1")) return false;
  try {
    if (readdirSync("/proc/driver/nvidia/gpus").length > 0) return true;
  } catch {
    // no driver procfs: fall through to the device node check
  }
  return existsSync("/dev/nvidia0");
}

/** The GPU models the driver lists (e.g. "NVIDIA H200"), from /proc/driver/nvidia/gpus/<bus>/information. */
function gpuNames() {
  const base = "/proc/driver/nvidia/gpus";
  try {
    return readdirSync(base).map((bus) => {
      const info = readFileSync(path.join(base, bus, "information"), "utf8");
      return /^Model:\s*(.+)$/m.exec(info)?.[1].trim() ?? `GPU at ${bus}`;
    });
  } catch {
    return [];
  }
}

/** The CUDA library folders that are not on LD_LIBRARY_PATH yet. */
function missingLoaderDirs(root, env = process.env) {
  const onPath = new Set((env.LD_LIBRARY_PATH ?? "").split(path.delimiter).filter(Boolean));
  return cudaLibraryDirs(root).filter((dir) => !onPath.has(dir));
}

/** LD_LIBRARY_PATH with the CUDA library folders in front (unchanged when they are already there). */
function loaderPathWithCuda(root, env = process.env) {
  const missing = missingLoaderDirs(root, env);
  return [...missing, ...(env.LD_LIBRARY_PATH ?? "").split(path.delimiter).filter(Boolean)].join(path.delimiter);
}

/**
 * Whether this process must be restarted with the CUDA folders on LD_LIBRARY_PATH before TensorFlow loads
 * (the loader reads it only at process start): the GPU build is installed, it will be picked, and the path lacks them.
 */
function needsLoaderRestart(root, env = process.env) {
  const forced = (env.MARGINLAB_BACKEND ?? "").trim().toLowerCase();
  if (forced === "cpu" || !gpuBuildInstalled(root)) return false;
  if (forced !== "gpu" && !cudaDeviceVisible(env)) return false;
  return missingLoaderDirs(root, env).length > 0;
}

module.exports = {
  GPU_PACKAGE,
  gpuPackageDir,
  cudaWheelsDir,
  gpuBuildInstalled,
  cudaLibraryDirs,
  cudaDeviceVisible,
  gpuNames,
  missingLoaderDirs,
  loaderPathWithCuda,
  needsLoaderRestart,
};

// `node scripts/setup/gpu-env.cjs`: prints the shell line that puts the CUDA folders on the loader path
// (for node processes not started through `npx marginlab` or the Jupyter kernel, e.g. `npm test`).
if (require.main === module) {
  const root = path.resolve(__dirname, "..", "..");
  if (!gpuBuildInstalled(root)) {
    process.stderr.write(`${GPU_PACKAGE} is not installed here: run MARGINLAB_GPU=1 npm run setup\n`);
    process.exit(1);
  }
  process.stdout.write(`export LD_LIBRARY_PATH='${loaderPathWithCuda(root)}'\n`);
}
