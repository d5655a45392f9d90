/**
 * The training loop: backbone -> head (+ weighted regularizers of the head's weight) -> loss, one
 * optimizer step per batch, callbacks for progress, tracking and checkpoints.
 *
 * - Steps or epochs; SGD (momentum) or AdamW; weight decay per group; schedules with warm-up;
 *   gradient clipping by global norm (backbone only by default, as InsightFace's clip_grad_norm_).
 * - Reproducible: the seed fixes data order and augmentation (pipeline.ts); backbone and head are
 *   initialised by their own seeds. A checkpoint holds backbone, head, optimizer state, step, RNG and
 *   data position, so `resume` continues exactly where the run stopped.
 * - A non-finite loss or gradient norm stops training before that update is applied, with a
 *   TrainingError naming the step; checkpoints already written are left as they are.
 */

import type { Backbone } from "../backbones/backbone";
import { tf } from "../backend";
import { checkInt, checkNumber, configError, type Dataset } from "../data/dataset";
import { BatchStream, type DataPosition, type PipelineOptions, validatePipeline } from "../data/pipeline";
import { Rng } from "../data/rng";
import type { Head, Scalar, Tensor1D, Tensor2D, Variable } from "../losses/head";
import { latestCheckpoint, restoreCheckpoint, saveCheckpoint, type VariableGroups } from "./checkpoint";
import { Optimizer, type OptimizerConfig, validateOptimizer } from "./optimizers";
import { learningRate, type Schedule, validateSchedule } from "./schedules";

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

/** A regularizer: a scalar function of the head's weight W [C, D], added to the loss times `weight`. */
export interface Regularizer {
  name: string;
  weight: number;
  fn: (w: Tensor2D, context: { labels: Tensor1D; step: number }) => Scalar;
}

export interface StepMetrics {
  /** Completed optimizer steps (1 after the first). */
  step: number;
  totalSteps: number;
  epoch: number;
  /** Total loss (head + weighted regularizers). */
  loss: number;
  headLoss: number;
  /** Unweighted value of each regularizer. */
  regularizers: Record<string, number>;
  lr: number;
  gradNorm: number;
  imagesPerSecond: number;
  elapsedSeconds: number;
}

export interface TrainContext {
  readonly backbone: Backbone;
  readonly head: Head;
  /** A seeded random stream saved in checkpoints (for callbacks or samplers that need randomness). */
  readonly rng: Rng;
  /** Writes a checkpoint of the current state to `dir` (atomically) and returns its folder. */
  save(dir: string, keep?: number): Promise<string>;
  /** Ends training after this step. */
  stop(): void;
}

export interface TrainCallback {
  onStart?(
    info: { startStep: number; totalSteps: number; batchesPerEpoch: number; batchSize: number },
    ctx: TrainContext,
  ): void | Promise<void>;
  onStep?(m: StepMetrics, ctx: TrainContext): void | Promise<void>;
  onCheckpoint?(info: { step: number; path: string }): void | Promise<void>;
  onEnd?(result: TrainResult, ctx: TrainContext): void | Promise<void>;
}

export interface TrainConfig {
  backbone: Backbone;
  head: Head;
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
  /** Which gradients the clipping covers. Default "backbone" (InsightFace). */
  clipScope?: "backbone" | "all";
  regularizers?: Regularizer[];
  callbacks?: TrainCallback[];
  seed?: number;
  /** Resume from this checkpoint folder (or a folder of checkpoints: its newest); nothing there = fresh start. */
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
}

export function validateTrainConfig(c: TrainConfig): { totalSteps: number } {
  if (!c || typeof c !== "object") throw configError("train config", c, "expected an object");
  if (!c.backbone || typeof c.backbone.apply !== "function")
    throw configError("backbone", c.backbone, "expected a Backbone (createBackbone(...))");
  if (!c.head || typeof c.head.loss !== "function")
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
  if (c.checkpoint) {
    if (typeof c.checkpoint.dir !== "string" || c.checkpoint.dir === "")
      throw configError("checkpoint.dir", c.checkpoint.dir, "expected a folder path");
    checkInt("checkpoint.every", c.checkpoint.every, 1);
  }
  const [h, w, ch] = c.backbone.inputShape;
  const [ph, pw] = c.pipeline.size ?? [c.data.shape[0], c.data.shape[1]];
  if (ph !== h || pw !== w || c.data.shape[2] !== ch) {
    throw configError(
      "pipeline.size",
      [ph, pw, c.data.shape[2]],
      `the backbone expects inputs of [${h}, ${w}, ${ch}] (set pipeline.size, or the data's channels)`,
    );
  }
  checkHeadFits("head", c.head, c.backbone, c.data);
  const perEpoch =
    (c.pipeline.dropLast ?? true)
      ? Math.floor(c.data.size / c.pipeline.batchSize)
      : Math.ceil(c.data.size / c.pipeline.batchSize);
  const totalSteps = c.steps ?? c.epochs! * perEpoch;
  validateSchedule(c.schedule, totalSteps);
  return { totalSteps };
}

/** The head side (a Head, PartialFC, ...) must take the backbone's embeddings and hold every class of the data. */
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

function headVariables(head: Head): Variable[] {
  const vars = head.trainableVariables();
  return vars.includes(head.weight) ? vars : [head.weight, ...vars];
}

function globalNorm(grads: Tensor[]): Scalar {
  return tf.tidy(() => tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))) as Scalar);
}

/** Runs training; resolves with the per-step metrics. */
export async function train(config: TrainConfig): Promise<TrainResult> {
  const { totalSteps } = validateTrainConfig(config);
  const { backbone, head } = config;
  const seed = config.seed ?? 0;
  const regs = config.regularizers ?? [];
  const callbacks = [...(config.callbacks ?? [])];
  if (config.checkpoint) callbacks.push(checkpointEvery(config.checkpoint));

  const bbTrainable = backbone.trainableVariables();
  const hdTrainable = head.trainableVariables();
  const trainable = [...bbTrainable, ...hdTrainable];
  const wdBackbone = config.optimizer.weightDecay ?? (config.optimizer.type === "sgd" ? 5e-4 : 0.01);
  const wdHead = config.optimizer.headWeightDecay ?? wdBackbone;
  const optimizer = new Optimizer(config.optimizer, [
    { variables: bbTrainable, weightDecay: wdBackbone },
    { variables: hdTrainable, weightDecay: wdHead },
  ]);
  const rng = new Rng(seed);
  let step = 0;
  let position: DataPosition = { epoch: 0, batch: 0 };
  let lastCheckpoint: string | undefined;
  let resumedFrom: string | undefined;

  const groups = (): VariableGroups => ({
    backbone: backbone.variables().map(({ name, variable }) => ({ name, variable })),
    head: headVariables(head).map((v, k) => ({ name: `head/${k}`, variable: v })),
    optimizer: optimizer.stateVariables().map((v, k) => ({ name: `slot/${k}`, variable: v })),
  });

  try {
    if (config.resume) {
      const ckpt = latestCheckpoint(config.resume);
      if (ckpt) {
        const s = restoreCheckpoint(ckpt, groups());
        step = s.step;
        optimizer.step = s.optimizerStep;
        position = s.position;
        rng.state = s.rngState;
        resumedFrom = ckpt;
        lastCheckpoint = ckpt;
      }
    }
    const stream = new BatchStream(config.data, { ...config.pipeline, seed }, position);
    let stopped = false;
    const ctx: TrainContext = {
      backbone,
      head,
      rng,
      async save(dir: string, keep?: number) {
        const p = await saveCheckpoint(
          dir,
          { step, optimizerStep: optimizer.step, position: stream.nextPosition, rngState: rng.state },
          groups(),
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
      const batch = await stream.next();
      const lr = learningRate(config.schedule, config.optimizer.lr, step, totalSteps);
      head.setStep?.(step);
      const regValues: Scalar[] = [];
      let headLossT: Scalar | undefined;
      const { value, grads, norm } = tf.tidy(() => {
        const x = tf.tensor4d(batch.x, batch.shape) as Tensor4D;
        const labels = tf.tensor1d(batch.labels, "int32") as Tensor1D;
        const { value, grads } = tf.variableGrads(() => {
          const emb = backbone.apply(x, true);
          const hl = head.loss(emb, labels);
          headLossT = tf.keep(hl);
          let total: Scalar = hl;
          for (const r of regs) {
            const rv = r.fn(head.weight as unknown as Tensor2D, { labels, step });
            regValues.push(tf.keep(rv));
            if (r.weight !== 0) total = tf.add(total, tf.mul(rv, r.weight));
          }
          return total;
        }, trainable);
        const list = trainable.map((v) => grads[v.name]);
        const clipList = clipAll ? list : list.slice(0, bbTrainable.length);
        const norm = globalNorm(clipList);
        return { value, grads: list, norm };
      });
      const [lossV, normV] = [value.dataSync()[0], norm.dataSync()[0]];
      const headLoss = headLossT ? headLossT.dataSync()[0] : lossV;
      const regOut: Record<string, number> = {};
      regs.forEach((r, k) => {
        regOut[r.name] = regValues[k].dataSync()[0];
      });
      const disposeStep = () => {
        tf.dispose([value, norm, ...grads, ...regValues]);
        if (headLossT) headLossT.dispose();
      };
      if (!Number.isFinite(lossV) || !Number.isFinite(normV)) {
        disposeStep();
        const what = !Number.isFinite(lossV)
          ? `loss is ${lossV} (head loss ${headLoss}${regs.length ? `, regularizers ${JSON.stringify(regOut)}` : ""})`
          : `gradient norm is ${normV}`;
        throw new TrainingError(
          `Training stopped at step ${step + 1} (epoch ${batch.epoch}, batch ${batch.batch}): the ${what}; the update was not applied. ` +
            `${lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint}.` : "No checkpoint was written."} Lower the learning rate, add clipGradNorm, or check the head's settings.`,
          step + 1,
          lastCheckpoint,
        );
      }
      if (config.clipGradNorm !== undefined && normV > config.clipGradNorm) {
        const scale = config.clipGradNorm / (normV + 1e-6);
        const n = clipAll ? grads.length : bbTrainable.length;
        for (let k = 0; k < n; k++) {
          const g = grads[k];
          grads[k] = tf.mul(g, scale);
          g.dispose();
        }
      }
      optimizer.apply(grads, lr);
      disposeStep();
      step++;
      images += batch.shape[0];
      const elapsed = (performance.now() - t0) / 1000;
      const m: StepMetrics = {
        step,
        totalSteps,
        epoch: batch.epoch,
        loss: lossV,
        headLoss,
        regularizers: regOut,
        lr,
        gradNorm: normV,
        imagesPerSecond: elapsed > 0 ? images / elapsed : 0,
        elapsedSeconds: elapsed,
      };
      history.push(m);
      for (const cb of callbacks) await cb.onStep?.(m, ctx);
    }
    const result: TrainResult = { steps: step, history, lastCheckpoint, resumedFrom, stopped };
    for (const cb of callbacks) await cb.onEnd?.(result, ctx);
    result.lastCheckpoint = lastCheckpoint;
    return result;
  } finally {
    optimizer.dispose();
  }
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
