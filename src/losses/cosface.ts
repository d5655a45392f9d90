/**
 * CosFace / LMCL (Wang et al., CVPR 2018): logits s (cos theta_j - m [j = y]), features and weights
 * normalised. Defaults s = 64, m = 0.35 (the paper's; PML's CosFaceLoss defaults). InsightFace's
 * arcface_torch configs use m = 0.4. m must lie in [0, C/(C-1)], the paper's range (eq. 7).
 */
import type { Tensor } from "@tensorflow/tfjs-node";
import { tf } from "../backend";
import { type CommonHeadOptions, CosineHeadBase, checkCommon, scaleOption } from "./cosine-head";
import type { TargetTransform } from "./margin-softmax";
import { requireNumber } from "./validate";

export interface CosFaceOptions extends CommonHeadOptions {
  /** Scale (default 64). */
  s?: number;
  /** Additive cosine margin (default 0.35). */
  m?: number;
}

export function cosFaceTarget(m: number): TargetTransform {
  return (c) => ({ value: tf.sub(c, m), slope: null });
}

export class CosFace extends CosineHeadBase {
  readonly s: number;
  readonly m: number;

  constructor(options: CosFaceOptions) {
    const name = "CosFace";
    const common = checkCommon(name, options, ["s", "m"]);
    const s = scaleOption(name, options.s);
    const c = common.numClasses;
    const m = options.m === undefined ? 0.35 : requireNumber(name, "m", options.m, 0, c / (c - 1));
    super(name, options, common, c);
    this.s = s;
    this.m = m;
    this.checkScaleBound("s", s);
  }

  protected scaleValue(): number | Tensor {
    return this.s;
  }

  protected targetTransform(): TargetTransform | null {
    return cosFaceTarget(this.m);
  }
}
