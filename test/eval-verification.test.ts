import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { evaluatePairs, kfoldRanges, makePairs, rocCurve, tarAtFar } from "../src/eval/verification";

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

test.run();
