/**
 * The contract every classification head honours (see README, "Loss heads").
 * W is [numClasses, embeddingDim]: row c is the centre of class c. Losses are means over the batch.
 */
import type { tf } from "../backend";
import type { CosineMargin } from "./margin-kernel";

type Tensor1D = import("@tensorflow/tfjs-node").Tensor1D;
type Tensor2D = import("@tensorflow/tfjs-node").Tensor2D;
type Scalar = import("@tensorflow/tfjs-node").Scalar;
type Variable = import("@tensorflow/tfjs-node").Variable;

export type { Scalar, Tensor1D, Tensor2D, Variable };
export type TF = typeof tf;

export interface HeadOptions {
  numClasses: number;
  embeddingDim: number;
  /** Seed for the weight initialisation (deterministic runs). */
  seed?: number;
}

export interface Head {
  readonly numClasses: number;
  readonly embeddingDim: number;
  /** Class centres, [numClasses, embeddingDim] (sub-centre heads: [numClasses * K, embeddingDim]). */
  readonly weight: Variable;
  /** Scalar loss, mean over the batch. labels: int32 [B]. */
  loss(embeddings: Tensor2D, labels: Tensor1D): Scalar;
  /** The scaled, margin-modified logits [B, numClasses] the loss applies softmax cross-entropy to. */
  logits(embeddings: Tensor2D, labels: Tensor1D): Tensor2D;
  /** Plain cosines [B, numClasses] between embeddings and class centres (evaluation). */
  cosine(embeddings: Tensor2D): Tensor2D;
  /** Every variable the optimizer should update (weight, and e.g. a trainable scale or bias). */
  trainableVariables(): Variable[];
  /** Called by the trainer once per optimizer step (SphereFace's lambda annealing uses it). */
  setStep?(step: number): void;
  /** Frees the variables. */
  dispose(): void;
}

/**
 * A head whose logits are a function of the cosines alone (NormFace, CosFace, ArcFace, combined
 * margins). PartialFC computes cosines against a sampled subset of W and hands them to these.
 */
export interface CosineHead extends Head {
  /**
   * The margin as data (scale, target transform with its slope, inter-class filter): what the fused kernel
   * (./margin-kernel), FusedHeadStep and PartialFC compute the loss from. A learnable scale is read as its
   * value now.
   */
  readonly margin: CosineMargin;
  /**
   * The scaled, margin-modified logits from precomputed cosines [B, C'] (already clipped to [-1, 1]);
   * labels index columns of `cosine`.
   */
  logitsFromCosine(cosine: Tensor2D, labels: Tensor1D): Tensor2D;
  /**
   * The fused loss from precomputed cosines [B, C'] (already clipped): mean softmax cross-entropy of
   * `logitsFromCosine(cosine, labels)`, computed without materialising the modified logits' gradient
   * chain (one [B, C'] pass per step of the softmax; the margin touches only the B target values).
   */
  lossFromCosine(cosine: Tensor2D, labels: Tensor1D): Scalar;
}
