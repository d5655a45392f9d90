/**
 * Pieces the ablations share: backbones (a small MLP for the 2-D pictures, LeNet++ and iResNet
 * CNNs), data loading with held-out identities, the protocol's training wrapper (SGD with warm-up
 * and cosine decay, progress and per-step metrics to the run context, the loss history for the
 * convergence check), held-out verification on all pairs with the collapse check, and closed-set
 * classification accuracy.
 */

import { type Backbone, LayersBackbone } from "../src/backbones/backbone";
import { createBackbone } from "../src/backbones/index";
import { tf } from "../src/backend";
import { type Dataset, subset } from "../src/data/dataset";
import { mnistDigits } from "../src/data/mnist-digits";
import { permutation } from "../src/data/rng";
import { type LabelNoise, syntheticFaces } from "../src/data/synthetic";
import { type CollapseCheck, detectCollapse } from "../src/eval/collapse";
import { type Embeddings, embedDataset } from "../src/eval/embed";
import { type AllPairsVerification, DEFAULT_FARS, verifyAllPairs } from "../src/eval/verification";
import { createHead, type HeadSpec } from "../src/losses/create";
import type { Head } from "../src/losses/head";
import { LinearHeadBase } from "../src/losses/softmax";
import { CAFFE_LAMBDA } from "../src/losses/sphereface";
import type { Schedule } from "../src/train/schedules";
import { type Regularizer, train } from "../src/train/trainer";
import { numberSetting } from "./settings";
import type { ConfigResult, RunContext, Settings } from "./types";

type SymbolicTensor = import("@tensorflow/tfjs-node").SymbolicTensor;

export const MNIST_NORMALIZE = { mean: 0.1307, std: 0.3081 };

/** Flatten -> dense(hidden, relu)... -> dense(embeddingDim): a fast stand-in for LeNet++ in smoke presets. */
export function mlpBackbone(o: {
  inputShape: readonly [number, number, number];
  hidden: number[];
  embeddingDim: number;
  seed: number;
}): Backbone {
  let n = 0;
  const init = () => tf.initializers.glorotUniform({ seed: o.seed * 7919 + ++n });
  const input = tf.input({ shape: [...o.inputShape] });
  let x = tf.layers.flatten().apply(input) as SymbolicTensor;
  for (const h of o.hidden) {
    x = tf.layers.dense({ units: h, kernelInitializer: init() }).apply(x) as SymbolicTensor;
    x = tf.layers.prelu({ alphaInitializer: tf.initializers.constant({ value: 0.25 }) }).apply(x) as SymbolicTensor;
  }
  const out = tf.layers.dense({ units: o.embeddingDim, kernelInitializer: init() }).apply(x) as SymbolicTensor;
  return new LayersBackbone("mlp", tf.model({ inputs: input, outputs: out }), o.inputShape, o.embeddingDim);
}

export const BACKBONE_CHOICES = ["mlp", "lenet++", "lenet-small", "iresnet-small", "iresnet50"] as const;

/**
 * "mlp" (fast), "lenet-small" (LeNet++ with 8/16/32 filters), "lenet++" (Wen et al.'s 32/64/128),
 * "iresnet-small" (the project's iResNet with one block of 16/32/64/128 channels per stage) or
 * "iresnet50" (InsightFace's iResNet-50, the papers' ResNet50: the paper presets).
 */
export function makeBackbone(
  name: string,
  embeddingDim: number,
  seed: number,
  inputShape: readonly [number, number, number] = [28, 28, 1],
): Backbone {
  if (name === "mlp") return mlpBackbone({ inputShape, hidden: [128, 64], embeddingDim, seed });
  if (name === "lenet++") return createBackbone({ name: "lenet++", embeddingDim, seed, inputShape });
  if (name === "lenet-small")
    return createBackbone({ name: "lenet++", embeddingDim, seed, inputShape, widths: [8, 16, 32] });
  if (name === "iresnet-small" || name === "iresnet50") return createBackbone({ name, embeddingDim, seed, inputShape });
  throw new Error(`backbone = "${name}" is not valid: allowed are ${BACKBONE_CHOICES.join(", ")}.`);
}

const mnistCache = new Map<string, Dataset>();

/** MNIST train/test split: `trainPerClass` then `testPerClass` images of each digit (cached per process). */
export function mnistSplit(trainPerClass: number, testPerClass: number): { train: Dataset; test: Dataset } {
  const key = `${trainPerClass}/${testPerClass}`;
  if (!mnistCache.has(`${key}/train`)) {
    mnistCache.set(`${key}/train`, mnistDigits({ perClass: trainPerClass }));
    mnistCache.set(`${key}/test`, mnistDigits({ perClass: testPerClass, offset: trainPerClass }));
  }
  return { train: mnistCache.get(`${key}/train`)!, test: mnistCache.get(`${key}/test`)! };
}

export interface FitOptions {
  backbone: Backbone;
  head: Head;
  data: Dataset;
  steps: number;
  batchSize: number;
  lr: number;
  seed: number;
  weightDecay?: number;
  regularizers?: Regularizer[];
  normalize?: { mean: number; std: number };
  /** Log every n steps (default: about 50 points per run). */
  logEvery?: number;
  /** Extra per-step metrics (e.g. a trainable scale), read after each logged step. */
  extraMetrics?: () => Record<string, number>;
  /** Default: the protocol's warm-up over the first 5 % of steps, then cosine decay to 0. */
  schedule?: Schedule;
}

/** The protocol's learning-rate schedule: linear warm-up over 5 % of the steps, then cosine to 0. */
export function protocolSchedule(steps: number): Schedule {
  return { type: "cosine", warmupSteps: Math.max(1, Math.round(steps * 0.05)), minLr: 0 };
}

export interface FitResult {
  finalLoss: number;
  seconds: number;
  /** The logged rows (step, loss, lr, ...). */
  history: Array<Record<string, number>>;
  /** The training loss of every step (the convergence check). */
  lossHistory: Array<{ step: number; loss: number }>;
}

/** Trains with SGD (momentum 0.9, warm-up and cosine decay), reporting progress and metrics to ctx. */
export async function fit(o: FitOptions, ctx: RunContext): Promise<FitResult> {
  const every = o.logEvery ?? Math.max(1, Math.floor(o.steps / 50));
  const history: Array<Record<string, number>> = [];
  const t0 = performance.now();
  const result = await train({
    backbone: o.backbone,
    head: o.head,
    data: o.data,
    pipeline: { batchSize: o.batchSize, augment: false, normalize: o.normalize, prefetch: 2 },
    steps: o.steps,
    optimizer: { type: "sgd", lr: o.lr, momentum: 0.9, weightDecay: o.weightDecay ?? 5e-4 },
    schedule: o.schedule ?? protocolSchedule(o.steps),
    clipGradNorm: 10,
    clipScope: "all",
    regularizers: o.regularizers,
    seed: o.seed,
    callbacks: [
      {
        onStep(m) {
          if (m.step % every === 0 || m.step === m.totalSteps) {
            const row: Record<string, number> = {
              loss: m.loss,
              head_loss: m.headLoss,
              lr: m.lr,
              grad_norm: m.gradNorm,
              ...prefixed(m.regularizers),
              ...(o.extraMetrics?.() ?? {}),
            };
            history.push({ step: m.step, ...row });
            ctx.log(row, m.step);
          }
          ctx.progress(m.step, m.totalSteps);
        },
      },
    ],
  });
  const last = result.history[result.history.length - 1];
  return {
    finalLoss: last ? last.loss : Number.NaN,
    seconds: (performance.now() - t0) / 1000,
    history,
    lossHistory: result.history.map((m) => ({ step: m.step, loss: m.loss })),
  };
}

/** fit() with the settings' `steps`, `batchSize` and `lr`. */
export function fitWithSettings(
  s: Settings,
  o: Omit<FitOptions, "steps" | "batchSize" | "lr">,
  ctx: RunContext,
): Promise<FitResult> {
  return fit(
    { steps: numberSetting(s, "steps"), batchSize: numberSetting(s, "batchSize"), lr: numberSetting(s, "lr"), ...o },
    ctx,
  );
}

/** The metric name of TAR at a FAR: tar_far_1e-3. */
export function tarMetric(far: number): string {
  return `tar_far_${far.toExponential(0).replace("e+", "e")}`;
}

/**
 * The TAR metric comparisons use: at the lowest FAR of 1e-4, 1e-3, 1e-2 that the impostor pairs of
 * `ids` held-out identities with `perId` images each support (at least 10 / FAR of them).
 */
export function heldOutTarMetric(ids: number, perId: number): string {
  const impostors = impostorPairs(ids, perId);
  const far = [1e-4, 1e-3, 1e-2].find((f) => impostors >= Math.ceil(10 / f)) ?? 1e-2;
  return tarMetric(far);
}

export interface HeldOut {
  /** tar_far_1e-2/-3/-4 (where the impostors are enough), auc, acc_10fold, mean_pairwise_cosine, impostor_pairs. */
  metrics: Record<string, number>;
  verification: AllPairsVerification;
  embeddings: Embeddings;
  collapse: CollapseCheck;
  /** FARs left out for too few impostors, in words. */
  notes: string[];
}

/**
 * The protocol's evaluation: embeddings of the held-out identities (emb(x) + emb(flip(x)) as
 * InsightFace, unless `flip` is false), verification on all their pairs, and the collapse check
 * (with the training losses).
 */
export async function evaluateHeldOut(
  backbone: Backbone,
  test: Dataset,
  o: { losses: readonly number[]; normalize?: { mean: number; std: number }; flip?: boolean; seed?: number },
): Promise<HeldOut> {
  const embeddings = await embedDataset(backbone, test, {
    batchSize: 256,
    flip: o.flip ?? true,
    normalize: o.normalize,
  });
  const verification = verifyAllPairs(embeddings.embeddings, test.labels, { fars: DEFAULT_FARS, seed: o.seed });
  const metrics: Record<string, number> = {
    auc: verification.auc,
    acc_10fold: verification.accuracy,
    mean_pairwise_cosine: verification.meanPairwiseCosine,
    impostor_pairs: verification.impostorPairs,
  };
  const notes: string[] = [];
  for (const t of verification.tar) {
    if (t.reliable) metrics[tarMetric(t.far)] = t.tar;
    else if (t.note) notes.push(`TAR@FAR=${t.far} not reported: ${t.note}`);
  }
  const collapse = detectCollapse({
    losses: o.losses,
    auc: verification.auc,
    meanPairwiseCosine: verification.meanPairwiseCosine,
  });
  return { metrics, verification, embeddings, collapse, notes };
}

function prefixed(r: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(r)) out[`reg_${k}`] = v;
  return out;
}

/** Class scores for prediction: the linear logits for softmax-type heads, else the cosines. */
export function classScores(head: Head, embeddings: Float32Array[]): Float32Array[] {
  const d = head.embeddingDim;
  const flat = new Float32Array(embeddings.length * d);
  for (let i = 0; i < embeddings.length; i++) flat.set(embeddings[i], i * d);
  const scores = tf.tidy(() => {
    const x = tf.tensor2d(flat, [embeddings.length, d]);
    if (head instanceof LinearHeadBase)
      return head.logits(x, tf.zeros([embeddings.length], "int32") as import("@tensorflow/tfjs-node").Tensor1D);
    return head.cosine(x);
  });
  const data = scores.dataSync() as Float32Array;
  const c = scores.shape[1] as number;
  scores.dispose();
  return embeddings.map((_, i) => data.slice(i * c, (i + 1) * c));
}

export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** Closed-set accuracy of the head's prediction on a test set, plus the embeddings (for plots and norms). */
export async function evaluateClosedSet(
  backbone: Backbone,
  head: Head,
  test: Dataset,
  normalize?: { mean: number; std: number },
) {
  const emb = await embedDataset(backbone, test, { batchSize: 256, normalize });
  const scores = classScores(head, emb.single);
  let correct = 0;
  scores.forEach((s, i) => {
    if (argmax(s) === emb.labels[i]) correct++;
  });
  return { accuracy: correct / test.size, embeddings: emb };
}

/** A seeded subsample of indices (for plotting a manageable number of points), in increasing order. */
export function sampleIndices(n: number, k: number, seed: number): number[] {
  return Array.from(permutation(n, seed).subarray(0, Math.min(k, n))).sort((a, b) => a - b);
}

export const round = (v: number, digits = 4) => (Number.isFinite(v) ? Number(v.toFixed(digits)) : v);

/** The split an image ablation's settings describe (trainIds, testIds, imagesPerIdentity, imageSize). */
export function syntheticSplitFromSettings(
  s: Settings,
  seed: number,
  extra: { degradedFraction?: number; labelNoise?: LabelNoise } = {},
) {
  return syntheticSplit({
    trainIds: numberSetting(s, "trainIds"),
    testIds: numberSetting(s, "testIds"),
    imagesPerIdentity: numberSetting(s, "imagesPerIdentity"),
    size: numberSetting(s, "imageSize"),
    seed,
    ...extra,
  });
}

/**
 * Synthetic identities split by identity: the first `trainIds` identities train (labels 0..trainIds-1),
 * the remaining `testIds` are held out for verification. Rendered once and cached under .cache/.
 */
export async function syntheticSplit(o: {
  trainIds: number;
  testIds: number;
  imagesPerIdentity: number;
  size: number;
  seed: number;
  degradedFraction?: number;
  labelNoise?: LabelNoise;
}) {
  const all = await syntheticFaces({
    identities: o.trainIds + o.testIds,
    imagesPerIdentity: o.imagesPerIdentity,
    size: o.size,
    channels: 1,
    seed: o.seed,
    degradedFraction: o.degradedFraction ?? 0.3,
    labelNoise: o.labelNoise,
  });
  const trainIdx: number[] = [];
  const testIdx: number[] = [];
  for (let i = 0; i < all.size; i++) (all.identity[i] < o.trainIds ? trainIdx : testIdx).push(i);
  const train = subset(all, trainIdx, true);
  const test = subset(all, testIdx, true);
  return {
    all,
    train,
    test,
    trainIdentity: Int32Array.from(trainIdx, (i) => all.identity[i]),
    testIdentity: Int32Array.from(testIdx, (i) => all.identity[i]),
  };
}

// --- small pieces several ablations share: heads from specs, the held-out result, the Caffe schedule ---

/** A loss-library head spec (src/losses/create.ts) without the sizes and seed the task supplies. */
export type LibrarySpecPart = HeadSpec extends infer T
  ? T extends unknown
    ? Omit<T, "numClasses" | "embeddingDim" | "seed">
    : never
  : never;

/**
 * createHead with the task's sizes and the head's warnings off: the ablations run the papers' settings
 * on purpose (e.g. a scale below the bound for few classes), so a warning there is not news.
 */
export function createQuietHead(
  spec: LibrarySpecPart,
  o: { numClasses: number; embeddingDim: number; seed: number; initialWeight?: number[][] },
): Head {
  return createHead({ ...spec, ...o, onWarning: () => undefined } as HeadSpec);
}

/**
 * A verification task's result: the held-out metrics, the task's own (`metrics`), the final loss and
 * training time; the loss history and collapse check for the protocol; the ROC and notes for the summary.
 */
export function heldOutResult(
  held: Pick<HeldOut, "metrics" | "collapse" | "notes"> & { roc: unknown },
  fitted: FitResult,
  metrics: Record<string, number>,
): ConfigResult {
  return {
    metrics: { ...held.metrics, ...metrics, final_loss: fitted.finalLoss, train_seconds: fitted.seconds },
    lossHistory: fitted.lossHistory,
    collapse: held.collapse,
    extra: { roc: held.roc, notes: held.notes },
  };
}

/** The impostor pairs among all pairs of `ids` identities with `perId` images each. */
export function impostorPairs(ids: number, perId: number): number {
  const n = ids * perId;
  return (n * (n - 1)) / 2 - (ids * perId * (perId - 1)) / 2;
}

/** The gamma at which the Caffe lambda schedule (base 1000, floor 5, power 1) reaches its floor at `step`. */
export function lambdaGammaReachingFloorAt(step: number): number {
  return (CAFFE_LAMBDA.base / CAFFE_LAMBDA.lambdaMin - 1) / Math.max(1, step);
}
