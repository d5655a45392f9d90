/**
 * Heads the ablations compose from the loss library: softmax + lambda * center loss (Wen et al.), as
 * one Head whose `weight` is the softmax classifier (what RegularFace's exclusive term regularises).
 */
import { tf } from "../src/backend";
import { CenterLoss } from "../src/losses/center-loss";
import type { Head, Scalar, Tensor1D, Tensor2D, Variable } from "../src/losses/head";
import { Softmax } from "../src/losses/softmax";

export class SoftmaxCenterHead implements Head {
  readonly softmax: Softmax;
  readonly center: CenterLoss;
  readonly numClasses: number;
  readonly embeddingDim: number;

  constructor(o: { numClasses: number; embeddingDim: number; seed: number; lambda: number }) {
    this.softmax = new Softmax({ numClasses: o.numClasses, embeddingDim: o.embeddingDim, seed: o.seed });
    // gradient-updated centres: the trainer has no per-step hook with the embeddings for the alpha rule
    this.center = new CenterLoss({
      numClasses: o.numClasses,
      embeddingDim: o.embeddingDim,
      seed: o.seed + 1,
      update: "gradient",
    });
    this.numClasses = o.numClasses;
    this.embeddingDim = o.embeddingDim;
    this.lambda = o.lambda;
  }

  readonly lambda: number;

  get weight(): Variable {
    return this.softmax.weight;
  }

  loss(embeddings: Tensor2D, labels: Tensor1D): Scalar {
    return tf.tidy(
      () =>
        tf.add(
          this.softmax.loss(embeddings, labels),
          tf.mul(this.center.loss(embeddings, labels), this.lambda),
        ) as Scalar,
    );
  }

  logits(embeddings: Tensor2D, labels: Tensor1D): Tensor2D {
    return this.softmax.logits(embeddings, labels);
  }

  cosine(embeddings: Tensor2D): Tensor2D {
    return this.softmax.cosine(embeddings);
  }

  trainableVariables(): Variable[] {
    return [...this.softmax.trainableVariables(), ...this.center.trainableVariables()];
  }

  dispose(): void {
    this.softmax.dispose();
    this.center.dispose();
  }
}
