import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { normQualityAnalysis, normTertiles, pearson, spearman } from "../src/eval/norms";
import { angleStatistics, centreSeparation, featureCentres } from "../src/eval/separability";

const pml = JSON.parse(readFileSync(path.join(__dirname, "fixtures/vectors/pml_losses.json"), "utf8"));

test("RegularFace sep equals pytorch-metric-learning's RegularFaceRegularizer on the reference W", () => {
  const ref = pml.RegularFaceRegularizer_alone_on_W_t;
  const s = centreSeparation(ref.input_rows_are_classes);
  assert.ok(Math.abs(s.meanMaxCosine - ref.value) < 1e-12, `${s.meanMaxCosine} vs ${ref.value}`);
});

test("centre angles on a hand-made configuration", () => {
  // four unit centres in the plane at 0, 90, 100 and 180 degrees
  const a = [0, 90, 100, 180].map((d) => [Math.cos((d * Math.PI) / 180), Math.sin((d * Math.PI) / 180)]);
  const s = centreSeparation(a);
  assert.ok(Math.abs(s.minAngleDeg - 10) < 1e-9);
  // min angles per class: 0->90 (90), 90->100 (10), 100->90 (10), 180->100 (80): mean 47.5
  assert.ok(Math.abs(s.meanMinAngleDeg - 47.5) < 1e-9);
  const maxCos = [0, Math.cos((10 * Math.PI) / 180), Math.cos((10 * Math.PI) / 180), Math.cos((80 * Math.PI) / 180)];
  assert.ok(Math.abs(s.meanMaxCosine - maxCos.reduce((x, y) => x + y) / 4) < 1e-12);
});

test("ArcFace Table 3 statistics: W-EC, Intra, Inter on a constructed case", () => {
  const rad = (d: number) => (d * Math.PI) / 180;
  const at = (d: number, r = 1) => [r * Math.cos(rad(d)), r * Math.sin(rad(d))];
  // class 0 samples at +-10 deg around 0, class 1 at +-10 deg around 90 (norms vary: normalised away)
  const emb = [at(-10, 2), at(10, 5), at(80), at(100, 3)];
  const labels = [0, 0, 1, 1];
  const W = [at(20), at(90)];
  const centres = featureCentres(emb, labels, 2);
  assert.ok(Math.abs(Math.atan2(centres[0][1], centres[0][0])) < 1e-12);
  const s = angleStatistics(emb, labels, W);
  assert.ok(Math.abs(s.degrees.intra - 10) < 1e-9);
  assert.ok(Math.abs(s.degrees.inter - 90) < 1e-9);
  assert.ok(Math.abs(s.degrees.wToCentre - 10) < 1e-9); // (20 + 0) / 2
  assert.ok(Math.abs(s.degrees.wInter - 70) < 1e-9);
  assert.ok(Math.abs(s.degrees.minWAngle - 70) < 1e-9);
});

test("correlations and norm tertiles", () => {
  assert.ok(Math.abs(pearson([1, 2, 3, 4], [2, 4, 6, 8]) - 1) < 1e-12);
  assert.ok(Math.abs(spearman([1, 2, 3, 4], [1, 8, 27, 64]) - 1) < 1e-12);
  assert.ok(Math.abs(spearman([1, 2, 3, 4], [4, 3, 2, 1]) + 1) < 1e-12);
  assert.equal([...normTertiles([5, 1, 9, 3, 7, 2])], [2, 1, 3, 2, 3, 1]);
});

test("norm/quality split: six pair groups; low-norm groups verify worse when low norm means noisy", () => {
  // 3 identities x 30 images in 8-D; image quality q in [0, 1]: the feature is the identity direction
  // plus noise scaled by (1 - q), and its norm grows with q (the L2-softmax observation).
  let s = 12345;
  const rnd = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  };
  const dirs = [0, 1, 2].map(() => Array.from({ length: 8 }, rnd));
  const emb: number[][] = [];
  const quality: number[] = [];
  const labels: number[] = [];
  for (let c = 0; c < 3; c++) {
    for (let k = 0; k < 30; k++) {
      const q = ((k * 7) % 30) / 29;
      emb.push(dirs[c].map((d) => (d + (1.2 - q) * rnd() * 1.5) * (0.5 + 2 * q)));
      quality.push(q);
      labels.push(c);
    }
  }
  const norms = emb.map((v) => Math.hypot(...v));
  const pairs: [number, number][] = [];
  const issame: boolean[] = [];
  for (let i = 0; i < emb.length; i++) {
    for (let j = i + 1; j < emb.length; j += 3) {
      pairs.push([i, j]);
      issame.push(labels[i] === labels[j]);
    }
  }
  const r = normQualityAnalysis(emb, norms, pairs, issame, { quality });
  assert.equal(
    r.groups.map((g) => g.group),
    ["1-1", "1-2", "1-3", "2-2", "2-3", "3-3"],
  );
  assert.is(
    r.groups.reduce((a, g) => a + g.pairs, 0),
    pairs.length,
  );
  assert.ok(r.pearson! > 0.5 && r.spearman! > 0.5, `pearson ${r.pearson} spearman ${r.spearman}`);
  assert.ok(r.setMeanQuality![0] < r.setMeanQuality![2]);
  assert.ok(r.setMeanNorm[0] < r.setMeanNorm[1] && r.setMeanNorm[1] < r.setMeanNorm[2]);
  const acc = Object.fromEntries(r.groups.map((g) => [g.group, g.accuracy]));
  assert.ok(acc["1-1"] < acc["3-3"], `1-1 ${acc["1-1"]} vs 3-3 ${acc["3-3"]}`);
});

test.run();
