/**
 * margins (ArcFace, Deng et al. 2019, Table 2 and Fig. 4 at toy scale): softmax, NormFace (s = 64 and
 * s = 20), SphereFace, CosFace, ArcFace and a combined margin trained on MNIST with 2-D features;
 * the 2-D test features per loss, the target logit against the angle theta for each head (computed
 * by the heads themselves, on a unit feature at angle theta from its class weight), and the accuracy.
 */
import { tf } from "../src/backend";
import { ArcFace } from "../src/losses/arcface";
import { CombinedMargin } from "../src/losses/combined-margin";
import { CosFace } from "../src/losses/cosface";
import type { Head } from "../src/losses/head";
import { NormFace } from "../src/losses/normface";
import { Softmax } from "../src/losses/softmax";
import { SphereFace } from "../src/losses/sphereface";
import { evaluateClosedSet, fit, MNIST_NORMALIZE, makeBackbone, mnistSplit, round, sampleIndices } from "./common";
import { checkMnistSplit } from "./mnist-data";
import { numberSetting, numbersSetting, stringsSetting } from "./settings";
import type { Ablation, Config, ResultOf, Settings, Summary } from "./types";

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

export interface MarginsConfig extends Config {
  loss: LossName;
  /** The head's logit scale (1 for softmax and SphereFace, whose features are not normalised). */
  s: number;
  m: number;
  m1: number;
  m2: number;
  m3: number;
  embeddingDim: number;
  seed: number;
}

/** Builds the head of a configuration (numClasses C, embedding D). */
export function makeHead(c: MarginsConfig, numClasses: number, extra: { initialWeight?: number[][] } = {}): Head {
  const common = { numClasses, embeddingDim: c.embeddingDim, seed: c.seed, onWarning: () => undefined, ...extra };
  switch (c.loss) {
    case "softmax":
      return new Softmax({ ...common });
    case "normface-s64":
    case "normface-s20":
      return new NormFace({ ...common, s: c.s });
    case "sphereface":
      return new SphereFace({ ...common, m: c.m });
    case "cosface":
      return new CosFace({ ...common, s: c.s, m: c.m });
    case "arcface":
      return new ArcFace({ ...common, s: c.s, m: c.m });
    case "combined":
      return new CombinedMargin({ ...common, s: c.s, m1: c.m1, m2: c.m2, m3: c.m3 });
  }
  throw new Error(`loss = "${String(c.loss)}" is not valid: allowed are ${LOSSES.join(", ")}.`);
}

/**
 * The head's target logit divided by its scale, for a unit 2-D feature at angle theta from its class
 * weight (W = identity), theta in [0, pi]: ArcFace's Fig. 4 ("target logit" curves), from the heads' code.
 */
export function targetLogitCurve(c: MarginsConfig, thetas: number[]): number[] {
  const head = makeHead({ ...c, embeddingDim: 2 }, 2, {
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
      return target.map((v) => v / c.s);
    });
  } finally {
    head.dispose();
  }
}

function grid(s: Settings): MarginsConfig[] {
  const seed = numberSetting(s, "seed");
  const embeddingDim = numberSetting(s, "embeddingDim");
  const scale = numberSetting(s, "s");
  const [m1, m2, m3] = numbersSetting(s, "combined");
  const losses = stringsSetting(s, "losses");
  checkMnistSplit(numberSetting(s, "trainPerClass"), numberSetting(s, "testPerClass"));
  return losses.map((loss) => {
    if (!(LOSSES as readonly string[]).includes(loss))
      throw new Error(`losses contains "${loss}": allowed are ${LOSSES.join(", ")}.`);
    const base = { label: loss, loss: loss as LossName, embeddingDim, seed, s: scale, m: 0, m1: 1, m2: 0, m3: 0 };
    switch (loss as LossName) {
      case "softmax":
        return { ...base, s: 1 };
      case "normface-s64":
        return { ...base, s: 64 };
      case "normface-s20":
        return { ...base, s: 20 };
      case "sphereface":
        return { ...base, s: 1, m: numberSetting(s, "sphereM") };
      case "cosface":
        return { ...base, m: numberSetting(s, "cosfaceM") };
      case "arcface":
        return { ...base, m: numberSetting(s, "arcfaceM") };
      case "combined":
        return { ...base, m1, m2, m3 };
    }
    return base;
  });
}

function summarize(results: Array<ResultOf<MarginsConfig>>, s: Settings): Summary {
  const figures: Summary["figures"] = [];
  const palette = [
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
  // 2-D features: one subplot per loss, colour per digit.
  const n = results.length;
  const cols = Math.min(4, n);
  const rows = Math.ceil(n / cols);
  const traces: unknown[] = [];
  const annotations: unknown[] = [];
  results.forEach((r, k) => {
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
        marker: { size: 3, color: palette[digit] },
        xaxis: `x${axis}`,
        yaxis: `y${axis}`,
      });
    }
    annotations.push({
      text: `${r.config.label} (${(r.result.metrics.test_accuracy * 100).toFixed(1)}%)`,
      xref: `x${axis} domain`,
      yref: `y${axis} domain`,
      x: 0.5,
      y: 1.12,
      showarrow: false,
    });
  });
  figures.push({
    name: "features-2d",
    title: "2-D MNIST test features per loss",
    figure: {
      data: traces,
      layout: {
        grid: { rows, columns: cols, pattern: "independent" },
        annotations,
        height: 300 * rows,
        title: { text: "2-D features (test digits) per loss" },
        margin: { t: 70 },
      },
    },
  });
  // Target logit vs angle.
  const thetas = Array.from({ length: 91 }, (_, i) => (i * Math.PI) / 90);
  figures.push({
    name: "target-logit",
    title: "Target logit / s vs the angle to the class weight",
    figure: {
      data: results.map((r) => ({
        type: "scatter",
        mode: "lines",
        name: r.config.label,
        x: thetas.map((t) => round((t * 180) / Math.PI, 1)),
        y: targetLogitCurve(r.config, thetas).map((v) => round(v, 4)),
      })),
      layout: {
        title: { text: "Target logit (divided by s) vs theta" },
        xaxis: { title: { text: "theta (degrees)" } },
        yaxis: { title: { text: "target logit / s" } },
        height: 400,
      },
    },
  });
  figures.push({
    name: "accuracy",
    title: "MNIST test accuracy per loss",
    figure: {
      data: [
        {
          type: "bar",
          x: results.map((r) => r.config.label),
          y: results.map((r) => round(r.result.metrics.test_accuracy)),
        },
      ],
      layout: {
        title: { text: `Test accuracy, ${s.embeddingDim}-D features` },
        yaxis: { title: { text: "accuracy" }, range: [0, 1] },
        height: 340,
      },
    },
  });
  const table = results.map((r) => ({
    loss: r.config.label,
    s: r.config.s,
    margin: r.config.loss === "combined" ? `(${r.config.m1}, ${r.config.m2}, ${r.config.m3})` : r.config.m || "",
    test_accuracy: round(r.result.metrics.test_accuracy),
    mean_norm: round(r.result.metrics.mean_feature_norm, 3),
    intra_angle_deg: round(r.result.metrics.intra_angle_deg, 2),
    inter_angle_deg: round(r.result.metrics.inter_angle_deg, 2),
    final_loss: round(r.result.metrics.final_loss),
    seconds: round(r.seconds, 1),
  }));
  const notes: string[] = [];
  const acc = (name: string) => results.find((r) => r.config.loss === name)?.result.metrics.test_accuracy;
  const a = acc("arcface");
  const sm = acc("softmax");
  const n64 = acc("normface-s64");
  const n20 = acc("normface-s20");
  if (a !== undefined && sm !== undefined)
    notes.push(
      `ArcFace ${(a * 100).toFixed(1)}% vs softmax ${(sm * 100).toFixed(1)}% (paper, CASIA/LFW: 99.53 vs 99.08).`,
    );
  if (n64 !== undefined && n20 !== undefined)
    notes.push(
      `NormFace s=64 ${(n64 * 100).toFixed(1)}% vs s=20 ${(n20 * 100).toFixed(1)}% (paper: s=64 hurts without a margin, 98.56 vs 99.20 on LFW).`,
    );
  return {
    tables: [{ name: "accuracy", title: "Margins on MNIST: accuracy and angle statistics per loss", rows: table }],
    figures,
    notes,
  };
}

/** Mean angle of test features to their class centre, and mean over classes of the smallest angle between class centres (ArcFace Table 3's Intra/Inter). */
function angleStats(
  features: Float32Array[],
  labels: Int32Array,
  numClasses: number,
): { intra: number; inter: number } {
  const d = features[0].length;
  const unit = features.map((f) => {
    const n = Math.hypot(...f) || 1;
    return Array.from(f, (v) => v / n);
  });
  const centres = Array.from({ length: numClasses }, () => new Array<number>(d).fill(0));
  for (let i = 0; i < unit.length; i++) {
    for (let k = 0; k < d; k++) centres[labels[i]][k] += unit[i][k];
  }
  const cn = centres.map((c) => {
    const n = Math.hypot(...c) || 1;
    return c.map((v) => v / n);
  });
  const ang = (a: number[], b: number[]) =>
    Math.acos(
      Math.max(
        -1,
        Math.min(
          1,
          a.reduce((s, v, k) => s + v * b[k], 0),
        ),
      ),
    );
  let intra = 0;
  for (let i = 0; i < unit.length; i++) intra += ang(unit[i], cn[labels[i]]);
  let inter = 0;
  for (let a = 0; a < numClasses; a++) {
    let best = Math.PI;
    for (let b = 0; b < numClasses; b++) if (a !== b) best = Math.min(best, ang(cn[a], cn[b]));
    inter += best;
  }
  const deg = 180 / Math.PI;
  return { intra: (intra / unit.length) * deg, inter: (inter / numClasses) * deg };
}

export const margins: Ablation<MarginsConfig> = {
  name: "margins",
  title: "Margin losses on MNIST with 2-D features",
  claim:
    "ArcFace (Deng et al. 2019): with normalised weights and features, an additive angular margin gives more discriminative features than softmax, NormFace, SphereFace's multiplicative and CosFace's additive cosine margin (Table 2: ArcFace 99.53 / CosFace 99.51 / SphereFace 99.11 / softmax 99.08 / NormFace s=64 98.56 on LFW); Fig. 4 compares the target-logit curves.",
  presets: {
    smoke: {
      seed: 1,
      losses: [...LOSSES],
      backbone: "mlp",
      embeddingDim: 2,
      s: 16,
      sphereM: 4,
      cosfaceM: 0.35,
      arcfaceM: 0.5,
      combined: [1, 0.3, 0.2],
      trainPerClass: 100,
      testPerClass: 40,
      steps: 60,
      batchSize: 64,
      lr: 0.05,
      plotPoints: 400,
    },
    full: {
      seed: 1,
      losses: [...LOSSES],
      backbone: "mlp",
      embeddingDim: 2,
      s: 16,
      sphereM: 4,
      cosfaceM: 0.35,
      arcfaceM: 0.5,
      combined: [1, 0.3, 0.2],
      trainPerClass: 600,
      testPerClass: 200,
      steps: 2000,
      batchSize: 64,
      lr: 0.05,
      plotPoints: 1500,
    },
  },
  describe: {
    seed: "seed of initialisation and data order",
    losses: `which losses (${LOSSES.join(", ")})`,
    backbone: "mlp | lenet-small | lenet++",
    embeddingDim: "feature dimension (2 for the plots)",
    s: "scale of CosFace, ArcFace and the combined margin (NormFace uses 64 and 20)",
    sphereM: "SphereFace's integer multiplicative margin (Caffe lambda annealing)",
    cosfaceM: "CosFace's additive cosine margin",
    arcfaceM: "ArcFace's additive angular margin (radians)",
    combined: "combined margin m1,m2,m3: cos(m1 theta + m2) - m3",
    trainPerClass: "MNIST training images per digit",
    testPerClass: "MNIST test images per digit (held out)",
    steps: "SGD steps per loss",
    batchSize: "batch size",
    lr: "SGD learning rate (momentum 0.9, weight decay 5e-4)",
    plotPoints: "test features drawn per loss",
  },
  grid,
  async runOne(config, ctx) {
    const s = ctx.settings;
    const { train, test } = mnistSplit(numberSetting(s, "trainPerClass"), numberSetting(s, "testPerClass"));
    const backbone = makeBackbone(String(s.backbone), config.embeddingDim, config.seed);
    const head = makeHead(config, 10);
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
        },
        ctx,
      );
      const { accuracy, embeddings } = await evaluateClosedSet(backbone, head, test, MNIST_NORMALIZE);
      const { intra, inter } = angleStats(embeddings.single, embeddings.labels, 10);
      const idx = sampleIndices(embeddings.single.length, numberSetting(s, "plotPoints"), config.seed);
      const features =
        config.embeddingDim >= 2
          ? idx.map((i) => [embeddings.single[i][0], embeddings.single[i][1], embeddings.labels[i]])
          : [];
      const meanNorm = embeddings.norms.reduce((a, b) => a + b, 0) / embeddings.norms.length;
      return {
        metrics: {
          test_accuracy: accuracy,
          final_loss: fitted.finalLoss,
          mean_feature_norm: meanNorm,
          intra_angle_deg: intra,
          inter_angle_deg: inter,
          train_seconds: fitted.seconds,
        },
        extra: { features },
      };
    } finally {
      head.dispose();
      backbone.dispose();
    }
  },
  summarize,
};
