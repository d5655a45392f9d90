/**
 * Checkpoints on disk: <dir>/step-<n>/ holds tensors.bin (every array, raw little-endian), state.json
 * (step, data position, RNG, the head step's small state, the index of tensors.bin) and manifest.json
 * (size and sha256 of both). Written durably and atomically: each file is written and fsynced inside a
 * temporary folder, the folder is fsynced and renamed into place, the parent folder fsynced; then
 * <dir>/latest is replaced the same way. A crash leaves the previous checkpoint and pointer intact.
 *
 * Reading verifies everything before anything is loaded: a missing, empty or damaged pointer, folder or
 * file is a CheckpointError naming the path and what is wrong, never a fresh start.
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import type { DataPosition } from "../data/pipeline";

export const CHECKPOINT_FORMAT = "marginlab-checkpoint";
export const CHECKPOINT_VERSION = 2;
const FILES = ["state.json", "tensors.bin"] as const;
const STEP_DIR = /^step-(\d+)$/;

/** An array saved in a checkpoint (backbone variables, optimizer slots, the head step's arrays). */
export interface CheckpointTensor {
  group: string;
  name: string;
  dtype: "float32" | "int32";
  shape: number[];
  data: Float32Array | Int32Array;
}

export interface TensorEntry {
  group: string;
  name: string;
  shape: number[];
  dtype: "float32" | "int32";
  offset: number;
  bytes: number;
}

export interface CheckpointState {
  format: typeof CHECKPOINT_FORMAT;
  version: typeof CHECKPOINT_VERSION;
  step: number;
  /** Updates the backbone's optimizer has made (AdamW's bias correction). */
  optimizerStep: number;
  position: DataPosition;
  rngState: number;
  /** The head step's kind and JSON state (its arrays are in tensors.bin, group "headStep"). */
  headStep: { kind: string; meta: Record<string, unknown> };
  /** Free-form (e.g. metrics at save time). */
  extra?: Record<string, unknown>;
  tensors: TensorEntry[];
}

export interface CheckpointManifest {
  format: typeof CHECKPOINT_FORMAT;
  version: typeof CHECKPOINT_VERSION;
  files: Record<string, { bytes: number; sha256: string }>;
}

/** A checkpoint or pointer that cannot be used: `path` is the file or folder, `problem` what is wrong. */
export class CheckpointError extends Error {
  override name = "CheckpointError";
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(`checkpoint ${path}: ${problem}`);
  }
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function writeDurably(file: string, data: Uint8Array | string): void {
  const fd = openSync(file, "w");
  try {
    const buf = typeof data === "string" ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncFolder(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } catch (e) {
    // some filesystems refuse fsync on a folder; the renames are still atomic there
    if ((e as NodeJS.ErrnoException).code !== "EINVAL" && (e as NodeJS.ErrnoException).code !== "EISDIR") throw e;
  } finally {
    closeSync(fd);
  }
}

/** `step-00000042` */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, "0")}`;
}

/**
 * Writes a checkpoint of `tensors` and `state` into <dir>/step-<n> and points <dir>/latest at it. Then
 * keeps the newest `keep` checkpoints up to this step (default 2); checkpoints of later steps (left by an
 * abandoned run) are left alone until this run overwrites them.
 */
export function saveCheckpoint(
  dir: string,
  state: Omit<CheckpointState, "format" | "version" | "tensors">,
  arrays: CheckpointTensor[],
  keep = 2,
): string {
  mkdirSync(dir, { recursive: true });
  const tensors: TensorEntry[] = [];
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const a of arrays) {
    const bytes = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
    tensors.push({ group: a.group, name: a.name, shape: a.shape, dtype: a.dtype, offset, bytes: bytes.length });
    chunks.push(bytes);
    offset += bytes.length;
  }
  const name = checkpointName(state.step);
  const final = path.join(dir, name);
  const tmp = path.join(dir, `.tmp-${name}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  const full: CheckpointState = { format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, ...state, tensors };
  const contents: Record<(typeof FILES)[number], Uint8Array> = {
    "state.json": Buffer.from(JSON.stringify(full, null, 1)),
    "tensors.bin": Buffer.concat(chunks),
  };
  const manifest: CheckpointManifest = { format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, files: {} };
  for (const f of FILES) {
    writeDurably(path.join(tmp, f), contents[f]);
    manifest.files[f] = { bytes: contents[f].length, sha256: sha256(contents[f]) };
  }
  writeDurably(path.join(tmp, "manifest.json"), JSON.stringify(manifest, null, 1));
  fsyncFolder(tmp);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  fsyncFolder(dir);
  const latestTmp = path.join(dir, `.latest-${process.pid}`);
  writeDurably(latestTmp, name);
  renameSync(latestTmp, path.join(dir, "latest"));
  fsyncFolder(dir);
  const older = readdirSync(dir)
    .filter((f) => STEP_DIR.test(f) && f < name)
    .sort();
  for (const old of older.slice(0, Math.max(0, older.length - (keep - 1))))
    rmSync(path.join(dir, old), { recursive: true, force: true });
  return final;
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new CheckpointError(file, `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(file, `is not valid JSON (${(e as Error).message}; ${text.length} bytes)`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Checks a checkpoint folder (manifest, sizes, sha256, state fields, tensor index) and reads it. */
export function readCheckpoint(ckpt: string): { state: CheckpointState; tensors: CheckpointTensor[] } {
  if (!existsSync(ckpt)) throw new CheckpointError(ckpt, "does not exist");
  if (!statSync(ckpt).isDirectory()) throw new CheckpointError(ckpt, "is a file, not a checkpoint folder");
  const manifestPath = path.join(ckpt, "manifest.json");
  if (!existsSync(manifestPath))
    throw new CheckpointError(
      manifestPath,
      "is missing (not a checkpoint folder, or one written before checksums; pass the folder of a checkpoint or the folder holding `latest`)",
    );
  const manifest = readJson(manifestPath);
  if (!isObject(manifest) || manifest.format !== CHECKPOINT_FORMAT || !isObject(manifest.files))
    throw new CheckpointError(manifestPath, `is not a ${CHECKPOINT_FORMAT} manifest`);
  if (manifest.version !== CHECKPOINT_VERSION)
    throw new CheckpointError(
      manifestPath,
      `has version ${JSON.stringify(manifest.version)}, this marginlab reads ${CHECKPOINT_VERSION}`,
    );
  const bytes: Partial<Record<(typeof FILES)[number], Buffer>> = {};
  for (const f of FILES) {
    const file = path.join(ckpt, f);
    const expected = (manifest.files as Record<string, unknown>)[f];
    if (!isObject(expected) || typeof expected.bytes !== "number" || typeof expected.sha256 !== "string")
      throw new CheckpointError(manifestPath, `has no size and sha256 for ${f}`);
    if (!existsSync(file)) throw new CheckpointError(file, "is missing");
    const b = readFileSync(file);
    if (b.length !== expected.bytes)
      throw new CheckpointError(
        file,
        `is ${b.length} bytes, the manifest says ${expected.bytes} (${b.length < expected.bytes ? "truncated" : "appended to"})`,
      );
    const sum = sha256(b);
    if (sum !== expected.sha256)
      throw new CheckpointError(file, `is damaged: sha256 ${sum}, the manifest says ${expected.sha256}`);
    bytes[f] = b;
  }
  const statePath = path.join(ckpt, "state.json");
  let state: unknown;
  try {
    state = JSON.parse(bytes["state.json"]!.toString("utf8"));
  } catch (e) {
    throw new CheckpointError(statePath, `is not valid JSON (${(e as Error).message})`);
  }
  const bad = (field: string, why: string) => new CheckpointError(statePath, `field ${field} ${why}`);
  if (!isObject(state) || state.format !== CHECKPOINT_FORMAT) throw bad("format", `is not "${CHECKPOINT_FORMAT}"`);
  for (const k of ["step", "optimizerStep", "rngState"] as const)
    if (typeof state[k] !== "number" || !Number.isInteger(state[k]) || (state[k] as number) < 0)
      throw bad(k, `= ${JSON.stringify(state[k])} is not a non-negative integer`);
  if (!isObject(state.position)) throw bad("position", "is not { epoch, batch }");
  if (!isObject(state.headStep) || typeof state.headStep.kind !== "string" || !isObject(state.headStep.meta))
    throw bad("headStep", "is not { kind, meta }");
  if (!Array.isArray(state.tensors)) throw bad("tensors", "is not an array");
  const blob = bytes["tensors.bin"]!;
  const tensors = (state.tensors as TensorEntry[]).map((e, k): CheckpointTensor => {
    const size = Array.isArray(e?.shape) ? e.shape.reduce((a, b) => a * b, 1) : Number.NaN;
    if (
      !isObject(e) ||
      (e.dtype !== "float32" && e.dtype !== "int32") ||
      !Number.isInteger(e.offset) ||
      e.bytes !== size * 4 ||
      e.offset < 0 ||
      e.offset + e.bytes > blob.length
    )
      throw bad(`tensors[${k}]`, `(${JSON.stringify(e)}) does not describe an array inside tensors.bin`);
    const copy = new Uint8Array(blob.subarray(e.offset, e.offset + e.bytes)).buffer;
    const data = e.dtype === "int32" ? new Int32Array(copy) : new Float32Array(copy);
    return { group: e.group, name: e.name, dtype: e.dtype, shape: e.shape, data };
  });
  return { state: state as unknown as CheckpointState, tensors };
}

/** The checkpoint `<dir>/latest` names, checked to exist. */
function pointerTarget(dir: string): string {
  const latest = path.join(dir, "latest");
  if (!existsSync(latest))
    throw new CheckpointError(
      dir,
      "is neither a checkpoint (no manifest.json) nor a folder of checkpoints (no `latest` file)",
    );
  const name = readFileSync(latest, "utf8").trim();
  if (name === "") throw new CheckpointError(latest, "is empty (it should name a step-NNNNNNNN folder)");
  if (!STEP_DIR.test(name) || name.includes("/"))
    throw new CheckpointError(latest, `names ${JSON.stringify(name)}, not a step-NNNNNNNN folder`);
  const target = path.join(dir, name);
  if (!existsSync(target)) throw new CheckpointError(latest, `names ${name}, which does not exist in ${dir}`);
  return target;
}

export interface ResolvedCheckpoint {
  path: string;
  state: CheckpointState;
  tensors: CheckpointTensor[];
  /** Newer checkpoints passed over (only when resuming from "<dir>/latest"), newest first. */
  skipped: { path: string; problem: string }[];
}

/**
 * What `resume` names, verified:
 *   - a checkpoint folder (`<dir>/step-00000040`): exactly that one;
 *   - a folder of checkpoints (`<dir>`): the one its `latest` file names;
 *   - the pointer itself (`<dir>/latest`): the newest good checkpoint of `<dir>` — the one `latest` names,
 *     else (pointer or checkpoint damaged) the newest step folder that passes every check, listed in `skipped`.
 * Anything missing or damaged in the first two forms (and every checkpoint bad in the third) is a
 * CheckpointError naming the path and the problem.
 */
export function resolveCheckpoint(resume: string): ResolvedCheckpoint {
  if (!existsSync(resume)) {
    const parent = path.dirname(resume);
    const hint = existsSync(parent)
      ? ` (${parent} holds: ${
          readdirSync(parent)
            .filter((f) => !f.startsWith("."))
            .slice(0, 8)
            .join(", ") || "nothing"
        })`
      : "";
    throw new CheckpointError(resume, `does not exist${hint}`);
  }
  if (path.basename(resume) === "latest" && statSync(resume).isFile()) return newestGood(path.dirname(resume));
  const target = existsSync(path.join(resume, "manifest.json")) ? resume : pointerTarget(resume);
  return { path: target, ...readCheckpoint(target), skipped: [] };
}

function newestGood(dir: string): ResolvedCheckpoint {
  const skipped: { path: string; problem: string }[] = [];
  const candidates: string[] = [];
  try {
    candidates.push(pointerTarget(dir));
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
    skipped.push({ path: e.path, problem: e.problem });
  }
  const steps = readdirSync(dir)
    .filter((f) => STEP_DIR.test(f))
    .sort()
    .reverse()
    .map((f) => path.join(dir, f));
  for (const p of steps) if (!candidates.includes(p)) candidates.push(p);
  for (const p of candidates) {
    try {
      return { path: p, ...readCheckpoint(p), skipped };
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      skipped.push({ path: e.path, problem: e.problem });
    }
  }
  throw new CheckpointError(
    path.join(dir, "latest"),
    `no usable checkpoint in ${dir}: ${skipped.map((s) => `${s.path}: ${s.problem}`).join("; ") || "no step folders"}`,
  );
}
