/**
 * alpha-bound (L2-softmax, Ranjan et al. 2017): the scale alpha needs alpha >= alpha_low(C, p) =
 * log(p (C - 2) / (1 - p)) for the target class to reach probability p.
 *
 * - analytic: alpha_low(C, p) for p = 0.9 and 0.99 (summary figure, no training);
 * - "free embedding": one free feature per class and unit-norm class weights (the bound's own
 *   setting: logits alpha cos), optimised directly with Adam; the mean target probability reached at
 *   each alpha against the bound's p(alpha, C) = e^a / (e^a + C - 2 + e^-a) and the regular-simplex
 *   optimum e^a / (e^a + (C - 1) e^(-a/(C-1))) (reachable when C <= D + 1);
 * - training: L2-softmax on MNIST (C = 10, alpha_low = 4.28) with alpha below, near and above the
 *   bound, and a trainable alpha (where it goes).
 */
import { tf } from "../src/backend";
import { L2Softmax } from "../src/losses/l2-softmax";
import { NormFace } from "../src/losses/normface";
import { alphaLow } from "../src/losses/scale";
import { evaluateClosedSet, fit, MNIST_NORMALIZE, makeBackbone, mnistSplit, round } from "./common";
import { checkMnistSplit } from "./mnist-data";
import { booleanSetting, numberSetting, numbersSetting } from "./settings";
import type { Ablation, Config, ConfigResult, ResultOf, RunContext, Settings, Summary } from "./types";

type Tensor1D = import("@tensorflow/tfjs-node").Tensor1D;
type Tensor2D = import("@tensorflow/tfjs-node").Tensor2D;

export interface AlphaBoundConfig extends Config {
  kind: "free" | "train";
  classes: number;
  alpha: number;
  /** Trainable alpha (train kind): alpha is its initial value. */
  learnAlpha: boolean;
  seed: number;
}

/** The bound's target probability at scale a: target at cos 1, one class at -1, C - 2 at 0. */
export function boundProbability(alpha: number, classes: number): number {
  return 1 / (1 + (classes - 2) * Math.exp(-alpha) + Math.exp(-2 * alpha));
}

/** The best reachable target probability with unit-norm weights: a regular simplex (needs C <= D + 1). */
export function simplexProbability(alpha: number, classes: number): number {
  return 1 / (1 + (classes - 1) * Math.exp(-alpha - alpha / (classes - 1)));
}

/** Optimises C free unit-norm features against unit-norm class weights at scale alpha; mean target probability. */
async function freeEmbedding(config: AlphaBoundConfig, s: Settings, ctx: RunContext): Promise<ConfigResult> {
  const steps = numberSetting(s, "freeSteps");
  const dim = numberSetting(s, "freeDim");
  const C = config.classes;
  const head = new NormFace({
    numClasses: C,
    embeddingDim: dim,
    s: config.alpha,
    seed: config.seed,
    onWarning: () => undefined,
  });
  const features = tf.variable(
    tf.randomNormal([C, dim], 0, 1, "float32", config.seed + 1),
    true,
    `free_${config.seed}_${C}_${config.alpha}`,
  );
  const labels = tf.range(0, C, 1, "int32") as Tensor1D;
  const optimizer = tf.train.adam(numberSetting(s, "freeLr"));
  const vars = [features, head.weight];
  const meanP = (): number =>
    tf.tidy(() => {
      const logits = head.logits(features as unknown as Tensor2D, labels);
      const p = tf.softmax(logits);
      return tf.mean(tf.sum(tf.mul(p, tf.oneHot(labels, C)), 1)).dataSync()[0];
    });
  const every = Math.max(1, Math.floor(steps / 25));
  let loss = Number.NaN;
  try {
    for (let step = 1; step <= steps; step++) {
      const cost = optimizer.minimize(() => head.loss(features as unknown as Tensor2D, labels), true, vars);
      loss = cost ? cost.dataSync()[0] : Number.NaN;
      cost?.dispose();
      if (step % every === 0 || step === steps) {
        ctx.log({ loss, mean_target_probability: meanP() }, step);
        ctx.progress(step, steps);
      }
    }
    const p = meanP();
    return {
      metrics: {
        mean_target_probability: p,
        bound_probability: boundProbability(config.alpha, C),
        simplex_probability: simplexProbability(config.alpha, C),
        alpha_low_p90: alphaLow(C, 0.9),
        final_loss: loss,
      },
    };
  } finally {
    optimizer.dispose();
    tf.dispose([features, labels]);
    head.dispose();
  }
}

async function trainMnist(config: AlphaBoundConfig, s: Settings, ctx: RunContext): Promise<ConfigResult> {
  const { train, test } = mnistSplit(numberSetting(s, "trainPerClass"), numberSetting(s, "testPerClass"));
  const dim = numberSetting(s, "embeddingDim");
  const backbone = makeBackbone(String(s.backbone), dim, config.seed);
  const head = new L2Softmax({
    numClasses: 10,
    embeddingDim: dim,
    alpha: config.alpha,
    learnAlpha: config.learnAlpha,
    seed: config.seed,
    onWarning: () => undefined,
  });
  try {
    const fitted = await fit(
      {
        backbone,
        head,
        data: train,
        steps: numberSetting(s, "steps"),
        batchSize: numberSetting(s, "batchSize"),
        lr: numberSetting(s, "lr"),
        seed: config.seed,
        normalize: MNIST_NORMALIZE,
        extraMetrics: () => ({ alpha: head.currentAlpha() }),
      },
      ctx,
    );
    const { accuracy } = await evaluateClosedSet(backbone, head, test, MNIST_NORMALIZE);
    const alphaTrace = fitted.history.map((h) => [h.step, h.alpha]);
    return {
      metrics: {
        test_accuracy: accuracy,
        final_alpha: head.currentAlpha(),
        final_loss: fitted.finalLoss,
        alpha_low_p90: alphaLow(10, 0.9),
        train_seconds: fitted.seconds,
      },
      extra: { alphaTrace },
    };
  } finally {
    head.dispose();
    backbone.dispose();
  }
}

function grid(s: Settings): AlphaBoundConfig[] {
  const seed = numberSetting(s, "seed");
  const out: AlphaBoundConfig[] = [];
  for (const C of numbersSetting(s, "freeClasses")) {
    if (!(Number.isInteger(C) && C >= 3)) throw new Error(`freeClasses contains ${C}: expected integers >= 3.`);
    for (const alpha of numbersSetting(s, "freeAlphas"))
      out.push({ label: `free-C${C}-a${alpha}`, kind: "free", classes: C, alpha, learnAlpha: false, seed });
  }
  checkMnistSplit(numberSetting(s, "trainPerClass"), numberSetting(s, "testPerClass"));
  for (const alpha of numbersSetting(s, "trainAlphas"))
    out.push({ label: `mnist-a${alpha}`, kind: "train", classes: 10, alpha, learnAlpha: false, seed });
  if (booleanSetting(s, "trainable")) {
    for (const init of numbersSetting(s, "trainableInits"))
      out.push({ label: `mnist-learned-a${init}`, kind: "train", classes: 10, alpha: init, learnAlpha: true, seed });
  }
  return out;
}

const logAxis = (title: string) => ({ title: { text: title }, type: "log" });

function summarize(results: Array<ResultOf<AlphaBoundConfig>>, s: Settings): Summary {
  const figures: Summary["figures"] = [];
  const tables: Summary["tables"] = [];
  const notes: string[] = [];

  // 1. The analytic curve.
  const Cs: number[] = [];
  for (let e = Math.log10(3); e <= 6.01; e += 0.05) Cs.push(Math.round(10 ** e));
  const used = [...new Set(results.map((r) => r.config.classes))].sort((a, b) => a - b);
  figures.push({
    name: "alpha-low-curve",
    title: "alpha_low(C, p) = log(p (C-2) / (1-p))",
    figure: {
      data: [
        ...[0.9, 0.99].map((p) => ({
          type: "scatter",
          mode: "lines",
          name: `p = ${p}`,
          x: Cs,
          y: Cs.map((c) => alphaLow(Math.max(3, c), p)),
        })),
        {
          type: "scatter",
          mode: "markers",
          name: "C in this run (p = 0.9)",
          x: used,
          y: used.map((c) => alphaLow(c, 0.9)),
          marker: { size: 9 },
        },
      ],
      layout: {
        title: { text: "Lower bound on the L2-softmax scale" },
        xaxis: logAxis("number of classes C"),
        yaxis: { title: { text: "alpha_low" } },
        height: 380,
      },
    },
  });
  tables.push({
    name: "alpha-low",
    title: "alpha_low(C, p) (computed from the formula)",
    rows: [10, 100, 1000, 10572, 85742, 360232].map((c) => ({
      C: c,
      "alpha_low p=0.9": round(alphaLow(c, 0.9), 2),
      "alpha_low p=0.99": round(alphaLow(c, 0.99), 2),
    })),
  });

  // 2. Free embedding: reached probability against the bound.
  const free = results.filter((r) => r.config.kind === "free");
  if (free.length > 0) {
    const traces: unknown[] = [];
    const palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
    const freeClasses = [...new Set(free.map((r) => r.config.classes))].sort((a, b) => a - b);
    freeClasses.forEach((C, k) => {
      const rows = free.filter((r) => r.config.classes === C).sort((a, b) => a.config.alpha - b.config.alpha);
      const alphas = rows.map((r) => r.config.alpha);
      const dense: number[] = [];
      for (let a = Math.min(...alphas); a <= Math.max(...alphas) * 1.0001; a *= 1.05) dense.push(a);
      const color = palette[k % palette.length];
      traces.push({
        type: "scatter",
        mode: "lines+markers",
        name: `C=${C} reached`,
        x: alphas,
        y: rows.map((r) => r.result.metrics.mean_target_probability),
        line: { color },
      });
      traces.push({
        type: "scatter",
        mode: "lines",
        name: `C=${C} bound p(alpha)`,
        x: dense,
        y: dense.map((a) => boundProbability(a, C)),
        line: { color, dash: "dash" },
      });
      traces.push({
        type: "scatter",
        mode: "lines",
        name: `C=${C} alpha_low(0.9)`,
        x: [alphaLow(C, 0.9), alphaLow(C, 0.9)],
        y: [0, 1],
        line: { color, dash: "dot", width: 1 },
        showlegend: false,
      });
    });
    figures.push({
      name: "free-embedding",
      title: "Free embedding: mean target probability vs alpha",
      figure: {
        data: traces,
        layout: {
          title: { text: `Free features (D = ${s.freeDim}), unit-norm W: reached vs bound` },
          xaxis: logAxis("alpha"),
          yaxis: { title: { text: "mean target probability" }, range: [0, 1.02] },
          height: 420,
        },
      },
    });
    tables.push({
      name: "free-embedding",
      title: "Free embedding: mean target probability reached at each alpha",
      rows: free.map((r) => ({
        C: r.config.classes,
        alpha: r.config.alpha,
        alpha_low_p90: round(alphaLow(r.config.classes, 0.9), 2),
        reached_p: round(r.result.metrics.mean_target_probability),
        bound_p: round(r.result.metrics.bound_probability),
        simplex_p: round(r.result.metrics.simplex_probability),
      })),
    });
    const atBound = free.filter((r) => r.config.alpha >= alphaLow(r.config.classes, 0.9));
    const below = free.filter((r) => r.config.alpha < alphaLow(r.config.classes, 0.9) * 0.5);
    if (atBound.length && below.length) {
      const minAbove = Math.min(...atBound.map((r) => r.result.metrics.mean_target_probability));
      const maxBelow = Math.max(...below.map((r) => r.result.metrics.mean_target_probability));
      notes.push(
        `Free embedding: every alpha >= alpha_low(C, 0.9) reached mean p >= ${minAbove.toFixed(3)}; alphas below half the bound reached at most ${maxBelow.toFixed(3)}.`,
      );
    }
  }

  // 3. Training: accuracy vs alpha, and the trainable alpha.
  const trained = results.filter((r) => r.config.kind === "train");
  if (trained.length > 0) {
    const fixed = trained.filter((r) => !r.config.learnAlpha).sort((a, b) => a.config.alpha - b.config.alpha);
    const learned = trained.filter((r) => r.config.learnAlpha);
    const lowBound = alphaLow(10, 0.9);
    const accs = fixed.map((r) => r.result.metrics.test_accuracy);
    figures.push({
      name: "accuracy-vs-alpha",
      title: "MNIST test accuracy vs alpha (L2-softmax)",
      figure: {
        data: [
          { type: "scatter", mode: "lines+markers", name: "fixed alpha", x: fixed.map((r) => r.config.alpha), y: accs },
          ...learned.map((r) => ({
            type: "scatter",
            mode: "markers",
            name: `trainable (init ${r.config.alpha}) -> ${r.result.metrics.final_alpha.toFixed(2)}`,
            x: [r.result.metrics.final_alpha],
            y: [r.result.metrics.test_accuracy],
            marker: { size: 12, symbol: "star" },
          })),
          {
            type: "scatter",
            mode: "lines",
            name: "alpha_low(10, 0.9)",
            x: [lowBound, lowBound],
            y: [0, 1],
            line: { dash: "dot", color: "gray" },
          },
        ],
        layout: {
          title: { text: "L2-softmax on MNIST (C = 10)" },
          xaxis: logAxis("alpha"),
          yaxis: { title: { text: "test accuracy" }, range: [0, 1.02] },
          height: 400,
        },
      },
    });
    if (learned.length > 0) {
      figures.push({
        name: "trainable-alpha",
        title: "Trainable alpha during training",
        figure: {
          data: learned.map((r) => {
            const trace = (r.result.extra?.alphaTrace ?? []) as number[][];
            return {
              type: "scatter",
              mode: "lines",
              name: `init ${r.config.alpha}`,
              x: trace.map((t) => t[0]),
              y: trace.map((t) => t[1]),
            };
          }),
          layout: {
            title: { text: "Where a trainable alpha goes" },
            xaxis: { title: { text: "step" } },
            yaxis: { title: { text: "alpha" } },
            height: 340,
          },
        },
      });
    }
    tables.push({
      name: "training",
      title: "L2-softmax on MNIST: accuracy per alpha",
      rows: trained.map((r) => ({
        alpha: r.config.learnAlpha ? `learned (init ${r.config.alpha})` : r.config.alpha,
        "alpha/alpha_low": r.config.learnAlpha
          ? round(r.result.metrics.final_alpha / lowBound, 2)
          : round(r.config.alpha / lowBound, 2),
        final_alpha: round(r.result.metrics.final_alpha, 3),
        test_accuracy: round(r.result.metrics.test_accuracy),
        final_loss: round(r.result.metrics.final_loss),
        seconds: round(r.seconds, 1),
      })),
    });
    const below = fixed.filter((r) => r.config.alpha < lowBound / 2);
    const above = fixed.filter((r) => r.config.alpha >= lowBound);
    if (below.length && above.length) {
      const b = Math.max(...below.map((r) => r.result.metrics.test_accuracy));
      const a = Math.min(...above.map((r) => r.result.metrics.test_accuracy));
      notes.push(
        `Training: best accuracy with alpha < alpha_low/2 was ${b.toFixed(3)}; worst with alpha >= alpha_low was ${a.toFixed(3)} (${a > b ? "the collapse below the bound shows" : "no collapse below the bound at this budget"}).`,
      );
    }
    for (const r of learned)
      notes.push(
        `Trainable alpha (init ${r.config.alpha}) ended at ${r.result.metrics.final_alpha.toFixed(2)} (alpha_low(10, 0.9) = ${lowBound.toFixed(2)}).`,
      );
  }
  return { tables, figures, notes };
}

export const alphaBound: Ablation<AlphaBoundConfig> = {
  name: "alpha-bound",
  title: "L2-softmax: the lower bound on alpha",
  claim:
    "Ranjan et al. (L2-softmax, 2017): the feature scale alpha must exceed alpha_low(C, p) = log(p (C-2)/(1-p)) for the target class to reach probability p; below it training fails to converge well, above it accuracy saturates.",
  presets: {
    smoke: {
      seed: 1,
      freeClasses: [10, 100],
      freeAlphas: [1, 4, 16],
      freeDim: 16,
      freeSteps: 60,
      freeLr: 0.1,
      trainAlphas: [1, 8],
      trainable: true,
      trainableInits: [1],
      backbone: "mlp",
      embeddingDim: 16,
      trainPerClass: 100,
      testPerClass: 50,
      steps: 40,
      batchSize: 64,
      lr: 0.05,
    },
    full: {
      seed: 1,
      freeClasses: [10, 100, 1000],
      freeAlphas: [1, 2, 3, 4, 6, 8, 10, 12, 16, 24, 32],
      freeDim: 64,
      freeSteps: 400,
      freeLr: 0.05,
      trainAlphas: [0.5, 1, 2, 3, 4, 6, 8, 16, 32, 64],
      trainable: true,
      trainableInits: [1, 24],
      backbone: "mlp",
      embeddingDim: 32,
      trainPerClass: 700,
      testPerClass: 150,
      steps: 600,
      batchSize: 128,
      lr: 0.05,
    },
  },
  describe: {
    seed: "seed of every initialisation and of the data order",
    freeClasses: "class counts C of the free-embedding runs",
    freeAlphas: "alphas of the free-embedding runs",
    freeDim: "feature dimension D of the free-embedding runs",
    freeSteps: "Adam steps per free-embedding run",
    freeLr: "Adam learning rate of the free-embedding runs",
    trainAlphas: "fixed alphas trained on MNIST",
    trainable: "also train with a trainable alpha",
    trainableInits: "initial values of the trainable alpha",
    backbone: "mlp | lenet-small | lenet++",
    embeddingDim: "embedding size of the MNIST runs",
    trainPerClass: "MNIST training images per digit",
    testPerClass: "MNIST test images per digit (held out)",
    steps: "SGD steps per MNIST run",
    batchSize: "batch size",
    lr: "SGD learning rate (momentum 0.9, weight decay 5e-4)",
  },
  grid,
  async runOne(config, ctx) {
    return config.kind === "free" ? freeEmbedding(config, ctx.settings, ctx) : trainMnist(config, ctx.settings, ctx);
  },
  summarize,
};
