/**
 * Atomic checkpoints: <dir>/step-<n>/ holds state.json (step, data position, RNG, manifest) and
 * tensors.bin (every variable, raw little-endian). A checkpoint is written into a temporary folder and
 * renamed into place, then <dir>/latest is replaced by rename, so a crash mid-write leaves the previous
 * checkpoint intact and `latest` never points at a partial one.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { tf } from "../backend";
import type { DataPosition } from "../data/pipeline";
import type { Variable } from "../losses/head";

export interface TensorEntry {
  group: string;
  name: string;
  shape: number[];
  dtype: string;
  offset: number;
  bytes: number;
}

export interface CheckpointState {
  format: "marginlab-checkpoint";
  version: 1;
  step: number;
  optimizerStep: number;
  position: DataPosition;
  rngState: number;
  /** Free-form (e.g. the config's description, metrics at save time). */
  extra?: Record<string, unknown>;
  tensors: TensorEntry[];
}

export type VariableGroups = Record<string, { name: string; variable: Variable }[]>;

export async function saveCheckpoint(
  dir: string,
  state: Omit<CheckpointState, "format" | "version" | "tensors">,
  groups: VariableGroups,
  keep = 2,
): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const tensors: TensorEntry[] = [];
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [group, vars] of Object.entries(groups)) {
    for (const { name, variable } of vars) {
      const data = await variable.data();
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
      tensors.push({ group, name, shape: variable.shape, dtype: variable.dtype, offset, bytes: bytes.length });
      chunks.push(bytes);
      offset += bytes.length;
    }
  }
  const name = `step-${String(state.step).padStart(8, "0")}`;
  const final = path.join(dir, name);
  const tmp = path.join(dir, `.tmp-${name}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  writeFileSync(path.join(tmp, "tensors.bin"), Buffer.concat(chunks));
  const full: CheckpointState = { format: "marginlab-checkpoint", version: 1, ...state, tensors };
  writeFileSync(path.join(tmp, "state.json"), JSON.stringify(full, null, 1));
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  const latestTmp = path.join(dir, `.latest-${process.pid}`);
  writeFileSync(latestTmp, name);
  renameSync(latestTmp, path.join(dir, "latest"));
  // keep the newest `keep` checkpoints
  const all = readdirSync(dir)
    .filter((f) => /^step-\d+$/.test(f))
    .sort();
  for (const old of all.slice(0, Math.max(0, all.length - keep)))
    if (old !== name) rmSync(path.join(dir, old), { recursive: true, force: true });
  return final;
}

/** The folder of the newest checkpoint in `dir` (or `dir` itself when it is one), or undefined. */
export function latestCheckpoint(dir: string): string | undefined {
  if (existsSync(path.join(dir, "state.json"))) return dir;
  const latest = path.join(dir, "latest");
  if (!existsSync(latest)) return undefined;
  const p = path.join(dir, readFileSync(latest, "utf8").trim());
  return existsSync(path.join(p, "state.json")) ? p : undefined;
}

export function readCheckpointState(ckpt: string): CheckpointState {
  const s = JSON.parse(readFileSync(path.join(ckpt, "state.json"), "utf8")) as CheckpointState;
  if (s.format !== "marginlab-checkpoint")
    throw new Error(`${ckpt}: not a marginlab checkpoint (format ${JSON.stringify(s.format)})`);
  return s;
}

/** Loads a checkpoint's tensors into the variables (same groups, order and shapes as when saved). */
export function restoreCheckpoint(ckpt: string, groups: VariableGroups): CheckpointState {
  const state = readCheckpointState(ckpt);
  const blob = readFileSync(path.join(ckpt, "tensors.bin"));
  for (const [group, vars] of Object.entries(groups)) {
    const entries = state.tensors.filter((t) => t.group === group);
    if (entries.length !== vars.length) {
      throw new Error(
        `${ckpt}: group "${group}" has ${entries.length} tensors, the model has ${vars.length} (a different backbone, head or optimizer?)`,
      );
    }
    vars.forEach(({ name, variable }, k) => {
      const e = entries[k];
      if (e.shape.join(",") !== variable.shape.join(",") || e.dtype !== variable.dtype) {
        throw new Error(
          `${ckpt}: ${group} tensor ${k} (${e.name}) is ${e.dtype}[${e.shape}], the model's ${name} is ${variable.dtype}[${variable.shape}]`,
        );
      }
      if (e.offset + e.bytes > blob.length)
        throw new Error(
          `${ckpt}/tensors.bin: truncated at tensor ${e.name} (needs bytes ${e.offset}..${e.offset + e.bytes}, file has ${blob.length})`,
        );
      const bytes = blob.subarray(e.offset, e.offset + e.bytes);
      const copy = new Uint8Array(bytes).buffer;
      const values = e.dtype === "int32" ? new Int32Array(copy) : new Float32Array(copy);
      tf.tidy(() => variable.assign(tf.tensor(values, e.shape, e.dtype as "float32" | "int32")));
    });
  }
  return state;
}
