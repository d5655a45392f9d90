/**
 * Picks the TensorFlow backend and exports `tf`. Every module of marginlab imports tf from here.
 *
 * - `@tensorflow/tfjs-node-gpu` when it is installed and a CUDA device is visible, else `@tensorflow/tfjs-node`.
 * - `MARGINLAB_BACKEND=cpu|gpu` forces one.
 * - If no native backend loads, importing fails with the fix. There is no silent fallback to the pure-JS
 *   backend: it is 100-500x slower and cannot be told apart from a slow model.
 */
import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

type TF = typeof import("@tensorflow/tfjs-node");

export type BackendPackage = "@tensorflow/tfjs-node" | "@tensorflow/tfjs-node-gpu";

export interface BackendInfo {
  /** tf.getBackend(): always "tensorflow" (native libtensorflow). */
  name: string;
  package: BackendPackage;
  /** libtensorflow's own version (TF_Version), e.g. "2.21.0". */
  tensorflowVersion: string;
  tfjsVersion: string;
  device: "CPU" | "GPU";
  /** How the choice was made, e.g. "MARGINLAB_BACKEND=cpu" or "no CUDA device visible". */
  reason: string;
}

export class BackendError extends Error {
  override name = "BackendError";
}

const FIX_CPU =
  "Run `npm install` (or `npm run setup`) in the marginlab folder: it builds @tensorflow/tfjs-node against libtensorflow. `npx marginlab doctor` shows what is missing.";
const FIX_GPU =
  "For a GPU: `npm install @tensorflow/tfjs-node-gpu@4.22.0` with CUDA 11.2 and cuDNN 8.1 libraries on the loader path (see README, 'GPU'), or unset MARGINLAB_BACKEND to use the CPU.";

const projectRequire = createRequire(path.join(__dirname, "..", "package.json"));

function isInstalled(pkg: BackendPackage): boolean {
  try {
    projectRequire.resolve(`${pkg}/package.json`);
    return true;
  } catch {
    return false;
  }
}

/** A CUDA device is visible when the NVIDIA driver lists a GPU and CUDA_VISIBLE_DEVICES does not hide it. */
export function cudaDeviceVisible(env: NodeJS.ProcessEnv = process.env): boolean {
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible !== undefined && (visible.trim() === "" || visible.trim() === "-1")) return false;
  try {
    if (readdirSync("/proc/driver/nvidia/gpus").length > 0) return true;
  } catch {
    // no driver procfs: fall through to the device node check
  }
  return existsSync("/dev/nvidia0");
}

function choosePackage(env: NodeJS.ProcessEnv): { pkg: BackendPackage; reason: string } {
  const forced = env.MARGINLAB_BACKEND?.trim().toLowerCase();
  if (forced && forced !== "cpu" && forced !== "gpu") {
    throw new BackendError(
      `MARGINLAB_BACKEND=${env.MARGINLAB_BACKEND} is not valid: allowed are "cpu" and "gpu" (or unset).`,
    );
  }
  if (forced === "cpu") return { pkg: "@tensorflow/tfjs-node", reason: "MARGINLAB_BACKEND=cpu" };
  if (forced === "gpu") {
    if (!isInstalled("@tensorflow/tfjs-node-gpu")) {
      throw new BackendError(`MARGINLAB_BACKEND=gpu but @tensorflow/tfjs-node-gpu is not installed. ${FIX_GPU}`);
    }
    return { pkg: "@tensorflow/tfjs-node-gpu", reason: "MARGINLAB_BACKEND=gpu" };
  }
  if (isInstalled("@tensorflow/tfjs-node-gpu") && cudaDeviceVisible(env)) {
    return { pkg: "@tensorflow/tfjs-node-gpu", reason: "tfjs-node-gpu installed and a CUDA device is visible" };
  }
  return {
    pkg: "@tensorflow/tfjs-node",
    reason: isInstalled("@tensorflow/tfjs-node-gpu") ? "no CUDA device visible" : "tfjs-node-gpu not installed",
  };
}

function load(env: NodeJS.ProcessEnv): { tf: TF; info: BackendInfo } {
  // Quiet libtensorflow's C++ start-up logs unless the user asked for them.
  if (env.TF_CPP_MIN_LOG_LEVEL === undefined) env.TF_CPP_MIN_LOG_LEVEL = "2";
  const { pkg, reason } = choosePackage(env);
  let tf: TF;
  try {
    tf = projectRequire(pkg) as TF;
  } catch (error) {
    const detail = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new BackendError(
      `The native TensorFlow backend (${pkg}) failed to load: ${detail}. ${pkg === "@tensorflow/tfjs-node-gpu" ? FIX_GPU : FIX_CPU}`,
    );
  }
  const name = tf.getBackend();
  if (name !== "tensorflow") {
    throw new BackendError(`Expected the native "tensorflow" backend from ${pkg}, got "${name}". ${FIX_CPU}`);
  }
  // biome-ignore lint/suspicious/noExplicitAny: the native backend's binding is not in tfjs' public types.
  const backend = tf.backend() as any;
  return {
    tf,
    info: {
      name,
      package: pkg,
      tensorflowVersion: String(backend.binding?.TF_Version ?? "unknown"),
      tfjsVersion: tf.version.tfjs,
      device: backend.isUsingGpuDevice ? "GPU" : "CPU",
      reason,
    },
  };
}

const loaded = load(process.env);

export const tf: TF = loaded.tf;
export const backendInfo: Readonly<BackendInfo> = Object.freeze(loaded.info);
