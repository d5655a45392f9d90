/**
 * Pieces the ablations share: a small MLP backbone (the smoke presets need seconds, LeNet++ takes
 * ~1 s per step on 2 cores), data loading, a training wrapper that reports progress and per-step
 * metrics to the run context, and closed-set classification accuracy.
 */

import { type Backbone, LayersBackbone } from "../src/backbones/backbone";
import { createBackbone } from "../src/backbones/index";
import { tf } from "../src/backend";
import { type Dataset, subset } from "../src/data/dataset";
import { mnistDigits } from "../src/data/mnist-digits";
import { type LabelNoise, syntheticFaces } from "../src/data/synthetic";
import { embedDataset } from "../src/eval/embed";
import type { Head } from "../src/losses/head";
import { LinearHeadBase } from "../src/losses/softmax";
import { type Regularizer, train } from "../src/train/trainer";
import { numberSetting } from "./settings";
import type { RunContext, Settings } from "./types";

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

export const BACKBONE_CHOICES = ["mlp", "lenet++", "lenet-small"] as const;

/** "mlp" (fast), "lenet-small" (LeNet++ with 8/16/32 filters) or "lenet++" (Wen et al.'s 32/64/128). */
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
}

/** Trains with SGD (momentum 0.9, cosine-free constant lr), reporting progress and metrics to ctx. */
export async function fit(
  o: FitOptions,
  ctx: RunContext,
): Promise<{ finalLoss: number; seconds: number; history: Array<Record<string, number>> }> {
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
  return { finalLoss: last ? last.loss : Number.NaN, seconds: (performance.now() - t0) / 1000, history };
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

/** A seeded subsample of indices (for plotting a manageable number of points). */
export function sampleIndices(n: number, k: number, seed: number): number[] {
  const idx = Array.from({ length: n }, (_, i) => i);
  let s = seed >>> 0 || 1;
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = s % (i + 1);
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, Math.min(k, n)).sort((a, b) => a - b);
}

export const round = (v: number, digits = 4) => (Number.isFinite(v) ? Number(v.toFixed(digits)) : v);

/**
 * Synthetic identities split by identity: the first `trainIds` identities train (labels 0..trainIds-1),
 * the remaining `testIds` are held out for verification. Rendered once and cached under .cache/.
 */
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

/** RegularFace's sep(W): mean over classes of the largest cosine to another class (lower = more separated). */
export function separability(rows: ArrayLike<number>[]): number {
  const unit = rows.map((r) => {
    let n = 0;
    for (let k = 0; k < r.length; k++) n += r[k] * r[k];
    const inv = 1 / (Math.sqrt(n) || 1);
    const out = new Float64Array(r.length);
    for (let k = 0; k < r.length; k++) out[k] = r[k] * inv;
    return out;
  });
  let total = 0;
  for (let i = 0; i < unit.length; i++) {
    let best = -1;
    for (let j = 0; j < unit.length; j++) {
      if (i === j) continue;
      let c = 0;
      for (let k = 0; k < unit[i].length; k++) c += unit[i][k] * unit[j][k];
      if (c > best) best = c;
    }
    total += best;
  }
  return total / unit.length;
}

/** Rows of a [C, D] variable as arrays. */
export function rowsOf(w: import("@tensorflow/tfjs-node").Tensor): Float32Array[] {
  const [c, d] = w.shape as [number, number];
  const data = w.dataSync() as Float32Array;
  return Array.from({ length: c }, (_, i) => data.slice(i * d, (i + 1) * d));
}

/** Mean feature per class (the feature centres, for sep on features rather than on W). */
export function classCentres(features: Float32Array[], labels: ArrayLike<number>, numClasses: number): Float32Array[] {
  const d = features[0].length;
  const sums = Array.from({ length: numClasses }, () => new Float32Array(d));
  features.forEach((f, i) => {
    let n = 0;
    for (let k = 0; k < d; k++) n += f[k] * f[k];
    const inv = 1 / (Math.sqrt(n) || 1);
    for (let k = 0; k < d; k++) sums[labels[i]][k] += f[k] * inv;
  });
  return sums;
}
