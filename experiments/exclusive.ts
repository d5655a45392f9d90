/**
 * exclusive (RegularFace, Zhao, Xu, Cheng, CVPR 2019): SphereFace, softmax + center loss, CosFace and
 * ArcFace, each trained with and without the exclusive regulariser L_r(W) = mean_i max_{j != i}
 * cos(w_i, w_j) (weight lambda), on synthetic identities; verification on held-out identities and
 * separability sep(W) (lower = classes further apart), also measured on the feature centres.
 * The seed's claim: clear gains on SphereFace / center loss, insignificant on ArcFace.
 */
import { embedDataset } from "../src/eval/embed";
import { centreSeparation, featureCentres, toRows } from "../src/eval/separability";
import { makePairs, verifyPairs } from "../src/eval/verification";
import { ArcFace } from "../src/losses/arcface";
import { CosFace } from "../src/losses/cosface";
import { exclusiveRegularization } from "../src/losses/exclusive";
import type { Head, Tensor2D } from "../src/losses/head";
import { SphereFace } from "../src/losses/sphereface";
import type { Regularizer } from "../src/train/trainer";
import { fit, makeBackbone, round, syntheticSplitFromSettings } from "./common";
import { SoftmaxCenterHead } from "./heads";
import { numberSetting, stringsSetting } from "./settings";
import type { Ablation, Config, ResultOf, Settings, Summary } from "./types";

export const EXCLUSIVE_LOSSES = ["sphereface", "center", "cosface", "arcface"] as const;
type BaseLoss = (typeof EXCLUSIVE_LOSSES)[number];

export interface ExclusiveConfig extends Config {
  loss: BaseLoss;
  exclusive: number;
  seed: number;
}

function makeHead(loss: BaseLoss, C: number, D: number, seed: number, s: Settings): Head {
  const common = { numClasses: C, embeddingDim: D, seed, onWarning: () => undefined };
  if (loss === "sphereface") return new SphereFace({ ...common, m: 4 });
  if (loss === "center")
    return new SoftmaxCenterHead({ numClasses: C, embeddingDim: D, seed, lambda: numberSetting(s, "centerLambda") });
  if (loss === "cosface") return new CosFace({ ...common, s: numberSetting(s, "s"), m: numberSetting(s, "cosfaceM") });
  return new ArcFace({ ...common, s: numberSetting(s, "s"), m: numberSetting(s, "arcfaceM") });
}

const LABELS: Record<BaseLoss, string> = {
  sphereface: "SphereFace",
  center: "Softmax+Center",
  cosface: "CosFace",
  arcface: "ArcFace",
};

function summarize(results: Array<ResultOf<ExclusiveConfig>>): Summary {
  const losses = EXCLUSIVE_LOSSES.filter((l) => results.some((r) => r.config.loss === l));
  const get = (l: BaseLoss, withReg: boolean) =>
    results.find((r) => r.config.loss === l && r.config.exclusive > 0 === withReg)?.result.metrics;
  const bars = (metric: string, title: string, yTitle: string) => ({
    data: [false, true].map((withReg) => ({
      type: "bar",
      name: withReg ? "with exclusive" : "without",
      x: losses.map((l) => LABELS[l]),
      y: losses.map((l) => round(get(l, withReg)?.[metric] ?? Number.NaN)),
    })),
    layout: { barmode: "group", title: { text: title }, yaxis: { title: { text: yTitle } }, height: 360 },
  });
  const rows = results.map((r) => ({
    loss: LABELS[r.config.loss],
    exclusive: r.config.exclusive,
    verification_acc: round(r.result.metrics.verification_accuracy),
    "TAR@FAR=1e-2": round(r.result.metrics.tar_far_1e2),
    "sep(W)": round(r.result.metrics.sep_weights),
    "sep(centres)": round(r.result.metrics.sep_centres),
    seconds: round(r.seconds, 1),
  }));
  const notes: string[] = [];
  for (const l of losses) {
    const a = get(l, false);
    const b = get(l, true);
    if (a && b) {
      notes.push(
        `${LABELS[l]}: verification ${(a.verification_accuracy * 100).toFixed(1)}% -> ${(b.verification_accuracy * 100).toFixed(1)}% with the regulariser (${b.verification_accuracy - a.verification_accuracy >= 0 ? "+" : ""}${((b.verification_accuracy - a.verification_accuracy) * 100).toFixed(1)} points); sep(W) ${a.sep_weights.toFixed(3)} -> ${b.sep_weights.toFixed(3)}.`,
      );
    }
  }
  return {
    tables: [
      {
        name: "exclusive",
        title: "Exclusive regularisation: verification on held-out identities and separability",
        rows,
      },
    ],
    figures: [
      {
        name: "verification",
        title: "Verification accuracy with and without the exclusive regulariser",
        figure: bars("verification_accuracy", "Verification accuracy (held-out identities)", "accuracy"),
      },
      {
        name: "separability",
        title: "sep(W): mean nearest-class cosine of the class weights",
        figure: bars("sep_weights", "sep(W) (lower = better separated)", "mean max cosine"),
      },
    ],
    notes,
  };
}

export const exclusive: Ablation<ExclusiveConfig> = {
  name: "exclusive",
  title: "RegularFace's exclusive regularisation",
  claim:
    "RegularFace (Zhao, Xu, Cheng, CVPR 2019): penalising each class weight's cosine to its nearest other class spreads the class centres apart and improves verification; the seed claims clear gains on SphereFace and softmax + center loss, insignificant ones on ArcFace.",
  presets: {
    smoke: {
      seed: 1,
      losses: [...EXCLUSIVE_LOSSES],
      exclusiveWeight: 6,
      trainIds: 30,
      testIds: 10,
      imagesPerIdentity: 10,
      imageSize: 32,
      backbone: "mlp",
      embeddingDim: 16,
      s: 16,
      cosfaceM: 0.35,
      arcfaceM: 0.5,
      centerLambda: 0.01,
      steps: 40,
      batchSize: 64,
      lr: 0.05,
      pairs: 400,
    },
    full: {
      seed: 1,
      losses: [...EXCLUSIVE_LOSSES],
      exclusiveWeight: 6,
      trainIds: 200,
      testIds: 50,
      imagesPerIdentity: 20,
      imageSize: 32,
      backbone: "mlp",
      embeddingDim: 32,
      s: 16,
      cosfaceM: 0.35,
      arcfaceM: 0.5,
      centerLambda: 0.01,
      steps: 800,
      batchSize: 64,
      lr: 0.05,
      pairs: 3000,
    },
  },
  describe: {
    seed: "seed of data, initialisation and pairs",
    losses: `base losses (${EXCLUSIVE_LOSSES.join(", ")})`,
    exclusiveWeight:
      "lambda of the exclusive regulariser (the official code uses 6 with center loss, 15 with SphereFace)",
    trainIds: "synthetic training identities (C)",
    testIds: "held-out identities for verification",
    imagesPerIdentity: "images per identity",
    imageSize: "image side in pixels",
    backbone: "mlp | lenet-small | lenet++",
    embeddingDim: "embedding size",
    s: "scale of CosFace and ArcFace",
    cosfaceM: "CosFace margin",
    arcfaceM: "ArcFace margin (radians)",
    centerLambda: "weight of the center loss next to softmax",
    steps: "SGD steps per configuration",
    batchSize: "batch size",
    lr: "SGD learning rate",
    pairs: "verification pairs (half same identity)",
  },
  grid(s) {
    const seed = numberSetting(s, "seed");
    const lambda = numberSetting(s, "exclusiveWeight");
    return stringsSetting(s, "losses").flatMap((loss) => {
      if (!(EXCLUSIVE_LOSSES as readonly string[]).includes(loss))
        throw new Error(`losses contains "${loss}": allowed are ${EXCLUSIVE_LOSSES.join(", ")}.`);
      return [0, lambda].map((w) => ({
        label: `${loss}${w > 0 ? `+exclusive${w}` : ""}`,
        loss: loss as BaseLoss,
        exclusive: w,
        seed,
      }));
    });
  },
  async runOne(config, ctx) {
    const s = ctx.settings;
    const size = numberSetting(s, "imageSize");
    const data = await syntheticSplitFromSettings(s, config.seed);
    const D = numberSetting(s, "embeddingDim");
    const backbone = makeBackbone(String(s.backbone), D, config.seed, [size, size, 1]);
    const head = makeHead(config.loss, data.train.numClasses, D, config.seed, s);
    const regularizers: Regularizer[] =
      config.exclusive > 0
        ? [
            {
              name: "exclusive",
              weight: config.exclusive,
              fn: (w: Tensor2D) => exclusiveRegularization(w, { form: "dense" }),
            },
          ]
        : [];
    try {
      const fitted = await fit(
        {
          backbone,
          head,
          data: data.train,
          steps: numberSetting(s, "steps"),
          batchSize: numberSetting(s, "batchSize"),
          lr: numberSetting(s, "lr"),
          seed: config.seed,
          regularizers,
          extraMetrics: () => ({ sep_weights: weightSeparation(head.weight) }),
        },
        ctx,
      );
      const testEmb = await embedDataset(backbone, data.test, { batchSize: 128 });
      const { pairs, issame } = makePairs(data.test.labels, numberSetting(s, "pairs"), config.seed);
      const v = verifyPairs(testEmb.single, pairs, issame, { fars: [1e-2, 1e-1] });
      const trainEmb = await embedDataset(backbone, data.train, { batchSize: 128 });
      const sepW = weightSeparation(head.weight);
      const sepC = centreSeparation(
        featureCentres(trainEmb.single, trainEmb.labels, data.train.numClasses),
      ).meanMaxCosine;
      return {
        metrics: {
          verification_accuracy: v.accuracy,
          tar_far_1e2: v.tar[0].tar,
          tar_far_1e1: v.tar[1].tar,
          sep_weights: sepW,
          sep_centres: sepC,
          final_loss: fitted.finalLoss,
          train_seconds: fitted.seconds,
        },
      };
    } finally {
      head.dispose();
      backbone.dispose();
    }
  },
  summarize: (results) => summarize(results),
};

/** RegularFace's sep(W) of a [C, D] weight: mean over classes of the largest cosine to another class. */
function weightSeparation(w: import("@tensorflow/tfjs-node").Tensor): number {
  return centreSeparation(toRows(w.dataSync(), w.shape[1] as number)).meanMaxCosine;
}
