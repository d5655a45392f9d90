/**
 * The head step: the one seam between the training loop (src/train/trainer.ts) and a loss head.
 *
 * The loop runs the backbone, hands the step the embeddings (cut off from the backbone's tape), and
 * gets back the loss and dLoss/d(embeddings); the step has already updated its own parameters (class
 * centres, momentum, sampling state). Three kinds exist:
 *   - "autodiff":   any Head (+ regularizers), gradients through tf autodiff, updated with the one SGD rule;
 *   - "fused":      the full-softmax step of a cosine head with the fused margin-softmax kernel;
 *   - "partial-fc": Partial FC (sampled class centres kept on the host, updated sparsely).
 * Every kind saves and restores its whole state, so checkpoints resume any of them exactly.
 */
import type { Tensor1D, Tensor2D } from "../losses/head";

type Tensor = import("@tensorflow/tfjs-node").Tensor;

export type HeadStepKind = "autodiff" | "fused" | "partial-fc";

export interface HeadStepResult {
  /** Mean loss of the batch (with the regularizers' terms, where the step has any). */
  loss: number;
  /** dLoss/d(embeddings), [B, D]; the caller owns and disposes it. */
  embeddingGrad: Tensor2D;
  /** Classes the step scored against (every class except under Partial FC's sampling). */
  activeClasses: number;
  /** Named scalar terms worth logging (e.g. the regularizers' values); optional. */
  terms?: Record<string, number>;
  /** The loss without the terms' weighted contributions, where the step tells them apart; default `loss`. */
  headLoss?: number;
}

/**
 * A step whose update is computed but not yet applied (the autodiff step offers it through `prepare`):
 * the loop can then clip head and backbone gradients together (clipScope "all") and drop the update of a
 * non-finite step, so that a NaN never reaches the head's weights.
 */
export interface PreparedHeadStep extends HeadStepResult {
  /** The head's pending gradients (owned by the step; read them, e.g. for a global norm, do not dispose). */
  readonly pendingGrads: readonly Tensor[];
  /** Applies the pending update with the gradient multiplied by `scale` (1 = unclipped) and frees it. */
  apply(scale: number): void;
  /** Frees the pending update without applying it. */
  discard(): void;
}

/** One array of a step's saved state; `data` is copied, never aliased. */
export interface StateArray {
  dtype: "float32" | "int32";
  shape: number[];
  data: Float32Array | Int32Array;
}

/** Everything a step needs to continue exactly: arrays (W, momentum, ...) and small JSON values. */
export interface HeadStepState {
  arrays: Record<string, StateArray>;
  meta: Record<string, unknown>;
}

export interface HeadStep {
  readonly kind: HeadStepKind;
  readonly numClasses: number;
  readonly embeddingDim: number;
  /** The head's learning rate for the next step; the loop sets it from the schedule before each step. */
  learningRate: number;
  /**
   * One optimizer step of the head on this batch. `step` is the 0-based optimizer step index (SphereFace's
   * lambda schedule and sampling seeds read it). Leaves the tensor count unchanged apart from the returned
   * embeddingGrad.
   */
  step(embeddings: Tensor2D, labels: Tensor1D, step: number): HeadStepResult;
  /** Optional: like `step`, but leaves the update pending (see PreparedHeadStep). The loop prefers it. */
  prepare?(embeddings: Tensor2D, labels: Tensor1D, step: number): PreparedHeadStep;
  /** A copy of the complete state (parameters, optimizer buffers, sampling state). */
  saveState(): HeadStepState;
  /** Restores a state saved by saveState of a step with the same configuration; throws naming what differs. */
  loadState(state: HeadStepState): void;
  /** Frees what the step owns (not the head it wraps, unless it created it). */
  dispose(): void;
}
