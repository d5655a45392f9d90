/**
 * SphereFace / A-Softmax (Liu et al., CVPR 2017), as the official Caffe MarginInnerProductLayer:
 * weights L2-normalised, features not; non-target logits |x| cos theta_j; target logit
 *   (lambda |x| cos theta_y + |x| psi(theta_y)) / (1 + lambda),
 *   psi(theta) = (-1)^k cos(m theta) - 2k,  k = floor(m theta / pi),
 * with cos(m theta) = T_m(cos theta) (Chebyshev polynomial, no acos) and k counted from the thresholds
 * cos theta <= cos(j pi / m), j = 1..m-1 (psi is continuous there, so the boundary side does not matter).
 *
 * lambda anneals as the official code: lambda = max(lambdaMin, base (1 + gamma iter)^-power), defaults
 * base 1000, gamma 0.12, power 1, lambdaMin 5 (sphereface_model.prototxt), iter counted from 1.
 * `lambda: 0` is pure A-Softmax (PML's SphereFaceLoss); any fixed number pins lambda.
 * clcarwin/sphereface_pytorch's schedule is { base: 1500, gamma: 0.1, power: 1, lambdaMin: 5 }.
 *
 * Iterations: each `loss()` call advances the counter (the Caffe layer advances per forward; the first
 * forward uses iter = 1). `setStep(n)` pins it: the next `loss()` uses iter = n + 1 (n = optimizer steps
 * done). The gradient is the exact derivative of this loss (Caffe's hand-written backward is not).
 * `scale` multiplies every logit (PML's `scale`, default 1).
 */
import type { Scalar, Tensor, Tensor1D, Tensor2D, Variable } from "@tensorflow/tfjs-node";
import { tf } from "../backend";
import { type CommonHeadOptions, checkCommon, checkInitialWeight, makeWeight } from "./cosine-head";
import type { Head } from "./head";
import { cosineMarginLoss } from "./margin-kernel";
import { marginLogits, matMulWideT, type TargetTransform } from "./margin-softmax";
import { l2NormalizeRows, rowNorms } from "./tensor-helpers";
import { checkHeadInput, fail, rejectUnknown, requireInteger, requireNumber, requirePositive } from "./validate";
import type { LossWarning } from "./warnings";

export interface LambdaSchedule {
  base: number;
  gamma: number;
  power: number;
  lambdaMin: number;
}

/** The official Caffe schedule (sphereface_model.prototxt). */
export const CAFFE_LAMBDA: Readonly<LambdaSchedule> = Object.freeze({
  base: 1000,
  gamma: 0.12,
  power: 1,
  lambdaMin: 5,
});

export interface SphereFaceOptions extends CommonHeadOptions {
  /** Integer angular margin, 1..8 (default 4). */
  m?: number;
  /** A fixed lambda (0 = pure A-Softmax) or an annealing schedule (default CAFFE_LAMBDA). */
  lambda?: number | LambdaSchedule;
  /** Extra multiplier of all logits (default 1). */
  scale?: number;
}

/** lambda at iteration `iter` (>= 1) of a schedule. */
export function lambdaAt(schedule: LambdaSchedule, iter: number): number {
  return Math.max(schedule.lambdaMin, schedule.base * (1 + schedule.gamma * iter) ** -schedule.power);
}

/** T_m(c) and T_m'(c) = m U_{m-1}(c) by the recurrences (m small). */
function chebyshev(c: Tensor, m: number): { t: Tensor; dt: Tensor } {
  let t0: Tensor = tf.onesLike(c);
  let t1: Tensor = c;
  let u0: Tensor = tf.onesLike(c); // U_0
  let u1: Tensor = tf.mul(c, 2); // U_1
  if (m === 1) return { t: c, dt: tf.onesLike(c) };
  for (let n = 1; n < m; n++) {
    const t2 = tf.sub(tf.mul(tf.mul(c, 2), t1), t0);
    t0 = t1;
    t1 = t2;
  }
  // U_{m-1}
  if (m - 1 === 0) return { t: t1, dt: tf.onesLike(c) };
  for (let n = 1; n < m - 1; n++) {
    const u2 = tf.sub(tf.mul(tf.mul(c, 2), u1), u0);
    u0 = u1;
    u1 = u2;
  }
  return { t: t1, dt: tf.mul(u1, m) };
}

export function sphereFaceTarget(m: number, lambda: number): TargetTransform {
  return (c) => {
    const { t, dt } = chebyshev(c, m);
    let k: Tensor = tf.zerosLike(c);
    for (let j = 1; j < m; j++) k = tf.add(k, tf.cast(tf.lessEqual(c, Math.cos((j * Math.PI) / m)), "float32"));
    const sign = tf.sub(1, tf.mul(tf.mod(k, 2), 2)); // (-1)^k
    const psi = tf.sub(tf.mul(sign, t), tf.mul(k, 2));
    const dPsi = tf.mul(sign, dt);
    const value = tf.div(tf.add(tf.mul(c, lambda), psi), 1 + lambda);
    const slope = tf.div(tf.add(dPsi, lambda), 1 + lambda);
    return { value: value as Tensor1D, slope: slope as Tensor1D };
  };
}

export class SphereFace implements Head {
  readonly numClasses: number;
  readonly embeddingDim: number;
  readonly weight: Variable;
  readonly m: number;
  readonly scale: number;
  /** The schedule, or undefined when lambda is fixed. */
  readonly schedule?: LambdaSchedule;
  readonly fixedLambda?: number;
  readonly warnings: LossWarning[] = [];
  private iteration = 1;
  private readonly validateLabels: boolean;

  constructor(options: SphereFaceOptions) {
    const name = "SphereFace";
    const common = checkCommon(name, options, ["m", "lambda", "scale"]);
    const m = options.m === undefined ? 4 : requireInteger(name, "m", options.m, 1, 8);
    const scale = options.scale === undefined ? 1 : requirePositive(name, "scale", options.scale);
    const lambda = options.lambda ?? CAFFE_LAMBDA;
    if (typeof lambda === "number") {
      this.fixedLambda = requireNumber(name, "lambda", lambda, 0, Infinity);
    } else if (lambda !== null && typeof lambda === "object") {
      rejectUnknown(`${name} lambda`, lambda, ["base", "gamma", "power", "lambdaMin"]);
      this.schedule = Object.freeze({
        base: requireNumber(name, "lambda.base", lambda.base, 0, Infinity),
        gamma: requireNumber(name, "lambda.gamma", lambda.gamma, 0, Infinity),
        power: requireNumber(name, "lambda.power", lambda.power, 0, Infinity),
        lambdaMin: requireNumber(name, "lambda.lambdaMin", lambda.lambdaMin, 0, Infinity),
      });
    } else {
      fail(name, "lambda", lambda, "must be a number >= 0 or { base, gamma, power, lambdaMin }");
    }
    checkInitialWeight(name, options.initialWeight, common.numClasses, common.embeddingDim);
    this.numClasses = common.numClasses;
    this.embeddingDim = common.embeddingDim;
    this.m = m;
    this.scale = scale;
    this.validateLabels = common.validateLabels;
    this.weight = makeWeight(options.initialWeight, common.numClasses, common.embeddingDim, common.seed, 0.01, name);
  }

  /** The iteration the next `loss()` uses (Caffe counting, from 1). */
  get currentIteration(): number {
    return this.iteration;
  }

  /** lambda the next `loss()` uses. */
  currentLambda(): number {
    return this.schedule ? lambdaAt(this.schedule, this.iteration) : (this.fixedLambda as number);
  }

  setStep(step: number): void {
    requireInteger("SphereFace", "step", step, 0);
    this.iteration = step + 1;
  }

  private check(embeddings: Tensor2D, labels: Tensor1D | null): void {
    checkHeadInput("SphereFace", embeddings, labels, this.numClasses, this.embeddingDim, this.validateLabels);
  }

  private parts(embeddings: Tensor2D): { cos: Tensor2D; scale: Tensor } {
    const wn = l2NormalizeRows(this.weight as Tensor as Tensor2D);
    const cos = matMulWideT(l2NormalizeRows(embeddings, true), wn);
    const norms = rowNorms(embeddings);
    return { cos, scale: this.scale === 1 ? norms : tf.mul(norms, this.scale) };
  }

  loss(embeddings: Tensor2D, labels: Tensor1D): Scalar {
    this.check(embeddings, labels);
    const lambda = this.currentLambda();
    this.iteration += 1;
    return tf.tidy(() => {
      // logits |x| cos: fold s_i = scale |x_i| into normalize(x) (torch's x^ = x / max(|x|, 1e-12))
      const norms = rowNorms(embeddings);
      const s = this.scale === 1 ? norms : tf.mul(norms, this.scale);
      const xs = tf.mul(l2NormalizeRows(embeddings, true), tf.reshape(s, [-1, 1])) as Tensor2D;
      return cosineMarginLoss(xs, this.weight as Tensor as Tensor2D, labels, s, sphereFaceTarget(this.m, lambda));
    });
  }

  /** Logits at the current lambda (does not advance the iteration). */
  logits(embeddings: Tensor2D, labels: Tensor1D): Tensor2D {
    this.check(embeddings, labels);
    const lambda = this.currentLambda();
    return tf.tidy(() => {
      const { cos, scale } = this.parts(embeddings);
      return marginLogits(cos, labels, scale, sphereFaceTarget(this.m, lambda));
    });
  }

  cosine(embeddings: Tensor2D): Tensor2D {
    this.check(embeddings, null);
    return tf.tidy(() => tf.clipByValue(this.parts(embeddings).cos, -1, 1) as Tensor2D);
  }

  trainableVariables(): Variable[] {
    return [this.weight];
  }

  dispose(): void {
    this.weight.dispose();
  }
}
