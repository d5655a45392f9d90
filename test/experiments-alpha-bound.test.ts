// alpha-bound end to end against a real MLflow server: a parent run with one child per configuration
// (flattened config as params, across-seed statistics) and a grandchild per seed (per-step metrics:
// alpha, the effective scale alpha |W|), figures and tables on the parent, verdicts computed, and
// results that show the bound (free features reach p >= 0.9 above alpha_low, far less below it).
// The smoke preset fits in 30 s of CPU (see experiments-margins.test.ts for why CPU time).
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { type AlphaBoundConfig, alphaBound } from "../experiments/alpha-bound";
import { runAblation } from "../experiments/runner";
import { MlflowClient } from "../src/tracking/client";
import { serverDuring, tempDir } from "./tracking-helpers";

const dir = tempDir("exp-mlflow");
const server = serverDuring(test, { dir });

test("alpha-bound (reduced smoke) logs a parent run, one child per configuration, metrics and artifacts", async () => {
  const phases: string[] = [];
  const result = await runAblation("alpha-bound", {
    preset: "smoke",
    trackingUri: server.url,
    experiment: "test-ablations",
    journalDir: path.join(dir, "journal"),
    set: {
      seeds: 2,
      freeClasses: [100],
      freeAlphas: [1, 16],
      freeSteps: 60,
      trainAlphas: [16],
      unitWAlphas: [],
      trainableInits: [1],
      steps: 12,
    },
    onProgress: (p) => phases.push(p.phase),
  });
  assert.is(result.results.length, 8, "4 configurations x 2 seeds");
  assert.ok(result.parentRunId, "the parent run reached the server");
  assert.is(result.pending, 0, "nothing left in the journal");
  assert.ok(result.url?.startsWith(server.url));
  assert.ok(
    phases.includes("start") && phases.includes("step") && phases.includes("done") && phases.at(-1) === "summary",
  );

  // The science: above alpha_low(100, 0.9) = 6.78 free features reach p >= 0.9; at alpha = 1 they cannot exceed the bound.
  const free = result.results.filter((r) => r.config.kind === "free" && r.seed === 1);
  const at = (a: number) => free.find((r) => (r.config as AlphaBoundConfig).head.alpha === a)!.result.metrics;
  assert.ok(at(16).mean_target_probability > 0.9, `alpha 16: ${at(16).mean_target_probability}`);
  assert.ok(
    at(1).mean_target_probability < at(1).simplex_probability + 0.01,
    `alpha 1: ${at(1).mean_target_probability}`,
  );
  assert.ok(at(1).mean_target_probability < 0.05);

  const client = new MlflowClient({ trackingUri: server.url });
  const parent = await client.getRun(result.parentRunId!);
  const ptags = Object.fromEntries((parent.data.tags ?? []).map((t) => [t.key, t.value]));
  assert.is(ptags["marginlab.ablation"], "alpha-bound");
  assert.is(ptags["marginlab.preset"], "smoke");
  assert.is(parent.info.status, "FINISHED");
  const pparams = Object.fromEntries((parent.data.params ?? []).map((p) => [p.key, p.value]));
  assert.is(pparams["setting.freeAlphas"], "1,16");

  const children = await client.searchAllRuns({
    experimentIds: [parent.info.experiment_id],
    filter: `tags.mlflow.parentRunId = '${result.parentRunId}'`,
  });
  assert.is(children.length, 4);
  assert.is(result.taskRunIds.length, 8);
  assert.equal(children.map((c) => c.info.run_id).sort(), [...result.childRunIds].sort());
  for (const child of children) {
    assert.is(child.info.status, "FINISHED");
    const params = Object.fromEntries((child.data.params ?? []).map((p) => [p.key, p.value]));
    assert.is(params.label, undefined, "the label is the run name, not a param");
    for (const key of ["kind", "classes", "head.type", "head.alpha", "head.learnAlpha", "setting.steps"])
      assert.ok(key in params, `child param ${key}`);
    const metrics = new Set((child.data.metrics ?? []).map((m) => m.key));
    const main = params.kind === "free" ? "mean_target_probability" : "auc";
    assert.ok(metrics.has(main) && metrics.has(`${main}_ci95_low`), `${child.info.run_name}: ${[...metrics]}`);
  }
  const learned = children.find((c) =>
    (c.data.params ?? []).some((p) => p.key === "head.learnAlpha" && p.value === "true"),
  )!;
  const [seedRun] = await client.searchAllRuns({
    experimentIds: [parent.info.experiment_id],
    filter: `tags.mlflow.parentRunId = '${learned.info.run_id}'`,
  });
  const history = await client.getMetricHistory(seedRun.info.run_id, "alpha");
  assert.ok(history.length >= 2, "a trainable alpha is logged per step");
  const scale = await client.getMetricHistory(seedRun.info.run_id, "effective_scale");
  assert.ok(scale.length >= 2 && scale.every((m) => m.value > 0), "alpha |W| is logged per step");

  const figures = (await client.listArtifacts(result.parentRunId!, "figures")).map((f) => path.basename(f.path));
  for (const name of ["alpha-low-curve.html", "free-embedding.html", "tar-vs-alpha.html", "trainable-alpha.html"])
    assert.ok(figures.includes(name), `${name} in ${figures}`);
  const tables = (await client.listArtifacts(result.parentRunId!, "tables")).map((f) => path.basename(f.path));
  assert.ok(tables.includes("free-embedding.json") && tables.includes("training.json"), `${tables}`);
});

test("the smoke preset fits in 30 s of CPU and computes the bound's comparisons", async () => {
  const cpu0 = process.cpuUsage();
  const r = await runAblation(alphaBound, { track: false });
  const cpu = process.cpuUsage(cpu0);
  const seconds = (cpu.user + cpu.system) / 1e6;
  assert.ok(seconds < 30, `smoke took ${seconds.toFixed(1)} s of CPU (${r.wallSeconds.toFixed(1)} s wall)`);
  assert.ok(r.settings.seeds === 2 && r.results.every((x) => x.seed === 1 || x.seed === 2));
  assert.equal(
    r.analysis.comparisons.map((c) => c.name),
    ["l2-above-vs-below-bound", "l2-target-probability", "unit-w-vs-l2-below-bound"],
  );
  for (const c of r.analysis.comparisons) assert.ok(["held", "not shown", "contradicted"].includes(c.verdict.verdict));
  const train = r.results.filter((x) => x.config.kind === "train" && !x.result.collapse?.collapsed);
  for (const x of train)
    assert.ok(x.result.metrics.effective_scale > 0 && x.result.metrics.train_target_probability <= 1);
});

test.run();
