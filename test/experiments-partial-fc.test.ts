// partial-fc: the smoke preset runs untracked end to end (finite metrics, active classes and logits memory
// shrink with r, summary with tables, figures and findings); bad settings are errors naming them.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { type PartialFCConfig, partialFc } from "../experiments/partial-fc";
import { getAblation } from "../experiments/registry";
import { runAblation } from "../experiments/runner";
import { resolveSettings } from "../experiments/settings";
import type { ResultOf } from "../experiments/types";

test("the registry lists partial-fc after subcenter", () => {
  assert.is(getAblation("partial-fc"), partialFc);
});

test("smoke preset, untracked: finite metrics per configuration, cost shrinking with r, a full summary", async () => {
  const run = await runAblation("partial-fc", { preset: "smoke", track: false });
  const grid = partialFc.grid(partialFc.presets.smoke);
  const results = run.results as Array<ResultOf<PartialFCConfig>>;
  assert.is(results.length, grid.length);
  assert.is(run.parentRunId, undefined, "not tracked");
  for (const r of results) {
    for (const [k, v] of Object.entries(r.result.metrics))
      assert.ok(Number.isFinite(v), `${r.config.label}.${k} = ${v}`);
    const m = r.result.metrics;
    assert.ok(m.verification_accuracy >= 0 && m.verification_accuracy <= 1);
    assert.ok(m.active_classes <= m.classes);
    assert.is(m.logits_bytes, Number(partialFc.presets.smoke.batchSize) * m.active_classes * 4);
  }
  const variants = [...new Set(results.map((r) => r.config.variant))];
  const filterRates = partialFc.presets.smoke.filterRates as number[];
  for (const v of variants) {
    // every rate in filterRates runs twice, without and with the inter-class filter
    for (const rate of filterRates) {
      const pair = results.filter((r) => r.config.variant === v && r.config.rate === rate);
      assert.equal(pair.map((r) => r.config.filter).sort(), [0, partialFc.presets.smoke.filter], `${v} r=${rate}`);
      assert.is(pair[0].result.metrics.active_classes, pair[1].result.metrics.active_classes, "same sampling");
    }
    const byRate = results
      .filter((r) => r.config.variant === v && r.config.filter === 0)
      .sort((a, b) => b.config.rate - a.config.rate);
    assert.ok(byRate.length >= 2, `${v}: at least two rates`);
    assert.is(byRate[0].config.rate, 1);
    assert.is(byRate[0].result.metrics.active_classes, byRate[0].result.metrics.classes, "r = 1: every class");
    for (let i = 1; i < byRate.length; i++) {
      const [hi, lo] = [byRate[i - 1].result.metrics, byRate[i].result.metrics];
      assert.ok(lo.active_classes < hi.active_classes, `${v}: active classes shrink with r`);
      assert.ok(lo.logits_bytes < hi.logits_bytes, `${v}: logits memory shrinks with r`);
      assert.is(lo.weight_bytes, hi.weight_bytes, "W stays the same size");
    }
  }
  const s = run.summary;
  assert.is(s.tables[0].rows.length, run.results.length);
  assert.equal(
    s.figures.map((f) => f.name),
    ["verification-vs-rate", "cost-vs-rate"],
  );
  assert.is(s.figures[0].figure.data.length, 2 * variants.length, "a line per variant, with and without the filter");
  assert.ok(s.notes.some((n) => n.startsWith("clean:")) && s.notes.some((n) => n.includes("active classes")));
  assert.ok(s.notes.some((n) => n.startsWith("flip, inter-class filter 0.4:")));
  // filter 0: no filtered runs
  assert.ok(partialFc.grid(resolveSettings(partialFc, "smoke", { filter: 0 })).every((c) => c.filter === 0));
});

test("bad settings are errors naming the setting", () => {
  const bad: Array<[Record<string, number | string[] | number[]>, RegExp]> = [
    [{ rates: [1, 0] }, /rates contains 0/],
    [{ rates: [1.5] }, /rates contains 1.5/],
    [{ variants: ["clean", "noisy"] }, /variants contains "noisy": allowed are clean, flip, split/],
    [{ flip: 1 }, /flip = 1/],
    [{ split: 0 }, /split = 0/],
    [{ filter: 1 }, /filter = 1/],
    [{ filterRates: [0.1, 2] }, /filterRates contains 2/],
  ];
  for (const [set, re] of bad) {
    const settings = resolveSettings(partialFc, "smoke", set);
    assert.throws(() => partialFc.grid(settings), re, JSON.stringify(set));
  }
  assert.throws(() => resolveSettings(partialFc, "smoke", { rate: [1] }), /"rate" is not a setting/);
});

test.run();
