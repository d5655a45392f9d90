import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  allPairsScores,
  aucFromScores,
  evaluatePairs,
  kfoldRanges,
  makePairs,
  meanPairwiseCosine,
  rocCurve,
  rocFromScores,
  tarAtFar,
  tarAtFarFromScores,
  verifyAllPairs,
} from "../src/eval/verification";

const ref = JSON.parse(
  readFileSync(path.join(__dirname, "fixtures/vectors/insightface_verification_10fold.json"), "utf8"),
);

test("matches InsightFace verification.py on the reference vector (distances, folds, thresholds, accuracies)", () => {
  const r = evaluatePairs(ref.embeddings, ref.issame);
  ref.squared_l2_dist.forEach((d: number, k: number) => {
    assert.ok(Math.abs(r.distances[k] - d) < 1e-12, `dist ${k}`);
  });
  assert.is(r.folds.length, 10);
  ref.folds.forEach((f: { test_indices: number[]; best_threshold: number }, k: number) => {
    const [a, b] = r.folds[k].testIndices;
    assert.equal(
      Array.from({ length: b - a }, (_, i) => a + i),
      f.test_indices,
    );
    assert.ok(
      Math.abs(r.folds[k].bestThreshold - f.best_threshold) < 1e-9,
      `fold ${k} threshold ${r.folds[k].bestThreshold} vs ${f.best_threshold}`,
    );
    assert.ok(Math.abs(r.folds[k].accuracy - ref.fold_accuracy[k]) < 1e-12, `fold ${k} accuracy`);
  });
  assert.ok(Math.abs(r.accuracy - ref.accuracy_mean) < 1e-12);
  assert.ok(Math.abs(r.std - ref.accuracy_std) < 1e-12);
});

test("folds are sklearn KFold(shuffle=False) sizes", () => {
  assert.equal(
    kfoldRanges(64, 10).map(([a, b]) => b - a),
    [7, 7, 7, 7, 6, 6, 6, 6, 6, 6],
  );
  assert.equal(kfoldRanges(6000, 10)[9], [5400, 6000]);
});

test("TAR at FAR and ROC on a hand-checked case", () => {
  const dist = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
  const same = [true, true, false, true, false, false];
  const roc = rocCurve(dist, same);
  assert.equal(roc.tar, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1]);
  assert.equal(roc.far, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1]);
  assert.ok(Math.abs(roc.auc - (1 / 3) * (2 / 3) - (2 / 3) * 1) < 1e-12);
  const t = tarAtFar(dist, same, [0, 0.34, 1]);
  assert.equal(
    t.map((x) => x.tar),
    [2 / 3, 1, 1],
  );
  assert.is(t[0].threshold, 0.2);
});

test("makePairs is seeded and balanced", () => {
  const labels = [0, 0, 1, 1, 2, 2, 2];
  const a = makePairs(labels, 20, 3);
  const b = makePairs(labels, 20, 3);
  assert.equal(a, b);
  assert.is(a.issame.filter(Boolean).length, 10);
  a.pairs.forEach(([i, j], k) => {
    assert.is(labels[i] === labels[j], a.issame[k]);
  });
  assert.ok(a.pairs.every(([i, j]) => i !== j));
});

const stats = JSON.parse(readFileSync(path.join(__dirname, "fixtures/vectors/stats_reference.json"), "utf8")).roc;

test("all pairs: exact ROC equals sklearn.metrics.roc_curve (ties included), TAR at FAR and AUC", () => {
  const own = allPairsScores(stats.embeddings, stats.labels);
  assert.is(own.genuine.length, stats.genuine);
  assert.is(own.impostor.length, stats.impostor);
  const pairScores: number[] = stats.scores;
  const ownInOrder: number[] = [];
  const n = stats.labels.length;
  let [gi, ii] = [0, 0];
  for (let i = 0; i < n; i++)
    for (let j = i + 1; j < n; j++)
      ownInOrder.push(stats.labels[i] === stats.labels[j] ? own.genuine[gi++] : own.impostor[ii++]);
  pairScores.forEach((s, k) => {
    assert.ok(Math.abs(ownInOrder[k] - s) < 1e-12, `score of pair ${k}`);
  });
  const genuine = Float64Array.from(stats.genuine_scores as number[]);
  const impostor = Float64Array.from(stats.impostor_scores as number[]);
  const roc = rocFromScores(genuine, impostor);
  assert.is(roc.far.length, stats.fpr.length);
  roc.far.forEach((f, k) => {
    assert.ok(Math.abs(f - stats.fpr[k]) < 1e-15, `fpr ${k}: ${f} vs ${stats.fpr[k]}`);
    assert.ok(Math.abs(roc.tar[k] - stats.tpr[k]) < 1e-15, `tpr ${k}`);
    if (k > 0) assert.ok(Math.abs(roc.thresholds[k] - stats.thresholds[k]) < 1e-12, `threshold ${k}`);
  });
  const tar = tarAtFarFromScores(genuine, impostor, stats.fars);
  tar.forEach((t, k) => {
    assert.ok(Math.abs(t.tar - stats.tar_at_far[k]) < 1e-15, `TAR@${t.far}: ${t.tar} vs ${stats.tar_at_far[k]}`);
  });
  assert.ok(Math.abs(aucFromScores(genuine, impostor) - stats.auc) < 1e-12);
});

test("TAR at FAR says when the impostors are too few (fewer than 10 / FAR)", () => {
  const genuine = Float64Array.from(stats.genuine_scores as number[]);
  const impostor = Float64Array.from(stats.impostor_scores as number[]);
  const [a, b] = tarAtFarFromScores(genuine, impostor, [1e-1, 1e-2]);
  assert.ok(a.reliable && a.note === undefined);
  assert.ok(!b.reliable);
  assert.match(b.note ?? "", /700 impostor pairs: FAR = 0.01 needs at least 1000/);
  assert.ok(a.falseAccepts <= 70);
  assert.throws(() => tarAtFarFromScores(genuine, impostor, [0]), /FAR = 0 is not valid/);
});

test("verifyAllPairs: separable identities reach TAR 1, one direction is detected by the mean cosine", () => {
  const rows: number[][] = [];
  const labels: number[] = [];
  for (let c = 0; c < 12; c++)
    for (let k = 0; k < 4; k++) {
      const v = new Array(12).fill(0.01 * k);
      v[c] = 1;
      rows.push(v);
      labels.push(c);
    }
  const r = verifyAllPairs(rows, labels, { fars: [1e-1, 1e-2] });
  assert.is(r.genuinePairs, 12 * 6);
  assert.is(r.impostorPairs, (48 * 47) / 2 - 72);
  assert.is(r.tar[0].tar, 1);
  assert.is(r.auc, 1);
  assert.ok(r.accuracy > 0.99);
  assert.ok(r.meanPairwiseCosine < 0.2);
  const same = rows.map((v) => v.map((x, i) => x + (i === 0 ? 50 : 0)));
  assert.ok(meanPairwiseCosine(same) > 0.99);
  assert.throws(() => verifyAllPairs([[1], [2]], [0, 1]), /0 genuine and 1 impostor pairs/);
});

test.run();
