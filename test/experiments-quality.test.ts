// quality-split: the pieces (tie-safe terciles, true-quality bins, every pair in exactly one group,
// Spearman per degradation type, relative norms), and the smoke preset end to end against a real
// MLflow server: the layout (parent -> 2 configurations -> a run per seed), the verdicts computed
// from the per-seed numbers, the softmax model's norm groups shared by both arms, bad settings named,
// and the smoke preset within 30 s of CPU (see experiments-margins.test.ts for why CPU time).
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  GROUPS,
  groupedPairScores,
  groupMetrics,
  qualityBins,
  qualitySplit,
  relativeNorms,
  spearmanPerType,
  terciles,
} from "../experiments/quality-split";
import { planTasks, runAblation, runTask } from "../experiments/runner";
import type { Degradation } from "../src/data/synthetic";
import { verdictOf } from "../src/eval/stats";
import { MlflowClient } from "../src/tracking/client";
import { serverDuring, tempDir } from "./tracking-helpers";

const dir = tempDir("quality");
const server = serverDuring(test, { dir });

test("terciles: equal thirds, and equal values share a bin whatever their order", () => {
  assert.equal(Array.from(terciles([5, 1, 9, 3, 7, 2, 8, 4, 6])), [1, 0, 2, 0, 2, 0, 2, 1, 1]);
  // six images tied at 1 (clean quality) are one bin, not split by index
  const tied = [0.2, 1, 1, 0.5, 1, 1, 0.1, 1, 1];
  const bins = Array.from(terciles(tied));
  assert.ok(new Set(bins.filter((_, i) => tied[i] === 1)).size === 1, `${bins}`);
  assert.equal(Array.from(terciles([...tied].reverse())), [...bins].reverse());
});

test("quality bins: severe from the level threshold, mild below it, clean", () => {
  const d: Degradation[] = ["none", "blur", "blur", "downsample", "downsample", "none"];
  assert.equal(Array.from(qualityBins([0, 0.2, 0.55, 0.9, 0.54, 0], d, 0.55)), [2, 1, 0, 0, 1, 2]);
});

test("every pair falls in exactly one group, genuine where the labels agree", () => {
  const n = 30;
  const emb = Array.from({ length: n }, (_, i) => Float32Array.from([Math.cos(i), Math.sin(i), (i % 7) / 7]));
  const labels = Array.from({ length: n }, (_, i) => i % 5);
  const bins = Array.from({ length: n }, (_, i) => (i * 7) % 3);
  const groups = groupedPairScores(emb, labels, bins);
  const total = groups.reduce((s, g) => s + g.genuine.length + g.impostor.length, 0);
  assert.is(total, (n * (n - 1)) / 2);
  GROUPS.forEach(([a, b], k) => {
    let genuine = 0;
    let impostor = 0;
    for (let i = 0; i < n; i++)
      for (let j = i + 1; j < n; j++) {
        const [x, y] = [bins[i], bins[j]].sort();
        if (x === a && y === b) labels[i] === labels[j] ? genuine++ : impostor++;
      }
    assert.is(groups[k].genuine.length, genuine, `group ${a}-${b}`);
    assert.is(groups[k].impostor.length, impostor, `group ${a}-${b}`);
  });
  assert.throws(
    () =>
      groupedPairScores(
        emb,
        labels,
        bins.map((b) => b + 1),
      ),
    /bins must be 0, 1 or 2/,
  );
  // perfect separation in group 3-3 only: its TAR is 1, the gap is measured against 1-1
  const sep = [
    { genuine: Float64Array.from([0.1, 0.2]), impostor: Float64Array.from([0.3, 0.4, 0.5]) },
    ...GROUPS.slice(1, 5).map(() => ({ genuine: Float64Array.from([0.5]), impostor: Float64Array.from([0.5]) })),
    { genuine: Float64Array.from([0.9, 0.8]), impostor: Float64Array.from([0.1, 0.2, 0.3]) },
  ];
  const m = groupMetrics(sep, 0.34, "norm_");
  assert.is(m.metrics.norm_tar_3_3, 1);
  assert.is(m.metrics.norm_tar_1_1, 0);
  assert.is(m.metrics.norm_gap, 1);
  assert.is(m.metrics.norm_auc_3_3, 1);
  assert.is(m.metrics.norm_auc_1_1, 0);
  assert.ok(m.notes.length === 6, "3 impostors cannot support FAR 0.34 with 10 false accepts");
});

test("Spearman per type uses the type's images and the clean ones; ties take average ranks", () => {
  const degradation: Degradation[] = ["none", "none", "blur", "blur", "downsample", "downsample"];
  const level = [0, 0, 0.3, 0.8, 0.3, 0.8];
  const quality = level.map((l) => 1 - l);
  // norms fall with blur level and rise with downsampling level
  const norms = [2, 2, 1.5, 1, 2.5, 3];
  const r = spearmanPerType(norms, quality, degradation, ["blur", "downsample"]);
  // blur: norms [2, 2, 1.5, 1] against quality [1, 1, 0.7, 0.2]: both rank [3.5, 3.5, 2, 1], rho = 1
  assert.ok(Math.abs(r.spearman_blur - 1) < 1e-12, `${r.spearman_blur}`);
  assert.ok(Math.abs(r.spearman_downsample + 1) < 1e-12, `${r.spearman_downsample}`);
  const rel = relativeNorms(norms, level, degradation, ["blur"]);
  assert.equal([rel.rel_norm_blur_1, rel.rel_norm_blur_2, rel.rel_norm_blur_3], [0.75, Number.NaN, 0.5]);
});

test("bad settings are named with what is allowed", () => {
  assert.throws(() => planTasks(qualitySplit, "smoke", { alpha: 0 }), /alpha ?= ?0 is not valid/);
  assert.throws(
    () => planTasks(qualitySplit, "smoke", { degradations: ["blur", "fog"] }),
    /degradations contains "fog": allowed are blur, downsample, jpeg, noise, occlusion/,
  );
});

test("smoke end to end: MLflow layout, verdicts computed from the per-seed numbers, within 30 s of CPU", async () => {
  const cpu0 = process.cpuUsage();
  const r = await runAblation(qualitySplit, {
    trackingUri: server.url,
    experiment: "test-quality",
    journalDir: path.join(dir, "journal"),
  });
  const cpu = process.cpuUsage(cpu0);
  const seconds = (cpu.user + cpu.system) / 1e6;
  assert.ok(seconds < 30, `smoke took ${seconds.toFixed(1)} s of CPU (${r.wallSeconds.toFixed(1)} s wall)`);
  assert.is(r.results.length, 4, "2 arms x 2 seeds");
  assert.equal(
    r.analysis.comparisons.map((c) => c.name),
    ["l2-helps-low-norm-pairs", "l2-narrows-norm-gap", "l2-helps-severe-pairs", "l2-narrows-quality-gap", "l2-overall"],
  );
  // each verdict is the paired test of the per-seed numbers (not a typed word)
  for (const c of r.analysis.comparisons) {
    const at = (label: string) =>
      c.seeds.map((s) => r.results.find((x) => x.config.label === label && x.seed === s)!.result.metrics[c.metric]);
    const again = verdictOf(at(c.treatment), at(c.baseline), c.expected);
    assert.is(c.verdict.verdict, again.verdict, c.name);
    assert.ok(Math.abs(c.verdict.meanDiff - again.meanDiff) < 1e-12, c.name);
  }
  const within = r.summary.tables.find((t) => t.name === "softmax-verdicts")!;
  assert.equal(
    within.rows.map((x) => x.comparison),
    ["softmax-norm-tracks-blur", "softmax-norm-tracks-downsample", "softmax-low-norm-pairs-worse"],
  );
  for (const row of within.rows) assert.ok(["held", "not shown", "contradicted"].includes(String(row.verdict)));
  for (const x of r.results) {
    const m = x.result.metrics;
    for (const k of ["spearman_all", "spearman_blur", "spearman_downsample"]) assert.ok(Math.abs(m[k]) <= 1, k);
    for (const g of ["1_1", "2_3", "3_3"]) assert.ok(m[`norm_tar_${g}`] >= 0 && m[`quality_tar_${g}`] <= 1);
  }

  const client = new MlflowClient({ trackingUri: server.url });
  const parent = await client.getRun(r.parentRunId!);
  const tags = Object.fromEntries((parent.data.tags ?? []).map((t) => [t.key, t.value]));
  assert.is(tags["marginlab.ablation"], "quality-split");
  for (const c of r.analysis.comparisons) assert.is(tags[`marginlab.verdict.${c.name}`], c.verdict.verdict);
  const children = await client.searchAllRuns({
    experimentIds: [parent.info.experiment_id],
    filter: `tags.mlflow.parentRunId = '${r.parentRunId}'`,
  });
  assert.equal(children.map((c) => c.info.run_name).sort(), ["l2-softmax", "softmax"]);
  for (const child of children) {
    const metrics = new Set((child.data.metrics ?? []).map((m) => m.key));
    for (const k of ["norm_tar_1_1", "norm_tar_1_1_ci95_low", "spearman_blur_std", "quality_gap", "seeds_run"])
      assert.ok(metrics.has(k), `${child.info.run_name}: ${k}`);
    const seedRuns = await client.searchAllRuns({
      experimentIds: [parent.info.experiment_id],
      filter: `tags.mlflow.parentRunId = '${child.info.run_id}'`,
    });
    assert.is(seedRuns.length, 2);
    const loss = await client.getMetricHistory(seedRuns[0].info.run_id, "loss");
    assert.ok(loss.length >= 2, "per-step loss on the seed's run");
  }
  const figures = (await client.listArtifacts(r.parentRunId!, "figures")).map((f) => path.basename(f.path));
  for (const name of ["norm-vs-level.html", "spearman.html", "groups-by-norm.html", "groups-by-quality.html"])
    assert.ok(figures.includes(name), `${name} in ${figures}`);
});

test("the L2-softmax arm groups its pairs by the softmax model of its seed, trained or reused alike", async () => {
  // seed 7 has not run in this process: the L2-softmax task trains that softmax model itself
  const plan = planTasks(qualitySplit, "smoke", { seed: 7, seeds: 1, steps: 15 });
  const [softmaxTask, l2Task] = plan.tasks;
  const alone = await runTask(qualitySplit, plan, l2Task);
  const softmax = await runTask(qualitySplit, plan, softmaxTask);
  const reused = await runTask(qualitySplit, plan, l2Task);
  for (const [k, v] of Object.entries(alone.result.metrics))
    if (k.startsWith("norm_")) assert.is(reused.result.metrics[k], v, k);
  assert.ok(Math.abs(softmax.result.metrics.spearman_all) <= 1);
});

test.run();
