/**
 * One training step of a margin head's weight with the fused core (./partial-fc-core) and W kept in
 * TensorFlow: the fast path for the full softmax (every class, every step), where PartialFC's host-side
 * rows would move all of W out of and back into TensorFlow each step.
 *
 * Per step: n = 1/|w| once ([C, D] -> [C]: W is never normalised as a [C, D] tensor); the fused forward
 * (one matmul, one [B, C] scaling pass, one scatter, TensorFlow's native softmax cross-entropy); H with the
 * target slopes folded in (one scatter); A = H^T x_hat (and dx_hat = H W when asked for); then PyTorch's
 * SGD (dampening 0, no Nesterov) with the normalisation's projection folded into the gradient:
 *   g = A - (n^2 (w . A) - wd) w;   m = mu m + g;   w -= lr m
 * in five [C, D] passes, written back into head.weight and the momentum buffer in place.
 */
import { tf } from "../backend";
import type { HeadStep, HeadStepResult, HeadStepState } from "../train/head-step";
import type { CosineHead, Tensor1D, Tensor2D, Variable } from "./head";
import { fusedForwardBackward, meanLoss, probeLinearScale } from "./partial-fc-core";
import { expectMeta, floatArray, metaCount, readArray } from "./step-state";
import { NORM_EPS2, normalizeRows } from "./tensor-helpers";
import { checkBatch, fail, rejectUnknown, requireBoolean, requireNumber } from "./validate";

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
}

export interface FusedUpdateResult {
  loss: number;
  /** dLoss/d(embeddings) [B, D] when asked for (caller disposes). */
  embeddingGrad?: Tensor2D;
}

export class FusedHeadStep implements HeadStep {
  readonly kind = "fused" as const;
  readonly head: CosineHead;
  /** The head's non-target scale s (probed: non-target logits must be s cos). */
  readonly scale: number;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly lossCap: boolean;
  learningRate: number;
  private readonly buffer: Variable;
  private stepCount = 0;

  constructor(head: CosineHead, options: FusedHeadStepOptions = {}) {
    if (!head || typeof head.logitsFromCosine !== "function")
      fail(OWNER, "head", head === undefined ? undefined : typeof head, "must be a CosineHead (with logitsFromCosine)");
    if (options === null || typeof options !== "object")
      fail(OWNER, "options", options, "must be an object { learningRate, momentum, weightDecay, lossCap }");
    rejectUnknown(OWNER, options, ["learningRate", "momentum", "weightDecay", "lossCap"]);
    if (head.trainableVariables().length !== 1)
      fail(OWNER, "head.trainableVariables().length", head.trainableVariables().length, "must be 1 (the weight)");
    if (head.weight.shape[0] !== head.numClasses)
      fail(
        OWNER,
        "head",
        head.constructor.name,
        `must have one row per class (weight rows ${head.weight.shape[0]}, numClasses ${head.numClasses}); sub-centre heads are not supported`,
      );
    const s = probeLinearScale(head);
    if (s === null)
      fail(
        OWNER,
        "head",
        head.constructor.name,
        "needs non-target logits s * cos with a constant s (NormFace, CosFace, ArcFace, CombinedMargin)",
      );
    this.head = head;
    this.scale = s;
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
    const want = options.embeddingGrad === true;
    const { learningRate: lr, momentum: mu, weightDecay: wd, scale: s } = this;
    const w = this.head.weight;
    // three scopes, so that the [C, D] temporaries of one die before the next allocates its own
    const [rows, a, n2, embGrad] = tf.tidy(() => {
      const xHat = normalizeRows(embeddings);
      const ss = tf.sum(tf.square(w), 1, true); // [C, 1]
      const n2 = tf.div(tf.cast(tf.greaterEqual(ss, NORM_EPS2), "float32"), tf.maximum(ss, NORM_EPS2)); // 0 for zero rows
      const n = tf.rsqrt(tf.maximum(tf.reshape(ss, [-1]), NORM_EPS2)) as Tensor1D;
      const y = labels.dtype === "int32" ? labels : (tf.cast(labels, "int32") as Tensor1D);
      const f = fusedForwardBackward(this.head, s, xHat, w as unknown as Tensor2D, y, n);
      // the targets' own slopes: H[i, y_i] += delta_i (one [B, C] scatter instead of a [C, D] pass)
      const h = tf.tensorScatterUpdate(f.h, f.idx, tf.add(tf.gatherND(f.h, f.idx), f.delta)) as Tensor2D;
      const dXHat = want ? (tf.matMul(h, w) as Tensor2D) : null;
      const embGrad = dXHat ? (tf.grad((x) => normalizeRows(x as Tensor2D))(embeddings, dXHat) as Tensor2D) : null;
      const a = tf.matMul(h, xHat, true, false); // A = dL/dW_hat, [C, D]
      return embGrad ? [f.rows, a, n2, embGrad] : [f.rows, a, n2];
    }) as [Tensor1D, Tensor2D, Tensor2D, Tensor2D?];
    // projection through the normalisation (rows with |w| < 1e-12 are linear there: A passes unchanged)
    const m = tf.tidy(() => {
      const coef = tf.sub(tf.mul(tf.sum(tf.mul(w, a), 1, true), n2), wd); // [C, 1]
      return tf.add(tf.mul(this.buffer, mu), tf.sub(a, tf.mul(w, coef)));
    });
    tf.dispose([a, n2]);
    this.buffer.assign(m);
    m.dispose();
    tf.tidy(() => w.assign(tf.sub(w, tf.mul(this.buffer, lr))));
    const loss = meanLoss(rows.dataSync(), this.lossCap);
    rows.dispose();
    this.stepCount++;
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
