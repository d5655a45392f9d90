/**
 * alpha-bound (L2-softmax, Ranjan et al. 2017): the scale alpha needs alpha >= alpha_low(C, p) =
 * log(p (C - 2) / (1 - p)) for the target class to reach probability p.
 *
 * - analytic: alpha_low(C, p) for p = 0.9 and 0.99 (summary figure, no training);
 * - "free embedding": one free feature per class and unit-norm class weights (the bound's own
 *   setting: logits alpha cos), optimised directly with Adam; the mean target probability reached at
 *   each alpha against the bound's p(alpha, C) = e^a / (e^a + C - 2 + e^-a) and the regular-simplex
 *   optimum e^a / (e^a + (C - 1) e^(-a/(C-1))) (reachable when C <= D + 1);
 * - training: a CNN on synthetic identities (about 1,000 training classes in `full`, alpha_low(1000,
 *   0.9) = 9.1), L2-softmax with alpha below, near and above the bound, the same alphas with unit-norm
 *   class weights (NormFace at s = alpha: the bound's own setting, where |W| cannot grow to make up a
 *   small alpha), and a trainable alpha; scored on all pairs of held-out identities, so a low alpha
 *   shows where it matters (verification), with the effective scale alpha |W| logged per step.
 */
import { tf } from "../src/backend";
import { L2Softmax } from "../src/losses/l2-softmax";
import { NormFace } from "../src/losses/normface";
import { alphaLow } from "../src/losses/scale";
import { formatStatistic, statisticsTable } from "./analysis";
import { evaluateClosedSet, fitWithSettings, heldOutTarMetric, makeBackbone, round } from "./common";
import { evaluateVerification, experimentData, verificationMetric } from "./data-source";
import { ciErrorBars, means, metricBars } from "./figures";
import { numberSetting, numbersSetting } from "./settings";
import type {
  Ablation,
  Analysis,
  Comparison,
  Config,
  ConfigResult,
  ResultOf,
  RunContext,
  Settings,
  Summary,
} from "./types";

type Tensor1D = import("@tensorflow/tfjs-node").Tensor1D;
type Tensor2D = import("@tensorflow/tfjs-node").Tensor2D;

export interface AlphaBoundConfig extends Config {
  kind: "free" | "train";
  /** Free runs: the class count; train runs: 0 (the training identities of the settings). */
  classes: number;
  head: {
    /** "l2-softmax" (normalised features, free W) or "unit-w" (NormFace: normalised features and W). */
    type: "l2-softmax" | "unit-w";
    alpha: number;
    /** Trainable alpha (L2-softmax): alpha is its initial value. */
    learnAlpha: boolean;
  };
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
  const alpha = config.head.alpha;
  const head = new NormFace({ numClasses: C, embeddingDim: dim, s: alpha, seed: ctx.seed, onWarning: () => undefined });
  const features = tf.variable(
    tf.randomNormal([C, dim], 0, 1, "float32", ctx.seed + 1),
    true,
    `free_${ctx.seed}_${C}_${alpha}_${ctx.index}`,
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
        bound_probability: boundProbability(alpha, C),
        simplex_probability: simplexProbability(alpha, C),
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

/** Mean |W_j| over classes (L2-softmax's W is free: alpha |W| is the effective scale of the logits). */
function meanRowNorm(w: import("@tensorflow/tfjs-node").Tensor): number {
  return tf.tidy(() => tf.mean(tf.norm(w, "euclidean", 1)).dataSync()[0]);
}

async function trainIdentities(config: AlphaBoundConfig, s: Settings, ctx: RunContext): Promise<ConfigResult> {
  const data = await experimentData(s, numberSetting(s, "dataSeed"), { degradedFraction: 0 });
  const C = data.train.numClasses;
  const dim = numberSetting(s, "embeddingDim");
  const backbone = makeBackbone(String(s.backbone), dim, ctx.seed, data.inputShape);
  const { type, alpha, learnAlpha } = config.head;
  const common = { numClasses: C, embeddingDim: dim, seed: ctx.seed, onWarning: () => undefined };
  const l2 = type === "l2-softmax" ? new L2Softmax({ ...common, alpha, learnAlpha }) : undefined;
  const head = l2 ?? new NormFace({ ...common, s: alpha });
  const currentAlpha = () => (l2 ? l2.currentAlpha() : alpha);
  const effectiveScale = () => currentAlpha() * (l2 ? meanRowNorm(head.weight) : 1);
  try {
    const fitted = await fitWithSettings(
      s,
      {
        backbone,
        head,
        data: data.train,
        seed: ctx.seed,
        extraMetrics: () => ({ alpha: currentAlpha(), effective_scale: effectiveScale() }),
      },
      ctx,
    );
    const held = await evaluateVerification(backbone, data.test, {
      losses: fitted.lossHistory.map((h) => h.loss),
      seed: ctx.seed,
    });
    // the bound is about the target probability of the training classes: measure it
    const { embeddings } = await evaluateClosedSet(backbone, head, data.trainSample);
    const pTarget = targetProbability(head, embeddings.single, embeddings.labels);
    const low = alphaLow(C, 0.9);
    return {
      metrics: {
        ...held.metrics,
        train_target_probability: pTarget,
        final_alpha: currentAlpha(),
        alpha_over_alpha_low: currentAlpha() / low,
        effective_scale: effectiveScale(),
        final_loss: fitted.finalLoss,
        train_seconds: fitted.seconds,
      },
      lossHistory: fitted.lossHistory,
      collapse: held.collapse,
      extra: {
        alphaTrace: fitted.history.map((h) => [h.step, h.alpha, h.effective_scale]),
        notes: held.notes,
      },
    };
  } finally {
    head.dispose();
    backbone.dispose();
  }
}

/** Mean softmax probability of the labelled class over the given embeddings. */
function targetProbability(head: L2Softmax | NormFace, embeddings: Float32Array[], labels: Int32Array): number {
  const d = head.embeddingDim;
  const flat = new Float32Array(embeddings.length * d);
  embeddings.forEach((e, i) => {
    flat.set(e, i * d);
  });
  return tf.tidy(() => {
    const x = tf.tensor2d(flat, [embeddings.length, d]) as Tensor2D;
    const y = tf.tensor1d(labels, "int32") as Tensor1D;
    const p = tf.softmax(head.logits(x, y));
    return tf.mean(tf.sum(tf.mul(p, tf.oneHot(y, head.numClasses)), 1)).dataSync()[0];
  });
}

const trainLabel = (type: "l2-softmax" | "unit-w", alpha: number, learn = false) =>
  `${type === "l2-softmax" ? "l2" : "unit-w"} ${learn ? "learned " : ""}a${alpha}`;

function grid(s: Settings): AlphaBoundConfig[] {
  const out: AlphaBoundConfig[] = [];
  for (const C of numbersSetting(s, "freeClasses")) {
    if (!(Number.isInteger(C) && C >= 3)) throw new Error(`freeClasses contains ${C}: expected integers >= 3.`);
    for (const alpha of numbersSetting(s, "freeAlphas"))
      out.push({
        label: `free C${C} a${alpha}`,
        kind: "free",
        classes: C,
        head: { type: "unit-w", alpha, learnAlpha: false },
      });
  }
  const train = (type: "l2-softmax" | "unit-w", alpha: number, learnAlpha: boolean): AlphaBoundConfig => ({
    label: trainLabel(type, alpha, learnAlpha),
    kind: "train",
    classes: 0,
    head: { type, alpha, learnAlpha },
  });
  for (const alpha of numbersSetting(s, "trainAlphas")) out.push(train("l2-softmax", alpha, false));
  for (const alpha of numbersSetting(s, "unitWAlphas")) out.push(train("unit-w", alpha, false));
  for (const init of numbersSetting(s, "trainableInits")) out.push(train("l2-softmax", init, true));
  return out;
}

/** The training classes of the settings and alpha_low(C, 0.9) for them. */
function trainBound(s: Settings): { classes: number; low: number } {
  const classes = numberSetting(s, "trainIds");
  return { classes, low: alphaLow(classes, 0.9) };
}

/**
 * The comparisons the bound implies, among the train arms present: the smallest alpha at or above
 * alpha_low against the smallest alpha below half of it, for free W and for unit-norm W (held-out
 * TAR and the training target probability), and unit-norm W against free W below the bound.
 */
function comparisons(s: Settings, configs: AlphaBoundConfig[]): Comparison[] {
  const metric = verificationMetric(
    s,
    heldOutTarMetric(numberSetting(s, "testIds"), numberSetting(s, "imagesPerIdentity")),
  );
  const { classes, low } = trainBound(s);
  const out: Comparison[] = [];
  const fixed = (type: "l2-softmax" | "unit-w") =>
    configs
      .filter((c) => c.kind === "train" && c.head.type === type && !c.head.learnAlpha)
      .map((c) => c.head.alpha)
      .sort((a, b) => a - b);
  const source = `L2-softmax (Ranjan et al. 2017): alpha_low(${classes}, 0.9) = ${low.toFixed(2)}; paper headline IJB-A TAR 0.909 @ FAR 1e-4, LFW 99.78 (its alpha sweep is not in shared/research/papers.md)`;
  for (const type of ["l2-softmax", "unit-w"] as const) {
    const alphas = fixed(type);
    const above = alphas.find((a) => a >= low);
    const below = alphas.find((a) => a < low / 2);
    if (above === undefined || below === undefined) continue;
    const name = type === "l2-softmax" ? "l2" : "unit-w";
    out.push({
      name: `${name}-above-vs-below-bound`,
      claim: `${type === "l2-softmax" ? "L2-softmax" : "unit-norm W"}: alpha = ${above} (>= alpha_low) verifies better than alpha = ${below} (< alpha_low / 2)`,
      metric,
      baseline: trainLabel(type, below),
      treatment: trainLabel(type, above),
      expected: "greater",
      paper: source,
    });
    out.push({
      name: `${name}-target-probability`,
      claim: `${type === "l2-softmax" ? "L2-softmax" : "unit-norm W"}: the training target probability is higher at alpha = ${above} than at ${below}`,
      metric: "train_target_probability",
      baseline: trainLabel(type, below),
      treatment: trainLabel(type, above),
      expected: "greater",
      paper: "the bound: p <= e^a / (e^a + C - 2 + e^-a)",
    });
  }
  const l2 = fixed("l2-softmax");
  const unit = fixed("unit-w").filter((a) => a < low && l2.includes(a));
  if (unit.length > 0)
    out.push({
      name: "unit-w-vs-l2-below-bound",
      claim: `below the bound (alpha = ${unit[0]}) unit-norm W is worse than L2-softmax's free W, whose norm raises the effective scale`,
      metric,
      baseline: trainLabel("l2-softmax", unit[0]),
      treatment: trainLabel("unit-w", unit[0]),
      expected: "less",
      paper: "the bound assumes unit-norm W (shared/research/papers.md section 1.2)",
    });
  return out;
}

const logAxis = (title: string) => ({ title: { text: title }, type: "log" });

function summarize(results: Array<ResultOf<AlphaBoundConfig>>, s: Settings, analysis: Analysis): Summary {
  const figures: Summary["figures"] = [];
  const tables: Summary["tables"] = [];
  const notes: string[] = [];

  // 1. The analytic curve.
  const Cs: number[] = [];
  for (let e = Math.log10(3); e <= 6.01; e += 0.05) Cs.push(Math.round(10 ** e));
  const used = [
    ...new Set(results.map((r) => (r.config.kind === "free" ? r.config.classes : trainBound(s).classes))),
  ].sort((a, b) => a - b);
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

  const stat = (label: string, metric: string) => analysis.configs.find((c) => c.label === label)?.metrics[metric];
  const configs = [...new Map(results.map((r) => [r.config.label, r.config])).values()];

  // 2. Free embedding: reached probability (mean over seeds) against the bound.
  const free = configs.filter((c) => c.kind === "free");
  if (free.length > 0) {
    const traces: unknown[] = [];
    const palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
    const freeClasses = [...new Set(free.map((c) => c.classes))].sort((a, b) => a - b);
    freeClasses.forEach((C, k) => {
      const rows = free.filter((c) => c.classes === C).sort((a, b) => a.head.alpha - b.head.alpha);
      const alphas = rows.map((c) => c.head.alpha);
      const reached = rows.map((c) => stat(c.label, "mean_target_probability"));
      const dense: number[] = [];
      for (let a = Math.min(...alphas); a <= Math.max(...alphas) * 1.0001; a *= 1.05) dense.push(a);
      const color = palette[k % palette.length];
      traces.push({
        type: "scatter",
        mode: "lines+markers",
        name: `C=${C} reached`,
        x: alphas,
        y: means(reached),
        error_y: ciErrorBars(reached),
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
          title: { text: `Free features (D = ${s.freeDim}), unit-norm W: reached (mean, 95 % CI over seeds) vs bound` },
          xaxis: logAxis("alpha"),
          yaxis: { title: { text: "mean target probability" }, range: [0, 1.02] },
          height: 420,
        },
      },
    });
    tables.push({
      name: "free-embedding",
      title: "Free embedding: mean target probability reached at each alpha (mean ± std [95 % CI] over seeds)",
      rows: free.map((c) => ({
        C: c.classes,
        alpha: c.head.alpha,
        alpha_low_p90: round(alphaLow(c.classes, 0.9), 2),
        reached_p: formatStatistic(stat(c.label, "mean_target_probability")),
        bound_p: round(boundProbability(c.head.alpha, c.classes)),
        simplex_p: round(simplexProbability(c.head.alpha, c.classes)),
      })),
    });
  }

  // 3. Training on identities: held-out TAR against alpha / alpha_low, per head type.
  const trained = configs.filter((c) => c.kind === "train");
  if (trained.length > 0) {
    const { classes, low } = trainBound(s);
    const metric = verificationMetric(
      s,
      heldOutTarMetric(numberSetting(s, "testIds"), numberSetting(s, "imagesPerIdentity")),
    );
    const series = (type: "l2-softmax" | "unit-w") =>
      trained.filter((c) => c.head.type === type && !c.head.learnAlpha).sort((a, b) => a.head.alpha - b.head.alpha);
    const trace = (type: "l2-softmax" | "unit-w", name: string) => {
      const rows = series(type);
      const st = rows.map((c) => stat(c.label, metric));
      return {
        type: "scatter",
        mode: "lines+markers",
        name,
        x: rows.map((c) => round(c.head.alpha / low, 3)),
        y: means(st),
        error_y: ciErrorBars(st),
      };
    };
    figures.push({
      name: "tar-vs-alpha",
      title: `Held-out ${metric} vs alpha / alpha_low`,
      figure: {
        data: [
          trace("l2-softmax", "L2-softmax (free W)"),
          trace("unit-w", "unit-norm W (NormFace s = alpha)"),
          {
            type: "scatter",
            mode: "lines",
            name: "alpha = alpha_low",
            x: [1, 1],
            y: [0, 1],
            line: { dash: "dot", color: "gray" },
          },
        ],
        layout: {
          title: {
            text: `${classes} training identities, alpha_low(${classes}, 0.9) = ${low.toFixed(2)}: held-out ${metric} (mean, 95 % CI over seeds)`,
          },
          xaxis: logAxis("alpha / alpha_low"),
          yaxis: { title: { text: metric }, range: [0, 1.02] },
          height: 400,
        },
      },
    });
    figures.push(
      metricBars(analysis, "effective_scale", {
        name: "effective-scale",
        title: "Effective scale alpha |W| at the end of training",
        labels: trained.map((c) => c.label),
      }),
    );
    const learned = results.filter((r) => r.config.kind === "train" && r.config.head.learnAlpha);
    if (learned.length > 0) {
      figures.push({
        name: "trainable-alpha",
        title: "Trainable alpha during training",
        figure: {
          data: learned.map((r) => {
            const t = (r.result.extra?.alphaTrace ?? []) as number[][];
            return {
              type: "scatter",
              mode: "lines",
              name: `${r.config.label} seed ${r.seed}`,
              x: t.map((p) => p[0]),
              y: t.map((p) => p[1]),
            };
          }),
          layout: {
            title: { text: `Where a trainable alpha goes (alpha_low = ${low.toFixed(2)})` },
            xaxis: { title: { text: "step" } },
            yaxis: { title: { text: "alpha" } },
            height: 340,
          },
        },
      });
    }
    tables.push(
      statisticsTable(
        analysis,
        [metric, "auc", "acc_10fold", "train_target_probability", "final_alpha", "effective_scale", "final_loss"],
        {
          name: "training",
          title: `Training on ${classes} identities (alpha_low = ${low.toFixed(2)}): held-out verification on all pairs, mean ± std [95 % CI] over seeds`,
          labels: trained.map((c) => c.label),
        },
      ),
    );
  }
  for (const n of new Set(results.flatMap((r) => (r.result.extra?.notes ?? []) as string[]))) notes.push(n);
  return { tables, figures, notes };
}

/** The full preset (the paper preset changes its scale). */
const FULL = {
  seed: 1,
  seeds: 3,
  freeClasses: [10, 100, 1000],
  freeAlphas: [1, 2, 4, 8, 16, 32],
  freeDim: 64,
  freeSteps: 400,
  freeLr: 0.05,
  dataSeed: 7,
  trainIds: 1000,
  testIds: 200,
  imagesPerIdentity: 6,
  imageSize: 32,
  trainAlphas: [2, 4, 10, 32],
  unitWAlphas: [4, 16],
  trainableInits: [1],
  backbone: "lenet-small",
  embeddingDim: 64,
  steps: 1000,
  batchSize: 64,
  lr: 0.1,
};

export const alphaBound: Ablation<AlphaBoundConfig> = {
  name: "alpha-bound",
  title: "L2-softmax: the lower bound on alpha",
  claim:
    "Ranjan et al. (L2-softmax, 2017): the feature scale alpha must exceed alpha_low(C, p) = log(p (C-2)/(1-p)) for the target class to reach probability p; below it training fails to converge well, above it verification saturates.",
  presets: {
    smoke: {
      seed: 1,
      seeds: 2,
      freeClasses: [10, 100],
      freeAlphas: [1, 16],
      freeDim: 16,
      freeSteps: 60,
      freeLr: 0.1,
      dataSeed: 7,
      trainIds: 30,
      testIds: 20,
      imagesPerIdentity: 4,
      imageSize: 32,
      trainAlphas: [1, 16],
      unitWAlphas: [1],
      trainableInits: [],
      backbone: "mlp",
      embeddingDim: 16,
      steps: 30,
      batchSize: 64,
      lr: 0.05,
    },
    full: FULL,
    // the L2-softmax paper's training set is not in shared/research/papers.md (1.3: NOT FOUND): sized like
    // the CASIA-WebFace runs of the papers it is compared with (papers.md 3.1, 6.1): 10,572 identities,
    // ResNet50 (iResNet-50), 512-D, 112x112, batch 512, lr 0.1, 32K steps; alpha_low(10572, 0.9) = 11.5
    paper: {
      ...FULL,
      freeClasses: [10, 100, 1000, 10572],
      freeDim: 512,
      trainIds: 10572,
      imageSize: 112,
      trainAlphas: [2, 4, 12, 32],
      backbone: "iresnet50",
      embeddingDim: 512,
      steps: 32000,
      batchSize: 512,
    },
  },
  describe: {
    seed: "first seed (initialisation and data order derive from the seed alone)",
    seeds: "seeds per configuration (paired across arms)",
    freeClasses: "class counts C of the free-embedding runs",
    freeAlphas: "alphas of the free-embedding runs",
    freeDim: "feature dimension D of the free-embedding runs",
    freeSteps: "Adam steps per free-embedding run",
    freeLr: "Adam learning rate of the free-embedding runs",
    dataSeed: "seed of the synthetic identities (the same data for every seed)",
    trainIds:
      "training identities C of the training runs (alpha_low is computed for it; with --data: the data set's count)",
    testIds: "held-out synthetic identities (verification on all their pairs; with --data the .bin sets' pairs)",
    imagesPerIdentity: "images per identity",
    imageSize: "image size in pixels (with --data the images are resized to it)",
    trainAlphas: "fixed alphas of L2-softmax (free W)",
    unitWAlphas: "alphas of the unit-norm-W arm (NormFace at s = alpha)",
    trainableInits: "initial values of a trainable alpha (empty: none)",
    backbone: "lenet-small | lenet++ | iresnet-small | iresnet50 | mlp",
    embeddingDim: "embedding size of the training runs",
    steps: "SGD steps per training run (warm-up 5 %, cosine decay)",
    batchSize: "batch size",
    lr: "base SGD learning rate (momentum 0.9, weight decay 5e-4)",
  },
  comparisons,
  grid,
  async runOne(config, ctx) {
    return config.kind === "free"
      ? freeEmbedding(config, ctx.settings, ctx)
      : trainIdentities(config, ctx.settings, ctx);
  },
  summarize,
};
