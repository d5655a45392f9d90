/**
 * The base of every head whose logits are a function of the cosines alone (NormFace, CosFace, ArcFace,
 * CombinedMargin, SubCenterArcFace). One step: normalise W once, cos = normalize(x) . normalize(W)^T
 * (one matMul, transposeB), then the fused margin-softmax-CE of ./margin-softmax on those cosines.
 */
import type { Scalar, Tensor, Tensor1D, Tensor2D, Variable } from "@tensorflow/tfjs-node";
import { tf, tfjsSeed } from "../backend";
import type { CosineHead, HeadOptions } from "./head";
import { type CosineMargin, cosineMarginLoss } from "./margin-kernel";
import { marginLogits, marginSoftmaxCrossEntropy, matMulWideT, type TargetTransform } from "./margin-softmax";
import { checkScale, DEFAULT_TARGET_PROBABILITY, type ScaleBound } from "./scale";
import { l2NormalizeRows } from "./tensor-helpers";
import {
  checkHeadInput,
  checkLabels,
  fail,
  rejectUnknown,
  requireBoolean,
  requireInteger,
  requireNumber,
  requirePositive,
  requireShape,
} from "./validate";
import type { LossWarning, LossWarningListener } from "./warnings";

export interface CommonHeadOptions extends HeadOptions {
  /** Initial W ([rows, embeddingDim]); default N(0, 0.01^2) from `seed` (InsightFace's init; scale-free for cosines). */
  initialWeight?: Tensor2D | number[][];
  /** Receives this head's warnings (e.g. scale below the bound); default: the global `onLossWarning` listeners. */
  onWarning?: LossWarningListener;
  /** Target probability p of the scale bound checks (default 0.9). */
  scaleBoundP?: number;
  /** Read back and check the labels on every call (default true; B int32 values, a small sync download). */
  validateLabels?: boolean;
}

const COMMON_OPTION_KEYS = [
  "numClasses",
  "embeddingDim",
  "seed",
  "initialWeight",
  "onWarning",
  "scaleBoundP",
  "validateLabels",
] as const;

export interface CheckedCommon {
  numClasses: number;
  embeddingDim: number;
  seed: number;
  scaleBoundP: number;
  validateLabels: boolean;
}

/**
 * The start of every head's constructor (before any tensor work): the options every head shares, then
 * no key but those and the head's own (`ownKeys`).
 */
export function checkCommon(
  owner: string,
  o: CommonHeadOptions,
  ownKeys: readonly string[],
  minClasses = 2,
): CheckedCommon {
  if (o === null || typeof o !== "object")
    fail(owner, "options", o, "must be an object { numClasses, embeddingDim, ... }");
  const numClasses = requireInteger(owner, "numClasses", o.numClasses, minClasses);
  const embeddingDim = requireInteger(owner, "embeddingDim", o.embeddingDim, 1);
  const seed = o.seed === undefined ? 0 : requireInteger(owner, "seed", o.seed, 0);
  const scaleBoundP =
    o.scaleBoundP === undefined
      ? DEFAULT_TARGET_PROBABILITY
      : requireNumber(owner, "scaleBoundP", o.scaleBoundP, 0, 1, true, true);
  const validateLabels =
    o.validateLabels === undefined ? true : requireBoolean(owner, "validateLabels", o.validateLabels);
  if (o.onWarning !== undefined && typeof o.onWarning !== "function")
    fail(owner, "onWarning", typeof o.onWarning, "must be a function");
  rejectUnknown(owner, o, [...COMMON_OPTION_KEYS, ...ownKeys]);
  return { numClasses, embeddingDim, seed, scaleBoundP, validateLabels };
}

/** A fixed logit scale option: positive, `fallback` when not given. */
export function scaleOption(owner: string, s: unknown, fallback = 64): number {
  return s === undefined ? fallback : requirePositive(owner, "s", s);
}

/** Checks an `initialWeight` shape (no tensor created). */
export function checkInitialWeight(
  owner: string,
  init: CommonHeadOptions["initialWeight"],
  rows: number,
  dim: number,
): void {
  if (init === undefined) return;
  if (Array.isArray(init)) {
    const ok =
      init.length === rows && init.every((r) => Array.isArray(r) && r.length === dim && r.every(Number.isFinite));
    if (!ok)
      fail(owner, "initialWeight", `array of ${init.length} rows`, `must be ${rows} rows of ${dim} finite numbers`);
  } else {
    requireShape(owner, "initialWeight", init, [rows, dim]);
  }
}

/** Creates the weight variable: a copy of `initialWeight`, or N(0, std^2) from the seed. */
export function makeWeight(
  init: CommonHeadOptions["initialWeight"],
  rows: number,
  dim: number,
  seed: number,
  std: number,
  name: string,
): Variable {
  return tf.tidy(() => {
    const value =
      init === undefined
        ? tf.randomNormal([rows, dim], 0, std, "float32", tfjsSeed(seed))
        : Array.isArray(init)
          ? tf.tensor2d(init, [rows, dim], "float32")
          : tf.cast(init, "float32");
    return tf.variable(value, true, `${name}_${uniqueId()}`);
  });
}

let counter = 0;
function uniqueId(): number {
  counter += 1;
  return counter;
}

export abstract class CosineHeadBase implements CosineHead {
  readonly numClasses: number;
  readonly embeddingDim: number;
  readonly weight: Variable;
  /** Every warning this head raised (also handed to `onWarning` / the global listeners). */
  readonly warnings: LossWarning[] = [];
  protected readonly headName: string;
  protected readonly validateLabels: boolean;
  protected readonly onWarning?: LossWarningListener;
  protected readonly scaleBoundP: number;

  /**
   * `rows` = rows of W (numClasses * K for sub-centre heads). Subclasses validate their own options
   * first (checkCommon, then theirs); the initial W's shape is checked here, before W is made.
   */
  protected constructor(headName: string, options: CommonHeadOptions, common: CheckedCommon, rows: number) {
    checkInitialWeight(headName, options.initialWeight, rows, common.embeddingDim);
    this.headName = headName;
    this.numClasses = common.numClasses;
    this.embeddingDim = common.embeddingDim;
    this.validateLabels = common.validateLabels;
    this.onWarning = options.onWarning;
    this.scaleBoundP = common.scaleBoundP;
    this.weight = makeWeight(options.initialWeight, rows, common.embeddingDim, common.seed, 0.01, headName);
  }

  /** The scale applied to the (margin-modified) cosines: a number, or a scalar tensor (learnable). */
  protected abstract scaleValue(): number | Tensor;
  /** The margin on the target cosine; null for none (NormFace). */
  protected abstract targetTransform(): TargetTransform | null;

  /** The margin as data: s (a learnable one read back now), the target transform, no filter. */
  get margin(): CosineMargin {
    let s = 0;
    tf.tidy(() => {
      const v = this.scaleValue();
      s = typeof v === "number" ? v : v.dataSync()[0];
    });
    return { s, target: this.targetTransform(), filter: 0 };
  }

  /** Reports a scale below the bound for numClasses (at construction, and when a learnable scale is read). */
  protected checkScaleBound(field: string, scale: number, kind: ScaleBound = "cosface"): void {
    checkScale(this.headName, field, scale, this.numClasses, kind, this.scaleBoundP, this.warnings, this.onWarning);
  }

  /** Unclipped cosines [B, numClasses] (margin code clips the B target values itself). */
  protected rawCosine(embeddings: Tensor2D): Tensor2D {
    const wn = l2NormalizeRows(this.weight as Tensor as Tensor2D);
    return matMulWideT(l2NormalizeRows(embeddings, true), wn);
  }

  protected checkBatch(embeddings: Tensor2D, labels: Tensor1D | null): void {
    checkHeadInput(this.headName, embeddings, labels, this.numClasses, this.embeddingDim, this.validateLabels);
  }

  protected checkCosineBatch(cosine: Tensor2D, labels: Tensor1D): void {
    requireShape(this.headName, "cosine", cosine, [null, null]);
    const [b, c] = cosine.shape;
    if (b < 1 || c < 1) fail(this.headName, "cosine.shape", cosine.shape, "must be [B, C'] with B, C' >= 1");
    if (this.validateLabels) checkLabels(this.headName, labels, b, c);
    else requireShape(this.headName, "labels", labels, [b]);
  }

  loss(embeddings: Tensor2D, labels: Tensor1D): Scalar {
    this.checkBatch(embeddings, labels);
    return tf.tidy(() => this.fusedLoss(embeddings, labels));
  }

  /** The training path: s folded into normalize(x), then the fused cosine-margin-CE core (W never normalised as a matrix). */
  protected fusedLoss(embeddings: Tensor2D, labels: Tensor1D): Scalar {
    const s = this.scaleValue();
    const xs = tf.mul(l2NormalizeRows(embeddings, true), s) as Tensor2D;
    return cosineMarginLoss(xs, this.weight as Tensor as Tensor2D, labels, s, this.targetTransform());
  }

  logits(embeddings: Tensor2D, labels: Tensor1D): Tensor2D {
    this.checkBatch(embeddings, labels);
    return tf.tidy(() => marginLogits(this.rawCosine(embeddings), labels, this.scaleValue(), this.targetTransform()));
  }

  cosine(embeddings: Tensor2D): Tensor2D {
    this.checkBatch(embeddings, null);
    return tf.tidy(() => tf.clipByValue(this.rawCosine(embeddings), -1, 1) as Tensor2D);
  }

  /** Scaled, margin-modified logits from precomputed cosines [B, C'] (PartialFC); labels index columns. */
  logitsFromCosine(cosine: Tensor2D, labels: Tensor1D): Tensor2D {
    this.checkCosineBatch(cosine, labels);
    return tf.tidy(() => marginLogits(cosine, labels, this.scaleValue(), this.targetTransform()));
  }

  /** The fused loss from precomputed cosines [B, C'] (PartialFC): mean softmax-CE of logitsFromCosine. */
  lossFromCosine(cosine: Tensor2D, labels: Tensor1D): Scalar {
    this.checkCosineBatch(cosine, labels);
    return tf.tidy(() => marginSoftmaxCrossEntropy(cosine, labels, this.scaleValue(), this.targetTransform()));
  }

  trainableVariables(): Variable[] {
    return [this.weight];
  }

  dispose(): void {
    this.weight.dispose();
  }
}
