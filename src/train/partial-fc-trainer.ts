/**
 * The training loop for backbone + PartialFC (src/losses/partial-fc.ts). PartialFC owns W and its
 * SGD-momentum state and updates them itself, so the standard trainer cannot drive it. Per batch:
 *
 *   backbone forward -> embedding values -> pfc.step (samples the active set, updates W, returns
 *   g = dLoss/d(embeddings)) -> backprop sum(emb * g) into the backbone -> backbone optimizer step.
 *
 * One forward pass per step (a second one would update BatchNorm statistics twice): pfc.step runs inside
 * the backbone's gradient tape on a fresh copy of the embeddings, so its own autodiff has no path to the
 * backbone's variables and g enters sum(emb * g) as a constant.
 * The head's learning rate follows the backbone's schedule: pfc.learningRate * (lr_t / optimizer.lr).
 * `pfc` may also be a FusedHeadStep (every class, W in TensorFlow): the fast full-softmax head step.
 */
import type { Backbone } from "../backbones/backbone";
import { tf } from "../backend";
import { checkInt, checkNumber, configError, type Dataset } from "../data/dataset";
import { BatchStream, type PipelineOptions } from "../data/pipeline";
import { FusedHeadStep } from "../losses/fused-step";
import type { Scalar, Tensor1D, Tensor2D } from "../losses/head";
import { PartialFC } from "../losses/partial-fc";
import { NonFiniteLossError } from "../losses/validate";
import type { HeadStepResult } from "./head-step";
import { Optimizer, type OptimizerConfig, validateOptimizer } from "./optimizers";
import { learningRate, type Schedule, validateSchedule } from "./schedules";
import { checkHeadFits, TrainingError } from "./trainer";

type Tensor = import("@tensorflow/tfjs-node").Tensor;
type Tensor4D = import("@tensorflow/tfjs-node").Tensor4D;

export interface PartialFCStepMetrics {
  /** Completed steps (1 after the first). */
  step: number;
  totalSteps: number;
  loss: number;
  /** Classes in this step's active set. */
  activeClasses: number;
  /** Backbone learning rate of this step (the head's is pfc.learningRate). */
  lr: number;
  /** Global norm of the backbone's gradient before clipping. */
  gradNorm: number;
  /** Wall time of the whole step and of pfc.step alone (ms). */
  stepMs: number;
  headMs: number;
}

export interface PartialFCTrainConfig {
  backbone: Backbone;
  /** A PartialFC, or a FusedHeadStep for the full softmax (both update the class centres themselves). */
  pfc: PartialFC | FusedHeadStep;
  data: Dataset;
  /** Batch size, augmentation, normalisation, prefetch (the seed comes from `seed`). */
  pipeline: Omit<PipelineOptions, "seed">;
  steps: number;
  /** The backbone's optimizer (PartialFC has its own, set when it was built). */
  optimizer: OptimizerConfig;
  schedule?: Schedule;
  /** Clip the backbone gradient's global norm to this value. */
  clipGradNorm?: number;
  seed?: number;
  onStep?: (m: PartialFCStepMetrics) => void | Promise<void>;
}

function validate(c: PartialFCTrainConfig): void {
  if (!c || typeof c !== "object") throw configError("partial-fc train config", c, "expected an object");
  if (!c.backbone || typeof c.backbone.apply !== "function")
    throw configError("backbone", c.backbone, "expected a Backbone (createBackbone(...))");
  if (!(c.pfc instanceof PartialFC || c.pfc instanceof FusedHeadStep))
    throw configError("pfc", typeof c.pfc, "expected a PartialFC or a FusedHeadStep");
  if (!c.data || typeof c.data.get !== "function") throw configError("data", c.data, "expected a Dataset");
  checkInt("steps", c.steps, 1);
  validateOptimizer(c.optimizer);
  if (c.clipGradNorm !== undefined) checkNumber("clipGradNorm", c.clipGradNorm, 1e-12, 1e12);
  checkInt("seed", c.seed ?? 0, 0, 2 ** 32 - 1);
  checkHeadFits("pfc", c.pfc, c.backbone, c.data);
  validateSchedule(c.schedule, c.steps);
}

/** Trains backbone and PartialFC together; resolves with the per-step metrics. */
export async function trainPartialFC(config: PartialFCTrainConfig): Promise<{ history: PartialFCStepMetrics[] }> {
  validate(config);
  const { backbone, pfc, steps } = config;
  const stream = new BatchStream(config.data, { ...config.pipeline, seed: config.seed ?? 0 }); // validates pipeline
  const trainable = backbone.trainableVariables();
  const optimizer = new Optimizer(config.optimizer, [
    {
      variables: trainable,
      weightDecay: config.optimizer.weightDecay ?? (config.optimizer.type === "sgd" ? 5e-4 : 0.01),
    },
  ]);
  const headLr = pfc.learningRate;
  const history: PartialFCStepMetrics[] = [];
  try {
    for (let step = 0; step < steps; step++) {
      const t0 = performance.now();
      const batch = await stream.next();
      const lr = learningRate(config.schedule, config.optimizer.lr, step, steps);
      pfc.learningRate = config.optimizer.lr > 0 ? (headLr * lr) / config.optimizer.lr : headLr;
      let loss = Number.NaN;
      let activeClasses = 0;
      let headMs = 0;
      const { grads, norm } = tf.tidy(() => {
        const x = tf.tensor4d(batch.x, batch.shape) as Tensor4D;
        const labels = tf.tensor1d(batch.labels, "int32") as Tensor1D;
        const { value, grads } = tf.variableGrads(() => {
          const emb = backbone.apply(x, true);
          // a fresh tensor: the head's autodiff must not reach the backbone through the shared tape
          const detached = tf.tensor2d(emb.dataSync() as Float32Array, emb.shape) as Tensor2D;
          const h0 = performance.now();
          let r: HeadStepResult;
          try {
            r = pfc.step(detached, labels, step);
          } catch (e) {
            if (!(e instanceof NonFiniteLossError)) throw e;
            throw new TrainingError(
              `Partial FC training stopped at step ${step + 1}: ${e.message}`,
              step + 1,
              undefined,
            );
          }
          headMs = performance.now() - h0;
          loss = r.loss;
          activeClasses = r.activeClasses;
          return tf.sum(tf.mul(emb, r.embeddingGrad)) as Scalar;
        }, trainable);
        value.dispose();
        const list = trainable.map((v) => grads[v.name]);
        const norm = tf.sqrt(tf.addN(list.map((g) => tf.sum(tf.square(g)))));
        return { grads: list, norm };
      });
      const normV = norm.dataSync()[0];
      norm.dispose();
      if (!Number.isFinite(loss) || !Number.isFinite(normV)) {
        tf.dispose(grads);
        throw new TrainingError(
          `Partial FC training stopped at step ${step + 1}: the ${!Number.isFinite(loss) ? `loss is ${loss}` : `backbone gradient norm is ${normV}`}; ` +
            "pfc.step had already updated the active rows of W, the backbone update was not applied. Lower the learning rate, add clipGradNorm, or check the head's settings.",
          step + 1,
          undefined,
        );
      }
      let applied: Tensor[] = grads;
      if (config.clipGradNorm !== undefined && normV > config.clipGradNorm) {
        const scale = config.clipGradNorm / (normV + 1e-6);
        applied = grads.map((g) => tf.mul(g, scale));
        tf.dispose(grads);
      }
      optimizer.apply(applied, lr);
      tf.dispose(applied);
      const m: PartialFCStepMetrics = {
        step: step + 1,
        totalSteps: steps,
        loss,
        activeClasses,
        lr,
        gradNorm: normV,
        stepMs: performance.now() - t0,
        headMs,
      };
      history.push(m);
      await config.onStep?.(m);
    }
    return { history };
  } finally {
    pfc.learningRate = headLr;
    optimizer.dispose();
  }
}
