/**
 * Saving and restoring a head step's state (src/train/head-step.ts): arrays copied in and out, and
 * the checks that a saved state fits the step it is loaded into (each mismatch a named error).
 */
import type { HeadStepState, StateArray } from "../train/head-step";
import { fail } from "./validate";

/** A float32 state array: a copy of `data`. */
export function floatArray(data: ArrayLike<number>, shape: number[]): StateArray {
  return { dtype: "float32", shape: [...shape], data: Float32Array.from(data) };
}

/** An int32 state array: a copy of `data`. */
export function intArray(data: ArrayLike<number>, shape: number[]): StateArray {
  return { dtype: "int32", shape: [...shape], data: Int32Array.from(data) };
}

/** The saved array `name`, checked for dtype and shape (the data is not copied). */
export function readArray(
  owner: string,
  state: HeadStepState,
  name: string,
  dtype: StateArray["dtype"],
  shape: number[],
): StateArray["data"] {
  if (state === null || typeof state !== "object" || typeof state.arrays !== "object" || state.arrays === null)
    fail(owner, "state", typeof state, "must be { arrays, meta } as saveState() returns");
  const a = state.arrays[name];
  if (!a) fail(owner, `state.arrays.${name}`, undefined, `is missing (have: ${Object.keys(state.arrays).join(", ")})`);
  if (a.dtype !== dtype) fail(owner, `state.arrays.${name}.dtype`, a.dtype, `must be "${dtype}"`);
  const same = a.shape.length === shape.length && a.shape.every((d, i) => d === shape[i]);
  if (!same) fail(owner, `state.arrays.${name}.shape`, a.shape, `must be [${shape.join(", ")}] for this step`);
  const size = shape.reduce((p, d) => p * d, 1);
  if (a.data.length !== size) fail(owner, `state.arrays.${name}.data.length`, a.data.length, `must be ${size}`);
  return a.data;
}

/** The saved meta value `name`, which must equal `expected` (a configuration the state belongs to). */
export function expectMeta(owner: string, state: HeadStepState, name: string, expected: unknown): void {
  const got = state.meta?.[name];
  if (JSON.stringify(got) !== JSON.stringify(expected))
    fail(owner, `state.meta.${name}`, got, `must be ${JSON.stringify(expected)} (the configuration of this step)`);
}

/** The saved meta number `name`: an integer >= 0. */
export function metaCount(owner: string, state: HeadStepState, name: string): number {
  const v = state.meta?.[name];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0)
    fail(owner, `state.meta.${name}`, v, "must be an integer >= 0");
  return v;
}
