// The synthetic-identity ablations, tiny and untracked: the exclusive regulariser lowers sep(W) for
// every base loss (quality-split: experiments-quality.test.ts; subcenter: experiments-subcenter.test.ts).
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

test.run();
