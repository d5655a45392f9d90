// quality-split's statistics: terciles, rank correlation, pair groups between bins.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { GROUPS, groupPairs, pearson, spearman, terciles } from "../experiments/quality-split";

test("terciles split values into equal low / mid / high thirds", () => {
  const v = [5, 1, 9, 3, 7, 2, 8, 4, 6];
  assert.equal(Array.from(terciles(v)), [1, 0, 2, 0, 2, 0, 2, 1, 1]);
});

test("pearson and spearman: monotone but non-linear data has spearman 1, pearson below 1", () => {
  const x = [1, 2, 3, 4, 5, 6];
  const y = x.map((v) => v ** 4);
  assert.ok(Math.abs(spearman(x, y) - 1) < 1e-12);
  assert.ok(pearson(x, y) < 0.99 && pearson(x, y) > 0.8);
  assert.ok(
    Math.abs(
      pearson(
        x,
        x.map((v) => -2 * v + 1),
      ) + 1,
    ) < 1e-12,
  );
});

test("group pairs take one image from each bin; half share an identity", () => {
  const labels = Array.from({ length: 60 }, (_, i) => i % 10);
  const bins = Array.from({ length: 60 }, (_, i) => Math.floor(i / 20));
  for (const [a, b] of GROUPS) {
    const { pairs, issame } = groupPairs(labels, bins, a, b, 40, 3);
    assert.ok(pairs.length >= 38);
    for (let k = 0; k < pairs.length; k++) {
      const [i, j] = pairs[k];
      assert.is(bins[i], a);
      assert.is(bins[j], b);
      assert.ok(i !== j);
      assert.is(labels[i] === labels[j], issame[k]);
    }
    assert.is(issame.filter(Boolean).length, 20);
  }
});

test.run();
