/**
 * Input checks of the loss heads, and their configuration checks on the project's one format
 * (src/validate.ts, re-exported under the names the heads use): every check runs before any tensor work and
 * throws a ConfigError (alias LossConfigError) `<owner>: <field> = <value> is not valid: <what is allowed>`.
 */
import type { Tensor } from "@tensorflow/tfjs-node";
import { ConfigError, checkNumber, fail } from "../validate";
import type { CosineHead } from "./head";

export {
  checkBoolean as requireBoolean,
  checkInt as requireInteger,
  checkNumber as requireNumber,
  fail,
  oneOf as requireOneOf,
  rejectUnknown,
} from "../validate";

/** The loss heads' configuration error: the project's ConfigError (the name kept for callers that catch it). */
export const LossConfigError = ConfigError;
export type LossConfigError = ConfigError;

export function requirePositive(owner: string, field: string, value: unknown): number {
  return checkNumber(owner, field, value, 0, Infinity, true);
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

/**
 * A head's input check: with labels (and `validateLabels`), the whole batch (checkBatch, the labels read
 * back); without labels, or with `validateLabels` false, the shapes only.
 */
export function checkHeadInput(
  owner: string,
  embeddings: Tensor,
  labels: Tensor | null,
  numClasses: number,
  dim: number,
  validateLabels: boolean,
): void {
  if (labels !== null && validateLabels) {
    checkBatch(owner, embeddings, labels, numClasses, dim);
    return;
  }
  requireShape(owner, "embeddings", embeddings, [null, dim]);
  if (labels !== null) requireShape(owner, "labels", labels, [embeddings.shape[0]]);
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

/** A head a step (FusedHeadStep, PartialFC) can train: a cosine head with a margin, W its only variable, one row per class. */
export function checkStepHead(owner: string, head: CosineHead): void {
  if (!head || typeof head.margin !== "object")
    fail(owner, "head", head === undefined ? undefined : typeof head, "must be a CosineHead (with a margin)");
  const n = head.trainableVariables().length;
  if (n !== 1)
    fail(
      owner,
      "head.trainableVariables().length",
      n,
      "must be 1 (the weight): a learnable scale is not trained by a head step",
    );
  if (head.weight.shape[0] !== head.numClasses)
    fail(
      owner,
      "head",
      head.constructor.name,
      `must have one row per class (weight rows ${head.weight.shape[0]}, numClasses ${head.numClasses}); sub-centre heads are not supported`,
    );
}
