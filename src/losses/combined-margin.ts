/**
 * Combined margin (ArcFace paper, eq. 4; InsightFace's original MXNet code): target logit
 * s (cos(m1 theta + m2) - m3), features and weights normalised. (1, 0, 0) is NormFace, (1, m, 0)
 * ArcFace without fallback, (1, 0, m) CosFace, (m, 0, 0) a SphereFace-style multiplicative margin without
 * the psi trick. Defaults: s = 64, (m1, m2, m3) = (1, 0.3, 0.2) (InsightFace MXNet sample_config
 * "combined"). Like the MXNet code there is no theta threshold: past m1 theta + m2 > pi the target
 * logit turns back up.
 *
 * NOTE: arcface_torch's `CombinedMarginLoss` is not this formula: it applies m2 only when m1 = 1 and
 * m3 = 0, so (1, 0.3, 0.2) there is silently CosFace with m = 0.2 (m2 dropped), and m1 is never applied.
 *
 * `gradient`: "exact" (default, the MXNet code's autograd) or "straight-through" (margin detached).
 * The exact slope m1 sin(m1 theta + m2) / sin theta is computed without differentiating acos; at
 * sin theta < 1e-4 it uses the limit (m1^2 at theta = 0 when m2 = 0; integer m1 at theta = pi) or the
 * floored denominator.
 */
import type { Tensor } from "@tensorflow/tfjs-node";
import { tf } from "../backend";
import { gradientOption, type MarginGradient, SIN_FLOOR, sinFromCos } from "./arcface";
import { type CommonHeadOptions, CosineHeadBase, checkCommon, scaleOption } from "./cosine-head";
import type { TargetTransform } from "./margin-softmax";
import { requireNumber } from "./validate";

export interface CombinedMarginOptions extends CommonHeadOptions {
  s?: number;
  /** Multiplicative angular margin, (0, 10] (default 1). */
  m1?: number;
  /** Additive angular margin in radians, [0, pi/2] (default 0.3). */
  m2?: number;
  /** Additive cosine margin, [0, 1] (default 0.2). */
  m3?: number;
  gradient?: MarginGradient;
}

export function combinedMarginTarget(m1: number, m2: number, m3: number, gradient: MarginGradient): TargetTransform {
  const cm2 = Math.cos(m2);
  const sm2 = Math.sin(m2);
  const integerM1 = Number.isInteger(m1);
  return (c) => {
    const sinT = sinFromCos(c);
    const floored = tf.maximum(sinT, SIN_FLOOR);
    let value: Tensor;
    let slope: Tensor | null = null;
    if (m1 === 1) {
      // cos(theta + m2) without acos (as ArcFace)
      value = tf.sub(tf.sub(tf.mul(c, cm2), tf.mul(sinT, sm2)), m3);
      if (gradient === "exact") slope = tf.add(cm2, tf.div(tf.mul(c, sm2), floored));
    } else {
      const theta = tf.acos(c); // value only: the customGrad core never differentiates this
      const a = tf.mul(theta, m1);
      value = tf.sub(tf.cos(tf.add(a, m2)), m3);
      if (gradient === "exact") {
        // m1 [cos m2 sin(m1 t)/sin t + sin m2 cos(m1 t)/sin t]
        const sinA = tf.sin(a);
        const small = tf.less(sinT, SIN_FLOOR);
        const nearPiLimit = integerM1 ? tf.fill(c.shape, m1 * (m1 % 2 === 1 ? 1 : -1)) : tf.div(sinA, SIN_FLOOR);
        const limit = tf.where(tf.greater(c, 0), tf.fill(c.shape, m1), nearPiLimit);
        const ratio = tf.where(small, limit, tf.div(sinA, floored));
        const second = tf.div(tf.mul(tf.cos(a), sm2), floored);
        slope = tf.mul(tf.add(tf.mul(ratio, cm2), second), m1);
      }
    }
    return { value: value as never, slope: slope as never };
  };
}

export class CombinedMargin extends CosineHeadBase {
  readonly s: number;
  readonly m1: number;
  readonly m2: number;
  readonly m3: number;
  readonly gradient: MarginGradient;

  constructor(options: CombinedMarginOptions) {
    const name = "CombinedMargin";
    const common = checkCommon(name, options, ["s", "m1", "m2", "m3", "gradient"]);
    const s = scaleOption(name, options.s);
    const m1 = options.m1 === undefined ? 1 : requireNumber(name, "m1", options.m1, 0, 10, true);
    const m2 = options.m2 === undefined ? 0.3 : requireNumber(name, "m2", options.m2, 0, Math.PI / 2);
    const m3 = options.m3 === undefined ? 0.2 : requireNumber(name, "m3", options.m3, 0, 1);
    const gradient = gradientOption(name, options.gradient);
    super(name, options, common, common.numClasses);
    this.s = s;
    this.m1 = m1;
    this.m2 = m2;
    this.m3 = m3;
    this.gradient = gradient;
    this.checkScaleBound("s", s);
  }

  protected scaleValue(): number | Tensor {
    return this.s;
  }

  protected targetTransform(): TargetTransform | null {
    return combinedMarginTarget(this.m1, this.m2, this.m3, this.gradient);
  }
}
