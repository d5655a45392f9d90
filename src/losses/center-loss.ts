/**
 * Center loss (Wen, Zhang, Li, Qiao, ECCV 2016), to add to a softmax-type head with a weight lambda:
 *   L_C = 0.5 mean_i ||x_i - c_{y_i}||^2   (mean over the batch, as every loss here).
 * The centres ([numClasses, embeddingDim], `weight`, zero-initialised unless `initialWeight`) are updated
 * either
 * - `update: "alpha"` (default, the paper's Algorithm 1): after each step call `updateCenters(x, y)`:
 *     delta_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j),   c_j <- c_j - alpha delta_j   (alpha default 0.5);
 *   the centres are then not trainable (their variable has trainable = false, `trainableVariables()` is
 *   empty) and the loss's gradient reaches only the embeddings; or
 * - `update: "gradient"`: the centres are an ordinary trainable variable updated by the optimizer.
 * `logits(x)` are -0.5 ||x - c_j||^2 (a nearest-centre classifier) and `cosine(x)` the cosines to the
 * centres, for evaluation.
 */
import type { Scalar, Tensor, Tensor1D, Tensor2D, Variable } from "@tensorflow/tfjs-node";
import { tf } from "../backend";
import { type CommonHeadOptions, checkCommon, checkInitialWeight } from "./cosine-head";
import type { Head } from "./head";
import { clippedCosine } from "./tensor-helpers";
import { checkHeadInput, requireNumber, requireOneOf } from "./validate";
import type { LossWarning } from "./warnings";

export type CenterUpdate = "alpha" | "gradient";

export interface CenterLossOptions extends CommonHeadOptions {
  /** How the centres learn (default "alpha"). */
  update?: CenterUpdate;
  /** Centre learning rate of the alpha rule, (0, 1] (default 0.5). */
  alpha?: number;
}

let counter = 0;

export class CenterLoss implements Head {
  readonly numClasses: number;
  readonly embeddingDim: number;
  /** The centres, [numClasses, embeddingDim]. */
  readonly weight: Variable;
  readonly update: CenterUpdate;
  readonly alpha: number;
  readonly warnings: LossWarning[] = [];
  private readonly validateLabels: boolean;

  constructor(options: CenterLossOptions) {
    const name = "CenterLoss";
    const common = checkCommon(name, options, ["update", "alpha"], 1);
    const update =
      options.update === undefined
        ? "alpha"
        : requireOneOf(name, "update", options.update, ["alpha", "gradient"] as const);
    const alpha = options.alpha === undefined ? 0.5 : requireNumber(name, "alpha", options.alpha, 0, 1, true);
    checkInitialWeight(name, options.initialWeight, common.numClasses, common.embeddingDim);
    this.numClasses = common.numClasses;
    this.embeddingDim = common.embeddingDim;
    this.update = update;
    this.alpha = alpha;
    this.validateLabels = common.validateLabels;
    counter += 1;
    const init = options.initialWeight;
    this.weight = tf.tidy(() =>
      tf.variable(
        init === undefined
          ? tf.zeros([common.numClasses, common.embeddingDim])
          : Array.isArray(init)
            ? tf.tensor2d(init, [common.numClasses, common.embeddingDim], "float32")
            : tf.cast(init, "float32"),
        update === "gradient",
        `CenterLoss_centers_${counter}`,
      ),
    );
  }

  /** Alias of `weight`. */
  get centers(): Variable {
    return this.weight;
  }

  private check(embeddings: Tensor2D, labels: Tensor1D | null): void {
    checkHeadInput("CenterLoss", embeddings, labels, this.numClasses, this.embeddingDim, this.validateLabels);
  }

  loss(embeddings: Tensor2D, labels: Tensor1D): Scalar {
    this.check(embeddings, labels);
    return tf.tidy(() => {
      const c = tf.gather(this.weight, tf.cast(labels, "int32"));
      return tf.mul(tf.mean(tf.sum(tf.square(tf.sub(embeddings, c)), 1)), 0.5) as Scalar;
    });
  }

  /** The paper's centre update (update: "alpha"); a no-op check error in gradient mode. */
  updateCenters(embeddings: Tensor2D, labels: Tensor1D): void {
    if (this.update !== "alpha") {
      throw new Error(
        'CenterLoss: updateCenters() is for update = "alpha"; with update = "gradient" the optimizer updates the centres',
      );
    }
    this.check(embeddings, labels);
    tf.tidy(() => {
      const y = tf.cast(labels, "int32");
      const diff = tf.sub(tf.gather(this.weight, y), embeddings);
      const sums = tf.unsortedSegmentSum(diff, y, this.numClasses);
      const counts = tf.unsortedSegmentSum(tf.onesLike(y).toFloat(), y, this.numClasses);
      const delta = tf.div(sums, tf.reshape(tf.add(counts, 1), [this.numClasses, 1]));
      this.weight.assign(tf.sub(this.weight, tf.mul(delta, this.alpha)));
    });
  }

  /** -0.5 ||x - c_j||^2 for every centre j ([B, numClasses]); labels are only checked. */
  logits(embeddings: Tensor2D, labels: Tensor1D): Tensor2D {
    this.check(embeddings, labels);
    return tf.tidy(() => {
      const x2 = tf.sum(tf.square(embeddings), 1, true);
      const c2 = tf.reshape(tf.sum(tf.square(this.weight), 1), [1, this.numClasses]);
      const xc = tf.matMul(embeddings, this.weight, false, true);
      return tf.mul(tf.sub(tf.add(x2, c2), tf.mul(xc, 2)), -0.5) as Tensor2D;
    });
  }

  cosine(embeddings: Tensor2D): Tensor2D {
    this.check(embeddings, null);
    return clippedCosine(embeddings, this.weight as Tensor as Tensor2D);
  }

  trainableVariables(): Variable[] {
    return this.update === "gradient" ? [this.weight] : [];
  }

  dispose(): void {
    this.weight.dispose();
  }
}
