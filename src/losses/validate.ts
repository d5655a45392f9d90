/**
 * Configuration and input checks for the loss heads. Every check runs before any tensor work and
 * throws a `LossConfigError` naming the field, the value and what is allowed.
 */
import type { Tensor } from "@tensorflow/tfjs-node";

export class LossConfigError extends Error {
  override name = "LossConfigError";
}

function show(value: unknown): string {
  if (typeof value === "number" || typeof value === "boolean" || value === undefined || value === null) {
    return String(value);
  }
  if (typeof value === "string") return JSON.stringify(value);
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** Throws `<owner>: <field> = <value> is invalid: <allowed>`. */
export function fail(owner: string, field: string, value: unknown, allowed: string): never {
  throw new LossConfigError(`${owner}: ${field} = ${show(value)} is invalid: ${allowed}`);
}

export function requireInteger(owner: string, field: string, value: unknown, min: number, max = Infinity): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Infinity ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`;
    fail(owner, field, value, `must be ${range}`);
  }
  return value;
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
  const ok =
    typeof value === "number" &&
    Number.isFinite(value) &&
    (openMin ? value > min : value >= min) &&
    (openMax ? value < max : value <= max);
  if (!ok) {
    const lo = openMin ? `(${min}` : `[${min}`;
    const hi = max === Infinity ? "inf)" : openMax ? `${max})` : `${max}]`;
    fail(owner, field, value, `must be a finite number in ${lo}, ${hi}`);
  }
  return value as number;
}

export function requirePositive(owner: string, field: string, value: unknown): number {
  return requireNumber(owner, field, value, 0, Infinity, true);
}

export function requireOneOf<T extends string>(owner: string, field: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    fail(owner, field, value, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`);
  }
  return value as T;
}

export function requireBoolean(owner: string, field: string, value: unknown): boolean {
  if (typeof value !== "boolean") fail(owner, field, value, "must be true or false");
  return value;
}

/** Rejects option names the head does not know (a typo would otherwise silently fall back to a default). */
export function rejectUnknown(owner: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key))
      fail(owner, key, (options as Record<string, unknown>)[key], `unknown option; known: ${known.join(", ")}`);
  }
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
