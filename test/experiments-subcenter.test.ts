// subcenter: the label noise stays among the training identities (uniform and clustered), the grid
// and the paper's comparisons, and the smoke preset end to end within 30 s of CPU (see
// experiments-margins.test.ts for why CPU time): verdicts computed from the seeds' numbers, the drop
// step's precision and recall against the true noisy images, histograms of clean and noisy angles,
// and a collapsed run named and left out instead of read as a result.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { analyze } from "../experiments/analysis";
import { planTasks, runAblation } from "../experiments/runner";
import { configLabel, type SubcenterConfig, subcenter, trainingLabelNoise } from "../experiments/subcenter";
import type { ResultOf } from "../experiments/types";

const identities = (classes: number, per: number) =>
  Int32Array.from({ length: classes * per }, (_, i) => Math.floor(i / per));

test("uniform noise flips exactly round(f n) images per class, to other training classes only", () => {
  const clean = identities(30, 10);
  const noisy = trainingLabelNoise(clean, 30, "uniform", 0.4, 5);
  for (let c = 0; c < 30; c++) {
    const flipped = [...clean.keys()].filter((i) => clean[i] === c && noisy[i] !== c);
    assert.is(flipped.length, 4, `class ${c}`);
  }
  assert.ok(
    noisy.every((l) => l >= 0 && l < 30),
    "no label outside the training classes",
  );
  // every class keeps its 6 clean images, so none is made of flipped images only
  for (let c = 0; c < 30; c++)
    assert.ok([...noisy.keys()].filter((i) => noisy[i] === c && clean[i] === c).length === 6);
  const targets = new Set([...noisy.keys()].filter((i) => noisy[i] !== clean[i]).map((i) => noisy[i]));
  assert.ok(targets.size > 20, `uniform flips spread over many classes (${targets.size})`);
  assert.equal(trainingLabelNoise(clean, 30, "uniform", 0.4, 5), noisy, "seeded");
  assert.not.equal(trainingLabelNoise(clean, 30, "uniform", 0.4, 6), noisy);
});

test("clustered noise sends each identity's flipped images to one class, which receives one intruder", () => {
  const clean = identities(12, 10);
  const noisy = trainingLabelNoise(clean, 12, "clustered", 0.2, 3);
  const intruders = new Map<number, Set<number>>();
  const targetOf = new Map<number, Set<number>>();
  noisy.forEach((l, i) => {
    if (l === clean[i]) return;
    intruders.set(l, (intruders.get(l) ?? new Set()).add(clean[i]));
    targetOf.set(clean[i], (targetOf.get(clean[i]) ?? new Set()).add(l));
  });
  assert.is(targetOf.size, 12);
  for (const [id, t] of targetOf) assert.ok(t.size === 1 && !t.has(id), `identity ${id} -> ${[...t]}`);
  for (const [c, from] of intruders) assert.is(from.size, 1, `class ${c} holds one intruder identity`);
  assert.is([...noisy.keys()].filter((i) => noisy[i] !== clean[i]).length, 24);
  assert.equal(trainingLabelNoise(clean, 12, "clustered", 0, 3), clean);
  assert.throws(() => trainingLabelNoise(clean, 12, "clustered", 1, 3), /label noise 1 is not valid/);
  assert.throws(() => trainingLabelNoise(clean, 12, "web" as "uniform", 0.2, 3), /allowed are uniform, clustered/);
});

test("the full grid: K in {1, 3, 10} at 0 / 20 / 40 %, both noise kinds, the drop arm, and Table 3's comparisons", () => {
  const plan = planTasks(subcenter, "full");
  const labels = plan.configs.map((c) => c.label);
  for (const l of ["clean K=1", "clean K=3", "clean K=10", "uniform 20% K=10", "uniform 40% K=3 drop>75 K=1"])
    assert.ok(labels.includes(l), l);
  assert.ok(labels.includes("clustered 40% K=3 drop>75 K=1") && labels.includes("clustered 40% K=1"));
  assert.is(plan.seeds.length, 3);
  assert.is(plan.settings.backbone, "iresnet-small");
  assert.is(
    labels.length,
    3 + 4 + 4 + 3,
    "clean, uniform 20 / 40 % (K = 1, 3, 10, drop), clustered 40 % (K = 1, 3, drop)",
  );
  const comps = subcenter.comparisons!(plan.settings, subcenter.grid(plan.settings));
  const names = comps.map((c) => c.name);
  for (const n of ["clean-K3-vs-K1", "uniform40-K3-vs-K1", "uniform20-K10-vs-K3", "clustered40-drop-vs-clean-K1"])
    assert.ok(names.includes(n), n);
  assert.not.ok(names.includes("clustered40-K10-vs-K3"), "no K = 10 arm under clustered noise in full");
  assert.ok(comps.every((c) => c.metric === "tar_far_1e-2" && c.paper?.includes("Table 3")));
  assert.throws(
    () => subcenter.comparisons!({ ...plan.settings, testIds: 10, comparisonFar: 1e-4 }, []),
    /comparisonFar = 0.0001 is not valid/,
  );
  assert.throws(() => planTasks(subcenter, "smoke", { noiseKinds: ["web"] }), /noiseKinds contains "web"/);
  assert.throws(
    () => planTasks(subcenter, "smoke", { noises: [0, 1.2] }),
    /noises=0,1.2 is not valid: each element of noises must be a number >= 0 and <= 1 \(1.2 is not\)/,
  );
  assert.is(configLabel({ noise: 0.2, noiseKind: "clustered", K: 3, drop: true }, 70), "clustered 20% K=3 drop>70 K=1");
});

test("the smoke preset fits in 30 s of CPU; verdicts, drop precision / recall and histograms come from the runs", async () => {
  const cpu0 = process.cpuUsage();
  const r = await runAblation(subcenter, { track: false });
  const cpu = process.cpuUsage(cpu0);
  const seconds = (cpu.user + cpu.system) / 1e6;
  assert.ok(seconds < 30, `smoke took ${seconds.toFixed(1)} s of CPU (${r.wallSeconds.toFixed(1)} s wall)`);
  assert.ok(r.settings.seeds === 2 && r.results.every((x) => x.seed === 1 || x.seed === 2));
  const results = r.results as Array<ResultOf<SubcenterConfig>>;
  for (const x of results) {
    const m = x.result.metrics;
    assert.ok(Math.abs(m.noisy_fraction - (x.config.noise > 0 ? x.config.noise : 0)) < 1e-9, x.config.label);
    const h = x.result.extra?.histogram as { clean: number[]; noisy: number[] };
    const total = h.clean.reduce((a, b) => a + b, 0) + h.noisy.reduce((a, b) => a + b, 0);
    assert.is(total, 20 * 5, "every training image in one histogram");
    assert.is(
      h.noisy.reduce((a, b) => a + b, 0),
      Math.round(x.config.noise * 5) * 20,
    );
    if (x.config.drop) {
      // precision and recall are consistent with the dropped count and the noisy count
      const dropped = m.dropped_fraction * 100;
      const noisy = m.noisy_fraction * 100;
      if (dropped > 0) assert.ok(Math.abs(m.drop_precision * dropped - m.drop_recall * noisy) < 1e-6);
      assert.ok(`before_drop_${"auc"}` in m);
    }
  }
  // the verdicts are the analysis of these very numbers: recomputing them from the results gives the same
  const configs = subcenter.grid(r.settings);
  const again = analyze(r.results, subcenter.comparisons!(r.settings, configs));
  assert.equal(
    again.comparisons.map((c) => [c.name, c.verdict.verdict, c.verdict.meanDiff]),
    r.analysis.comparisons.map((c) => [c.name, c.verdict.verdict, c.verdict.meanDiff]),
  );
  assert.ok(r.analysis.comparisons.length >= 5);
  for (const c of r.analysis.comparisons) {
    assert.ok(["held", "not shown", "contradicted"].includes(c.verdict.verdict));
    const b = r.results.filter((x) => x.config.label === c.baseline).map((x) => x.result.metrics[c.metric]);
    const t = r.results.filter((x) => x.config.label === c.treatment).map((x) => x.result.metrics[c.metric]);
    const diff = t.reduce((a, v) => a + v, 0) / t.length - b.reduce((a, v) => a + v, 0) / b.length;
    if (c.excluded.length === 0) assert.ok(Math.abs(diff - c.verdict.meanDiff) < 1e-9, c.name);
  }
  for (const name of ["tar-vs-noise", "drop-precision-recall", "angle-histograms"])
    assert.ok(
      r.summary.figures.some((f) => f.name === name),
      name,
    );
  assert.ok(
    r.summary.tables.some((t) => t.name === "paper" && t.rows.some((row) => row["IJB-C TPR@1e-4 (%)"] === 95.92)),
  );
});

test("a collapsed run (verification at chance) is named and left out, never read as a result", () => {
  const plan = planTasks(subcenter, "smoke");
  const [k1, k3] = ["clean K=1", "clean K=3"].map((l) => plan.configs.find((c) => c.label === l)!);
  const run = (config: typeof k1, seed: number, auc: number, collapsed: boolean): ResultOf => ({
    config,
    seed,
    seconds: 1,
    result: {
      metrics: { "tar_far_1e-2": auc - 0.4, auc },
      collapse: collapsed
        ? { collapsed, reasons: ["verification-at-chance"], details: ["AUC 0.500 <= 0.55"] }
        : { collapsed, reasons: [], details: [] },
    },
  });
  const results = [
    run(k1, 1, 0.9, false),
    run(k1, 2, 0.91, false),
    run(k1, 3, 0.92, false),
    run(k3, 1, 0.95, false),
    run(k3, 2, 0.5, true),
    run(k3, 3, 0.96, false),
  ];
  const a = analyze(
    results,
    subcenter.comparisons!(plan.settings, subcenter.grid(plan.settings)).filter((c) => c.name === "clean-K3-vs-K1"),
  );
  const k3Stats = a.configs.find((c) => c.label === "clean K=3")!;
  assert.equal(
    k3Stats.collapsed.map((c) => c.seed),
    [2],
  );
  assert.is(k3Stats.metrics.auc.n, 2);
  assert.ok(Math.abs(k3Stats.metrics.auc.mean - 0.955) < 1e-12, "the 0.500 run is not averaged in");
  assert.equal(a.comparisons[0].seeds, [1, 3]);
  assert.match(a.comparisons[0].excluded[0].why, /clean K=3 collapsed \(verification-at-chance\)/);
});

test.run();
