/**
 * Partial FC (An et al., "Partial FC: Training 10 Million Identities on a Single Machine", ICCVW 2021;
 * "Killing Two Birds with One Stone", CVPR 2022; InsightFace arcface_torch partial_fc_v2.py) on one
 * machine, wrapping any cosine head (NormFace, CosFace, ArcFace, combined margins) by its margin.
 *
 * A step composes three parts:
 * 1. ./partial-fc-sampling: every class of the batch plus a uniform random subset of the others,
 *    trunc(r C) in all, the labels re-indexed into that active set;
 * 2. ./partial-fc-rows: the host-side store of W and momentum, which hands the active rows of W to
 *    TensorFlow brought up to date (lazy catch-up under "dense" semantics) and applies the one SGD rule
 *    (src/train/optimizers.ts) to them in place, the normalisation's projection folded in as a per-row decay;
 * 3. in TensorFlow, between the two: the fused margin kernel (./margin-kernel) on the active rows and
 *    RegularFace's stochastic exclusive term (./exclusive, when its weight is > 0). Rows outside the active
 *    set get exactly zero gradient.
 *
 * The reported loss caps each sample at -log(1e-30) when `lossCap` (InsightFace's DistCrossEntropy
 * reports -log max(p_y, 1e-30)); gradients are never capped, as there.
 */
import { tf } from "../backend";
import { Rng } from "../data/rng";
import type { HeadStep, HeadStepResult, HeadStepState } from "../train/head-step";
import { exclusiveStochastic } from "./exclusive";
import type { CosineHead, Tensor1D, Tensor2D } from "./head";
import { type CosineMargin, meanLoss, type StepGradients, stepGradients } from "./margin-kernel";
import { HostRows, normalInit, type PartialFCSemantics } from "./partial-fc-rows";
import { type ActiveSet, selectActive, selectWithScores } from "./partial-fc-sampling";
import { expectMeta, floatArray, intArray, metaCount, readArray } from "./step-state";
import {
  checkStepHead,
  fail,
  rejectUnknown,
  requireBoolean,
  requireInteger,
  requireNumber,
  requireOneOf,
  requireShape,
} from "./validate";

export type { PartialFCSemantics } from "./partial-fc-rows";

const OWNER = "PartialFC";
/** Candidate tile of the exclusive term's nearest-centre search (few tiles: each reads its result back). */
const EXCLUSIVE_TILE = 16384;

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
  /** The cosine head whose margin (scale, target transform) gives the loss; its only trainable variable must be its weight. */
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

/** One forward/backward on the active rows, before the update (tensors owned by the caller). */
interface ActiveGradients {
  loss: number;
  exclusive: number | null;
  /** The active rows, up to date [K, D]. */
  wa: Tensor2D;
  /** dLoss/dW_a = grad - k W_a: `grad` is A (+ the exclusive term's gradient), `k` [K, 1] the projection. */
  grad: Tensor2D;
  k: Tensor2D;
  embeddingGrad: Tensor2D | null;
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
  /** The head's margin, with this step's inter-class filter. */
  readonly margin: CosineMargin;
  learningRate: number;
  /** Weight of the stochastic exclusive term; may change between steps (a warm-up, or off for a while). */
  get exclusiveWeight(): number {
    return this.exclusiveWeightValue;
  }
  set exclusiveWeight(value: number) {
    this.exclusiveWeightValue = requireNumber(OWNER, "exclusiveWeight", value, 0, Infinity);
  }
  /** Non-target cosines above this count as 0 (InsightFace's inter-class filter); 0 = off. */
  get interclassFilter(): number {
    return this.margin.filter;
  }
  /** Optimizer steps taken. */
  get steps(): number {
    return this.rows.steps;
  }

  /**
   * When set to an object, each step adds its wall time per phase (ms) to it: sample, read (gather +
   * catch-up), kernel (forward, backward, loss read back), exclusive, download (the active rows' gradient),
   * update (SGD on the host rows). TensorFlow ops on the CPU run as they are called, so the phases are measured op by op.
   */
  phaseMs: Record<string, number> | null = null;
  private phaseStart = 0;

  private readonly rows: HostRows;
  private exclusiveWeightValue = 0;
  /** The sampling generator (its uint32 state is saved with the step). */
  private readonly rng: Rng;

  constructor(options: PartialFCOptions) {
    if (options === null || typeof options !== "object")
      fail(OWNER, "options", options, "must be an object { head, sampleRate, ... }");
    rejectUnknown(OWNER, options, KNOWN);
    const head = options.head;
    checkStepHead(OWNER, head);
    const sampleRate = requireNumber(OWNER, "sampleRate", options.sampleRate, 0, 1, true);
    const numClasses = requireInteger(OWNER, "numClasses", options.numClasses ?? head.numClasses, 2);
    const init = requireOneOf(OWNER, "init", options.init ?? (numClasses === head.numClasses ? "head" : "normal"), [
      "head",
      "normal",
    ]);
    if (init === "head" && numClasses !== head.numClasses)
      fail(OWNER, "numClasses", numClasses, `must equal head.numClasses (${head.numClasses}) with init "head"`);
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
    const filter = requireNumber(OWNER, "interclassFilter", options.interclassFilter ?? 0, 0, 1, false, true);
    this.head = head;
    this.margin = { ...head.margin, filter };
    this.numClasses = numClasses;
    this.embeddingDim = head.embeddingDim;
    this.sampleRate = sampleRate;
    this.rng = Rng.fromState(seed);
    const size = numClasses * this.embeddingDim;
    const w0 =
      init === "head" ? Float32Array.from(head.weight.dataSync() as Float32Array) : normalInit(size, initStd, seed);
    this.rows = new HostRows(numClasses, this.embeddingDim, w0, this.semantics, this.momentum, this.weightDecay);
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
    const set = active ?? this.sample(this.checkBatch(embeddings, labels));
    const g = this.activeGradients(embeddings, set, true);
    const weightGrad = tf.tidy(() => tf.sub(g.grad, tf.mul(g.wa, g.k))).dataSync() as Float32Array;
    tf.dispose([g.wa, g.grad, g.k]);
    return {
      loss: g.loss,
      exclusive: g.exclusive,
      active: set,
      weightGrad,
      embeddingGrad: g.embeddingGrad as Tensor2D,
    };
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
    this.mark(null);
    const set = options.active ?? this.sample(this.checkBatch(embeddings, labels));
    this.mark("sample");
    const g = this.activeGradients(embeddings, set, options.embeddingGrad === true);
    // dLoss/dW_a = grad - k W_a: the rule's per-row decay is -k
    const grad = g.grad.dataSync() as Float32Array;
    const k = g.k.dataSync() as Float32Array;
    tf.dispose([g.wa, g.grad, g.k]);
    for (let j = 0; j < k.length; j++) k[j] = -k[j];
    this.mark("download");
    this.rows.update(set.index, grad, k, this.learningRate);
    this.mark("update");
    const out: PartialFCStepResult = { loss: g.loss, exclusive: g.exclusive, activeClasses: set.index.length };
    if (g.embeddingGrad) out.embeddingGrad = g.embeddingGrad;
    return out;
  }

  /** Brings every row up to date ("dense" semantics); a no-op for "frozen". */
  flush(): void {
    this.rows.flush();
  }

  /** A copy of W [C * D] (or of the given rows), up to date. */
  weightValues(rows?: ArrayLike<number>): Float32Array {
    return this.rows.values("weight", rows);
  }

  /** A copy of the momentum buffer [C * D] (or of the given rows), up to date. */
  momentumValues(rows?: ArrayLike<number>): Float32Array {
    return this.rows.values("momentum", rows);
  }

  /**
   * W, the momentum buffer and each row's last update step as they are (not brought up to date: the lazy
   * catch-up resumes exactly), the learning rates it replays, the step counter and the sampling state.
   */
  saveState(): HeadStepState {
    const shape = [this.numClasses, this.embeddingDim];
    const r = this.rows.state();
    return {
      arrays: {
        weight: floatArray(r.w, shape),
        momentum: floatArray(r.m, shape),
        lastStep: intArray(r.last, [this.numClasses]),
      },
      meta: {
        kind: this.kind,
        semantics: this.semantics,
        steps: this.steps,
        learningRates: r.learningRates,
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
    this.rows.restore(w, m, last, lrs as number[]);
    this.rng.state = rngState;
    this.exclusiveWeightValue = exclusiveWeight;
  }

  /** Releases the host copies of W and momentum (the head stays the caller's); the step is unusable after. */
  dispose(): void {
    this.rows.release();
  }

  /** Adds the time since the previous mark to phase `name` (null: starts the clock). */
  private mark(name: string | null): void {
    if (!this.phaseMs) return;
    const now = performance.now();
    if (name) this.phaseMs[name] = (this.phaseMs[name] ?? 0) + now - this.phaseStart;
    this.phaseStart = now;
  }

  private checkLabelValues(labels: ArrayLike<number>): void {
    for (let i = 0; i < labels.length; i++) {
      const v = labels[i];
      if (!Number.isInteger(v) || v < 0 || v >= this.numClasses)
        fail(OWNER, `labels[${i}]`, v, `must be an integer class index in [0, ${this.numClasses})`);
    }
  }

  /** Checks the batch; returns the labels (read back: the sampling needs them on the host anyway). */
  private checkBatch(embeddings: Tensor2D, labels: Tensor1D): Int32Array {
    requireShape(OWNER, "embeddings", embeddings, [null, this.embeddingDim]);
    const b = embeddings.shape[0];
    if (b < 1) fail(OWNER, "embeddings.shape", embeddings.shape, "needs at least one row");
    requireShape(OWNER, "labels", labels, [b]);
    const values = labels.dataSync();
    this.checkLabelValues(values);
    return Int32Array.from(values);
  }

  /** The kernel on the active rows, the exclusive term, the projection; the loss rows checked before any update. */
  private activeGradients(embeddings: Tensor2D, set: ActiveSet, wantDx: boolean): ActiveGradients {
    const wa = this.rows.read(set.index);
    this.mark("read");
    const y = tf.tensor1d(set.remapped, "int32");
    let g: StepGradients;
    try {
      g = stepGradients(OWNER, embeddings, wa, y, this.margin, wantDx, "no row of W was updated");
    } catch (e) {
      wa.dispose();
      throw e;
    } finally {
      y.dispose();
    }
    const { lossRows, a, k, embeddingGrad } = g;
    this.mark("kernel");
    const ex = this.exclusiveWeight > 0 ? this.exclusiveGradient(wa, set) : null;
    const grad = ex ? (tf.tidy(() => tf.add(a, tf.mul(ex.grad, this.exclusiveWeight))) as Tensor2D) : a;
    if (ex) tf.dispose([a, ex.grad]);
    if (ex) this.mark("exclusive");
    return {
      loss: meanLoss(lossRows, this.lossCap),
      exclusive: ex ? ex.value : null,
      wa,
      grad,
      k,
      embeddingGrad,
    };
  }

  /** RegularFace's stochastic exclusive term (./exclusive): the batch's classes against the other active rows. */
  private exclusiveGradient(wa: Tensor2D, set: ActiveSet): { value: number; grad: Tensor2D } {
    // the batch's classes as positions in the active set (both sorted)
    const local = new Int32Array(set.positives.length);
    for (let i = 0, j = 0; i < local.length; i++) {
      while (set.index[j] < set.positives[i]) j++;
      local[i] = j;
    }
    if (wa.shape[0] < 2) return { value: 0, grad: tf.zerosLike(wa) };
    const { value, grads } = tf.valueAndGrads((w) =>
      exclusiveStochastic(w as Tensor2D, local, undefined, EXCLUSIVE_TILE),
    )([wa]);
    const v = value.dataSync()[0];
    value.dispose();
    return { value: v, grad: grads[0] as Tensor2D };
  }
}
