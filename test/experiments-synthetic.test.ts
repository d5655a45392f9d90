// The synthetic-identity ablations, tiny and untracked: the exclusive regulariser lowers sep(W) for
// every base loss; quality-split gives six groups (subcenter: test/experiments-subcenter.test.ts).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { runAblation } from "../experiments/runner";

test("exclusive: with the regulariser sep(W) is lower than without, for each base loss", async () => {
  const r = await runAblation("exclusive", {
    track: false,
    set: { losses: ["center", "arcface"], steps: 12, pairs: 100 },
  });
  assert.is(r.results.length, 4);
  for (const loss of ["center", "arcface"]) {
    const without = r.results.find((x) => x.config.loss === loss && x.config.exclusive === 0)!.result.metrics;
    const withReg = r.results.find((x) => x.config.loss === loss && (x.config.exclusive as number) > 0)!.result.metrics;
    assert.ok(
      withReg.sep_weights < without.sep_weights - 0.05,
      `${loss}: ${withReg.sep_weights} vs ${without.sep_weights}`,
    );
    assert.ok(without.verification_accuracy > 0.4 && without.verification_accuracy <= 1);
  }
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
