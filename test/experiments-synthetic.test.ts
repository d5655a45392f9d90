// The synthetic-identity ablations, tiny and untracked (exclusive has its own test/experiments-exclusive.test.ts):
// sub-center drop-and-retrain reports drop statistics; quality-split gives six groups.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { runAblation } from "../experiments/runner";

test("subcenter: label noise is injected, and drop-and-retrain reports precision/recall of what it dropped", async () => {
  const r = await runAblation("subcenter", { track: false, set: { noises: [0.4], Ks: [3], steps: 12, pairs: 100 } });
  assert.equal(
    r.results.map((x) => x.config.label),
    ["noise40-K3", "noise40-drop"],
  );
  const m = r.results[1].result.metrics;
  assert.ok(m.noisy_fraction > 0.3 && m.noisy_fraction < 0.5, `noisy fraction ${m.noisy_fraction}`);
  assert.ok(m.dropped_fraction >= 0 && m.dropped_fraction <= 1);
  if (m.dropped_fraction > 0) assert.ok(m.drop_precision >= 0 && m.drop_precision <= 1);
  assert.ok(m.verification_accuracy > 0.3);
});

test("quality-split: six pair groups per model, correlations in [-1, 1]", async () => {
  const r = await runAblation("quality-split", { track: false, set: { steps: 10, pairsPerGroup: 60 } });
  assert.is(r.results.length, 2);
  for (const x of r.results) {
    assert.is(Object.keys(x.result.extra?.byNorm as object).length, 6);
    assert.ok(Math.abs(x.result.metrics.norm_quality_spearman) <= 1);
  }
  assert.equal(
    r.summary.figures.map((f) => f.name),
    ["norm-vs-quality", "groups-by-norm", "groups-by-quality"],
  );
});

test.run();
