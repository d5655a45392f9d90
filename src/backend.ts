/**
 * Picks the TensorFlow backend and exports `tf`. Every module of marginlab imports tf from here.
 *
 * - `@tensorflow/tfjs-node-gpu` when it is installed (`MARGINLAB_GPU=1 npm run setup`) and a CUDA device is
 *   visible, else `@tensorflow/tfjs-node`.
 * - `MARGINLAB_BACKEND=cpu|gpu` forces one; `gpu` without a visible device is an error.
 *   `MARGINLAB_BACKEND=tfjs-node-gpu` loads the GPU build whatever the devices (how it is tested on a CPU).
 * - If no native backend loads, importing fails with the fix. There is no silent fallback to the pure-JS
 *   backend: it is 100-500x slower and cannot be told apart from a slow model.
 * - TF_CPP_MIN_LOG_LEVEL defaults to 2 (errors only), TF_FORCE_GPU_ALLOW_GROWTH to true (TensorFlow would
 *   otherwise reserve nearly all GPU memory at start).
 */
import { closeSync, existsSync, openSync, readFileSync, readlinkSync, unlinkSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import * as gpuEnv from "../scripts/setup/gpu-env.cjs";

type TF = typeof import("@tensorflow/tfjs-node");

export type BackendPackage = "@tensorflow/tfjs-node" | "@tensorflow/tfjs-node-gpu";

export interface BackendInfo {
  /** tf.getBackend(): always "tensorflow" (native libtensorflow). */
  name: string;
  package: BackendPackage;
  /** libtensorflow's own version (TF_Version), e.g. "2.21.0". */
  tensorflowVersion: string;
  /** The libtensorflow file this process mapped, and where it came from (e.g. "the tensorflow 2.21.0 wheel"). */
  libtensorflow: { path: string; origin: string };
  tfjsVersion: string;
  device: "CPU" | "GPU";
  /** The GPU models the NVIDIA driver lists when the device is a GPU, e.g. ["NVIDIA H200"]; else empty. */
  gpus: string[];
  /** How the choice was made, e.g. "MARGINLAB_BACKEND=cpu" or "no CUDA device visible". */
  reason: string;
}

export class BackendError extends Error {
  override name = "BackendError";
}

const FIX_CPU =
  "Run `npm install` (or `npm run setup`) in the marginlab folder: it builds @tensorflow/tfjs-node against libtensorflow. `npx marginlab doctor` shows what is missing.";
const FIX_GPU_INSTALL =
  "Install the GPU build with `MARGINLAB_GPU=1 npm run setup` (docs/gpu.md), or unset MARGINLAB_BACKEND to use the CPU.";
const FIX_LOADER =
  'Start through `npx marginlab ...` or the Jupyter kernel (both put them there), or run `eval "$(node scripts/setup/gpu-env.cjs)"` in the shell first; MARGINLAB_BACKEND=cpu uses the CPU build instead.';

const root = path.resolve(__dirname, "..");
const projectRequire = createRequire(path.join(root, "package.json"));

function isInstalled(pkg: BackendPackage): boolean {
  try {
    projectRequire.resolve(`${pkg}/package.json`);
    return true;
  } catch {
    return false;
  }
}

/** A CUDA device is visible when the NVIDIA driver lists a GPU and CUDA_VISIBLE_DEVICES does not hide it. */
export const cudaDeviceVisible: (env?: NodeJS.ProcessEnv) => boolean = gpuEnv.cudaDeviceVisible;

const ALLOWED = `allowed are "cpu", "gpu" and "tfjs-node-gpu" (the GPU build, on whatever device it finds), or unset`;

/** The loader reads LD_LIBRARY_PATH only at process start, so a GPU run without the CUDA folders there must fail early. */
function requireCudaOnLoaderPath(env: NodeJS.ProcessEnv): void {
  const missing = gpuEnv.missingLoaderDirs(root, env);
  if (missing.length > 0) {
    throw new BackendError(
      `@tensorflow/tfjs-node-gpu would run on the GPU, but ${missing.length} CUDA library folder(s) are not on LD_LIBRARY_PATH (e.g. ${missing[0]}). ${FIX_LOADER}`,
    );
  }
}

export function choosePackage(env: NodeJS.ProcessEnv): { pkg: BackendPackage; reason: string } {
  const forced = env.MARGINLAB_BACKEND?.trim().toLowerCase();
  const gpuInstalled = isInstalled("@tensorflow/tfjs-node-gpu");
  if (forced && forced !== "cpu" && forced !== "gpu" && forced !== "tfjs-node-gpu") {
    throw new BackendError(`MARGINLAB_BACKEND=${env.MARGINLAB_BACKEND} is not valid: ${ALLOWED}.`);
  }
  if (forced === "cpu") return { pkg: "@tensorflow/tfjs-node", reason: "MARGINLAB_BACKEND=cpu" };
  if (forced === "gpu" || forced === "tfjs-node-gpu") {
    if (!gpuInstalled) {
      throw new BackendError(
        `MARGINLAB_BACKEND=${forced} but @tensorflow/tfjs-node-gpu is not installed. ${FIX_GPU_INSTALL}`,
      );
    }
    if (forced === "tfjs-node-gpu") {
      if (cudaDeviceVisible(env)) requireCudaOnLoaderPath(env);
      return { pkg: "@tensorflow/tfjs-node-gpu", reason: "MARGINLAB_BACKEND=tfjs-node-gpu" };
    }
    if (!cudaDeviceVisible(env)) {
      throw new BackendError(
        `MARGINLAB_BACKEND=gpu but no CUDA device is visible (${env.CUDA_VISIBLE_DEVICES === undefined ? "the NVIDIA driver lists none under /proc/driver/nvidia/gpus" : `CUDA_VISIBLE_DEVICES=${JSON.stringify(env.CUDA_VISIBLE_DEVICES)} hides them`}). Unset MARGINLAB_BACKEND (or set it to cpu) to run on the CPU; MARGINLAB_BACKEND=tfjs-node-gpu runs the GPU build on the CPU.`,
      );
    }
    requireCudaOnLoaderPath(env);
    return { pkg: "@tensorflow/tfjs-node-gpu", reason: "MARGINLAB_BACKEND=gpu" };
  }
  if (gpuInstalled && cudaDeviceVisible(env)) {
    requireCudaOnLoaderPath(env);
    return { pkg: "@tensorflow/tfjs-node-gpu", reason: "tfjs-node-gpu installed and a CUDA device is visible" };
  }
  return {
    pkg: "@tensorflow/tfjs-node",
    reason: gpuInstalled ? "tfjs-node-gpu installed, but no CUDA device visible" : "tfjs-node-gpu not installed",
  };
}

const SEVERITY: Record<string, number> = { I: 0, W: 1, E: 2, F: 3 };

/**
 * The severity of one line of TensorFlow's log: absl's "I0000 00:00:..." and tsl's "2026-12-01 ...: W ..." prefixes,
 * and absl's "WARNING: All log messages before absl::InitializeLog()" notice; undefined for other lines.
 */
function logSeverity(line: string): number | undefined {
  const absl = /^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] /.exec(line);
  if (absl) return SEVERITY[absl[1]];
  const tsl = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) /.exec(line);
  if (tsl) return SEVERITY[tsl[1]];
  if (line.startsWith("WARNING: All log messages before absl::InitializeLog()")) return SEVERITY.W;
  return undefined;
}

/** The lines of captured start-up output at or above TF_CPP_MIN_LOG_LEVEL; a line without a prefix goes with the record above it. */
export function filterStartupLog(text: string, minLevel: number): string {
  let current = Number.POSITIVE_INFINITY; // output that is not TensorFlow's is always kept
  const kept: string[] = [];
  for (const line of text.split("\n")) {
    const severity = logSeverity(line);
    if (severity !== undefined) current = severity;
    if (current >= minLevel && line !== "") kept.push(line);
  }
  return kept.length > 0 ? `${kept.join("\n")}\n` : "";
}

/**
 * libtensorflow 2.21 prints its start-up lines (absl's InitializeLog notice, "oneDNN custom operations are on")
 * through absl before TF_CPP_MIN_LOG_LEVEL applies, so the variable alone does not hide them. While the binding
 * loads, file descriptor 2 points at a temporary file; then the captured lines that TF_CPP_MIN_LOG_LEVEL lets
 * through are written back. Where stderr cannot be reopened (a socket, no /proc), the lines pass unfiltered.
 */
function loadWithStartupLogFiltered<T>(minLevel: number, load: () => T): T {
  let original: number;
  try {
    // Both 0 and 1 open, so that the next open() lands on 2. (readlink, not fstat: fstat of a piped stdout
    // here made tfjs register its kernels twice.)
    readlinkSync("/proc/self/fd/0");
    readlinkSync("/proc/self/fd/1");
    original = openSync("/proc/self/fd/2", "a");
  } catch {
    return load();
  }
  const capture = path.join(tmpdir(), `marginlab-tf-startup-${process.pid}.log`);
  closeSync(2);
  const fd = openSync(capture, "w+"); // the lowest free descriptor: 2
  let outcome: { value: T } | { error: unknown };
  try {
    outcome = { value: load() };
  } catch (error) {
    outcome = { error };
  }
  const captured = readFileSync(capture, "utf8");
  closeSync(fd);
  unlinkSync(capture);
  openSync(`/proc/self/fd/${original}`, "a"); // 2 again
  closeSync(original);
  const kept = filterStartupLog(captured, minLevel);
  if (kept) writeSync(2, kept);
  if ("error" in outcome) throw outcome.error;
  return outcome.value;
}

/** The libtensorflow this process mapped (from /proc/self/maps) and where the set-up took it from. */
function libtensorflowInUse(): { path: string; origin: string } {
  let file = "unknown";
  try {
    const maps = readFileSync("/proc/self/maps", "utf8");
    file = /\s(\/\S*libtensorflow(?:_cc)?\.so[.\d]*)$/m.exec(maps)?.[1] ?? "unknown";
  } catch {
    return { path: file, origin: "unknown (no /proc/self/maps)" };
  }
  // The set-up extracts the wheel's libraries to .cache/libtensorflow-*/lib/ and writes "<wheel> <version>" beside.
  const marker = path.join(path.dirname(file), "..", "COMPLETE");
  if (existsSync(marker)) return { path: file, origin: `the ${readFileSync(marker, "utf8").trim()} wheel` };
  return { path: file, origin: file.includes(`${path.sep}deps${path.sep}`) ? "the package's own download" : "unknown" };
}

function load(env: NodeJS.ProcessEnv): { tf: TF; info: BackendInfo } {
  if (env.TF_CPP_MIN_LOG_LEVEL === undefined) env.TF_CPP_MIN_LOG_LEVEL = "2";
  if (env.TF_FORCE_GPU_ALLOW_GROWTH === undefined) env.TF_FORCE_GPU_ALLOW_GROWTH = "true";
  const { pkg, reason } = choosePackage(env);
  const minLevel = Number.parseInt(env.TF_CPP_MIN_LOG_LEVEL, 10) || 0;
  let tf: TF;
  try {
    tf =
      minLevel > 0
        ? loadWithStartupLogFiltered(minLevel, () => projectRequire(pkg) as TF)
        : (projectRequire(pkg) as TF);
  } catch (error) {
    if (error instanceof BackendError) throw error;
    const detail = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new BackendError(
      `The native TensorFlow backend (${pkg}) failed to load: ${detail}. ${pkg === "@tensorflow/tfjs-node-gpu" ? FIX_GPU_INSTALL : FIX_CPU}`,
    );
  }
  const name = tf.getBackend();
  if (name !== "tensorflow") {
    throw new BackendError(`Expected the native "tensorflow" backend from ${pkg}, got "${name}". ${FIX_CPU}`);
  }
  // biome-ignore lint/suspicious/noExplicitAny: the native backend's binding is not in tfjs' public types.
  const backend = tf.backend() as any;
  const device = backend.isUsingGpuDevice ? "GPU" : "CPU";
  if (reason === "MARGINLAB_BACKEND=gpu" && device !== "GPU") {
    throw new BackendError(
      "MARGINLAB_BACKEND=gpu: @tensorflow/tfjs-node-gpu loaded, but TensorFlow registered no GPU (a driver too old for CUDA 12, or a CUDA library that did not load). Run with TF_CPP_MIN_LOG_LEVEL=0 to see TensorFlow's reason.",
    );
  }
  return {
    tf,
    info: {
      name,
      package: pkg,
      tensorflowVersion: String(backend.binding?.TF_Version ?? "unknown"),
      libtensorflow: libtensorflowInUse(),
      tfjsVersion: tf.version.tfjs,
      device,
      gpus: device === "GPU" ? gpuEnv.gpuNames() : [],
      reason:
        pkg === "@tensorflow/tfjs-node-gpu" && device === "CPU" && cudaDeviceVisible(env)
          ? `${reason}, but TensorFlow registered no GPU (TF_CPP_MIN_LOG_LEVEL=0 shows why)`
          : reason,
    },
  };
}

const loaded = load(process.env);

export const tf: TF = loaded.tf;
export const backendInfo: Readonly<BackendInfo> = Object.freeze(loaded.info);

/**
 * Every seed handed to tfjs goes through here. tfjs reads seed 0 as "no seed" (rand_util:
 * `seed ? seed : Math.random()`), so a head's W with seed 0 differed from process to process. Its
 * generator is seeded with `String(seed)`; the string "0" is that seed for 0, and every other seed is
 * passed on unchanged, so their streams are as before.
 */
export function tfjsSeed(seed: number): number {
  return seed === 0 ? ("0" as unknown as number) : seed;
}
