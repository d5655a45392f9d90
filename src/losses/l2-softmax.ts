/**
 * L2-constrained softmax (Ranjan, Castillo, Chellappa 2017): features L2-normalised and scaled by alpha,
 * then an ordinary (unnormalised) FC layer: logits alpha (x/|x|) W^T (+ b). alpha fixed (default 16, above
 * alpha_low(C, 0.9) for every C up to ~800k) or trainable (`learnAlpha`, initialised to `alpha`, floored
 * at 0.01). Warns when alpha < alpha_low(C, p).
 */
import type { Tensor2D, Variable } from "@tensorflow/tfjs-node";
import { tf } from "../backend";
import { checkScale, DEFAULT_TARGET_PROBABILITY } from "./scale";
import { LinearHeadBase, type SoftmaxOptions } from "./softmax";
import { l2NormalizeRows } from "./tensor-helpers";
import { requireBoolean, requirePositive } from "./validate";

export interface L2SoftmaxOptions extends SoftmaxOptions {
  /** Feature scale (default 16). */
  alpha?: number;
  /** Learn alpha (default false). */
  learnAlpha?: boolean;
}

export const MIN_LEARNED_ALPHA = 0.01;

export class L2Softmax extends LinearHeadBase {
  readonly alpha: number;
  readonly alphaVariable?: Variable;

  constructor(options: L2SoftmaxOptions) {
    const name = "L2Softmax";
    const alpha = options?.alpha === undefined ? 16 : requirePositive(name, "alpha", options.alpha);
    const learn = options?.learnAlpha === undefined ? false : requireBoolean(name, "learnAlpha", options.learnAlpha);
    super(name, options, ["alpha", "learnAlpha"]);
    this.alpha = alpha;
    if (learn) this.alphaVariable = tf.variable(tf.scalar(alpha), true, `${this.weight.name}_alpha`);
    checkScale(
      name,
      "alpha",
      alpha,
      this.numClasses,
      "l2-softmax",
      options.scaleBoundP ?? DEFAULT_TARGET_PROBABILITY,
      this.warnings,
      options.onWarning,
    );
  }

  currentAlpha(): number {
    return this.alphaVariable ? Math.max(this.alphaVariable.dataSync()[0], MIN_LEARNED_ALPHA) : this.alpha;
  }

  protected features(embeddings: Tensor2D): Tensor2D {
    const alpha = this.alphaVariable ? tf.maximum(this.alphaVariable, MIN_LEARNED_ALPHA) : this.alpha;
    return tf.mul(l2NormalizeRows(embeddings, true), alpha) as Tensor2D;
  }

  override trainableVariables(): Variable[] {
    const vars = super.trainableVariables();
    return this.alphaVariable ? [...vars, this.alphaVariable] : vars;
  }

  override dispose(): void {
    super.dispose();
    this.alphaVariable?.dispose();
  }
}
