// Collapse detection names each failure (NaN loss, chance verification, one direction) and the
// convergence check measures the last 10 % of training.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { detectCollapse } from "../src/eval/collapse";

test("a healthy run is not collapsed; each failure is named with its number", () => {
  assert.equal(detectCollapse({ losses: [3, 2, 1], auc: 0.9, meanPairwiseCosine: 0.1 }).reasons, []);
  const nan = detectCollapse({ losses: [3, Number.NaN], auc: 0.9, meanPairwiseCosine: 0.1 });
  assert.equal(nan.reasons, ["loss-nan"]);
  assert.match(nan.details[0], /loss NaN at logged point 1/);
  const all = detectCollapse({ losses: [1], auc: 0.5, meanPairwiseCosine: 0.99 });
  assert.equal(all.reasons, ["verification-at-chance", "one-direction"]);
  assert.ok(all.collapsed);
  assert.match(all.details.join("\n"), /AUC 0.500 <= 0.55[\s\S]*mean pairwise cosine 0.990 >= 0.95/);
  assert.equal(detectCollapse({ losses: [1], auc: Number.NaN, meanPairwiseCosine: 0 }).reasons, [
    "verification-at-chance",
  ]);
});

test.run();
