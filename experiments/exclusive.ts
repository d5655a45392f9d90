/**
 * exclusive (RegularFace, Zhao, Xu, Cheng, CVPR 2019): the exclusive regulariser
 * L_r(W) = mean_i max_{j != i} cos(w_i, w_j) (weight lambda) on SphereFace, softmax + center loss,
 * CosFace and ArcFace, each with and without it, on the protocol: a CNN on synthetic identities,
 * held-out verification on all pairs, paired seeds, computed verdicts.
 * - SphereFace (m = 4) runs the Caffe lambda schedule with its rate rescaled so that lambda reaches
 *   its floor of 5 at half the run (as margins.ts does): the margin is active for the second half.
 *   Its regulariser is weighted as the official train_sphereface_exclusive.py: 15 x 5 / lambda.
 * - A sweep of the regulariser's weight on one base loss (softmax + center loss, the official code's
 *   main variant) traces verification and sep(W) against lambda.
 * - sep(W) (RegularFace's calculate_sep.py: mean nearest-other-class cosine of W) and its angle are
 *   reported beside verification, and the same for the feature centres (ArcFace's warning that W and
 *   the features separate differently).
 */

import { tf } from "../src/backend";
import { angleStatistics, centreSeparation, featureCentres, toRows } from "../src/eval/separability";
import { DEFAULT_FARS } from "../src/eval/verification";
import { exclusiveRegularization } from "../src/losses/exclusive";
import type { Head, Tensor2D } from "../src/losses/head";
import { CAFFE_LAMBDA, lambdaAt } from "../src/losses/sphereface";
import type { Regularizer } from "../src/train/trainer";
import { formatStatistic, statisticsTable } from "./analysis";
import {
  createQuietHead,
  evaluateClosedSet,
  fitWithSettings,
  heldOutResult,
  heldOutTarMetric,
  type LibrarySpecPart,
  lambdaGammaReachingFloorAt,
  makeBackbone,
  tarMetric,
} from "./common";
import { evaluateVerification, experimentData, verificationMetric } from "./data-source";
import { ciErrorBars, means, metricBars, rocFigure } from "./figures";
import { SoftmaxCenterHead } from "./heads";
import { numberSetting, numbersSetting, stringsSetting } from "./settings";
import type { Ablation, Analysis, Comparison, Config, ResultOf, RunContext, Settings, Summary } from "./types";

export const EXCLUSIVE_LOSSES = ["sphereface", "center", "cosface", "arcface"] as const;
export type BaseLoss = (typeof EXCLUSIVE_LOSSES)[number];

export interface ExclusiveConfig extends Config {
  loss: BaseLoss;
  /** The regulariser's weight lambda (0: without; SphereFace's is multiplied by 5 / lambda_sphere(step)). */
  exclusive: number;
  /** SphereFace's lambda annealing rate (0 for the other losses). */
  lambdaGamma: number;
}

const LABELS: Record<BaseLoss, string> = {
  sphereface: "SphereFace",
  center: "Softmax+Center",
  cosface: "CosFace",
  arcface: "ArcFace",
};

/** The configuration label of a loss at a regulariser weight. */
export const configLabel = (loss: BaseLoss, weight: number) => (weight > 0 ? `${loss}+excl${weight}` : loss);

/** The configuration's head: softmax + center loss is composed here (experiments/heads.ts), the others come from the loss library. */
function makeHead(c: ExclusiveConfig, C: number, D: number, seed: number, s: Settings): Head {
  if (c.loss === "center")
    return new SoftmaxCenterHead({ numClasses: C, embeddingDim: D, seed, lambda: numberSetting(s, "centerLambda") });
  const spec: LibrarySpecPart =
    c.loss === "sphereface"
      ? { type: "sphereface", m: numberSetting(s, "sphereM"), lambda: { ...CAFFE_LAMBDA, gamma: c.lambdaGamma } }
      : { type: c.loss, s: numberSetting(s, "s"), m: numberSetting(s, `${c.loss}M`) };
  return createQuietHead(spec, { numClasses: C, embeddingDim: D, seed });
}

/**
 * The exclusive term of a configuration. SphereFace's is scaled by 5 / lambda(iteration) as the
 * official code does (small while the softmax part dominates, the full weight once lambda is at its
 * floor); the trainer's step counts from 0 and SphereFace's iteration from 1.
 */
export function exclusiveRegularizer(c: ExclusiveConfig): Regularizer[] {
  if (c.exclusive <= 0) return [];
  const schedule = { ...CAFFE_LAMBDA, gamma: c.lambdaGamma };
  return [
    {
      name: "exclusive",
      weight: c.exclusive,
      fn: (w: Tensor2D, { step }) =>
        c.loss === "sphereface"
          ? tf.mul(exclusiveRegularization(w, { form: "dense" }), 5 / lambdaAt(schedule, step + 1))
          : exclusiveRegularization(w, { form: "dense" }),
    },
  ];
}

function checkLosses(names: string[]): BaseLoss[] {
  for (const n of names)
    if (!(EXCLUSIVE_LOSSES as readonly string[]).includes(n))
      throw new Error(`losses contains "${n}": allowed are ${EXCLUSIVE_LOSSES.join(", ")}.`);
  return names as BaseLoss[];
}

function grid(s: Settings): ExclusiveConfig[] {
  const gamma = lambdaGammaReachingFloorAt(numberSetting(s, "steps") / 2);
  const make = (loss: BaseLoss, weight: number): ExclusiveConfig => ({
    label: configLabel(loss, weight),
    loss,
    exclusive: weight,
    lambdaGamma: loss === "sphereface" ? gamma : 0,
  });
  const out: ExclusiveConfig[] = [];
  for (const loss of checkLosses(stringsSetting(s, "losses"))) {
    const w = numberSetting(s, loss === "sphereface" ? "sphereExclusiveWeight" : "exclusiveWeight");
    out.push(make(loss, 0), make(loss, w));
  }
  const [sweepLoss] = checkLosses([String(s.sweepLoss)]);
  // the sweep always has its lambda = 0 baseline, whether or not its loss is among `losses`
  for (const w of [0, ...numbersSetting(s, "sweepWeights")]) {
    if (!(Number.isFinite(w) && w >= 0)) throw new Error(`sweepWeights contains ${w}: expected numbers >= 0.`);
    if (!out.some((c) => c.label === configLabel(sweepLoss, w))) out.push(make(sweepLoss, w));
  }
  return out;
}

/** The comparisons' verification metric: TAR at the lowest FAR the held-out impostors support (with --eval: mean/acc). */
export function comparisonMetric(s: Settings): string {
  return verificationMetric(s, heldOutTarMetric(numberSetting(s, "testIds"), numberSetting(s, "imagesPerIdentity")));
}

/** What shared/research/papers.md section 2.5 has (the with/without table itself was not found). */
export const PAPER_NUMBERS: Record<BaseLoss | "regularface", string> = {
  regularface: "RegularFace (CASIA, MegaFace small Id / Ver@1e-6) 70.23 / 84.07; LFW 99.61 with 3.1M images",
  sphereface: "SphereFace: MegaFace small 72.729 / 85.561, LFW 99.42",
  center: "center loss: not in papers.md",
  cosface: "CosFace: MegaFace small 77.11 / 89.88",
  arcface: "ArcFace (CASIA, R50): MegaFace small 77.42 / 91.69",
};

const PAPER_SOURCE =
  "papers.md section 2.5 (ArcFace TPAMI tables citing RegularFace); RegularFace's with/without ablation table: NOT FOUND";

function comparisons(s: Settings, configs: ExclusiveConfig[]): Comparison[] {
  const metric = comparisonMetric(s);
  const have = new Set(configs.map((c) => c.label));
  const out: Comparison[] = [];
  for (const loss of checkLosses(stringsSetting(s, "losses"))) {
    const treated = configs.find((c) => c.loss === loss && c.exclusive > 0 && isMainArm(s, c));
    if (!treated || !have.has(loss)) continue;
    const expectation =
      loss === "arcface"
        ? " (the paper reports an insignificant gain on ArcFace, so 'not shown' agrees with it)"
        : loss === "sphereface" || loss === "center"
          ? " (the paper reports a clear gain here)"
          : "";
    out.push({
      name: `${loss}-exclusive-verification`,
      claim: `the exclusive regulariser improves ${LABELS[loss]}'s held-out verification${expectation}`,
      metric,
      baseline: loss,
      treatment: treated.label,
      expected: "greater",
      paper: `${PAPER_NUMBERS.regularface}; ${PAPER_NUMBERS[loss]} (${PAPER_SOURCE})`,
    });
    out.push({
      name: `${loss}-exclusive-sep`,
      claim: `the exclusive regulariser lowers ${LABELS[loss]}'s sep(W) (classes further apart)`,
      metric: "sep_w",
      baseline: loss,
      treatment: treated.label,
      expected: "less",
      paper: "the regulariser's purpose (papers.md section 2.6); the paper's per-loss sep values: NOT FOUND",
    });
  }
  const sweepLoss = String(s.sweepLoss) as BaseLoss;
  if (have.has(sweepLoss))
    for (const c of configs)
      if (c.loss === sweepLoss && c.exclusive > 0 && !isMainArm(s, c))
        out.push({
          name: `${sweepLoss}-excl${c.exclusive}-verification`,
          claim: `the sweep: lambda = ${c.exclusive} improves ${LABELS[sweepLoss]}'s held-out verification`,
          metric,
          baseline: sweepLoss,
          treatment: c.label,
          expected: "greater",
          paper: "the official code uses lambda 6 (center loss) and 15 (SphereFace); papers.md section 2.3",
        });
  return out;
}

function isMainArm(s: Settings, c: ExclusiveConfig): boolean {
  return c.exclusive === numberSetting(s, c.loss === "sphereface" ? "sphereExclusiveWeight" : "exclusiveWeight");
}

type Stat = Analysis["configs"][number]["metrics"][string] | undefined;

function summarize(results: Array<ResultOf<ExclusiveConfig>>, s: Settings, analysis: Analysis): Summary {
  const metric = comparisonMetric(s);
  const configs = [...new Map(results.map((r) => [r.config.label, r.config])).values()];
  const stat = (label: string, m: string): Stat => analysis.configs.find((c) => c.label === label)?.metrics[m];
  const losses = EXCLUSIVE_LOSSES.filter((l) => configs.some((c) => c.loss === l));
  const mainArm = (l: BaseLoss) => configs.find((c) => c.loss === l && c.exclusive > 0 && isMainArm(s, c));
  const grouped = (m: string, title: string, yTitle: string, name: string) => ({
    name,
    title,
    figure: {
      data: [false, true].map((withReg) => {
        const st = losses.map((l) => stat(withReg ? (mainArm(l)?.label ?? "") : l, m));
        return {
          type: "bar",
          name: withReg ? "with exclusive" : "without",
          x: losses.map((l) => LABELS[l]),
          y: means(st),
          error_y: ciErrorBars(st),
        };
      }),
      layout: {
        barmode: "group",
        title: { text: `${title} (mean over seeds, 95 % interval)` },
        yaxis: { title: { text: yTitle } },
        height: 380,
      },
    },
  });
  const sweepLoss = String(s.sweepLoss) as BaseLoss;
  const sweep = configs.filter((c) => c.loss === sweepLoss).sort((a, b) => a.exclusive - b.exclusive);
  const sweepTrace = (m: string, name: string, axis: string) => {
    const st = sweep.map((c) => stat(c.label, m));
    return {
      type: "scatter",
      mode: "lines+markers",
      name,
      x: sweep.map((c) => c.exclusive),
      y: means(st),
      error_y: ciErrorBars(st),
      yaxis: axis,
    };
  };
  const figures: Summary["figures"] = [
    grouped(metric, `Held-out ${metric} with and without the exclusive regulariser`, metric, "verification"),
    grouped("sep_w", "sep(W): mean nearest-other-class cosine of W (lower = further apart)", "sep(W)", "sep-w"),
    grouped("sep_centres", "sep of the feature centres (training images)", "sep(centres)", "sep-centres"),
    {
      name: "weight-sweep",
      title: `${LABELS[sweepLoss]}: held-out ${metric} and sep(W) against the regulariser's weight`,
      figure: {
        data: [sweepTrace(metric, metric, "y"), sweepTrace("sep_w", "sep(W)", "y2")],
        layout: {
          title: { text: `${LABELS[sweepLoss]}: the regulariser's weight (mean over seeds, 95 % interval)` },
          xaxis: { title: { text: "exclusive weight lambda" } },
          yaxis: { title: { text: metric } },
          yaxis2: { title: { text: "sep(W)" }, overlaying: "y", side: "right" },
          height: 400,
        },
      },
    },
    rocFigure(results, { name: "roc-held-out", title: "ROC on all held-out pairs" }),
    metricBars(analysis, "acc_10fold", { name: "acc-10fold", title: "Held-out 10-fold accuracy", range: [0.4, 1] }),
  ];
  const paper = losses.flatMap((l) =>
    [l, mainArm(l)?.label]
      .filter((x): x is string => !!x)
      .map((label) => {
        const c = analysis.configs.find((x) => x.label === label);
        return {
          configuration: label,
          paper: label === l ? PAPER_NUMBERS[l] : PAPER_NUMBERS.regularface,
          [`ours_${metric}`]: formatStatistic(stat(label, metric)),
          "ours_sep(W)": formatStatistic(stat(label, "sep_w")),
          "ours_sep(W)_deg": formatStatistic(stat(label, "sep_w_deg")),
          seeds_used: c?.metrics[metric]?.n ?? 0,
          collapsed: c?.collapsed.length ?? 0,
        };
      }),
  );
  const tars = DEFAULT_FARS.map(tarMetric).filter((m) => analysis.configs.some((c) => c.metrics[m]));
  const tables: Summary["tables"] = [
    {
      name: "paper-vs-ours",
      title: `${PAPER_SOURCE}; beside ours (held-out ${metric} and sep(W), mean ± std [95 % CI] over seeds)`,
      rows: paper,
    },
    statisticsTable(
      analysis,
      [
        ...tars,
        "auc",
        "acc_10fold",
        "sep_w",
        "sep_w_deg",
        "sep_centres",
        "sep_centres_deg",
        "w_to_centre_deg",
        "final_loss",
      ],
      {
        name: "held-out",
        title:
          "Held-out verification on all pairs beside sep(W) and sep(feature centres) (nearest-other cosine and angle, training images), over seeds",
      },
    ),
  ];
  const notes = [...new Set(results.flatMap((r) => (r.result.extra?.notes ?? []) as string[]))];
  const sphere = configs.find((c) => c.loss === "sphereface");
  if (sphere)
    notes.push(
      `SphereFace's lambda reaches its floor of 5 at step ${Math.round(numberSetting(s, "steps") / 2)} of ${numberSetting(s, "steps")} (Caffe's rate 0.12 would reach it at step 1,658): the margin carries weight 1 / (1 + 5) = 0.17 for the second half of the run.`,
    );
  return { tables, figures, notes };
}

async function runOne(config: ExclusiveConfig, ctx: RunContext) {
  const s = ctx.settings;
  const D = numberSetting(s, "embeddingDim");
  const data = await experimentData(s, numberSetting(s, "dataSeed"), { degradedFraction: 0 });
  const backbone = makeBackbone(String(s.backbone), D, ctx.seed, data.inputShape);
  const head = makeHead(config, data.train.numClasses, D, ctx.seed, s);
  const sepW = () => centreSeparation(toRows(head.weight.dataSync(), D));
  try {
    const fitted = await fitWithSettings(
      s,
      {
        backbone,
        head,
        data: data.train,
        seed: ctx.seed,
        regularizers: exclusiveRegularizer(config),
        extraMetrics: () => ({ sep_w: sepW().meanMaxCosine }),
      },
      ctx,
    );
    const held = await evaluateVerification(backbone, data.test, {
      losses: fitted.lossHistory.map((h) => h.loss),
      seed: ctx.seed,
    });
    const { embeddings: trainEmb } = await evaluateClosedSet(backbone, head, data.trainSample);
    const w = sepW();
    // the classes present among the images embedded (with --data, a sample of the training set)
    const present = featureCentres(trainEmb.single, trainEmb.labels, data.train.numClasses).filter((c) =>
      c.some((x) => x !== 0),
    );
    const centres = centreSeparation(present);
    const angles = angleStatistics(trainEmb.single, trainEmb.labels, toRows(head.weight.dataSync(), D));
    return heldOutResult(held, fitted, {
      sep_w: w.meanMaxCosine,
      sep_w_deg: w.meanMinAngleDeg,
      sep_centres: centres.meanMaxCosine,
      sep_centres_deg: centres.meanMinAngleDeg,
      w_to_centre_deg: angles.degrees.wToCentre,
    });
  } finally {
    head.dispose();
    backbone.dispose();
  }
}

const shared = {
  seed: 1,
  dataSeed: 7,
  imageSize: 32,
  losses: [...EXCLUSIVE_LOSSES],
  exclusiveWeight: 6,
  sphereExclusiveWeight: 15,
  sweepLoss: "center",
  s: 32,
  sphereM: 4,
  cosfaceM: 0.35,
  arcfaceM: 0.5,
  centerLambda: 0.01,
  batchSize: 64,
};

export const exclusive: Ablation<ExclusiveConfig> = {
  name: "exclusive",
  title: "RegularFace's exclusive regularisation",
  claim:
    "RegularFace (Zhao, Xu, Cheng, CVPR 2019): penalising each class weight's cosine to its nearest other class (sep(W)) spreads the class centres apart and improves verification; clear gains on SphereFace and softmax + center loss, insignificant ones on ArcFace.",
  presets: {
    smoke: {
      ...shared,
      seeds: 2,
      sweepWeights: [20],
      trainIds: 20,
      testIds: 20,
      imagesPerIdentity: 4,
      backbone: "mlp",
      embeddingDim: 16,
      steps: 30,
      lr: 0.05,
    },
    full: {
      ...shared,
      seeds: 3,
      sweepWeights: [1, 20],
      trainIds: 200,
      testIds: 100,
      imagesPerIdentity: 8,
      backbone: "iresnet-small",
      embeddingDim: 32,
      steps: 600,
      lr: 0.1,
    },
    // RegularFace's official code (shared/research/papers.md 2.3): CASIA-WebFace's 10,572 identities, SGD lr 0.1,
    // batch 600, 30 epochs (about 24,500 steps of CASIA's 490k images); its Sphere20 at 112x96 is replaced by
    // iResNet-50 at 112x112, the crops of InsightFace's .rec/.bin sets, with a 512-D embedding
    paper: {
      ...shared,
      seeds: 3,
      sweepWeights: [1, 20],
      trainIds: 10572,
      testIds: 100,
      imagesPerIdentity: 8,
      imageSize: 112,
      backbone: "iresnet50",
      embeddingDim: 512,
      s: 64,
      steps: 24500,
      batchSize: 600,
      lr: 0.1,
    },
  },
  describe: {
    seed: "first seed (initialisation and data order derive from the seed alone)",
    seeds: "seeds per configuration (paired across arms)",
    dataSeed: "seed of the synthetic identities (the same data for every seed)",
    losses: `base losses, each with and without the regulariser (${EXCLUSIVE_LOSSES.join(", ")})`,
    exclusiveWeight: "the regulariser's weight for center, cosface, arcface (the official code: 6 with center loss)",
    sphereExclusiveWeight: "the regulariser's weight for SphereFace, times 5 / lambda(step) (the official code: 15)",
    sweepLoss: "base loss of the weight sweep",
    sweepWeights: "further weights of the sweep (0 and exclusiveWeight are always there)",
    trainIds: "training identities (classes; with --data: the data set's count)",
    testIds: "held-out synthetic identities (verification on all their pairs; with --data the .bin sets' pairs)",
    imagesPerIdentity: "images per identity",
    imageSize: "image size in pixels (with --data the images are resized to it)",
    backbone: "iresnet-small | iresnet50 | lenet-small | lenet++ | mlp",
    embeddingDim: "embedding size",
    s: "scale of CosFace and ArcFace",
    sphereM: "SphereFace's integer margin (Caffe lambda annealing, reaching its floor of 5 at half the steps)",
    cosfaceM: "CosFace margin",
    arcfaceM: "ArcFace margin (radians)",
    centerLambda: "weight of the center loss next to softmax",
    steps: "SGD steps per run (warm-up 5 %, cosine decay)",
    batchSize: "batch size",
    lr: "base SGD learning rate (momentum 0.9, weight decay 5e-4)",
  },
  grid,
  comparisons,
  runOne,
  summarize,
};
