/**
 * NormFace (Wang, Xiang, Cheng, Yuille, ACM MM 2017): features and weights L2-normalised, logits s cos.
 * `s` fixed (default 20, the best Norm-Softmax scale in the ArcFace paper's TPAMI ablation) or learnable
 * (`learnScale: true`, as NormFace's own prototxt: a scalar initialised to `s`, floored at 0.01).
 * PML's NormalizedSoftmaxLoss(temperature T) is NormFace with s = 1/T.
 */
import type { Tensor, Variable } from "@tensorflow/tfjs-node";
import { tf } from "../backend";
import { type CommonHeadOptions, CosineHeadBase, checkCommon, scaleOption } from "./cosine-head";
import type { TargetTransform } from "./margin-softmax";
import { requireBoolean } from "./validate";

export interface NormFaceOptions extends CommonHeadOptions {
  /** Scale (default 20). */
  s?: number;
  /** Learn the scale (default false). */
  learnScale?: boolean;
}

/** The floor of a learnable scale (NormFace's prototxt `min_value`). */
export const MIN_LEARNED_SCALE = 0.01;

export class NormFace extends CosineHeadBase {
  readonly s: number;
  readonly learnScale: boolean;
  /** The learnable scale (when `learnScale`), else undefined. */
  readonly scaleVariable?: Variable;

  constructor(options: NormFaceOptions) {
    const name = "NormFace";
    const common = checkCommon(name, options, ["s", "learnScale"]);
    const s = scaleOption(name, options.s, 20);
    const learnScale =
      options.learnScale === undefined ? false : requireBoolean(name, "learnScale", options.learnScale);
    super(name, options, common, common.numClasses);
    this.s = s;
    this.learnScale = learnScale;
    if (learnScale) this.scaleVariable = tf.variable(tf.scalar(s), true, `NormFace_scale_${this.weight.name}`);
    this.checkScaleBound("s", s);
  }

  /** The scale now (reads the learnable one back). */
  currentScale(): number {
    return this.scaleVariable ? Math.max(this.scaleVariable.dataSync()[0], MIN_LEARNED_SCALE) : this.s;
  }

  protected scaleValue(): number | Tensor {
    return this.scaleVariable ? tf.maximum(this.scaleVariable, MIN_LEARNED_SCALE) : this.s;
  }

  protected targetTransform(): TargetTransform | null {
    return null;
  }

  override trainableVariables(): Variable[] {
    return this.scaleVariable ? [this.weight, this.scaleVariable] : [this.weight];
  }

  override dispose(): void {
    super.dispose();
    this.scaleVariable?.dispose();
  }
}
