/**
 * ArcFace / additive angular margin (Deng et al., CVPR 2019): target logit s cos(theta_y + m), features
 * and weights normalised. Defaults s = 64, m = 0.5 (paper and InsightFace).
 *
 * cos(theta + m) = c cos m - sqrt((1 - c)(1 + c)) sin m: no acos anywhere. Two named options where the
 * reference implementations differ:
 *
 * - `fallback` (what happens when theta + m > pi, where cos(theta + m) turns back up):
 *   - "fallback" (default): c - m sin m when c <= cos(pi - m), keeping the target logit monotonic; the
 *     ArcFace paper's released MXNet code, InsightFace PyTorch Jan-Dec 2022, pytorch-metric-learning.
 *   - "easy": easy margin, the margin only where c > 0 (InsightFace `--easy-margin`, 2018-2022).
 *   - "none": cos(theta + m) everywhere (current InsightFace arcface_torch, since Dec 2022).
 * - `gradient`:
 *   - "exact" (default): the true derivative, d cos(theta+m)/dc = cos m + c sin m / sin theta. Where
 *     sin theta < 1e-4 (|c| within 5e-9 of 1, below float32 resolution) the denominator is floored at
 *     1e-4, so the gradient stays finite at c = +-1 (PML and the 2022 InsightFace code give NaN there).
 *   - "straight-through": the margin is treated as a constant shift (d t/dc = 1), as InsightFace since
 *     Dec 2022 (margin applied under no_grad) and opensphere's "gradient detachment".
 * Defaults follow the paper's loss with its true gradient: the reported loss is then the function
 * being minimised, and finite differences check it. InsightFace's current behaviour is
 * { fallback: "none", gradient: "straight-through" }.
 */
import type { Tensor } from "@tensorflow/tfjs-node";
import { tf } from "../backend";
import { type CommonHeadOptions, CosineHeadBase, checkCommon, scaleOption } from "./cosine-head";
import type { TargetTransform } from "./margin-softmax";
import { requireNumber, requireOneOf } from "./validate";

export type ArcFaceFallback = "fallback" | "easy" | "none";
export type MarginGradient = "exact" | "straight-through";
export const ARCFACE_FALLBACKS: readonly ArcFaceFallback[] = ["fallback", "easy", "none"];
export const MARGIN_GRADIENTS: readonly MarginGradient[] = ["exact", "straight-through"];

/** Floor of sin(theta) in exact angular-margin slopes (keeps them finite at c = +-1). */
export const SIN_FLOOR = 1e-4;

export interface ArcFaceOptions extends CommonHeadOptions {
  /** Scale (default 64). */
  s?: number;
  /** Additive angular margin in radians, [0, pi/2] (default 0.5). */
  m?: number;
  /** theta + m > pi behaviour (default "fallback"). */
  fallback?: ArcFaceFallback;
  /** Gradient of the margin (default "exact"). */
  gradient?: MarginGradient;
}

/** sin(theta) = sqrt((1 - c)(1 + c)) for c in [-1, 1]; (1-c)(1+c) keeps precision near c = +-1. */
export function sinFromCos(c: Tensor): Tensor {
  return tf.sqrt(tf.relu(tf.mul(tf.sub(1, c), tf.add(1, c))));
}

/** The `fallback` option of the angular-margin heads: one of ARCFACE_FALLBACKS, default "fallback". */
export function fallbackOption(owner: string, value: unknown): ArcFaceFallback {
  return value === undefined ? "fallback" : requireOneOf(owner, "fallback", value, ARCFACE_FALLBACKS);
}

/** The `gradient` option of the angular-margin heads: one of MARGIN_GRADIENTS, default "exact". */
export function gradientOption(owner: string, value: unknown): MarginGradient {
  return value === undefined ? "exact" : requireOneOf(owner, "gradient", value, MARGIN_GRADIENTS);
}

/** ArcFace's own options (shared with SubCenterArcFace), checked in order s, m, fallback, gradient. */
export function arcFaceOptions(
  owner: string,
  o: ArcFaceOptions,
): { s: number; m: number; fallback: ArcFaceFallback; gradient: MarginGradient } {
  return {
    s: scaleOption(owner, o.s),
    m: o.m === undefined ? 0.5 : requireNumber(owner, "m", o.m, 0, Math.PI / 2),
    fallback: fallbackOption(owner, o.fallback),
    gradient: gradientOption(owner, o.gradient),
  };
}

export function arcFaceTarget(m: number, fallback: ArcFaceFallback, gradient: MarginGradient): TargetTransform {
  const cm = Math.cos(m);
  const sm = Math.sin(m);
  const th = Math.cos(Math.PI - m);
  const mm = Math.sin(Math.PI - m) * m;
  return (c) => {
    const sinT = sinFromCos(c);
    const arc = tf.sub(tf.mul(c, cm), tf.mul(sinT, sm));
    let value = arc;
    let cond: Tensor | null = null;
    if (fallback === "fallback") {
      cond = tf.greater(c, th);
      value = tf.where(cond, arc, tf.sub(c, mm));
    } else if (fallback === "easy") {
      cond = tf.greater(c, 0);
      value = tf.where(cond, arc, c);
    }
    if (gradient === "straight-through") return { value: value as never, slope: null };
    const dArc = tf.add(cm, tf.div(tf.mul(c, sm), tf.maximum(sinT, SIN_FLOOR)));
    const slope = cond ? tf.where(cond, dArc, tf.onesLike(c)) : dArc;
    return { value: value as never, slope: slope as never };
  };
}

export class ArcFace extends CosineHeadBase {
  readonly s: number;
  readonly m: number;
  readonly fallback: ArcFaceFallback;
  readonly gradient: MarginGradient;

  constructor(options: ArcFaceOptions) {
    const name = "ArcFace";
    const common = checkCommon(name, options, ["s", "m", "fallback", "gradient"]);
    const { s, m, fallback, gradient } = arcFaceOptions(name, options);
    super(name, options, common, common.numClasses);
    this.s = s;
    this.m = m;
    this.fallback = fallback;
    this.gradient = gradient;
    this.checkScaleBound("s", s);
  }

  protected scaleValue(): number | Tensor {
    return this.s;
  }

  protected targetTransform(): TargetTransform | null {
    return arcFaceTarget(this.m, this.fallback, this.gradient);
  }
}
