/**
 * Input checks of the loss heads, and their configuration checks on the project's one format
 * (src/validate.ts): every check runs before any tensor work and throws a `LossConfigError` (a
 * ConfigError) `<owner>: <field> = <value> is not valid: <what is allowed>`.
 */
import type { Tensor } from "@tensorflow/tfjs-node";
import {
  ConfigError,
  checkBoolean,
  checkInt,
  checkNumber,
  oneOf,
  rejectUnknown as rejectUnknownOption,
} from "../validate";

/** The loss heads' ConfigError (the name kept for callers that catch it). */
export class LossConfigError extends ConfigError {
  override name = "LossConfigError";
}

/** Rethrows a ConfigError as a LossConfigError (same message and fields). */
function asLoss<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ConfigError && !(e instanceof LossConfigError))
      throw new LossConfigError(e.owner, e.field, e.value, e.allowed);
    throw e;
  }
}

/** Throws `<owner>: <field> = <value> is not valid: <allowed>`. */
export function fail(owner: string, field: string, value: unknown, allowed: string): never {
  throw new LossConfigError(owner, field, value, allowed);
}

export function requireInteger(owner: string, field: string, value: unknown, min: number, max = Infinity): number {
  return asLoss(() => checkInt(owner, field, value, min, max));
}

/** A finite number in [min, max] (or (min, max] with `openMin`). */
export function requireNumber(
  owner: string,
  field: string,
  value: unknown,
  min: number,
  max: number,
  openMin = false,
  openMax = false,
): number {
  return asLoss(() => checkNumber(owner, field, value, min, max, openMin, openMax));
}

export function requirePositive(owner: string, field: string, value: unknown): number {
  return requireNumber(owner, field, value, 0, Infinity, true);
}

export function requireOneOf<T extends string>(owner: string, field: string, value: unknown, allowed: readonly T[]): T {
  return asLoss(() => oneOf(owner, field, value, allowed));
}

export function requireBoolean(owner: string, field: string, value: unknown): boolean {
  return asLoss(() => checkBoolean(owner, field, value));
}

/** Rejects option names the head does not know (a typo would otherwise silently fall back to a default). */
export function rejectUnknown(owner: string, options: object, known: readonly string[]): void {
  asLoss(() => rejectUnknownOption(owner, options, known));
}

export function requireShape(owner: string, field: string, tensor: unknown, expected: (number | null)[]): void {
  const t = tensor as Tensor | undefined;
  if (t === null || typeof t !== "object" || !Array.isArray((t as Tensor).shape)) {
    fail(owner, field, tensor === undefined ? undefined : typeof tensor, "must be a tf.Tensor");
  }
  const shape = t.shape;
  const ok = shape.length === expected.length && shape.every((d, i) => expected[i] === null || expected[i] === d);
  if (!ok) {
    const want = `[${expected.map((d) => (d === null ? "B" : d)).join(", ")}]`;
    fail(owner, `${field}.shape`, shape, `must be ${want}`);
  }
}

/**
 * Checks a batch: embeddings [B, dim] (float32), labels [B] of integers in [0, numClasses).
 * Reads the B labels back (a small synchronous download) so that a bad label is an error, not a silent
 * gather of a wrong or zero row. Returns B.
 */
export function checkBatch(
  owner: string,
  embeddings: unknown,
  labels: unknown,
  numClasses: number,
  dim: number,
  embeddingsField = "embeddings",
): number {
  requireShape(owner, embeddingsField, embeddings, [null, dim]);
  const b = (embeddings as Tensor).shape[0];
  if (b < 1) fail(owner, `${embeddingsField}.shape`, (embeddings as Tensor).shape, "needs at least one row");
  if ((embeddings as Tensor).dtype !== "float32") {
    fail(owner, `${embeddingsField}.dtype`, (embeddings as Tensor).dtype, 'must be "float32"');
  }
  checkLabels(owner, labels, b, numClasses);
  return b;
}

export function checkLabels(owner: string, labels: unknown, batch: number, numClasses: number): void {
  requireShape(owner, "labels", labels, [batch]);
  const t = labels as Tensor;
  if (t.dtype !== "int32" && t.dtype !== "float32") fail(owner, "labels.dtype", t.dtype, 'must be "int32"');
  const values = t.dataSync();
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isInteger(v)) fail(owner, `labels[${i}]`, v, "must be an integer class index");
    if (v < 0 || v >= numClasses)
      fail(owner, `labels[${i}]`, v, `must be in [0, ${numClasses - 1}] (numClasses = ${numClasses})`);
  }
}

/** A batch whose loss is not finite (NaN or Inf in some embeddings, or in W); `rows` are the batch rows. */
export class NonFiniteLossError extends Error {
  override name = "NonFiniteLossError";
  constructor(
    message: string,
    readonly rows: number[],
  ) {
    super(message);
  }
}

/**
 * Throws a NonFiniteLossError naming the rows whose loss is not finite; `consequence` says what was not
 * done. Reads only the loss rows a step reads anyway.
 */
export function checkFiniteLoss(owner: string, rows: ArrayLike<number>, consequence: string): void {
  const bad: number[] = [];
  for (let i = 0; i < rows.length; i++) if (!Number.isFinite(rows[i])) bad.push(i);
  if (bad.length === 0) return;
  const shown =
    bad.length > 10 ? `${bad.slice(0, 10).join(", ")}, ... (${bad.length} of ${rows.length})` : bad.join(", ");
  throw new NonFiniteLossError(
    `${owner}: the loss of embeddings rows [${shown}] is ${rows[bad[0]]}: NaN or Inf in those embeddings (or in W); ${consequence}`,
    bad,
  );
}
