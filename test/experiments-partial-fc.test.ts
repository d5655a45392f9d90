// partial-fc: label noise only among the training identities (flips and the split conflict), the
// random-centre reference of the filter thresholds against its closed form, the full grid on the
// protocol, the smoke preset within 30 s of CPU with computed verdicts, and bad settings as errors.
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  configLabel,
  flipLabels,
  nullMaxCosine,
  type PartialFCConfig,
  partialFc,
  splitIdentities,
} from "../experiments/partial-fc";
import { getAblation } from "../experiments/registry";
import { planTasks, runAblation } from "../experiments/runner";
import { resolveSettings } from "../experiments/settings";
import type { ResultOf } from "../experiments/types";

// 50 training identities x 5 images, in identity order
const C = 50;
const truth = Int32Array.from({ length: C * 5 }, (_, i) => Math.floor(i / 5));

test("the registry lists partial-fc", () => {
  assert.is(getAblation("partial-fc"), partialFc);
});

test("flips stay among the training identities: every class keeps 3 of 5 images, other = the true label", () => {
  const n = flipLabels(truth, C, 0.4, 11);
  assert.is(n.numClasses, C);
  for (let c = 0; c < C; c++) {
    const mine = n.labels.filter((_, i) => truth[i] === c);
    assert.is(mine.filter((l) => l === c).length, 3, `class ${c} keeps round(0.6 x 5) images`);
  }
  n.labels.forEach((l, i) => {
    assert.ok(l >= 0 && l < C, `label ${l} is a training class`);
    assert.is(n.other[i], l === truth[i] ? -1 : truth[i]);
  });
  assert.equal(flipLabels(truth, C, 0.4, 11).labels, n.labels, "seeded");
});

test("split identities: round(f C) classes get a second label on every second image, linked both ways", () => {
  const n = splitIdentities(truth, C, 0.5, 3);
  assert.is(n.numClasses, C + 25);
  const split = new Set<number>();
  n.labels.forEach((l, i) => {
    if (l >= C) split.add(truth[i]);
  });
  assert.is(split.size, 25);
  for (const c of split) {
    const idx = [...truth.keys()].filter((i) => truth[i] === c);
    const labels = idx.map((i) => n.labels[i]);
    assert.equal(
      labels.map((l) => l === c),
      [true, false, true, false, true],
      `class ${c}: images 0, 2, 4 keep it`,
    );
    const extra = labels[1];
    for (const i of idx) assert.is(n.other[i], n.labels[i] === c ? extra : c);
  }
  n.labels.forEach((l, i) => {
    if (!split.has(truth[i])) assert.is(n.other[i], -1);
    if (!split.has(truth[i])) assert.is(l, truth[i]);
  });
  assert.throws(() => splitIdentities(truth, C, 1, 3), /split fraction 1/);
});

test("nullMaxCosine against the closed form at D = 3 (the cosine is uniform on [-1, 1]: q -> 2 q^(1/K) - 1)", () => {
  for (const K of [1, 10]) {
    const q = nullMaxCosine(3, K, { trials: 4000, seed: 5, quantiles: [0.5, 0.9] });
    const exact = (p: number) => 2 * p ** (1 / K) - 1;
    assert.ok(Math.abs(q.q50 - exact(0.5)) < 0.04, `K=${K} q50 ${q.q50} vs ${exact(0.5)}`);
    assert.ok(Math.abs(q.q90 - exact(0.9)) < 0.03, `K=${K} q90 ${q.q90} vs ${exact(0.9)}`);
  }
  const tail = nullMaxCosine(3, 20, { trials: 2000, seed: 2, above: [0.5, -0.5] });
  assert.ok(Math.abs(tail.above_0p5 - 0.25) < 0.01, `P(cos > 0.5) ${tail.above_0p5} vs 0.25`);
  assert.ok(Math.abs(tail["above_-0p5"] - 0.75) < 0.01, `P(cos > -0.5) ${tail["above_-0p5"]} vs 0.75`);
  // D = 64: (1 + cos) / 2 ~ Beta(31.5, 31.5); scipy.stats.beta.sf((1 + t) / 2, 31.5, 31.5) = 0.05509 (t = 0.2), 0.00759 (t = 0.3)
  const at64Tail = nullMaxCosine(64, 200, { trials: 500, seed: 3, above: [0.2, 0.3] });
  assert.ok(Math.abs(at64Tail.above_0p2 - 0.05509) < 0.004, `D=64 P(cos > 0.2) ${at64Tail.above_0p2}`);
  assert.ok(Math.abs(at64Tail.above_0p3 - 0.00759) < 0.0015, `D=64 P(cos > 0.3) ${at64Tail.above_0p3}`);
  // at the paper's D = 512 random centres stay far below 0.4; at D = 64 near 0.5
  assert.ok(nullMaxCosine(512, 1000, { trials: 200 }).q99 < 0.25);
  const at64 = nullMaxCosine(64, 1000, { trials: 200 });
  assert.ok(at64.q50 > 0.33 && at64.q99 < 0.6, JSON.stringify(at64));
});

test("the full grid: 3 seeds, a CNN, the r sweep, flip and split with the filter sweep at the paper's rates", () => {
  const plan = planTasks(partialFc, "full");
  assert.ok(plan.seeds.length >= 3);
  assert.is(plan.settings.backbone, "iresnet-small");
  const labels = plan.configs.map((c) => c.label);
  for (const r of [1, 0.5, 0.2, 0.1]) assert.ok(labels.includes(configLabel("clean", r)));
  for (const t of plan.settings.filters as number[]) {
    assert.ok(labels.includes(configLabel("flip", 0.1, t)));
    assert.ok(labels.includes(configLabel("split", 0.3, t)));
  }
  assert.ok(
    plan.tasks.every((t) => !("seed" in t.config)),
    "seeds come from the plan",
  );
  const comps = partialFc.comparisons?.(plan.settings, plan.configs as PartialFCConfig[]) ?? [];
  const names = comps.map((c) => c.name);
  for (const n of ["clean-r0.1-vs-r1", "flip-r0.1-vs-r1", "split-r0.3-vs-r1", "flip-r0.1-filter0.3-vs-nofilter"])
    assert.ok(names.includes(n), n);
  assert.ok(
    comps.every((c) => c.metric === "tar_far_1e-2" && labels.includes(c.baseline) && labels.includes(c.treatment)),
  );
});

// The 30 s budget is this process's CPU time (TensorFlow's threads included), as the other ablations' tests.
test("the smoke preset runs within 30 s of CPU: paired seeds, cost shrinking with r, verdicts from the numbers", async () => {
  const cpu0 = process.cpuUsage();
  const run = await runAblation(partialFc, { track: false });
  const cpu = process.cpuUsage(cpu0);
  const seconds = (cpu.user + cpu.system) / 1e6;
  assert.ok(seconds < 30, `smoke took ${seconds.toFixed(1)} s of CPU (${run.wallSeconds.toFixed(1)} s wall)`);
  const results = run.results as Array<ResultOf<PartialFCConfig>>;
  const smoke = partialFc.presets.smoke;
  assert.is(results.length, partialFc.grid(smoke).length * 2);
  assert.is(run.parentRunId, undefined);
  for (const r of results) {
    const m = r.result.metrics;
    assert.ok(m.active_classes <= m.classes && m.auc >= 0 && m.auc <= 1, r.config.label);
    assert.is(m.logits_bytes, Number(smoke.batchSize) * m.active_classes * 4);
    assert.is(r.result.lossHistory?.length, smoke.steps);
    assert.ok(Number.isFinite(m.clean_negatives_zeroed_0p6));
    if (r.config.variant === "flip") assert.ok(m.noisy_caught_0p6 >= 0 && m.noisy_caught_0p6 <= 1);
  }
  const at = (label: string, seed: number) => results.find((r) => r.config.label === label && r.seed === seed)!;
  const full = at("clean r=1", 1).result.metrics;
  const sampled = at("clean r=0.2", 1).result.metrics;
  assert.is(full.active_classes, full.classes, "r = 1: every class");
  assert.ok(sampled.active_classes < full.active_classes && sampled.logits_bytes < full.logits_bytes);
  assert.is(sampled.weight_bytes, full.weight_bytes, "W stays the same size");
  // the verdict is computed from the paired seeds' numbers
  const c = run.analysis.comparisons.find((x) => x.name === "flip-r0.2-filter0.6-vs-nofilter")!;
  assert.ok(c, run.analysis.comparisons.map((x) => x.name).join(", "));
  const diffs = c.seeds.map(
    (seed) => at(c.treatment, seed).result.metrics[c.metric] - at(c.baseline, seed).result.metrics[c.metric],
  );
  if (diffs.length > 0)
    assert.ok(Math.abs(c.verdict.meanDiff - diffs.reduce((a, b) => a + b, 0) / diffs.length) < 1e-9);
  assert.ok(["held", "not shown", "contradicted"].includes(c.verdict.verdict));
  assert.match(c.paper ?? "", /88.35/);
  const tables = run.summary.tables.map((t) => t.name);
  assert.is(tables[0], "verdicts");
  for (const t of ["held-out", "filter-thresholds", "filter-diagnostics", "cost"]) assert.ok(tables.includes(t), t);
  assert.equal(
    run.summary.figures.map((f) => f.name),
    ["tar-vs-rate", "tar-vs-filter", "roc-held-out", "head-ms"],
  );
  assert.ok(run.summary.notes.some((n) => n.startsWith("clean r=0.2 vs clean r=1:") && /±0.02/.test(n)));
});

test("bad settings are errors naming the setting", () => {
  const bad: Array<[Record<string, number | string[] | number[]>, RegExp]> = [
    [{ rates: [1, 0] }, /rates contains 0/],
    [{ flipRates: [1.5, 1] }, /flipRates contains 1.5/],
    [{ rates: [0.5, 0.2] }, /rates must contain 1/],
    [{ variants: ["clean", "noisy"] }, /variants contains "noisy": allowed are clean, flip, split/],
    [{ flip: 1 }, /flip = 1/],
    [{ split: 0 }, /split = 0/],
    [{ filters: [0.4, 1] }, /filters contains 1/],
    [{ flipFilterRate: 1 }, /flipFilterRate = 1/],
  ];
  for (const [set, re] of bad) {
    const settings = resolveSettings(partialFc, "smoke", set);
    assert.throws(() => partialFc.grid(settings), re, JSON.stringify(set));
  }
  assert.throws(() => resolveSettings(partialFc, "smoke", { rate: [1] }), /"rate" is not a setting/);
});

test.run();
