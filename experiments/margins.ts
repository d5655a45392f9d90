/**
 * margins (ArcFace, Deng et al. 2019, Table 2, Fig. 4 and the toy Fig. 3): softmax, NormFace
 * (s = 64 and s = 20), SphereFace, CosFace, ArcFace and a combined margin.
 * - "verify" configurations: a CNN (iResNet) with D-dimensional embeddings trained on synthetic
 *   identities, scored on all pairs of held-out identities (TAR at FAR, 10-fold accuracy); the
 *   paper's ordering is tested there, paired over seeds, verdicts computed.
 * - "picture" configurations: MNIST with 2-D features (the paper's toy setting), with margins that
 *   fit 10 classes 36 degrees apart (CosFace's admissible m <= 1 - cos(36 deg) = 0.19; ArcFace's
 *   m well below the 36 degrees between neighbours); 2-D features and closed-set accuracy only.
 * The target-logit curves (Fig. 4) are computed by the heads themselves.
 */
import { tf } from "../src/backend";
import { detectCollapse } from "../src/eval/collapse";
import { angleStatistics, toRows } from "../src/eval/separability";
import { meanPairwiseCosine } from "../src/eval/verification";
import type { Head } from "../src/losses/head";
import { CAFFE_LAMBDA, SphereFace } from "../src/losses/sphereface";
import { formatStatistic, statisticsTable } from "./analysis";
import {
  createQuietHead,
  evaluateClosedSet,
  fit,
  fitWithSettings,
  heldOutResult,
  heldOutTarMetric,
  type LibrarySpecPart,
  lambdaGammaReachingFloorAt,
  MNIST_NORMALIZE,
  makeBackbone,
  mnistSplit,
  round,
  sampleIndices,
} from "./common";
import { evaluateVerification, experimentData, verificationMetric } from "./data-source";
import { metricBars, rocFigure } from "./figures";
import { checkMnistSplit } from "./mnist-data";
import { numberSetting, numbersSetting, stringsSetting } from "./settings";
import type { Ablation, Analysis, Comparison, Config, ResultOf, Settings, Summary } from "./types";

type Tensor1D = import("@tensorflow/tfjs-node").Tensor1D;
type Tensor2D = import("@tensorflow/tfjs-node").Tensor2D;

export const LOSSES = [
  "softmax",
  "normface-s64",
  "normface-s20",
  "sphereface",
  "cosface",
  "arcface",
  "combined",
] as const;
export type LossName = (typeof LOSSES)[number];

/** A head as plain data (params head.type, head.s, ...: never the name of a metric such as `loss`). */
export interface HeadSpec {
  type: LossName;
  /** The logit scale (1 for softmax and SphereFace, whose features are not normalised). */
  s: number;
  m: number;
  m1: number;
  m2: number;
  m3: number;
  /**
   * SphereFace's lambda annealing rate: the Caffe schedule lambda = max(5, 1000 / (1 + gamma iter))
   * with gamma rescaled so that lambda reaches its floor at half the run (Caffe's 0.12 reaches it
   * at step 1,658, after these runs end); 0 for the other heads.
   */
  lambdaGamma: number;
}

export interface MarginsConfig extends Config {
  kind: "verify" | "picture";
  head: HeadSpec;
  embeddingDim: number;
}

/** The loss library's head (src/losses/create.ts) of each loss name, from the configuration's spec. */
const LIBRARY_SPEC: Record<LossName, (h: HeadSpec) => LibrarySpecPart> = {
  softmax: () => ({ type: "softmax" }),
  "normface-s64": (h) => ({ type: "normface", s: h.s }),
  "normface-s20": (h) => ({ type: "normface", s: h.s }),
  sphereface: (h) => ({
    type: "sphereface",
    m: h.m,
    lambda: h.lambdaGamma > 0 ? { ...CAFFE_LAMBDA, gamma: h.lambdaGamma } : undefined,
  }),
  cosface: (h) => ({ type: "cosface", s: h.s, m: h.m }),
  arcface: (h) => ({ type: "arcface", s: h.s, m: h.m }),
  combined: (h) => ({ type: "combined-margin", s: h.s, m1: h.m1, m2: h.m2, m3: h.m3 }),
};

/** Builds the head of a spec (numClasses C, embedding D). */
function makeHead(
  h: HeadSpec,
  o: { numClasses: number; embeddingDim: number; seed: number; initialWeight?: number[][] },
): Head {
  const spec = LIBRARY_SPEC[h.type];
  if (!spec) throw new Error(`head.type = "${String(h.type)}" is not valid: allowed are ${LOSSES.join(", ")}.`);
  return createQuietHead(spec(h), o);
}

/**
 * The head's target logit divided by its scale, for a unit 2-D feature at angle theta from its class
 * weight (W = identity), theta in [0, pi]: ArcFace's Fig. 4 ("target logit" curves), from the heads' code.
 */
export function targetLogitCurve(h: HeadSpec, thetas: number[]): number[] {
  const head = makeHead(h, {
    numClasses: 2,
    embeddingDim: 2,
    seed: 0,
    initialWeight: [
      [1, 0],
      [0, 1],
    ],
  });
  try {
    if (head instanceof SphereFace) head.setStep?.(1_000_000); // lambda fully annealed
    return tf.tidy(() => {
      const x = tf.tensor2d(
        thetas.flatMap((t) => [Math.cos(t), Math.sin(t)]),
        [thetas.length, 2],
      ) as Tensor2D;
      const labels = tf.zeros([thetas.length], "int32") as Tensor1D;
      const logits = head.logits(x, labels);
      const target = Array.from(logits.slice([0, 0], [thetas.length, 1]).dataSync());
      return target.map((v) => v / h.s);
    });
  } finally {
    head.dispose();
  }
}

/** The head spec of a loss with a kind's margins (`prefix` "" for verify, "picture" for the 2-D run). */
function headSpec(loss: LossName, s: Settings, prefix: "" | "picture"): HeadSpec {
  const key = (k: string) => (prefix ? `${prefix}${k[0].toUpperCase()}${k.slice(1)}` : k);
  const scale = numberSetting(s, key("s"));
  const base: HeadSpec = { type: loss, s: scale, m: 0, m1: 1, m2: 0, m3: 0, lambdaGamma: 0 };
  switch (loss) {
    case "softmax":
      return { ...base, s: 1 };
    case "normface-s64":
      return { ...base, s: 64 };
    case "normface-s20":
      return { ...base, s: 20 };
    case "sphereface":
      return {
        ...base,
        s: 1,
        m: numberSetting(s, key("sphereM")),
        lambdaGamma: lambdaGammaReachingFloorAt(numberSetting(s, key("steps")) / 2),
      };
    case "cosface":
      return { ...base, m: numberSetting(s, key("cosfaceM")) };
    case "arcface":
      return { ...base, m: numberSetting(s, key("arcfaceM")) };
    case "combined": {
      const [m1, m2, m3] = numbersSetting(s, key("combined"));
      return { ...base, m1, m2, m3 };
    }
  }
  return base;
}

function checkLosses(key: string, names: string[]): LossName[] {
  for (const n of names)
    if (!(LOSSES as readonly string[]).includes(n))
      throw new Error(`${key} contains "${n}": allowed are ${LOSSES.join(", ")}.`);
  return names as LossName[];
}

function grid(s: Settings): MarginsConfig[] {
  const verify = checkLosses("losses", stringsSetting(s, "losses")).map(
    (loss): MarginsConfig => ({
      label: loss,
      kind: "verify",
      head: headSpec(loss, s, ""),
      embeddingDim: numberSetting(s, "embeddingDim"),
    }),
  );
  const pictureLosses = checkLosses("pictureLosses", stringsSetting(s, "pictureLosses"));
  if (pictureLosses.length > 0)
    checkMnistSplit(numberSetting(s, "pictureTrainPerClass"), numberSetting(s, "pictureTestPerClass"));
  const picture = pictureLosses.map(
    (loss): MarginsConfig => ({
      label: `2d ${loss}`,
      kind: "picture",
      head: headSpec(loss, s, "picture"),
      embeddingDim: 2,
    }),
  );
  return [...verify, ...picture];
}

/** The comparisons' metric: TAR at the lowest FAR the held-out impostors support (with --eval: mean/acc). */
export function comparisonMetric(s: Settings): string {
  return verificationMetric(s, heldOutTarMetric(numberSetting(s, "testIds"), numberSetting(s, "imagesPerIdentity")));
}

/** ArcFace Table 2 (CASIA, ResNet50; LFW / CFP-FP / AgeDB-30 accuracy %), shared/research/papers.md section 3.2. */
export const PAPER_TABLE2: Record<LossName, string> = {
  softmax: "99.08 / 94.39 / 92.33",
  "normface-s64": "98.56 / 89.79 / 88.72",
  "normface-s20": "99.20 / 94.61 / 92.65 (TPAMI)",
  sphereface: "99.11 / 94.38 / 91.70 (m = 1.35, arccos)",
  cosface: "99.51 / 95.44 / 94.56 (m = 0.35)",
  arcface: "99.53 / 95.56 / 95.15 (m = 0.5)",
  combined: "99.48 / 95.12 / 94.38 (1, 0.3, 0.2)",
};

const PAPER_SOURCE = "ArcFace Table 2, CASIA/ResNet50, LFW/CFP-FP/AgeDB-30 %";

/** The orderings Table 2 reports, among the verify configurations present. */
function comparisons(s: Settings, configs: MarginsConfig[]): Comparison[] {
  const metric = comparisonMetric(s);
  const have = new Set(configs.filter((c) => c.kind === "verify").map((c) => c.label));
  const pairs: Array<[LossName, LossName, "greater" | "less", string]> = [
    ["arcface", "softmax", "greater", "an additive angular margin beats softmax"],
    ["cosface", "softmax", "greater", "an additive cosine margin beats softmax"],
    ["sphereface", "softmax", "greater", "a multiplicative angular margin beats softmax"],
    ["normface-s64", "softmax", "less", "normalisation with s = 64 and no margin is worse than softmax"],
    ["normface-s20", "normface-s64", "greater", "a smaller scale (s = 20) recovers normalised softmax"],
    ["arcface", "sphereface", "greater", "ArcFace beats SphereFace"],
    ["arcface", "cosface", "greater", "ArcFace beats CosFace (by 0.02 on LFW)"],
    ["arcface", "combined", "greater", "ArcFace upper-bounds the combined margin"],
  ];
  return pairs
    .filter(([t, b]) => have.has(t) && have.has(b))
    .map(([treatment, baseline, expected, claim]) => ({
      name: `${treatment}-vs-${baseline}`,
      claim,
      metric,
      baseline,
      treatment,
      expected,
      paper: `${treatment} ${PAPER_TABLE2[treatment].split(" (")[0]} vs ${baseline} ${PAPER_TABLE2[baseline].split(" (")[0]} (${PAPER_SOURCE})`,
    }));
}

const PALETTE = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

/** 2-D test features per picture loss (the first seed), one subplot each, colour per digit. */
function featuresFigure(results: Array<ResultOf<MarginsConfig>>): Summary["figures"][number] | undefined {
  const firstSeed = results[0]?.seed;
  const shown = results.filter((r) => r.config.kind === "picture" && r.seed === firstSeed);
  if (shown.length === 0) return undefined;
  const cols = Math.min(4, shown.length);
  const rows = Math.ceil(shown.length / cols);
  const traces: unknown[] = [];
  const annotations: unknown[] = [];
  shown.forEach((r, k) => {
    const pts = (r.result.extra?.features ?? []) as Array<[number, number, number]>;
    const axis = k === 0 ? "" : String(k + 1);
    for (let digit = 0; digit < 10; digit++) {
      const mine = pts.filter((p) => p[2] === digit);
      traces.push({
        type: "scattergl",
        mode: "markers",
        name: String(digit),
        legendgroup: String(digit),
        showlegend: k === 0,
        x: mine.map((p) => round(p[0], 3)),
        y: mine.map((p) => round(p[1], 3)),
        marker: { size: 3, color: PALETTE[digit] },
        xaxis: `x${axis}`,
        yaxis: `y${axis}`,
      });
    }
    const acc = r.result.metrics.test_accuracy;
    annotations.push({
      text: `${r.config.label} (${Number.isFinite(acc) ? `${(acc * 100).toFixed(1)}%` : "diverged"})`,
      xref: `x${axis} domain`,
      yref: `y${axis} domain`,
      x: 0.5,
      y: 1.12,
      showarrow: false,
    });
  });
  return {
    name: "features-2d",
    title: "2-D MNIST test features per loss",
    figure: {
      data: traces,
      layout: {
        grid: { rows, columns: cols, pattern: "independent" },
        annotations,
        height: 300 * rows,
        title: { text: `2-D features (test digits) per loss, seed ${firstSeed}` },
        margin: { t: 70 },
      },
    },
  };
}

function targetLogitFigure(configs: MarginsConfig[]): Summary["figures"][number] {
  const thetas = Array.from({ length: 91 }, (_, i) => (i * Math.PI) / 90);
  return {
    name: "target-logit",
    title: "Target logit / s vs the angle to the class weight",
    figure: {
      data: configs.map((c) => ({
        type: "scatter",
        mode: "lines",
        name: c.label,
        line: c.kind === "picture" ? { dash: "dot" } : {},
        x: thetas.map((t) => round((t * 180) / Math.PI, 1)),
        y: targetLogitCurve(c.head, thetas).map((v) => round(v, 4)),
      })),
      layout: {
        title: { text: "Target logit (divided by s) vs theta (dotted: the 2-D picture's margins)" },
        xaxis: { title: { text: "theta (degrees)" } },
        yaxis: { title: { text: "target logit / s" } },
        height: 400,
      },
    },
  };
}

function summarize(results: Array<ResultOf<MarginsConfig>>, s: Settings, analysis: Analysis): Summary {
  const configs = [...new Map(results.map((r) => [r.config.label, r.config])).values()];
  const verify = configs.filter((c) => c.kind === "verify").map((c) => c.label);
  const picture = configs.filter((c) => c.kind === "picture").map((c) => c.label);
  const metric = comparisonMetric(s);
  const tars = ["tar_far_1e-2", "tar_far_1e-3", "tar_far_1e-4"].filter((m) =>
    analysis.configs.some((c) => c.metrics[m]),
  );
  const figures: Summary["figures"] = [];
  if (verify.length > 0) {
    figures.push(
      metricBars(analysis, metric, {
        name: "tar-held-out",
        title: `Held-out ${metric} per loss`,
        labels: verify,
        yTitle: metric,
        range: [0, 1],
      }),
      rocFigure(results, { name: "roc-held-out", title: "ROC on all held-out pairs", labels: verify }),
    );
  }
  const features = featuresFigure(results);
  if (features) figures.push(features);
  figures.push(targetLogitFigure(configs));
  if (picture.length > 0)
    figures.push(
      metricBars(analysis, "test_accuracy", {
        name: "accuracy-2d",
        title: "2-D MNIST closed-set accuracy per loss",
        labels: picture,
        range: [0, 1],
      }),
    );
  const paper = verify.map((label) => {
    const c = analysis.configs.find((x) => x.label === label);
    const m = c?.metrics[metric];
    const head = configs.find((x) => x.label === label)?.head;
    return {
      loss: label,
      margin: head ? (head.type === "combined" ? `(${head.m1}, ${head.m2}, ${head.m3})` : head.m || "") : "",
      s: head?.s ?? null,
      paper_lfw_cfp_agedb: PAPER_TABLE2[label as LossName],
      [`ours_${metric}`]: formatStatistic(m),
      seeds_used: m?.n ?? 0,
      collapsed: c?.collapsed.length ?? 0,
    };
  });
  const tables = [];
  if (verify.length > 0)
    tables.push(
      {
        name: "paper-vs-ours",
        title: `${PAPER_SOURCE} beside ours (held-out ${metric}, mean ± std [95 % CI] over seeds)`,
        rows: paper,
      },
      statisticsTable(
        analysis,
        [...tars, "auc", "acc_10fold", "w_inter_deg", "w_to_centre_deg", "intra_deg", "inter_deg", "final_loss"],
        {
          name: "held-out",
          title:
            "Held-out verification on all pairs and ArcFace Table 3's angle statistics (training images), over seeds",
          labels: verify,
        },
      ),
    );
  if (picture.length > 0)
    tables.push(
      statisticsTable(analysis, ["test_accuracy", "mean_feature_norm", "final_loss"], {
        name: "picture-2d",
        title: "2-D MNIST picture: closed-set accuracy, mean ± std [95 % CI] over seeds",
        labels: picture,
      }),
    );
  const notes: string[] = [];
  const unreported = new Set(results.flatMap((r) => (r.result.extra?.notes ?? []) as string[]));
  for (const n of unreported) notes.push(n);
  return { tables, figures, notes };
}

async function runVerify(config: MarginsConfig, ctx: Parameters<Ablation<MarginsConfig>["runOne"]>[1]) {
  const s = ctx.settings;
  const data = await experimentData(s, numberSetting(s, "dataSeed"), { degradedFraction: 0 });
  const backbone = makeBackbone(String(s.backbone), config.embeddingDim, ctx.seed, data.inputShape);
  const head = makeHead(config.head, {
    numClasses: data.train.numClasses,
    embeddingDim: config.embeddingDim,
    seed: ctx.seed,
  });
  try {
    const fitted = await fitWithSettings(s, { backbone, head, data: data.train, seed: ctx.seed }, ctx);
    const held = await evaluateVerification(backbone, data.test, {
      losses: fitted.lossHistory.map((h) => h.loss),
      seed: ctx.seed,
    });
    // ArcFace Table 3 on the training images: W-EC, W-Inter, Intra, Inter (degrees)
    const { embeddings: trainEmb } = await evaluateClosedSet(backbone, head, data.trainSample);
    const angles = angleStatistics(
      trainEmb.single,
      trainEmb.labels,
      toRows(head.weight.dataSync(), config.embeddingDim),
    );
    return heldOutResult(held, fitted, {
      w_to_centre_deg: angles.degrees.wToCentre,
      w_inter_deg: angles.degrees.wInter,
      intra_deg: angles.degrees.intra,
      inter_deg: angles.degrees.inter,
    });
  } finally {
    head.dispose();
    backbone.dispose();
  }
}

async function runPicture(config: MarginsConfig, ctx: Parameters<Ablation<MarginsConfig>["runOne"]>[1]) {
  const s = ctx.settings;
  const { train, test } = mnistSplit(numberSetting(s, "pictureTrainPerClass"), numberSetting(s, "pictureTestPerClass"));
  const backbone = makeBackbone("mlp", 2, ctx.seed);
  const head = makeHead(config.head, { numClasses: 10, embeddingDim: 2, seed: ctx.seed });
  try {
    const fitted = await fit(
      {
        backbone,
        head,
        data: train,
        steps: numberSetting(s, "pictureSteps"),
        batchSize: numberSetting(s, "batchSize"),
        lr: numberSetting(s, "pictureLr"),
        seed: ctx.seed,
        normalize: MNIST_NORMALIZE,
      },
      ctx,
    );
    const { accuracy, embeddings } = await evaluateClosedSet(backbone, head, test, MNIST_NORMALIZE);
    const idx = sampleIndices(embeddings.single.length, numberSetting(s, "plotPoints"), ctx.seed);
    const features = idx.map((i) => [embeddings.single[i][0], embeddings.single[i][1], embeddings.labels[i]]);
    const meanNorm = embeddings.norms.reduce((a, b) => a + b, 0) / embeddings.norms.length;
    return {
      metrics: {
        test_accuracy: accuracy,
        final_loss: fitted.finalLoss,
        mean_feature_norm: meanNorm,
        train_seconds: fitted.seconds,
      },
      lossHistory: fitted.lossHistory,
      collapse: detectCollapse({
        losses: fitted.lossHistory.map((h) => h.loss),
        meanPairwiseCosine: meanPairwiseCosine(embeddings.single),
      }),
      extra: { features },
    };
  } finally {
    head.dispose();
    backbone.dispose();
  }
}

const shared = {
  seed: 1,
  dataSeed: 7,
  backbone: "iresnet-small",
  embeddingDim: 32,
  imageSize: 32,
  s: 32,
  sphereM: 4,
  cosfaceM: 0.35,
  arcfaceM: 0.5,
  combined: [1, 0.3, 0.2],
  batchSize: 64,
  lr: 0.1,
  pictureS: 16,
  pictureSphereM: 2,
  pictureCosfaceM: 0.1,
  pictureArcfaceM: 0.2,
  pictureCombined: [1, 0.1, 0.05],
  pictureLr: 0.05,
};

export const margins: Ablation<MarginsConfig> = {
  name: "margins",
  title: "Margin losses: held-out verification with a CNN, and the 2-D MNIST picture",
  claim:
    "ArcFace (Deng et al. 2019, Table 2, CASIA/ResNet50): an additive angular margin gives more discriminative features than softmax, NormFace, SphereFace's multiplicative and CosFace's additive cosine margin (LFW: ArcFace 99.53, CosFace 99.51, combined 99.48, NormFace s=20 99.20, SphereFace 99.11, softmax 99.08, NormFace s=64 98.56); Fig. 4 compares the target-logit curves.",
  presets: {
    smoke: {
      ...shared,
      seeds: 2,
      losses: ["softmax", "arcface"],
      pictureLosses: ["arcface"],
      backbone: "mlp",
      embeddingDim: 16,
      trainIds: 20,
      testIds: 20,
      imagesPerIdentity: 4,
      steps: 60,
      pictureTrainPerClass: 40,
      pictureTestPerClass: 20,
      pictureSteps: 25,
      plotPoints: 100,
    },
    full: {
      ...shared,
      seeds: 3,
      losses: [...LOSSES],
      pictureLosses: [...LOSSES],
      trainIds: 200,
      testIds: 100,
      imagesPerIdentity: 8,
      steps: 600,
      pictureTrainPerClass: 600,
      pictureTestPerClass: 200,
      pictureSteps: 600,
      plotPoints: 1500,
    },
    // ArcFace Table 2's setting (shared/research/papers.md 3.1-3.2): CASIA-WebFace's 10,572 identities,
    // ResNet50 (iResNet-50), 512-D, 112x112, s = 64, batch 512, lr 0.1, 32K iterations
    paper: {
      ...shared,
      seeds: 3,
      losses: [...LOSSES],
      pictureLosses: [...LOSSES],
      backbone: "iresnet50",
      embeddingDim: 512,
      imageSize: 112,
      s: 64,
      trainIds: 10572,
      testIds: 100,
      imagesPerIdentity: 8,
      steps: 32000,
      batchSize: 512,
      pictureTrainPerClass: 600,
      pictureTestPerClass: 200,
      pictureSteps: 600,
      plotPoints: 1500,
    },
  },
  describe: {
    seed: "first seed (initialisation and data order derive from the seed alone)",
    seeds: "seeds per configuration (paired across losses)",
    dataSeed: "seed of the synthetic identities (the same data for every seed)",
    losses: `losses of the held-out verification runs (${LOSSES.join(", ")})`,
    pictureLosses: "losses of the 2-D MNIST picture runs (empty: none)",
    backbone: "backbone of the verification runs: iresnet-small | iresnet50 | lenet-small | lenet++ | mlp",
    embeddingDim: "embedding dimension of the verification runs",
    imageSize: "image size in pixels (with --data the images are resized to it)",
    trainIds: "training identities (classes; with --data: the data set's count)",
    testIds: "held-out synthetic identities (verification on all their pairs; with --data the .bin sets' pairs)",
    imagesPerIdentity: "images per identity",
    s: "scale of CosFace, ArcFace and the combined margin (NormFace uses 64 and 20)",
    sphereM: "SphereFace's integer margin (Caffe lambda annealing, reaching its floor of 5 at half the steps)",
    cosfaceM: "CosFace's additive cosine margin",
    arcfaceM: "ArcFace's additive angular margin (radians)",
    combined: "combined margin m1,m2,m3: cos(m1 theta + m2) - m3",
    steps: "SGD steps of a verification run (warm-up 5 %, cosine decay)",
    batchSize: "batch size",
    lr: "base SGD learning rate of the verification runs (momentum 0.9, weight decay 5e-4)",
    pictureS: "scale of the 2-D picture's cosine heads",
    pictureSphereM: "SphereFace's margin in 2-D",
    pictureCosfaceM: "CosFace's margin in 2-D (admissible for 10 classes: <= 0.19)",
    pictureArcfaceM: "ArcFace's margin in 2-D (radians; neighbours are 0.63 apart)",
    pictureCombined: "combined margin in 2-D",
    pictureTrainPerClass: "MNIST training images per digit (2-D picture)",
    pictureTestPerClass: "MNIST test images per digit (2-D picture)",
    pictureSteps: "SGD steps of a 2-D picture run",
    pictureLr: "base learning rate of the 2-D picture runs",
    plotPoints: "test features drawn per 2-D loss",
  },
  grid,
  comparisons,
  runOne: (config, ctx) => (config.kind === "verify" ? runVerify(config, ctx) : runPicture(config, ctx)),
  summarize,
};
