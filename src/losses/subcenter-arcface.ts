/**
 * Sub-center ArcFace (Deng et al., ECCV 2020): K sub-centres per class, class c's at rows c*K .. c*K+K-1
 * of W ([numClasses * K, embeddingDim]); the class cosine is the max over its sub-centres, then ArcFace.
 * Defaults K = 3, s = 64, m = 0.5, fallback / gradient as ArcFace (PML's SubCenterArcFaceLoss = K = 3,
 * m = 28.6 degrees, fallback, exact).
 *
 * `clean()` is the paper's data-cleaning step (InsightFace subcenter_arcface/drop.py, PML get_outliers):
 * each class's dominant sub-centre is the one most of its samples are nearest to (lowest index on ties);
 * samples farther than `thresholdDegrees` (default 75) from it are outliers (cos < cos(threshold)).
 */
import type { Scalar, Tensor, Tensor1D, Tensor2D } from "@tensorflow/tfjs-node";
import { tf } from "../backend";
import { type ArcFaceFallback, arcFaceOptions, arcFaceTarget, type MarginGradient } from "./arcface";
import { type CommonHeadOptions, CosineHeadBase, checkCommon } from "./cosine-head";
import { marginSoftmaxCrossEntropy, matMulWideT, maxLastAxis, type TargetTransform } from "./margin-softmax";
import { l2NormalizeRows } from "./tensor-helpers";
import { checkBatch, requireInteger, requireNumber } from "./validate";

export interface SubCenterArcFaceOptions extends CommonHeadOptions {
  /** Sub-centres per class (default 3). */
  K?: number;
  s?: number;
  m?: number;
  fallback?: ArcFaceFallback;
  gradient?: MarginGradient;
}

export interface CleaningResult {
  /** Dominant sub-centre index (0..K-1) per class; -1 for classes with no sample in the input. */
  dominant: Int32Array;
  /** Per sample: true when farther than the threshold angle from its class's dominant sub-centre. */
  outlier: boolean[];
  /** Per sample: cosine to its class's dominant sub-centre. */
  cosineToDominant: Float32Array;
}

export class SubCenterArcFace extends CosineHeadBase {
  readonly K: number;
  readonly s: number;
  readonly m: number;
  readonly fallback: ArcFaceFallback;
  readonly gradient: MarginGradient;

  constructor(options: SubCenterArcFaceOptions) {
    const name = "SubCenterArcFace";
    const common = checkCommon(name, options, ["K", "s", "m", "fallback", "gradient"]);
    const K = options.K === undefined ? 3 : requireInteger(name, "K", options.K, 1);
    const { s, m, fallback, gradient } = arcFaceOptions(name, options);
    super(name, options, common, common.numClasses * K);
    this.K = K;
    this.s = s;
    this.m = m;
    this.fallback = fallback;
    this.gradient = gradient;
    this.checkScaleBound("s", s);
  }

  /** Cosines to every sub-centre, [B, numClasses * K] (unclipped). */
  protected subCenterCosine(embeddings: Tensor2D): Tensor2D {
    const wn = l2NormalizeRows(this.weight as Tensor as Tensor2D);
    return matMulWideT(l2NormalizeRows(embeddings, true), wn);
  }

  protected override rawCosine(embeddings: Tensor2D): Tensor2D {
    const all = this.subCenterCosine(embeddings);
    if (this.K === 1) return all;
    const b = embeddings.shape[0];
    return maxLastAxis(tf.reshape(all, [b, this.numClasses, this.K]));
  }

  /** Sub-centres need the max over K of the cosines, so this head takes the generic core on them. */
  protected override fusedLoss(embeddings: Tensor2D, labels: Tensor1D): Scalar {
    return marginSoftmaxCrossEntropy(this.rawCosine(embeddings), labels, this.s, this.targetTransform());
  }

  protected scaleValue(): number | Tensor {
    return this.s;
  }

  protected targetTransform(): TargetTransform | null {
    return arcFaceTarget(this.m, this.fallback, this.gradient);
  }

  /** The cleaning step: dominant sub-centres and the samples farther than `thresholdDegrees` from them. */
  clean(embeddings: Tensor2D, labels: Tensor1D, thresholdDegrees = 75): CleaningResult {
    requireNumber(this.headName, "thresholdDegrees", thresholdDegrees, 0, 180);
    checkBatch(this.headName, embeddings, labels, this.numClasses, this.embeddingDim);
    const b = embeddings.shape[0];
    const K = this.K;
    const cos = tf.tidy(() => tf.clipByValue(this.subCenterCosine(embeddings), -1, 1));
    const values = cos.dataSync();
    cos.dispose();
    const y = labels.dataSync();
    const counts = new Map<number, number[]>();
    const nearest = new Int32Array(b);
    for (let i = 0; i < b; i++) {
      const c = y[i];
      let best = 0;
      for (let k = 1; k < K; k++)
        if (values[i * this.numClasses * K + c * K + k] > values[i * this.numClasses * K + c * K + best]) best = k;
      nearest[i] = best;
      const row = counts.get(c) ?? new Array<number>(K).fill(0);
      row[best] += 1;
      counts.set(c, row);
    }
    const dominant = new Int32Array(this.numClasses).fill(-1);
    for (const [c, row] of counts) {
      let best = 0;
      for (let k = 1; k < K; k++) if (row[k] > row[best]) best = k;
      dominant[c] = best;
    }
    const threshold = Math.cos((thresholdDegrees * Math.PI) / 180);
    const cosineToDominant = new Float32Array(b);
    const outlier: boolean[] = [];
    for (let i = 0; i < b; i++) {
      const c = y[i];
      const v = values[i * this.numClasses * K + c * K + dominant[c]];
      cosineToDominant[i] = v;
      outlier.push(v < threshold);
    }
    return { dominant, outlier, cosineToDominant };
  }
}
