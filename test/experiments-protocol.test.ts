// The shared protocol: the plan is a pure function of (ablation, preset, settings), seed-major and
// paired; a diverged task is reported as collapsed and left out of the statistics; verdicts are
// computed; and the MLflow layout on a real server is parent -> configuration -> seed.
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { analyze } from "../experiments/analysis";
import { planTasks, runAblation, runTask } from "../experiments/runner";
import type { Ablation, Config } from "../experiments/types";
import { Rng } from "../src/data/rng";
import { detectCollapse } from "../src/eval/collapse";
import { MlflowClient } from "../src/tracking/client";
import { TrainingError } from "../src/train/trainer";
import { serverDuring, tempDir } from "./tracking-helpers";

interface ToyConfig extends Config {
  "arm.shift": number;
}

/**
 * A toy ablation whose "accuracy" is a seed effect shared by all arms (what pairing removes) plus the
 * arm's shift plus small noise; the "broken" arm diverges on seed 2 and the "flat" arm's
 * verification is at chance on seed 1.
 */
const toy: Ablation<ToyConfig> = {
  name: "toy",
  title: "Toy",
  claim: "treatment beats baseline",
  presets: {
    smoke: { seed: 1, seeds: 3, arms: ["baseline", "treatment", "worse", "broken", "flat"] },
    full: { seed: 1, seeds: 5, arms: ["baseline", "treatment"] },
    paper: { seed: 1, seeds: 5, arms: ["baseline", "treatment"] },
  },
  describe: { seed: "first seed", seeds: "how many seeds", arms: "arms" },
  grid: (s) =>
    (s.arms as string[]).map((label) => ({
      label,
      "arm.shift": { baseline: 0, treatment: 0.05, worse: -0.05, broken: 0, flat: 0 }[label] ?? 0,
    })),
  comparisons: () => [
    {
      name: "treatment-vs-baseline",
      claim: "T > B",
      metric: "accuracy",
      baseline: "baseline",
      treatment: "treatment",
      expected: "greater",
      paper: "99.5 vs 99.1 (toy, Table 1)",
    },
    {
      name: "worse-vs-baseline",
      claim: "W > B",
      metric: "accuracy",
      baseline: "baseline",
      treatment: "worse",
      expected: "greater",
    },
    {
      name: "broken-vs-baseline",
      claim: "X > B",
      metric: "accuracy",
      baseline: "baseline",
      treatment: "broken",
      expected: "greater",
    },
  ],
  async runOne(config, ctx) {
    if (config.label === "broken" && ctx.seed === 2)
      throw new TrainingError("Training stopped at step 3: the loss is NaN", 3, undefined);
    const seedEffect = new Rng(ctx.seed).uniform(-0.2, 0.2); // the same for every arm of a seed
    const noise = new Rng(ctx.seed * 1000 + config["arm.shift"] * 100).uniform(-0.002, 0.002);
    const losses = [2, 1.5, 1.2, 1.1, 1.1];
    losses.forEach((loss, i) => {
      ctx.log({ loss }, i * 10);
      ctx.progress(i + 1, losses.length);
    });
    const auc = config.label === "flat" && ctx.seed === 1 ? 0.5 : 0.9;
    return {
      metrics: { accuracy: 0.7 + seedEffect + config["arm.shift"] + noise, auc },
      lossHistory: losses.map((loss, i) => ({ step: i * 10, loss })),
      collapse: detectCollapse({ losses, auc, meanPairwiseCosine: 0.1 }),
    };
  },
  summarize: () => ({ tables: [], figures: [], notes: [] }),
};

test("the plan: configurations x seeds, seed-major, a pure function of (ablation, preset, settings)", () => {
  const a = planTasks(toy, "smoke");
  assert.equal(a.seeds, [1, 2, 3]);
  assert.is(a.tasks.length, 15);
  assert.equal(
    a.tasks.slice(0, 6).map((t) => [t.config.label, t.seed]),
    [
      ["baseline", 1],
      ["treatment", 1],
      ["worse", 1],
      ["broken", 1],
      ["flat", 1],
      ["baseline", 2],
    ],
  );
  assert.equal(planTasks(toy, "smoke"), a);
  assert.is(a.tasks[0].configHash, a.tasks[5].configHash, "a configuration keeps its hash across seeds");
  assert.is.not(a.tasks[0].configHash, a.tasks[1].configHash);
  assert.equal(planTasks(toy, "smoke", { seeds: 2, seed: 7 }).seeds, [7, 8]);
  assert.throws(() => planTasks(toy, "smoke", { seeds: 0 }), /seeds=0 is not valid: seeds must be an integer >= 1/);
});

test("a task runs alone; a diverged run comes back collapsed (loss-nan), not as an error", async () => {
  const plan = planTasks(toy, "smoke");
  const broken = plan.tasks.find((t) => t.config.label === "broken" && t.seed === 2)!;
  const r = await runTask(toy, plan, broken);
  assert.equal(r.result.collapse?.reasons, ["loss-nan"]);
  assert.match(r.result.collapse?.details[0] ?? "", /loss is NaN/);
  const fine = await runTask(toy, plan, plan.tasks[1]);
  assert.is(fine.seed, 1);
  assert.not.ok(fine.result.collapse?.collapsed);
});

test("analysis: pairing removes the seed effect; collapsed runs are named and left out", async () => {
  const plan = planTasks(toy, "smoke");
  const results = [];
  for (const t of plan.tasks) results.push(await runTask(toy, plan, t));
  const a = analyze(results, toy.comparisons?.(plan.settings, plan.configs as ToyConfig[]));
  const [tvb, wvb, xvb] = a.comparisons;
  assert.is(tvb.verdict.verdict, "held", tvb.verdict.text);
  assert.ok(Math.abs(tvb.verdict.meanDiff - 0.05) < 0.005);
  assert.is(tvb.verdict.n, 3);
  assert.is(wvb.verdict.verdict, "contradicted", wvb.verdict.text);
  assert.is(xvb.verdict.n, 2, "the diverged seed is not paired");
  assert.equal(xvb.excluded, [{ seed: 2, why: "broken collapsed (loss-nan)" }]);
  const flat = a.configs.find((c) => c.label === "flat")!;
  assert.equal(
    flat.collapsed.map((c) => [c.seed, c.reasons]),
    [[1, ["verification-at-chance"]]],
  );
  assert.is(flat.metrics.accuracy.n, 2);
  const base = a.configs.find((c) => c.label === "baseline")!;
  assert.equal(base.converged, {
    seeds: [1, 2, 3],
    of: 3,
    relativeImprovement: { 1: 0, 2: 0, 3: 0 },
    shareOfFall: { 1: 0, 2: 0, 3: 0 },
  });
  assert.ok(base.metrics.accuracy.ci[0] < base.metrics.accuracy.mean);
});

const dir = tempDir("protocol");
const server = serverDuring(test, { dir });

test("MLflow layout: parent (verdict tags, description, headline) -> configuration (across-seed statistics) -> seed (curves)", async () => {
  const result = await runAblation(toy, {
    trackingUri: server.url,
    experiment: "test-protocol",
    journalDir: path.join(dir, "journal"),
  });
  assert.is(result.pending, 0);
  assert.is(result.childRunIds.length, 5);
  assert.is(result.taskRunIds.length, 15);
  assert.is(result.summary.tables[0].name, "verdicts");
  assert.ok(result.summary.tables.some((t) => t.name === "collapsed" && t.rows.length === 2));
  const client = new MlflowClient({ trackingUri: server.url });
  const parent = await client.getRun(result.parentRunId!);
  const tags = Object.fromEntries((parent.data.tags ?? []).map((t) => [t.key, t.value]));
  assert.is(tags["marginlab.verdict.treatment-vs-baseline"], "held");
  assert.is(tags["marginlab.verdict.worse-vs-baseline"], "contradicted");
  assert.match(tags["mlflow.note.content"], /held: \+0\.05\d \(95 % CI/);
  assert.match(tags["mlflow.note.content"], /paper: 99.5 vs 99.1/);
  assert.match(tags["mlflow.note.content"], /Collapsed or diverged, left out: broken seed 2 \(loss-nan\); flat seed 1/);
  const pmetrics = Object.fromEntries((parent.data.metrics ?? []).map((m) => [m.key, m.value]));
  assert.ok(Math.abs(pmetrics.headline_mean_diff - 0.05) < 0.005);
  assert.is(pmetrics.comparisons_held, 1);
  assert.is(pmetrics.runs_collapsed, 2);
  const pparams = Object.fromEntries((parent.data.params ?? []).map((p) => [p.key, p.value]));
  assert.is(pparams["setting.seeds"], "3");

  const children = await client.searchAllRuns({
    experimentIds: [parent.info.experiment_id],
    filter: `tags.mlflow.parentRunId = '${result.parentRunId}'`,
  });
  assert.equal(children.map((c) => c.info.run_id).sort(), [...result.childRunIds].sort());
  const treatment = children.find((c) => c.info.run_name === "treatment")!;
  const cparams = Object.fromEntries((treatment.data.params ?? []).map((p) => [p.key, p.value]));
  assert.is(cparams["arm.shift"], "0.05");
  assert.is(cparams["setting.arms"], "baseline,treatment,worse,broken,flat", "shared settings on every child");
  const ctags = Object.fromEntries((treatment.data.tags ?? []).map((t) => [t.key, t.value]));
  assert.is(ctags["marginlab.configHash"], result.analysis.configs[1].configHash);
  const cm = Object.fromEntries((treatment.data.metrics ?? []).map((m) => [m.key, m.value]));
  const stats = result.analysis.configs[1].metrics.accuracy;
  assert.ok(Math.abs(cm.accuracy - stats.mean) < 1e-9 && Math.abs(cm.accuracy_std - stats.std) < 1e-9);
  assert.ok(Math.abs(cm.accuracy_ci95_low - stats.ci[0]) < 1e-9 && cm.seeds_run === 3 && cm.seeds_collapsed === 0);

  const seeds = await client.searchAllRuns({
    experimentIds: [parent.info.experiment_id],
    filter: `tags.mlflow.parentRunId = '${treatment.info.run_id}'`,
  });
  assert.equal(seeds.map((s) => s.info.run_name).sort(), ["treatment seed 1", "treatment seed 2", "treatment seed 3"]);
  const curve = await client.getMetricHistory(seeds[0].info.run_id, "loss");
  assert.is(curve.length, 5);
  const brokenChild = children.find((c) => c.info.run_name === "broken")!;
  const brokenSeeds = await client.searchAllRuns({
    experimentIds: [parent.info.experiment_id],
    filter: `tags.mlflow.parentRunId = '${brokenChild.info.run_id}'`,
  });
  const b2 = brokenSeeds.find((s) => s.info.run_name === "broken seed 2")!;
  assert.ok((b2.data.tags ?? []).some((t) => t.key === "marginlab.collapsed" && t.value === "loss-nan"));
});

test.run();
