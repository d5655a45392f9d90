/**
 * Partial FC (An et al., "Partial FC: Training 10 Million Identities on a Single Machine", ICCVW 2021;
 * "Killing Two Birds with One Stone", CVPR 2022; InsightFace arcface_torch partial_fc_v2.py) on one
 * machine, wrapping any cosine head (NormFace, CosFace, ArcFace, combined margins).
 *
 * Each step keeps every class of the batch plus a uniform random subset of the others, trunc(r C) in
 * all (./partial-fc-sampling), re-indexes the labels into that active set, and computes the wrapped
 * head's softmax loss over it. Rows outside the active set get exactly zero gradient.
 *
 * PartialFC owns the full W [C, D] and its SGD-momentum state on the host (Float32Arrays: 2 GB each at
 * C = 1,000,000, D = 512), and only ever moves the active rows to TensorFlow: gather, forward/backward,
 * update, written back in place. Optimizer semantics (`optimizer.semantics`):
 *
 * - "dense" (default; InsightFace PartialFC_V2 with torch.optim.SGD): every row is updated every step;
 *   unsampled rows have zero gradient but weight decay and momentum still move them. Done lazily and
 *   exactly: an unsampled row evolves linearly, (w, m) <- [[1 - lr wd, -lr mu], [wd, mu]] (w, m), so a
 *   row is brought up to date with the product of those 2x2 matrices when it is next sampled (or on
 *   `flush()`); each step touches only active rows.
 * - "frozen" (InsightFace's removed PartialFC V1): unsampled rows and their momentum do not change.
 *
 * The SGD rule is PyTorch's (dampening 0, no Nesterov): g' = g + wd w; m = mu m + g'; w -= lr m.
 * The reported loss caps each sample at -log(1e-30) when `lossCap` (InsightFace's DistCrossEntropy
 * reports -log max(p_y, 1e-30)); gradients are never capped, as there.
 */
import { tf } from "../backend";
import { Rng } from "../data/rng";
import type { HeadStep, HeadStepResult, HeadStepState } from "../train/head-step";
import { meanPairCosine } from "./exclusive";
import type { CosineHead, Tensor1D, Tensor2D } from "./head";
import { fusedMarginSoftmax, LOSS_CAP, meanLoss, probeLinearScale } from "./partial-fc-core";
import { type ActiveSet, selectActive, selectWithScores } from "./partial-fc-sampling";
import { expectMeta, floatArray, intArray, metaCount, readArray } from "./step-state";
import { type CustomGradFn, NORM_EPS2, normalizeRows } from "./tensor-helpers";
import { fail, rejectUnknown, requireBoolean, requireInteger, requireNumber, requireOneOf } from "./validate";

type Scalar = import("@tensorflow/tfjs-node").Scalar;

const OWNER = "PartialFC";

export type PartialFCSemantics = "dense" | "frozen";

export interface PartialFCOptimizerOptions {
  /** Default 0.1 (arcface_torch). */
  learningRate?: number;
  /** Default 0.9. */
  momentum?: number;
  /** Default 5e-4 (arcface_torch). */
  weightDecay?: number;
  /** Default "dense" (V2). */
  semantics?: PartialFCSemantics;
}

export interface PartialFCOptions {
  /** The margin head whose `logitsFromCosine` gives the loss; its only trainable variable must be its weight. */
  head: CosineHead;
  /** r in (0, 1]: the active set has trunc(r C) classes (or the batch's classes, if more). */
  sampleRate: number;
  /** C (default head.numClasses). May differ from the head's only with init "normal". */
  numClasses?: number;
  /** "head" copies head.weight (default when the sizes agree); "normal": N(0, initStd^2) from the seed (PartialFC_V2's init). */
  init?: "head" | "normal";
  /** Default 0.01. */
  initStd?: number;
  /** Seeds the sampling and the "normal" init (default 0). */
  seed?: number;
  /** Report each sample's loss capped at -log(1e-30) as InsightFace does (default true). */
  lossCap?: boolean;
  optimizer?: PartialFCOptimizerOptions;
  /** Weight of RegularFace's stochastic exclusive term (batch classes vs the active set); default 0 (off). */
  exclusiveWeight?: number;
  /** "auto" (default): the fused path when the head's non-target logits are s cos; false: generic autodiff. */
  fused?: "auto" | boolean;
  /**
   * InsightFace's inter-class filter (`interclass_filtering_threshold`, CVPR 2022), in [0, 1): non-target
   * cosines above it count as 0 and pass no gradient; 0 (default) = off. The paper uses 0.4 with r = 0.1-0.3.
   */
  interclassFilter?: number;
}

const KNOWN = [
  "head",
  "sampleRate",
  "numClasses",
  "init",
  "initStd",
  "seed",
  "lossCap",
  "optimizer",
  "exclusiveWeight",
  "fused",
  "interclassFilter",
] as const;

export interface PartialFCGradients {
  /** Mean softmax loss over the batch (capped per sample when lossCap). */
  loss: number;
  /** The stochastic exclusive term (before its weight), or null when exclusiveWeight = 0. */
  exclusive: number | null;
  active: ActiveSet;
  /** d(loss + exclusiveWeight * exclusive)/dW for the active rows, [K * D], row k = class active.index[k]. */
  weightGrad: Float32Array;
  /** dLoss/d(embeddings) [B, D] (caller disposes). */
  embeddingGrad: Tensor2D;
}

export interface PartialFCStepResult {
  loss: number;
  exclusive: number | null;
  activeClasses: number;
  /** dLoss/d(embeddings) [B, D] when asked for (caller disposes), to continue backprop into a backbone. */
  embeddingGrad?: Tensor2D;
}

/** The gradient of the active rows before the normalisation's projection (fused path) or after it. */
interface RawGrad {
  a: Float32Array;
  projected: boolean;
  /** Sparse additions (already projected): active-row positions and their D values each. */
  extraRows: Int32Array;
  extraVals: Float32Array;
}

export class PartialFC implements HeadStep {
  readonly kind = "partial-fc" as const;
  readonly head: CosineHead;
  readonly numClasses: number;
  readonly embeddingDim: number;
  readonly sampleRate: number;
  readonly semantics: PartialFCSemantics;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly lossCap: boolean;
  /** Weight of the stochastic exclusive term; may change between steps (a warm-up, or off for a while). */
  get exclusiveWeight(): number {
    return this.exclusiveWeightValue;
  }
  set exclusiveWeight(value: number) {
    this.exclusiveWeightValue = requireNumber(OWNER, "exclusiveWeight", value, 0, Infinity);
  }
  /** The head's scale when the fused path is used, else null. */
  readonly fusedScale: number | null;
  /** Non-target cosines above this count as 0 (InsightFace's inter-class filter); 0 = off. */
  readonly interclassFilter: number;
  learningRate: number;
  /** Optimizer steps taken. */
  get steps(): number {
    return this.stepCount;
  }

  private readonly w: Float32Array;
  private readonly m: Float32Array;
  /** Dense semantics: the step each row's (w, m) is up to date with. */
  private readonly last: Int32Array;
  /** Squared row norms of W, kept current by every write (no [C, D] pass per step to normalise W). */
  private readonly sq: Float64Array;
  /** The learning rate of every step taken, [0] = unused (the lazy catch-up replays them). */
  private lrLog: number[] = [0];
  private stepCount = 0;
  private exclusiveWeightValue = 0;
  /** The sampling generator (its uint32 state is saved with the step). */
  private readonly rng: Rng;

  constructor(options: PartialFCOptions) {
    if (options === null || typeof options !== "object")
      fail(OWNER, "options", options, "must be an object { head, sampleRate, ... }");
    rejectUnknown(OWNER, options, KNOWN);
    const head = options.head;
    if (!head || typeof head.logitsFromCosine !== "function") {
      fail(OWNER, "head", head === undefined ? undefined : typeof head, "must be a CosineHead (with logitsFromCosine)");
    }
    const extra = head.trainableVariables().length;
    if (extra !== 1) {
      fail(
        OWNER,
        "head.trainableVariables().length",
        extra,
        "must be 1 (the weight): a learnable scale is not trained by PartialFC",
      );
    }
    const sampleRate = requireNumber(OWNER, "sampleRate", options.sampleRate, 0, 1, true);
    const numClasses = requireInteger(OWNER, "numClasses", options.numClasses ?? head.numClasses, 2);
    const init = requireOneOf(OWNER, "init", options.init ?? (numClasses === head.numClasses ? "head" : "normal"), [
      "head",
      "normal",
    ]);
    if (init === "head" && numClasses !== head.numClasses) {
      fail(OWNER, "numClasses", numClasses, `must equal head.numClasses (${head.numClasses}) with init "head"`);
    }
    const initStd = requireNumber(OWNER, "initStd", options.initStd ?? 0.01, 0, Infinity, true);
    const seed = requireInteger(OWNER, "seed", options.seed ?? 0, 0);
    const o = options.optimizer ?? {};
    if (typeof o !== "object")
      fail(OWNER, "optimizer", o, "must be an object { learningRate, momentum, weightDecay, semantics }");
    rejectUnknown(`${OWNER}.optimizer`, o, ["learningRate", "momentum", "weightDecay", "semantics"]);
    this.learningRate = requireNumber(OWNER, "optimizer.learningRate", o.learningRate ?? 0.1, 0, Infinity, true);
    this.momentum = requireNumber(OWNER, "optimizer.momentum", o.momentum ?? 0.9, 0, 1, false, true);
    this.weightDecay = requireNumber(OWNER, "optimizer.weightDecay", o.weightDecay ?? 5e-4, 0, Infinity);
    this.semantics = requireOneOf(OWNER, "optimizer.semantics", o.semantics ?? "dense", ["dense", "frozen"]);
    this.lossCap = requireBoolean(OWNER, "lossCap", options.lossCap ?? true);
    this.exclusiveWeight = requireNumber(OWNER, "exclusiveWeight", options.exclusiveWeight ?? 0, 0, Infinity);
    this.interclassFilter = requireNumber(OWNER, "interclassFilter", options.interclassFilter ?? 0, 0, 1, false, true);
    const fused = options.fused ?? "auto";
    if (fused !== "auto" && typeof fused !== "boolean") fail(OWNER, "fused", fused, 'must be "auto", true or false');

    this.head = head;
    this.numClasses = numClasses;
    this.embeddingDim = head.embeddingDim;
    this.sampleRate = sampleRate;
    const probed = fused === false ? null : probeLinearScale(head);
    if (fused === true && probed === null) {
      fail(
        OWNER,
        "fused",
        true,
        'needs a head whose non-target logits are s * cos with a constant s; use "auto" or false',
      );
    }
    this.fusedScale = probed;
    this.rng = Rng.fromState(seed);
    const size = numClasses * this.embeddingDim;
    if (init === "head") {
      this.w = Float32Array.from(head.weight.dataSync() as Float32Array);
    } else {
      this.w = new Float32Array(size);
      fillNormal(this.w, initStd, seed);
    }
    // Zero-filled and touched row by row: the OS maps momentum pages only for rows that were ever active.
    this.m = new Float32Array(size);
    this.last = new Int32Array(numClasses);
    this.sq = new Float64Array(numClasses);
    for (let c = 0; c < numClasses; c++) this.sq[c] = sumSquares(this.w, c * this.embeddingDim, this.embeddingDim);
  }

  /** The active set for a batch: seeded, or InsightFace's rule replayed with given per-class uniform scores. */
  sample(labels: ArrayLike<number>, scores?: ArrayLike<number>): ActiveSet {
    this.checkLabelValues(labels);
    if (scores !== undefined) {
      if (scores.length !== this.numClasses)
        fail(OWNER, "scores.length", scores.length, `must be numClasses (${this.numClasses})`);
      return selectWithScores(labels, this.numClasses, this.sampleRate, scores);
    }
    return selectActive(labels, this.numClasses, this.sampleRate, () => this.rng.next());
  }

  /** Loss and gradients for one batch, without an update (rows outside `active.index` have zero gradient). */
  gradients(embeddings: Tensor2D, labels: Tensor1D, active?: ActiveSet): PartialFCGradients {
    const labelValues = this.checkBatch(embeddings, labels);
    const set = active ?? this.sample(labelValues);
    if (this.semantics === "dense") this.catchUp(set.index, this.stepCount);
    const r = this.compute(embeddings, set, true);
    const d = this.embeddingDim;
    const grad = r.grad.projected ? r.grad.a : this.project(set.index, r.grad.a);
    addExtra(grad, r.grad, d);
    return { loss: r.loss, exclusive: r.exclusive, active: set, weightGrad: grad, embeddingGrad: r.embeddingGrad };
  }

  /**
   * HeadStep: one update with dLoss/d(embeddings) for the backbone. Partial FC counts its own steps (saved
   * with its state), so `step` is not read.
   */
  step(embeddings: Tensor2D, labels: Tensor1D, _step?: number): HeadStepResult {
    const r = this.update(embeddings, labels, { embeddingGrad: true });
    const out: HeadStepResult = {
      loss: r.loss,
      embeddingGrad: r.embeddingGrad as Tensor2D,
      activeClasses: r.activeClasses,
    };
    if (r.exclusive !== null) out.terms = { exclusive: r.exclusive };
    return out;
  }

  /**
   * One training step: sample, forward, backward, SGD-momentum update of the active rows (and, lazily,
   * of the others under "dense" semantics). Pass `embeddingGrad: true` to get dLoss/d(embeddings), and
   * `active` to use a given active set instead of sampling one.
   */
  update(
    embeddings: Tensor2D,
    labels: Tensor1D,
    options: { embeddingGrad?: boolean; active?: ActiveSet } = {},
  ): PartialFCStepResult {
    const labelValues = this.checkBatch(embeddings, labels);
    const set = options.active ?? this.sample(labelValues);
    const t = this.stepCount + 1;
    if (this.semantics === "dense") this.catchUp(set.index, t - 1);
    const r = this.compute(embeddings, set, options.embeddingGrad === true);
    this.updateRows(set.index, r.grad, t);
    this.stepCount = t;
    this.lrLog.push(this.learningRate);
    const out: PartialFCStepResult = { loss: r.loss, exclusive: r.exclusive, activeClasses: set.index.length };
    if (r.embeddingGrad) out.embeddingGrad = r.embeddingGrad;
    return out;
  }

  /** Brings every row up to date ("dense" semantics); a no-op for "frozen". */
  flush(): void {
    if (this.semantics !== "dense") return;
    const all = new Int32Array(this.numClasses);
    for (let i = 0; i < all.length; i++) all[i] = i;
    this.catchUp(all, this.stepCount);
  }

  /** A copy of W [C * D] (or of the given rows), up to date. */
  weightValues(rows?: ArrayLike<number>): Float32Array {
    return this.copyRows(this.w, rows);
  }

  /** A copy of the momentum buffer [C * D] (or of the given rows), up to date. */
  momentumValues(rows?: ArrayLike<number>): Float32Array {
    return this.copyRows(this.m, rows);
  }

  /**
   * W, the momentum buffer and each row's last update step as they are (not brought up to date: the lazy
   * catch-up resumes exactly), the learning rates it replays, the step counter and the sampling state.
   */
  saveState(): HeadStepState {
    const shape = [this.numClasses, this.embeddingDim];
    return {
      arrays: {
        weight: floatArray(this.w, shape),
        momentum: floatArray(this.m, shape),
        lastStep: intArray(this.last, [this.numClasses]),
      },
      meta: {
        kind: this.kind,
        semantics: this.semantics,
        steps: this.stepCount,
        learningRates: [...this.lrLog],
        rngState: this.rng.state,
        exclusiveWeight: this.exclusiveWeightValue,
      },
    };
  }

  loadState(state: HeadStepState): void {
    const shape = [this.numClasses, this.embeddingDim];
    expectMeta(OWNER, state, "kind", this.kind);
    expectMeta(OWNER, state, "semantics", this.semantics);
    const w = readArray(OWNER, state, "weight", "float32", shape);
    const m = readArray(OWNER, state, "momentum", "float32", shape);
    const last = readArray(OWNER, state, "lastStep", "int32", [this.numClasses]);
    const steps = metaCount(OWNER, state, "steps");
    const lrs = state.meta.learningRates;
    if (!Array.isArray(lrs) || lrs.length !== steps + 1 || !lrs.every((v) => typeof v === "number"))
      fail(OWNER, "state.meta.learningRates", lrs, `must be ${steps + 1} numbers (one per step, and one unused)`);
    const rngState = metaCount(OWNER, state, "rngState");
    const exclusiveWeight = requireNumber(OWNER, "state.meta.exclusiveWeight", state.meta.exclusiveWeight, 0, Infinity);
    this.w.set(w);
    this.m.set(m);
    this.last.set(last);
    const d = this.embeddingDim;
    for (let c = 0; c < this.numClasses; c++) this.sq[c] = sumSquares(this.w, c * d, d);
    this.stepCount = steps;
    this.lrLog = [...(lrs as number[])];
    this.rng.state = rngState;
    this.exclusiveWeightValue = exclusiveWeight;
  }

  /** W as a tensor [C, D] (a copy; caller disposes). */
  weightTensor(): Tensor2D {
    return tf.tensor2d(this.weightValues(), [this.numClasses, this.embeddingDim]);
  }

  /** Writes W into the wrapped head's weight (same size only), e.g. to evaluate with head.cosine. */
  copyToHead(): void {
    if (this.head.numClasses !== this.numClasses) {
      fail(
        OWNER,
        "head.numClasses",
        this.head.numClasses,
        `must equal numClasses (${this.numClasses}) to copy W into it`,
      );
    }
    tf.tidy(() => this.head.weight.assign(this.weightTensor()));
  }

  /** Releases the host buffers' references (they are garbage-collected). */
  dispose(): void {
    // nothing in TensorFlow is held between steps
  }

  private copyRows(src: Float32Array, rows?: ArrayLike<number>): Float32Array {
    const d = this.embeddingDim;
    if (rows === undefined) {
      this.flush();
      return src.slice();
    }
    const idx = Int32Array.from(rows);
    if (this.semantics === "dense") this.catchUp(idx, this.stepCount);
    const out = new Float32Array(idx.length * d);
    for (let k = 0; k < idx.length; k++) out.set(src.subarray(idx[k] * d, idx[k] * d + d), k * d);
    return out;
  }

  private checkLabelValues(labels: ArrayLike<number>): void {
    for (let i = 0; i < labels.length; i++) {
      const v = labels[i];
      if (!Number.isInteger(v) || v < 0 || v >= this.numClasses) {
        fail(OWNER, `labels[${i}]`, v, `must be an integer class index in [0, ${this.numClasses})`);
      }
    }
  }

  private checkBatch(embeddings: Tensor2D, labels: Tensor1D): Int32Array {
    const d = this.embeddingDim;
    if (
      !(embeddings instanceof tf.Tensor) ||
      embeddings.rank !== 2 ||
      embeddings.shape[1] !== d ||
      embeddings.shape[0] < 1
    ) {
      fail(OWNER, "embeddings.shape", (embeddings as Tensor2D)?.shape, `must be [B, ${d}] with B >= 1`);
    }
    if (!(labels instanceof tf.Tensor) || labels.rank !== 1 || labels.shape[0] !== embeddings.shape[0]) {
      fail(OWNER, "labels.shape", (labels as Tensor1D)?.shape, `must be [${embeddings.shape[0]}]`);
    }
    const values = labels.dataSync();
    this.checkLabelValues(values);
    return Int32Array.from(values);
  }

  /** 1 / max(|w_c|, 1e-12) for the given rows, from the kept squared norms, [K]. */
  private inverseNorms(index: Int32Array): Tensor1D {
    const out = new Float32Array(index.length);
    for (let k = 0; k < index.length; k++) out[k] = 1 / Math.sqrt(Math.max(this.sq[index[k]], NORM_EPS2));
    return tf.tensor1d(out);
  }

  /** Gathers the active rows into one tensor [K, D] (the whole W when K = C: no copy on the host). */
  private gather(index: Int32Array): Tensor2D {
    const d = this.embeddingDim;
    if (index.length === this.numClasses) return tf.tensor2d(this.w, [this.numClasses, d]);
    const buf = new Float32Array(index.length * d);
    for (let k = 0; k < index.length; k++) buf.set(this.w.subarray(index[k] * d, index[k] * d + d), k * d);
    return tf.tensor2d(buf, [index.length, d]);
  }

  private compute<E extends boolean>(
    embeddings: Tensor2D,
    set: ActiveSet,
    wantEmbeddingGrad: E,
  ): { loss: number; exclusive: number | null; grad: RawGrad; embeddingGrad: E extends true ? Tensor2D : null } {
    const wa = this.gather(set.index);
    const xHat = normalizeRows(embeddings);
    const invNorms = this.fusedScale !== null || this.exclusiveWeight > 0 ? this.inverseNorms(set.index) : null;
    try {
      let loss: number;
      let grad: RawGrad;
      let dXHat: Tensor2D | null;
      if (this.fusedScale !== null) {
        const r = fusedMarginSoftmax(
          this.head,
          this.fusedScale,
          xHat,
          wa,
          set.remapped,
          invNorms!,
          wantEmbeddingGrad,
          this.interclassFilter,
        );
        loss = meanLoss(r.lossRows, this.lossCap);
        grad = { a: r.a, projected: false, extraRows: new Int32Array(0), extraVals: new Float32Array(0) };
        dXHat = r.dXHat;
      } else {
        const g = this.genericGrads(xHat, wa, set.remapped);
        loss = g.loss;
        grad = { a: g.a, projected: true, extraRows: new Int32Array(0), extraVals: new Float32Array(0) };
        dXHat = g.dXHat;
      }
      let exclusive: number | null = null;
      if (this.exclusiveWeight > 0) {
        const e = this.exclusiveGrads(wa, invNorms!, set);
        exclusive = e.value;
        grad.extraRows = e.rows;
        grad.extraVals = e.vals;
      }
      let embeddingGrad: Tensor2D | null = null;
      if (dXHat && wantEmbeddingGrad) {
        const dy = dXHat;
        embeddingGrad = tf.tidy(() => tf.grad((x) => normalizeRows(x as Tensor2D))(embeddings, dy) as Tensor2D);
      }
      dXHat?.dispose();
      return { loss, exclusive, grad, embeddingGrad: embeddingGrad as E extends true ? Tensor2D : null };
    } finally {
      tf.dispose([wa, xHat]);
      invNorms?.dispose();
    }
  }

  /** Any cosine head: autodiff through normalize(W_a), the head's logits and a softmax cross-entropy. */
  private genericGrads(
    xHat: Tensor2D,
    wa: Tensor2D,
    labels: Int32Array,
  ): { loss: number; a: Float32Array; dXHat: Tensor2D } {
    const k = wa.shape[0];
    const cap = this.lossCap;
    const [value, dW, dX] = tf.tidy(() => {
      const y = tf.tensor1d(labels, "int32");
      const onehot = tf.oneHot(y, k);
      // the inter-class filter as a constant 0/1 mask (targets kept), built outside the tape: filtered
      // entries pass no gradient
      const t = this.interclassFilter;
      const mask =
        t > 0
          ? tf.maximum(tf.cast(tf.lessEqual(tf.matMul(xHat, normalizeRows(wa), false, true), t), "float32"), onehot)
          : null;
      const f = (w: Tensor2D, x: Tensor2D) => {
        const raw = tf.clipByValue(tf.matMul(x, normalizeRows(w), false, true), -1, 1) as Tensor2D;
        const cos = mask ? (tf.mul(raw, mask) as Tensor2D) : raw;
        const logits = this.head.logitsFromCosine(cos, y);
        const rows = tf.sub(tf.logSumExp(logits, 1), tf.sum(tf.mul(logits, onehot), 1)) as Tensor1D;
        return tf.mean(cap ? capRows(rows) : rows) as Scalar;
      };
      const { value, grads } = tf.valueAndGrads((w, x) => f(w as Tensor2D, x as Tensor2D))([wa, xHat]);
      return [value, grads[0], grads[1]];
    });
    const loss = value.dataSync()[0];
    const a = dW.dataSync() as Float32Array;
    tf.dispose([value, dW]);
    return { loss, a, dXHat: dX as Tensor2D };
  }

  /**
   * RegularFace's stochastic exclusive term on the active set: each batch class against its nearest
   * other active centre; returns its value and the weighted gradient rows (active positions).
   */
  private exclusiveGrads(
    wa: Tensor2D,
    n: Tensor1D,
    set: ActiveSet,
  ): { value: number; rows: Int32Array; vals: Float32Array } {
    const k = wa.shape[0];
    const local = new Int32Array(set.positives.length);
    for (let i = 0, j = 0; i < local.length; i++) {
      while (set.index[j] < set.positives[i]) j++;
      local[i] = j;
    }
    if (k < 2 || local.length === 0) return { value: 0, rows: new Int32Array(0), vals: new Float32Array(0) };
    const partner = tf.tidy(() => {
      const cls = tf.tensor1d(local, "int32");
      // cosines via W_a q^T [K, P] (the fast matmul layout here); self entries set to -3 (below any cosine)
      const p = local.length;
      const st = tf.mul(
        tf.matMul(wa, normalizeRows(tf.gather(wa, cls) as Tensor2D), false, true),
        tf.reshape(n, [k, 1]),
      );
      // back to [P, K] (one pass) so that the argmax reduces along contiguous rows
      const selfIdx = tf.stack([tf.range(0, p, 1, "int32"), cls], 1);
      return tf.argMax(tf.tensorScatterUpdate(tf.transpose(st), selfIdx, tf.fill([p], -3)), 1);
    });
    const part = Int32Array.from(partner.dataSync());
    partner.dispose();
    const lambda = this.exclusiveWeight;
    const [value, ga, gb] = tf.tidy(() => {
      const ra = tf.gather(wa, tf.tensor1d(local, "int32")) as Tensor2D;
      const rb = tf.gather(wa, tf.tensor1d(part, "int32")) as Tensor2D;
      const { value, grads } = tf.valueAndGrads((a, b) => meanPairCosine(a as Tensor2D, b as Tensor2D))([ra, rb]);
      return [value, tf.mul(grads[0], lambda), tf.mul(grads[1], lambda)];
    });
    const out = { value: value.dataSync()[0], rows: new Int32Array(2 * local.length), vals: new Float32Array(0) };
    out.rows.set(local, 0);
    out.rows.set(part, local.length);
    const va = ga.dataSync() as Float32Array;
    const vb = gb.dataSync() as Float32Array;
    out.vals = new Float32Array(va.length + vb.length);
    out.vals.set(va, 0);
    out.vals.set(vb, va.length);
    tf.dispose([value, ga, gb]);
    return out;
  }

  /** dW_j = A_j - (w_j . A_j / |w_j|^2) w_j (rows with |w_j| < 1e-12: A_j), a new array. */
  private project(index: Int32Array, a: Float32Array): Float32Array {
    const d = this.embeddingDim;
    const out = new Float32Array(a.length);
    for (let j = 0; j < index.length; j++) {
      const wo = index[j] * d;
      const ao = j * d;
      const coef = projectionCoef(this.w, wo, a, ao, d, this.sq[index[j]]);
      for (let k = 0; k < d; k++) out[ao + k] = a[ao + k] - coef * this.w[wo + k];
    }
    return out;
  }

  /** PyTorch SGD on the active rows, the projection fused into the same pass. */
  private updateRows(index: Int32Array, g: RawGrad, t: number): void {
    const d = this.embeddingDim;
    const { w, m } = this;
    const lr = this.learningRate;
    const mu = this.momentum;
    const wd = this.weightDecay;
    const a = g.a;
    const extraAt = new Map<number, number[]>();
    for (let i = 0; i < g.extraRows.length; i++) {
      const list = extraAt.get(g.extraRows[i]);
      if (list) list.push(i);
      else extraAt.set(g.extraRows[i], [i]);
    }
    for (let j = 0; j < index.length; j++) {
      const wo = index[j] * d;
      const ao = j * d;
      const coef = g.projected ? 0 : projectionCoef(w, wo, a, ao, d, this.sq[index[j]]);
      // the extra rows are already projected: added after coef is formed from A alone
      const extras = extraAt.get(j);
      if (extras) for (const e of extras) for (let k = 0; k < d; k++) a[ao + k] += g.extraVals[e * d + k];
      let ss = 0;
      for (let k = 0; k < d; k++) {
        const wk = w[wo + k];
        const mk = mu * m[wo + k] + (a[ao + k] - coef * wk + wd * wk);
        m[wo + k] = mk;
        // rounded as stored, so that the kept |w|^2 is a function of W alone (a restored state recomputes it)
        const wn = Math.fround(wk - lr * mk);
        w[wo + k] = wn;
        ss += wn * wn;
      }
      this.sq[index[j]] = ss;
      this.last[index[j]] = t;
    }
  }

  /**
   * "dense" semantics: brings rows last updated before `upTo` to step `upTo` by applying, per group of
   * rows with the same last step s, the product A_upTo ... A_{s+1} of the 2x2 zero-gradient step maps.
   */
  private catchUp(index: Int32Array, upTo: number): void {
    const groups = new Map<number, number[]>();
    for (let j = 0; j < index.length; j++) {
      const s = this.last[index[j]];
      if (s < upTo) {
        const list = groups.get(s);
        if (list) list.push(index[j]);
        else groups.set(s, [index[j]]);
      }
    }
    if (groups.size === 0) return;
    const mu = this.momentum;
    const wd = this.weightDecay;
    const order = [...groups.keys()].sort((x, y) => y - x);
    let p00 = 1;
    let p01 = 0;
    let p10 = 0;
    let p11 = 1;
    let k = upTo;
    const d = this.embeddingDim;
    for (const s of order) {
      for (; k > s; k--) {
        const lr = this.lrLog[k];
        const a00 = 1 - lr * wd;
        const a01 = -lr * mu;
        const a10 = wd;
        const a11 = mu;
        const q00 = p00 * a00 + p01 * a10;
        const q01 = p00 * a01 + p01 * a11;
        const q10 = p10 * a00 + p11 * a10;
        const q11 = p10 * a01 + p11 * a11;
        p00 = q00;
        p01 = q01;
        p10 = q10;
        p11 = q11;
      }
      for (const row of groups.get(s)!) {
        const o = row * d;
        let ss = 0;
        for (let i = o; i < o + d; i++) {
          const wv = this.w[i];
          const mv = this.m[i];
          const wn = Math.fround(p00 * wv + p01 * mv);
          this.w[i] = wn;
          this.m[i] = p10 * wv + p11 * mv;
          ss += wn * wn;
        }
        this.sq[row] = ss;
        this.last[row] = upTo;
      }
    }
  }
}

/** (w . a) / |w|^2 for one row (0 for rows with |w| < 1e-12, whose normalisation is linear). */
function projectionCoef(w: Float32Array, wo: number, a: Float32Array, ao: number, d: number, ss: number): number {
  if (ss < NORM_EPS2) return 0;
  let dot = 0;
  for (let k = 0; k < d; k++) dot += w[wo + k] * a[ao + k];
  return dot / ss;
}

/**
 * N(0, std^2) by Marsaglia's polar method on an inline xorshift32 stream seeded from `seed` (a call-free
 * inner loop: 512M values at C = 1,000,000, D = 512).
 */
function fillNormal(w: Float32Array, std: number, seed: number): void {
  let x = (seed ^ 0x5bd1e995) >>> 0 || 1;
  const scale = 2 / 4294967296;
  for (let i = 0; i < w.length; ) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const u = (x >>> 0) * scale - 1;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const v = (x >>> 0) * scale - 1;
    const q = u * u + v * v;
    if (q === 0 || q >= 1) continue;
    const f = std * Math.sqrt((-2 * Math.log(q)) / q);
    w[i++] = u * f;
    if (i < w.length) w[i++] = v * f;
  }
}

function sumSquares(w: Float32Array, o: number, d: number): number {
  let ss = 0;
  for (let k = o; k < o + d; k++) ss += w[k] * w[k];
  return ss;
}

function addExtra(grad: Float32Array, g: RawGrad, d: number): void {
  for (let i = 0; i < g.extraRows.length; i++) {
    const o = g.extraRows[i] * d;
    for (let k = 0; k < d; k++) grad[o + k] += g.extraVals[i * d + k];
  }
}

/** Each row's loss capped at -log(1e-30) in value; the gradient passes uncapped (InsightFace). */
const capRows = tf.customGrad(((rows: import("@tensorflow/tfjs-node").Tensor) => ({
  value: tf.minimum(rows, LOSS_CAP),
  gradFunc: (dy: import("@tensorflow/tfjs-node").Tensor) => [dy],
})) as unknown as CustomGradFn) as unknown as (rows: Tensor1D) => Tensor1D;
