/**
 * The training loop: data -> backbone -> head step -> one optimizer step per batch, with callbacks for
 * progress, tracking and checkpoints. The head side is a HeadStep (./head-step): the autodiff step of any
 * head with regularizers (./autodiff-step), the fused full-softmax step of a cosine head, or Partial FC.
 *
 * Per batch: the backbone runs forward inside its gradient tape; the head step runs with that tape paused
 * (so its own autodiff and updates cannot reach the backbone, and nothing of it is kept for the backward
 * pass), returns dLoss/d(embeddings) g, and the backbone is differentiated through sum(emb * g).
 *
 * - Steps or epochs; SGD (momentum) or AdamW; weight decay per group; schedules with warm-up (the head's
 *   learning rate follows the backbone's schedule); gradient clipping by global norm (backbone only by
 *   default, as InsightFace's clip_grad_norm_).
 * - Reproducible: the seed fixes data order and augmentation (pipeline.ts). A checkpoint holds backbone,
 *   backbone optimizer, the head step's whole state, step, RNG and data position, so `resume` continues
 *   exactly where the run stopped, for every kind of head step.
 * - A non-finite loss or gradient norm stops training before the backbone's update (and, for steps that
 *   can defer theirs, the head's) with a TrainingError naming the step; checkpoints are left as they are.
 */

import type { Backbone } from "../backbones/backbone";
import { tf } from "../backend";
import { checkInt, checkNumber, configError, type Dataset } from "../data/dataset";
import { BatchStream, type DataPosition, type PipelineOptions, validatePipeline } from "../data/pipeline";
import { Rng } from "../data/rng";
import { FusedHeadStep } from "../losses/fused-step";
import type { CosineHead, Head, Scalar, Tensor1D, Tensor2D } from "../losses/head";
import { LossConfigError, NonFiniteLossError } from "../losses/validate";
import { AutodiffHeadStep, type Regularizer, tensorState } from "./autodiff-step";
import { CheckpointError, type CheckpointTensor, resolveCheckpoint, saveCheckpoint } from "./checkpoint";
import type { HeadStep, HeadStepResult, PreparedHeadStep, StateArray } from "./head-step";
import { clipScale, Optimizer, type OptimizerConfig, sumOfSquares, validateOptimizer } from "./optimizers";
import { learningRate, type Schedule, validateSchedule } from "./schedules";

export type { Regularizer } from "./autodiff-step";

type Tensor = import("@tensorflow/tfjs-node").Tensor;
type Tensor4D = import("@tensorflow/tfjs-node").Tensor4D;

export class TrainingError extends Error {
  override name = "TrainingError";
  constructor(
    message: string,
    readonly step: number,
    readonly lastCheckpoint: string | undefined,
  ) {
    super(message);
  }
}

export interface StepMetrics {
  /** Completed optimizer steps (1 after the first). */
  step: number;
  totalSteps: number;
  epoch: number;
  /** Total loss (head + weighted regularizers or other terms of the step). */
  loss: number;
  headLoss: number;
  /** Unweighted value of each regularizer (the head step's named terms). */
  regularizers: Record<string, number>;
  /** Backbone learning rate of this step (the head's follows it). */
  lr: number;
  /** Global norm of the clipped gradients before clipping (the backbone's, or all with clipScope "all"). */
  gradNorm: number;
  /** Classes the head step scored against (fewer than numClasses under Partial FC's sampling). */
  activeClasses: number;
  /** Wall time of this step and of the head step alone (ms). */
  stepMs: number;
  headMs: number;
  imagesPerSecond: number;
  elapsedSeconds: number;
}

export interface TrainContext {
  readonly backbone: Backbone;
  /** The head, when the config gave one (a HeadStep given alone may wrap its own). */
  readonly head: Head | undefined;
  readonly headStep: HeadStep;
  /** A seeded random stream saved in checkpoints (for callbacks or samplers that need randomness). */
  readonly rng: Rng;
  /** Writes a checkpoint of the current state to `dir` (atomically) and returns its folder. */
  save(dir: string, keep?: number): Promise<string>;
  /** Ends training after this step. */
  stop(): void;
}

/** Something the user should know that is not an error (reported through callbacks, never printed). */
export interface TrainWarning {
  code: "resumed-from-older-checkpoint";
  message: string;
  /** The checkpoint training resumed from. */
  path: string;
  /** Newer checkpoints or pointers passed over, with what is wrong with each. */
  skipped: { path: string; problem: string }[];
}

export interface TrainCallback {
  onStart?(
    info: { startStep: number; totalSteps: number; batchesPerEpoch: number; batchSize: number },
    ctx: TrainContext,
  ): void | Promise<void>;
  onStep?(m: StepMetrics, ctx: TrainContext): void | Promise<void>;
  onCheckpoint?(info: { step: number; path: string }): void | Promise<void>;
  onWarning?(warning: TrainWarning, ctx: TrainContext): void | Promise<void>;
  onEnd?(result: TrainResult, ctx: TrainContext): void | Promise<void>;
}

/** Which head step trains the head: chosen by train() ("auto", "autodiff", "fused") or given. */
export type HeadStepChoice = "auto" | "autodiff" | "fused" | HeadStep;

export interface TrainConfig {
  backbone: Backbone;
  /** The loss head; required unless `headStep` is a HeadStep (e.g. a PartialFC, which wraps its head). */
  head?: Head;
  /**
   * "auto" (default): the fused full-softmax step for a cosine head it supports (SGD without Nesterov, no
   * regularizers, no clipScope "all"), else "autodiff". "fused" insists (an error where it cannot);
   * "autodiff": head.loss through tf autodiff. A HeadStep object (PartialFC, FusedHeadStep) is used as
   * given: its own learning rate is the base its schedule follows.
   */
  headStep?: HeadStepChoice;
  data: Dataset;
  /** Batch size, augmentation, input size, prefetch (the seed comes from `seed`). */
  pipeline: Omit<PipelineOptions, "seed">;
  /** Exactly one of steps and epochs. */
  steps?: number;
  epochs?: number;
  optimizer: OptimizerConfig;
  schedule?: Schedule;
  /** Clip the global gradient norm to this value (InsightFace: 5). */
  clipGradNorm?: number;
  /** Which gradients the clipping covers. Default "backbone" (InsightFace); "all" needs the autodiff step. */
  clipScope?: "backbone" | "all";
  /** Terms of the head's weight added to its loss (autodiff step only). */
  regularizers?: Regularizer[];
  callbacks?: TrainCallback[];
  seed?: number;
  /**
   * Resume from a checkpoint folder, from a folder of checkpoints (the one its `latest` names), or from
   * "<dir>/latest" (the newest good checkpoint there, passing over damaged newer ones with an onWarning).
   * Anything missing or damaged is a CheckpointError naming the path: never a fresh start.
   */
  resume?: string;
  /** Periodic checkpoints (the same as adding checkpointEvery(...) to callbacks). */
  checkpoint?: { dir: string; every: number; keep?: number };
}

export interface TrainResult {
  steps: number;
  history: StepMetrics[];
  lastCheckpoint?: string;
  resumedFrom?: string;
  stopped: boolean;
  /** Which kind of head step trained the head. */
  headStep: HeadStep["kind"];
}

function isHeadStep(v: unknown): v is HeadStep {
  return typeof v === "object" && v !== null && typeof (v as HeadStep).step === "function";
}

export function validateTrainConfig(c: TrainConfig): { totalSteps: number } {
  if (!c || typeof c !== "object") throw configError("train config", c, "expected an object");
  if (!c.backbone || typeof c.backbone.apply !== "function")
    throw configError("backbone", c.backbone, "expected a Backbone (createBackbone(...))");
  const given = isHeadStep(c.headStep);
  if (c.headStep !== undefined && !given && !["auto", "autodiff", "fused"].includes(c.headStep as string))
    throw configError(
      "headStep",
      typeof c.headStep === "object" ? typeof c.headStep : c.headStep,
      'allowed are "auto", "autodiff", "fused" or a HeadStep (e.g. a PartialFC)',
    );
  if ((!given || c.head !== undefined) && (!c.head || typeof c.head.loss !== "function"))
    throw configError("head", c.head, "expected a Head (e.g. new ArcFace(...))");
  if (!c.data || typeof c.data.get !== "function") throw configError("data", c.data, "expected a Dataset");
  if (!c.pipeline) throw configError("pipeline", c.pipeline, "expected { batchSize, ... }");
  validatePipeline(c.data, { ...c.pipeline, seed: c.seed });
  validateOptimizer(c.optimizer);
  const seed = c.seed ?? 0;
  checkInt("seed", seed, 0, 2 ** 32 - 1);
  if ((c.steps === undefined) === (c.epochs === undefined))
    throw configError("steps/epochs", { steps: c.steps, epochs: c.epochs }, "give exactly one of steps and epochs");
  if (c.steps !== undefined) checkInt("steps", c.steps, 1);
  if (c.epochs !== undefined) checkInt("epochs", c.epochs, 1);
  if (c.clipGradNorm !== undefined) checkNumber("clipGradNorm", c.clipGradNorm, 1e-12, 1e12);
  if (c.clipScope !== undefined && c.clipScope !== "backbone" && c.clipScope !== "all")
    throw configError("clipScope", c.clipScope, 'allowed are "backbone" and "all"');
  for (const [i, r] of (c.regularizers ?? []).entries()) {
    if (!r || typeof r.fn !== "function" || typeof r.name !== "string")
      throw configError(`regularizers[${i}]`, r, "expected { name, weight, fn }");
    checkNumber(`regularizers[${i}].weight`, r.weight, 0, 1e9);
  }
  if (given && (c.regularizers?.length ?? 0) > 0)
    throw configError(
      "regularizers",
      c.regularizers!.map((r) => r.name),
      "apply to the autodiff step only; a given head step computes its own terms (e.g. PartialFC's exclusiveWeight)",
    );
  if (given && c.clipScope === "all" && typeof (c.headStep as HeadStep).prepare !== "function")
    throw configError(
      "clipScope",
      c.clipScope,
      `"all" needs a head step that can defer its update (the autodiff step); this ${(c.headStep as HeadStep).kind} step updates itself`,
    );
  if (c.checkpoint) {
    if (typeof c.checkpoint.dir !== "string" || c.checkpoint.dir === "")
      throw configError("checkpoint.dir", c.checkpoint.dir, "expected a folder path");
    checkInt("checkpoint.every", c.checkpoint.every, 1);
  }
  if (c.resume !== undefined && (typeof c.resume !== "string" || c.resume === ""))
    throw configError("resume", c.resume, "expected the path of a checkpoint, a folder of checkpoints or <dir>/latest");
  const [h, w, ch] = c.backbone.inputShape;
  const [ph, pw] = c.pipeline.size ?? [c.data.shape[0], c.data.shape[1]];
  if (ph !== h || pw !== w || c.data.shape[2] !== ch) {
    throw configError(
      "pipeline.size",
      [ph, pw, c.data.shape[2]],
      `the backbone expects inputs of [${h}, ${w}, ${ch}] (set pipeline.size, or the data's channels)`,
    );
  }
  if (c.head) checkHeadFits("head", c.head, c.backbone, c.data);
  if (given) checkHeadFits("headStep", c.headStep as HeadStep, c.backbone, c.data);
  const perEpoch =
    (c.pipeline.dropLast ?? true)
      ? Math.floor(c.data.size / c.pipeline.batchSize)
      : Math.ceil(c.data.size / c.pipeline.batchSize);
  const totalSteps = c.steps ?? c.epochs! * perEpoch;
  validateSchedule(c.schedule, totalSteps);
  return { totalSteps };
}

/** The head side (a Head, a HeadStep) must take the backbone's embeddings and hold every class of the data. */
export function checkHeadFits(
  field: string,
  head: { embeddingDim: number; numClasses: number },
  backbone: Backbone,
  data: Dataset,
): void {
  if (head.embeddingDim !== backbone.embeddingDim)
    throw configError(
      `${field}.embeddingDim`,
      head.embeddingDim,
      `must equal the backbone's embeddingDim (${backbone.embeddingDim})`,
    );
  if (head.numClasses < data.numClasses)
    throw configError(
      `${field}.numClasses`,
      head.numClasses,
      `must be at least the data's number of classes (${data.numClasses})`,
    );
}

/** Weight decay of the backbone and of the head, with the optimizer's defaults (SGD 5e-4, AdamW 0.01). */
function weightDecays(o: OptimizerConfig): { backbone: number; head: number } {
  const backbone = o.weightDecay ?? (o.type === "sgd" ? 5e-4 : 0.01);
  return { backbone, head: o.headWeightDecay ?? backbone };
}

/** Why the fused step cannot train this config (empty: it can, if the head is one it supports). */
function fusedBlockers(c: TrainConfig): string[] {
  const o = c.optimizer;
  return [
    (c.regularizers?.length ?? 0) > 0 ? "regularizers" : "",
    o.type !== "sgd" ? "AdamW (the fused step applies SGD)" : "",
    o.type === "sgd" && o.nesterov ? "Nesterov momentum" : "",
    c.clipScope === "all" ? 'clipScope "all"' : "",
  ].filter(Boolean);
}

/** The head step the config asks for; `owned` when train() made it (and so disposes it). */
function makeHeadStep(c: TrainConfig): { step: HeadStep; owned: boolean } {
  if (isHeadStep(c.headStep)) return { step: c.headStep, owned: false };
  const choice = c.headStep ?? "auto";
  const head = c.head!;
  const o = c.optimizer;
  const blockers = choice === "autodiff" ? [] : fusedBlockers(c);
  if (choice === "fused" && blockers.length > 0)
    throw configError("headStep", choice, `cannot train with ${blockers.join(", ")}: use "autodiff"`);
  if (choice !== "autodiff" && blockers.length === 0 && o.type === "sgd") {
    try {
      const options = { learningRate: o.lr, momentum: o.momentum ?? 0.9, weightDecay: weightDecays(o).head };
      return { step: new FusedHeadStep(head as CosineHead, options), owned: true };
    } catch (e) {
      // FusedHeadStep's own checks say which heads it supports; "auto" falls back to autodiff for the rest
      if (choice === "fused" || !(e instanceof LossConfigError)) throw e;
    }
  }
  const weightDecay = weightDecays(o).head;
  return {
    step: new AutodiffHeadStep({ head, regularizers: c.regularizers, optimizer: o, weightDecay }),
    owned: true,
  };
}

/**
 * Runs `fn` with tf's gradient tape paused: the head step's operations are neither recorded on the
 * backbone's tape (no path from its autodiff or updates back into the backbone, no saved tensors held
 * until the backbone's backward pass) nor in its way; its own nested autodiff starts a fresh tape.
 * tfjs has no public stop-gradient, so this sets the engine's tape state (tfjs-core 4.x) and restores it.
 */
function untaped<T>(fn: () => T): T {
  const state = (tf.engine() as unknown as { state: { activeTape: unknown; gradientDepth: number } }).state;
  const { activeTape, gradientDepth } = state;
  state.activeTape = null;
  state.gradientDepth = 0;
  try {
    return fn();
  } finally {
    state.activeTape = activeTape;
    state.gradientDepth = gradientDepth;
  }
}

/** Runs training; resolves with the per-step metrics. */
export async function train(config: TrainConfig): Promise<TrainResult> {
  const { totalSteps } = validateTrainConfig(config);
  const { backbone } = config;
  const seed = config.seed ?? 0;
  const callbacks = [...(config.callbacks ?? [])];
  if (config.checkpoint) callbacks.push(checkpointEvery(config.checkpoint));

  const { step: headStep, owned } = makeHeadStep(config); // first: it may still reject the config
  const bbTrainable = backbone.trainableVariables();
  const optimizer = new Optimizer(config.optimizer, [
    { variables: bbTrainable, weightDecay: weightDecays(config.optimizer).backbone },
  ]);
  const headBaseLr = headStep.learningRate;
  const baseLr = config.optimizer.lr;
  // the head's lr follows the backbone's schedule (exactly lr when the head shares the backbone's base)
  const headLr = (lr: number) => (headBaseLr === baseLr ? lr : baseLr > 0 ? (headBaseLr * lr) / baseLr : headBaseLr);
  const rng = new Rng(seed);
  let step = 0;
  let position: DataPosition = { epoch: 0, batch: 0 };
  let lastCheckpoint: string | undefined;
  let resumedFrom: string | undefined;
  const warnings: TrainWarning[] = [];

  // the backbone's and its optimizer's checkpoint arrays: what they are, their values, and how to load them
  const backboneVariables = backbone.variables();
  const backboneTargets = (): StateTarget[] => [
    ...backboneVariables.map(({ name, variable }) => ({
      group: "backbone",
      name,
      shape: variable.shape,
      dtype: variable.dtype,
    })),
    ...optimizer.stateShapes().map((s, k) => ({ group: "optimizer", name: `slot/${k}`, ...s })),
  ];
  const backboneArrays = (): CheckpointTensor[] => [
    ...backboneVariables.map(({ name, variable }) => ({ group: "backbone", name, ...tensorState(variable as Tensor) })),
    ...optimizer.saveState().map((a, k) => ({ group: "optimizer", name: `slot/${k}`, ...a })),
  ];
  const loadBackbone = (saved: { backbone: CheckpointTensor[]; optimizer: CheckpointTensor[] }) => {
    for (const [k, e] of saved.backbone.entries())
      tf.tidy(() => backboneVariables[k].variable.assign(tf.tensor(e.data, e.shape, e.dtype)));
    optimizer.loadState(saved.optimizer.map((e) => e.data));
  };

  try {
    if (config.resume !== undefined) {
      const ckpt = resolveCheckpoint(config.resume);
      restore(ckpt.path, ckpt.state, ckpt.tensors, backboneTargets(), loadBackbone, headStep);
      step = ckpt.state.step;
      optimizer.step = ckpt.state.optimizerStep;
      position = ckpt.state.position;
      rng.state = ckpt.state.rngState;
      resumedFrom = ckpt.path;
      lastCheckpoint = ckpt.path;
      if (ckpt.skipped.length > 0)
        warnings.push({
          code: "resumed-from-older-checkpoint",
          message: `resumed from ${ckpt.path} (step ${ckpt.state.step}), passing over ${ckpt.skipped.map((s) => `${s.path}: ${s.problem}`).join("; ")}`,
          path: ckpt.path,
          skipped: ckpt.skipped,
        });
    }
    const stream = new BatchStream(config.data, { ...config.pipeline, seed }, position);
    let stopped = false;
    const ctx: TrainContext = {
      backbone,
      head: config.head,
      headStep,
      rng,
      async save(dir: string, keep?: number) {
        const head = headStep.saveState();
        const arrays: CheckpointTensor[] = [
          ...backboneArrays(),
          ...Object.entries(head.arrays).map(([name, a]) => ({ group: "headStep", name, ...a })),
        ];
        const p = saveCheckpoint(
          dir,
          {
            step,
            optimizerStep: optimizer.step,
            position: stream.nextPosition,
            rngState: rng.state,
            headStep: { kind: headStep.kind, meta: head.meta },
          },
          arrays,
          keep,
        );
        lastCheckpoint = p;
        for (const cb of callbacks) await cb.onCheckpoint?.({ step, path: p });
        return p;
      },
      stop() {
        stopped = true;
      },
    };
    for (const w of warnings) for (const cb of callbacks) await cb.onWarning?.(w, ctx);
    for (const cb of callbacks)
      await cb.onStart?.(
        { startStep: step, totalSteps, batchesPerEpoch: stream.batchesPerEpoch, batchSize: config.pipeline.batchSize },
        ctx,
      );
    const history: StepMetrics[] = [];
    const t0 = performance.now();
    let images = 0;
    const clipAll = config.clipScope === "all";
    while (step < totalSteps && !stopped) {
      // Hand the event loop a turn each step: with in-memory data nothing else would, and the tracker's
      // background sending, timers and Ctrl-C handlers would wait until training ends.
      await new Promise<void>((resolve) => setImmediate(resolve));
      const batch = await stream.next();
      const s0 = performance.now();
      const lr = learningRate(config.schedule, baseLr, step, totalSteps);
      headStep.learningRate = headLr(lr);
      let result: HeadStepResult | PreparedHeadStep | undefined;
      let headMs = 0;
      // one place for a non-finite step: the loss, the gradient norm, or a step that refused its batch
      const nonFinite = (what: string, applied: string) =>
        new TrainingError(
          `Training stopped at step ${step + 1} (epoch ${batch.epoch}, batch ${batch.batch}): ${what}; ${applied}. ` +
            `${lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint}.` : "No checkpoint was written."} Lower the learning rate, add clipGradNorm, or check the head's settings.`,
          step + 1,
          lastCheckpoint,
        );
      let grads: Tensor[];
      try {
        grads = tf.tidy(() => {
          const x = tf.tensor4d(batch.x, batch.shape) as Tensor4D;
          const labels = tf.tensor1d(batch.labels, "int32") as Tensor1D;
          const { grads } = tf.variableGrads(() => {
            const emb = backbone.apply(x, true) as Tensor2D;
            const h0 = performance.now();
            result = untaped(() =>
              headStep.prepare ? headStep.prepare(emb, labels, step) : headStep.step(emb, labels, step),
            );
            headMs = performance.now() - h0;
            return tf.sum(tf.mul(emb, result.embeddingGrad)) as Scalar;
          }, bbTrainable);
          return bbTrainable.map((v) => grads[v.name]);
        });
      } catch (e) {
        if (e instanceof NonFiniteLossError) throw nonFinite(e.message, "the backbone update was not applied");
        throw e;
      }
      // the optimizer takes the gradients once (small variables as one flat vector): norm and update share it
      const update = optimizer.prepare(grads);
      tf.dispose(grads);
      const r: HeadStepResult | PreparedHeadStep = result!;
      const prepared = "apply" in r ? r : undefined;
      const squaredNorm = tf.tidy(() => {
        const own = update.squaredNorm();
        return clipAll && prepared ? tf.add(own, sumOfSquares(prepared.pendingGrads)) : own;
      });
      const normV = Math.sqrt(squaredNorm.dataSync()[0]);
      squaredNorm.dispose();
      const lossV = r.loss;
      const headLoss = r.headLoss ?? lossV;
      const terms = r.terms ?? {};
      if (!Number.isFinite(lossV) || !Number.isFinite(normV)) {
        prepared?.discard();
        update.discard();
        const what = !Number.isFinite(lossV)
          ? `the loss is ${lossV} (head loss ${headLoss}${Object.keys(terms).length ? `, regularizers ${JSON.stringify(terms)}` : ""})`
          : `the gradient norm is ${normV}`;
        throw nonFinite(
          what,
          prepared
            ? "the update was not applied"
            : `the ${headStep.kind} head step had already updated its class centres, the backbone update was not applied`,
        );
      }
      const scale = clipScale(normV, config.clipGradNorm);
      update.apply(lr, scale);
      prepared?.apply(clipAll ? scale : 1);
      step++;
      images += batch.shape[0];
      const elapsed = (performance.now() - t0) / 1000;
      const m: StepMetrics = {
        step,
        totalSteps,
        epoch: batch.epoch,
        loss: lossV,
        headLoss,
        regularizers: terms,
        lr,
        gradNorm: normV,
        activeClasses: r.activeClasses,
        stepMs: performance.now() - s0,
        headMs,
        imagesPerSecond: elapsed > 0 ? images / elapsed : 0,
        elapsedSeconds: elapsed,
      };
      history.push(m);
      for (const cb of callbacks) await cb.onStep?.(m, ctx);
    }
    const result: TrainResult = { steps: step, history, lastCheckpoint, resumedFrom, stopped, headStep: headStep.kind };
    for (const cb of callbacks) await cb.onEnd?.(result, ctx);
    result.lastCheckpoint = lastCheckpoint;
    return result;
  } finally {
    headStep.learningRate = headBaseLr;
    optimizer.dispose();
    if (owned) headStep.dispose();
  }
}

/** One array the backbone's side of a checkpoint holds: a backbone variable or an optimizer slot. */
interface StateTarget {
  group: string;
  name: string;
  shape: number[];
  dtype: string;
}

/** Loads a verified checkpoint into the backbone, its optimizer and the head step; mismatches name the path. */
function restore(
  ckpt: string,
  state: { headStep: { kind: string; meta: Record<string, unknown> } },
  tensors: CheckpointTensor[],
  targets: StateTarget[],
  load: (saved: { backbone: CheckpointTensor[]; optimizer: CheckpointTensor[] }) => void,
  headStep: HeadStep,
): void {
  if (state.headStep.kind !== headStep.kind)
    throw new CheckpointError(
      ckpt,
      `was written by a ${state.headStep.kind} head step, this run trains with the ${headStep.kind} step (set headStep to match)`,
    );
  for (const group of ["backbone", "optimizer"]) {
    const saved = tensors.filter((t) => t.group === group);
    const mine = targets.filter((t) => t.group === group);
    if (saved.length !== mine.length)
      throw new CheckpointError(
        ckpt,
        `group "${group}" has ${saved.length} tensors, the model has ${mine.length} (a different backbone or optimizer?)`,
      );
    mine.forEach((t, k) => {
      const e = saved[k];
      if (e.shape.join(",") !== t.shape.join(",") || e.dtype !== t.dtype)
        throw new CheckpointError(
          ckpt,
          `${group} tensor ${k} (${e.name}) is ${e.dtype}[${e.shape}], the model's ${t.name} is ${t.dtype}[${t.shape}]`,
        );
    });
  }
  const arrays: Record<string, StateArray> = {};
  for (const t of tensors.filter((e) => e.group === "headStep"))
    arrays[t.name] = { dtype: t.dtype, shape: t.shape, data: t.data };
  try {
    headStep.loadState({ arrays, meta: state.headStep.meta });
  } catch (e) {
    throw new CheckpointError(ckpt, `the head step's state does not fit: ${(e as Error).message}`);
  }
  load({
    backbone: tensors.filter((t) => t.group === "backbone"),
    optimizer: tensors.filter((t) => t.group === "optimizer"),
  });
}

/** Checkpoints every `every` steps and at the end of training, keeping the newest `keep` (default 2). */
export function checkpointEvery(o: { dir: string; every: number; keep?: number }): TrainCallback {
  let last = -1;
  return {
    async onStep(m, ctx) {
      if (m.step % o.every === 0) {
        await ctx.save(o.dir, o.keep);
        last = m.step;
      }
    },
    async onEnd(r, ctx) {
      if (r.steps > 0 && last !== r.steps) await ctx.save(o.dir, o.keep);
    },
  };
}
