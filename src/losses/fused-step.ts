/**
 * One training step of a cosine head's weight with the fused margin kernel (./margin-kernel) and W kept
 * in TensorFlow: the fast path for the full softmax (every class, every step), where PartialFC's
 * host-side rows would move all of W out of and back into TensorFlow each step.
 *
 * Per step: the kernel's forward and backward on xs = s normalize(x) and the raw W (W is never normalised
 * as a [C, D] tensor), then PyTorch's SGD (dampening 0, no Nesterov) with the normalisation's projection
 * folded into the gradient as a per-row decay (src/train/optimizers.ts sgdUpdate; k_j = n_j^2 (w_j . A_j)):
 *   g = A - (k - wd) w;   m = mu m + g;   w -= lr m
 * written back into head.weight and the momentum buffer. The loss rows are read before the update, so a
 * non-finite loss is an error naming the rows, and nothing is updated.
 */
import { tf } from "../backend";
import type { HeadStep, HeadStepResult, HeadStepState } from "../train/head-step";
import { type SgdRule, sgdUpdate } from "../train/optimizers";
import type { CosineHead, Tensor1D, Tensor2D, Variable } from "./head";
import { type CosineMargin, meanLoss, stepGradients } from "./margin-kernel";
import { expectMeta, floatArray, metaCount, readArray } from "./step-state";
import { checkBatch, checkStepHead, fail, rejectUnknown, requireBoolean, requireNumber } from "./validate";

const OWNER = "FusedHeadStep";

export interface FusedHeadStepOptions {
  /** Default 0.1. */
  learningRate?: number;
  /** Default 0.9. */
  momentum?: number;
  /** Default 5e-4 (arcface_torch). */
  weightDecay?: number;
  /** Report each sample's loss capped at -log(1e-30), as InsightFace does (default true). */
  lossCap?: boolean;
  /** InsightFace's inter-class filter in [0, 1) (see CosineMargin.filter); default 0 (off). */
  interclassFilter?: number;
}

export interface FusedUpdateResult {
  loss: number;
  /** dLoss/d(embeddings) [B, D] when asked for (caller disposes). */
  embeddingGrad?: Tensor2D;
}

export class FusedHeadStep implements HeadStep {
  readonly kind = "fused" as const;
  readonly head: CosineHead;
  /** The head's margin (its scale s, target transform), with this step's inter-class filter. */
  readonly margin: CosineMargin;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly lossCap: boolean;
  learningRate: number;
  private readonly buffer: Variable;
  private stepCount = 0;

  constructor(head: CosineHead, options: FusedHeadStepOptions = {}) {
    checkStepHead(OWNER, head);
    if (options === null || typeof options !== "object")
      fail(
        OWNER,
        "options",
        options,
        "must be an object { learningRate, momentum, weightDecay, lossCap, interclassFilter }",
      );
    rejectUnknown(OWNER, options, ["learningRate", "momentum", "weightDecay", "lossCap", "interclassFilter"]);
    this.head = head;
    const filter = requireNumber(OWNER, "interclassFilter", options.interclassFilter ?? 0, 0, 1, false, true);
    this.margin = { ...head.margin, filter };
    this.learningRate = requireNumber(OWNER, "learningRate", options.learningRate ?? 0.1, 0, Infinity, true);
    this.momentum = requireNumber(OWNER, "momentum", options.momentum ?? 0.9, 0, 1, false, true);
    this.weightDecay = requireNumber(OWNER, "weightDecay", options.weightDecay ?? 5e-4, 0, Infinity);
    this.lossCap = requireBoolean(OWNER, "lossCap", options.lossCap ?? true);
    this.buffer = tf.tidy(() => tf.variable(tf.zerosLike(head.weight), false)); // tidy: the zeros are copied
  }

  get numClasses(): number {
    return this.head.numClasses;
  }

  get embeddingDim(): number {
    return this.head.embeddingDim;
  }

  /** Optimizer steps taken. */
  get steps(): number {
    return this.stepCount;
  }

  /** The momentum buffer [C, D] (a copy; caller disposes). */
  momentumValues(): Tensor2D {
    return this.buffer.clone() as Tensor2D;
  }

  private rule(): SgdRule {
    return { lr: this.learningRate, momentum: this.momentum, weightDecay: this.weightDecay };
  }

  /** HeadStep: one update with dLoss/d(embeddings) for the backbone (`step` is not needed: the rule has no schedule). */
  step(embeddings: Tensor2D, labels: Tensor1D, _step?: number): HeadStepResult {
    const r = this.update(embeddings, labels, { embeddingGrad: true });
    return { loss: r.loss, embeddingGrad: r.embeddingGrad as Tensor2D, activeClasses: this.numClasses };
  }

  /**
   * Forward, backward and SGD-momentum update of head.weight for one batch. Returns the mean loss and,
   * when asked for, dLoss/d(embeddings) [B, D] (caller disposes); without it a third matmul is saved.
   */
  update(embeddings: Tensor2D, labels: Tensor1D, options: { embeddingGrad?: boolean } = {}): FusedUpdateResult {
    checkBatch(OWNER, embeddings, labels, this.head.numClasses, this.head.embeddingDim);
    const w = this.head.weight as unknown as Tensor2D;
    const {
      lossRows,
      a,
      k,
      embeddingGrad: embGrad,
    } = stepGradients(
      OWNER,
      embeddings,
      w,
      labels,
      this.margin,
      options.embeddingGrad === true,
      "head.weight was not updated",
    );
    // PyTorch's SGD on dW = A - k w (the projection folded into the rule's per-row decay)
    const negK = tf.neg(k);
    const next = sgdUpdate(w, a, this.buffer, this.rule(), negK);
    tf.dispose([a, k, negK]);
    this.buffer.assign(next.buffer as Tensor2D);
    this.head.weight.assign(next.param as Tensor2D);
    tf.dispose([next.param, next.buffer as Tensor2D]);
    this.stepCount++;
    const loss = meanLoss(lossRows, this.lossCap);
    return embGrad ? { loss, embeddingGrad: embGrad } : { loss };
  }

  /** W, the momentum buffer and the step counter (copies). */
  saveState(): HeadStepState {
    const shape = this.head.weight.shape;
    return {
      arrays: {
        weight: floatArray(this.head.weight.dataSync(), shape),
        momentum: floatArray(this.buffer.dataSync(), shape),
      },
      meta: { kind: this.kind, steps: this.stepCount },
    };
  }

  loadState(state: HeadStepState): void {
    const shape = this.head.weight.shape;
    expectMeta(OWNER, state, "kind", this.kind);
    const w = readArray(OWNER, state, "weight", "float32", shape);
    const m = readArray(OWNER, state, "momentum", "float32", shape);
    const steps = metaCount(OWNER, state, "steps");
    tf.tidy(() => {
      this.head.weight.assign(tf.tensor2d(w as Float32Array, shape as [number, number]));
      this.buffer.assign(tf.tensor2d(m as Float32Array, shape as [number, number]));
    });
    this.stepCount = steps;
  }

  /** Frees the momentum buffer (the head stays the caller's). */
  dispose(): void {
    this.buffer.dispose();
  }
}
