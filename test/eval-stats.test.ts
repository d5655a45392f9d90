// Statistics over seeds against scipy.stats (fixture: scripts/fixtures/write_stats_reference.py):
// Student-t quantiles and CDF, the paired t-test and its 95 % interval, Wilcoxon signed-rank, and
// the verdict computed from them.
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  meanInterval,
  pairedTTest,
  sampleStd,
  tCdf,
  tQuantile,
  verdictOf,
  wilcoxonSignedRank,
} from "../src/eval/stats";

const ref = JSON.parse(readFileSync(path.join(__dirname, "fixtures/vectors/stats_reference.json"), "utf8"));

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(1e-300, Math.abs(b));

test("Student-t quantiles match scipy.stats.t.ppf to 1e-10 relative (df 0.7 to 100, q 0.001 to 0.9995)", () => {
  for (const c of ref.t_ppf) {
    const v = tQuantile(c.q, c.df);
    if (c.value === 0) assert.ok(Math.abs(v) < 1e-12, `ppf(${c.q}, ${c.df}) = ${v}`);
    else assert.ok(rel(v, c.value) < 1e-10, `ppf(${c.q}, ${c.df}) = ${v}, scipy ${c.value}`);
  }
  assert.ok(Math.abs(tQuantile(0.975, 2) - 4.302652729749462) < 1e-12);
});

test("Student-t CDF matches scipy.stats.t.cdf", () => {
  for (const c of ref.t_cdf) {
    const v = tCdf(c.x, c.df);
    assert.ok(
      Math.abs(v - c.value) < 1e-13 || rel(v, c.value) < 1e-10,
      `cdf(${c.x}, ${c.df}) = ${v}, scipy ${c.value}`,
    );
  }
});

test("paired t-test, its 95 % interval and Wilcoxon match scipy (ttest_rel, t.ppf, wilcoxon)", () => {
  for (const c of ref.paired) {
    const r = pairedTTest(c.a, c.b);
    const what = `n = ${c.a.length}`;
    assert.is(r.n, c.a.length);
    assert.is(r.df, c.df);
    assert.ok(rel(r.meanDiff, c.mean) < 1e-12, `${what} mean`);
    assert.ok(rel(r.sdDiff, c.sd) < 1e-12, `${what} sd`);
    assert.ok(rel(r.t, c.t) < 1e-10, `${what} t ${r.t} vs ${c.t}`);
    assert.ok(rel(r.p, c.p) < 1e-9, `${what} p ${r.p} vs ${c.p}`);
    assert.ok(rel(r.ci[0], c.ci[0]) < 1e-9 && rel(r.ci[1], c.ci[1]) < 1e-9, `${what} ci ${r.ci} vs ${c.ci}`);
    if (c.wilcoxon) {
      assert.ok(r.wilcoxon, `${what}: Wilcoxon from n >= 6`);
      assert.is(r.wilcoxon?.statistic, c.wilcoxon.statistic, `${what} W`);
      assert.ok(
        rel(r.wilcoxon?.p ?? Number.NaN, c.wilcoxon.p) < 1e-12,
        `${what} Wilcoxon p ${r.wilcoxon?.p} vs ${c.wilcoxon.p}`,
      );
    } else assert.is(r.wilcoxon, undefined);
  }
});

test("Wilcoxon: zeros dropped, ties as midranks, all one sign of 6 gives the exact 2/64", () => {
  assert.equal(wilcoxonSignedRank([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0]), { statistic: 0, p: 2 / 64 });
  const tied = wilcoxonSignedRank([1, 1, 2, 5, 0, 3], [0, 0, 0, 0, 0, 4]); // diffs 1,1,2,5,0,-1
  assert.is(tied.statistic, 2); // |-1| shares midrank 2 with the two +1s
  assert.ok(tied.p > 0.05 && tied.p <= 1);
});

test("the verdict: held, contradicted, not shown, with the numbers and n", () => {
  const base = [0.7, 0.72, 0.69];
  const held = verdictOf([0.75, 0.78, 0.73], base, "greater");
  assert.is(held.verdict, "held");
  assert.ok(held.ci[0] > 0 && held.p < 0.05 && held.n === 3);
  assert.match(
    held.text,
    /^held: \+0\.050 \(95 % CI \+0\.0\d\d to \+0\.0\d\d\), paired t = [\d.]+, df = 2, p = [\d.]+, n = 3$/,
  );
  assert.is(verdictOf([0.75, 0.78, 0.73], base, "less").verdict, "contradicted");
  const noisy = verdictOf([0.75, 0.6, 0.8], base, "greater");
  assert.is(noisy.verdict, "not shown");
  assert.ok(noisy.ci[0] < 0 && noisy.ci[1] > 0);
  const one = verdictOf([0.9], [0.1], "greater");
  assert.is(one.verdict, "not shown");
  assert.match(one.text, /n = 1 paired seed \(a test needs at least 2\)/);
  assert.is(verdictOf([1, 1], [1, 1], "greater").verdict, "not shown");
  const same = verdictOf([2, 3], [1, 2], "greater");
  assert.is(same.verdict, "not shown", "identical shifts over seeds are no evidence");
  assert.match(same.text, /\+1\.000 on each of n = 2 seeds \(no spread across seeds/);
  assert.is(pairedTTest([2, 3], [1, 2]).p, 0, "the t-test itself matches scipy (t = inf, p = 0)");
  // two arms computing the same thing in float32: differences equal up to round-off are no spread either
  const roundOff = verdictOf([0.3000001, 0.4000002, 0.5], [0.3, 0.4, 0.4999999], "greater");
  assert.is(roundOff.verdict, "not shown");
  assert.match(roundOff.text, /no spread across seeds/);
  assert.is(
    verdictOf([0.3001, 0.40011, 0.50012], [0.3, 0.4, 0.5], "greater").verdict,
    "held",
    "a real 1e-5 spread counts",
  );
  assert.throws(() => verdictOf([1, Number.NaN], [1, 2], "greater"), /value 1 is not finite/);
  assert.throws(() => verdictOf([1, 2, 3], [1, 2], "greater"), /3 treatment values for 2 baseline/);
});

test("mean interval over seeds: t-based, NaN interval below two seeds", () => {
  const r = meanInterval([1, 2, 3]);
  assert.is(r.mean, 2);
  assert.ok(Math.abs(r.std - 1) < 1e-15 && Math.abs(r.std - sampleStd([1, 2, 3])) < 1e-15);
  const half = (4.302652729749462 * 1) / Math.sqrt(3);
  assert.ok(Math.abs(r.ci[0] - (2 - half)) < 1e-12 && Math.abs(r.ci[1] - (2 + half)) < 1e-12);
  assert.ok(Number.isNaN(meanInterval([5]).ci[0]));
});

test.run();
