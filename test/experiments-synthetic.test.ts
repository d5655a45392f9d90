// The synthetic-identity ablations, tiny and untracked: the exclusive regulariser lowers sep(W) for
// every base loss; sub-center drop-and-retrain reports drop statistics
// (quality-split has its own file, experiments-quality.test.ts).
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

test.run();
