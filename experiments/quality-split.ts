/**
 * quality-split (L2-softmax, Ranjan et al. 2017, Fig. 1): plain softmax on synthetic identities with
 * graded image quality; does the feature norm track the true quality? Test images of held-out
 * identities are split into thirds (low / mid / high) by feature norm, and by true quality, and the
 * six pair groups (1-1, 1-2, 1-3, 2-2, 2-3, 3-3) are verified separately. The same with L2-softmax,
 * where the gap between low- and high-norm pairs should narrow.
 */
import { embedDataset } from "../src/eval/embed";
import { verifyPairs } from "../src/eval/verification";
import type { Head } from "../src/losses/head";
import { L2Softmax } from "../src/losses/l2-softmax";
import { Softmax } from "../src/losses/softmax";
import { fit, makeBackbone, round, syntheticSplitFromSettings } from "./common";
import { numberSetting, stringsSetting } from "./settings";
import type { Ablation, Config, ResultOf, Settings, Summary } from "./types";

export const QUALITY_LOSSES = ["softmax", "l2-softmax"] as const;
type QLoss = (typeof QUALITY_LOSSES)[number];

export interface QualityConfig extends Config {
  loss: QLoss;
  alpha: number;
  seed: number;
}

export const GROUPS: Array<[number, number]> = [
  [0, 0],
  [0, 1],
  [0, 2],
  [1, 1],
  [1, 2],
  [2, 2],
];
export const groupName = ([a, b]: [number, number]) => `${a + 1}-${b + 1}`;

/** Pearson correlation. */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const n = x.length;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i];
    my += y[i];
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
    syy += (y[i] - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy || 1);
}

function ranks(x: ArrayLike<number>): Float64Array {
  const idx = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[a] - x[b]);
  const r = new Float64Array(x.length);
  idx.forEach((i, k) => {
    r[i] = k;
  });
  return r;
}

export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number {
  return pearson(ranks(x), ranks(y));
}

/** Tercile bin (0, 1, 2) of each value. */
export function terciles(values: ArrayLike<number>): Int32Array {
  const r = ranks(values);
  return Int32Array.from(r, (v) => Math.min(2, Math.floor((3 * v) / values.length)));
}

/** Seeded pairs between bin a and bin b: half same identity (when possible), half different. */
export function groupPairs(
  labels: ArrayLike<number>,
  bins: ArrayLike<number>,
  a: number,
  b: number,
  count: number,
  seed: number,
) {
  let s = (seed * 2654435761 + a * 97 + b * 13) >>> 0 || 1;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
  const inA: number[] = [];
  const inB: number[] = [];
  for (let i = 0; i < labels.length; i++) {
    if (bins[i] === a) inA.push(i);
    if (bins[i] === b) inB.push(i);
  }
  const bByLabel = new Map<number, number[]>();
  for (const j of inB) {
    const list = bByLabel.get(labels[j]) ?? [];
    list.push(j);
    bByLabel.set(labels[j], list);
  }
  const sameCandidates = inA.filter((i) => (bByLabel.get(labels[i]) ?? []).some((j) => j !== i));
  const pairs: [number, number][] = [];
  const issame: boolean[] = [];
  const pick = <T>(arr: T[]) => arr[Math.floor(rand() * arr.length)];
  for (let k = 0; k < count; k++) {
    if (k % 2 === 0 && sameCandidates.length > 0) {
      const i = pick(sameCandidates);
      const js = (bByLabel.get(labels[i]) ?? []).filter((j) => j !== i);
      pairs.push([i, pick(js)]);
      issame.push(true);
    } else {
      let i = pick(inA);
      let j = pick(inB);
      for (let t = 0; t < 20 && labels[i] === labels[j]; t++) {
        i = pick(inA);
        j = pick(inB);
      }
      if (labels[i] === labels[j]) continue;
      pairs.push([i, j]);
      issame.push(false);
    }
  }
  return { pairs, issame };
}

function makeHead(c: QualityConfig, C: number, D: number): Head {
  if (c.loss === "softmax") return new Softmax({ numClasses: C, embeddingDim: D, seed: c.seed });
  return new L2Softmax({ numClasses: C, embeddingDim: D, seed: c.seed, alpha: c.alpha, onWarning: () => undefined });
}

function summarize(results: Array<ResultOf<QualityConfig>>): Summary {
  const label = (r: ResultOf<QualityConfig>) =>
    r.config.loss === "softmax" ? "softmax" : `L2-softmax (alpha ${r.config.alpha})`;
  const groupFigure = (key: "byNorm" | "byQuality", title: string) => ({
    data: results.map((r) => {
      const acc = (r.result.extra?.[key] ?? {}) as Record<string, number>;
      return {
        type: "bar",
        name: label(r),
        x: GROUPS.map(groupName),
        y: GROUPS.map((g) => round(acc[groupName(g)] ?? Number.NaN)),
      };
    }),
    layout: {
      barmode: "group",
      title: { text: title },
      xaxis: { title: { text: "pair group (1 = low third, 3 = high third)" } },
      yaxis: { title: { text: "verification accuracy" } },
      height: 360,
    },
  });
  const scatter = results.map((r) => {
    const pts = (r.result.extra?.normQuality ?? []) as number[][];
    return {
      type: "scattergl",
      mode: "markers",
      name: label(r),
      x: pts.map((p) => round(p[1], 3)),
      y: pts.map((p) => round(p[0], 3)),
      marker: { size: 4, opacity: 0.6 },
    };
  });
  const rows = results.map((r) => {
    const m = r.result.metrics;
    const byNorm = (r.result.extra?.byNorm ?? {}) as Record<string, number>;
    return {
      loss: label(r),
      "corr(norm, quality) pearson": round(m.norm_quality_pearson, 3),
      spearman: round(m.norm_quality_spearman, 3),
      verification_all: round(m.verification_accuracy),
      ...Object.fromEntries(GROUPS.map((g) => [`norm ${groupName(g)}`, round(byNorm[groupName(g)] ?? Number.NaN)])),
      "gap 3-3 minus 1-1 (norm)": round(m.gap_norm),
      "gap (quality)": round(m.gap_quality),
    };
  });
  const notes: string[] = [];
  const sm = results.find((r) => r.config.loss === "softmax")?.result.metrics;
  const l2 = results.find((r) => r.config.loss === "l2-softmax")?.result.metrics;
  if (sm)
    notes.push(
      `Softmax: feature norm vs true quality, Spearman ${sm.norm_quality_spearman.toFixed(3)} (the paper: the norm indicates quality).`,
    );
  if (sm && l2)
    notes.push(
      `Gap between high-high and low-low pairs (norm terciles): softmax ${(sm.gap_norm * 100).toFixed(1)} points, L2-softmax ${(l2.gap_norm * 100).toFixed(1)} points (${Math.abs(l2.gap_norm) < Math.abs(sm.gap_norm) ? "narrower, as claimed" : "not narrower here"}); by true quality: ${(sm.gap_quality * 100).toFixed(1)} vs ${(l2.gap_quality * 100).toFixed(1)}.`,
    );
  return {
    tables: [{ name: "quality-split", title: "Feature norm vs quality, and verification per pair group", rows }],
    figures: [
      {
        name: "norm-vs-quality",
        title: "Feature norm vs true image quality (test images)",
        figure: {
          data: scatter,
          layout: {
            title: { text: "Feature norm vs true quality" },
            xaxis: { title: { text: "true quality (1 = clean)" } },
            yaxis: { title: { text: "feature norm (before any normalisation)" } },
            height: 380,
          },
        },
      },
      {
        name: "groups-by-norm",
        title: "Verification per pair group, terciles of each model's feature norm",
        figure: groupFigure("byNorm", "Pair groups by feature-norm terciles"),
      },
      {
        name: "groups-by-quality",
        title: "Verification per pair group, terciles of true quality",
        figure: groupFigure("byQuality", "Pair groups by true-quality terciles"),
      },
    ],
    notes,
  };
}

export const qualitySplit: Ablation<QualityConfig> = {
  name: "quality-split",
  title: "L2-softmax Fig. 1: feature norm, image quality and verification",
  claim:
    "Ranjan et al. (L2-softmax, 2017, Fig. 1): with plain softmax the feature norm indicates image quality, and pairs of low-norm images verify much worse than high-norm pairs; L2-softmax (all features at norm alpha) narrows that gap.",
  presets: {
    smoke: {
      seed: 1,
      losses: [...QUALITY_LOSSES],
      alpha: 16,
      trainIds: 30,
      testIds: 12,
      imagesPerIdentity: 12,
      imageSize: 32,
      degradedFraction: 0.6,
      backbone: "mlp",
      embeddingDim: 16,
      steps: 40,
      batchSize: 64,
      lr: 0.05,
      pairsPerGroup: 200,
    },
    full: {
      seed: 1,
      losses: [...QUALITY_LOSSES],
      alpha: 16,
      trainIds: 150,
      testIds: 50,
      imagesPerIdentity: 24,
      imageSize: 32,
      degradedFraction: 0.6,
      backbone: "mlp",
      embeddingDim: 32,
      steps: 1000,
      batchSize: 64,
      lr: 0.05,
      pairsPerGroup: 1000,
    },
  },
  describe: {
    seed: "seed of data, initialisation and pairs",
    losses: "softmax and/or l2-softmax",
    alpha: "L2-softmax scale",
    trainIds: "synthetic training identities",
    testIds: "held-out identities for verification",
    imagesPerIdentity: "images per identity",
    imageSize: "image side in pixels",
    degradedFraction: "fraction of images degraded (blur, downsampling, JPEG, noise, occlusion) at a random level",
    backbone: "mlp | lenet-small | lenet++",
    embeddingDim: "embedding size",
    steps: "SGD steps",
    batchSize: "batch size",
    lr: "SGD learning rate",
    pairsPerGroup: "verification pairs per pair group",
  },
  grid(s: Settings) {
    return stringsSetting(s, "losses").map((loss) => {
      if (!(QUALITY_LOSSES as readonly string[]).includes(loss))
        throw new Error(`losses contains "${loss}": allowed are ${QUALITY_LOSSES.join(", ")}.`);
      return {
        label: loss,
        loss: loss as QLoss,
        alpha: loss === "softmax" ? 0 : numberSetting(s, "alpha"),
        seed: numberSetting(s, "seed"),
      };
    });
  },
  async runOne(config, ctx) {
    const s = ctx.settings;
    const size = numberSetting(s, "imageSize");
    const data = await syntheticSplitFromSettings(s, config.seed, {
      degradedFraction: numberSetting(s, "degradedFraction"),
    });
    const D = numberSetting(s, "embeddingDim");
    const backbone = makeBackbone(String(s.backbone), D, config.seed, [size, size, 1]);
    const head = makeHead(config, data.train.numClasses, D);
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
        },
        ctx,
      );
      const emb = await embedDataset(backbone, data.test, { batchSize: 128 });
      const quality = data.test.quality ?? new Float32Array(data.test.size).fill(1);
      const labels = data.test.labels;
      const perGroup = numberSetting(s, "pairsPerGroup");
      const verifyGroups = (bins: Int32Array) => {
        const out: Record<string, number> = {};
        for (const g of GROUPS) {
          const { pairs, issame } = groupPairs(labels, bins, g[0], g[1], perGroup, config.seed);
          out[groupName(g)] =
            issame.some(Boolean) && issame.some((x) => !x)
              ? verifyPairs(emb.single, pairs, issame, { folds: 5 }).accuracy
              : Number.NaN;
        }
        return out;
      };
      const byNorm = verifyGroups(terciles(emb.norms));
      const byQuality = verifyGroups(terciles(quality));
      const all = groupPairs(labels, new Int32Array(labels.length), 0, 0, perGroup * 2, config.seed);
      const overall = verifyPairs(emb.single, all.pairs, all.issame, { folds: 5 }).accuracy;
      const step = Math.max(1, Math.floor(emb.norms.length / 600));
      const normQuality: number[][] = [];
      for (let i = 0; i < emb.norms.length; i += step) normQuality.push([emb.norms[i], quality[i]]);
      return {
        metrics: {
          verification_accuracy: overall,
          norm_quality_pearson: pearson(emb.norms, quality),
          norm_quality_spearman: spearman(emb.norms, quality),
          gap_norm: byNorm["3-3"] - byNorm["1-1"],
          gap_quality: byQuality["3-3"] - byQuality["1-1"],
          ...Object.fromEntries(
            GROUPS.map((g) => [`acc_norm_${groupName(g).replace("-", "_")}`, byNorm[groupName(g)]]),
          ),
          final_loss: fitted.finalLoss,
        },
        extra: { byNorm, byQuality, normQuality },
      };
    } finally {
      head.dispose();
      backbone.dispose();
    }
  },
  summarize,
};
