// alpha-bound end to end against a real MLflow server: a parent run with one child per configuration
// (flattened config as params, per-step metrics), figures and tables on the parent, and results that
// show the bound (free features reach p >= 0.9 above alpha_low, far less below it).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { runAblation } from "../experiments/runner";
import { MlflowClient } from "../src/tracking/client";
import { type MlflowServer, startMlflowServer } from "../src/tracking/server";

let server: MlflowServer;
let dir: string;

test.before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "marginlab-exp-mlflow-"));
  server = await startMlflowServer({ dir, startTimeoutMs: 180_000 });
});

test.after(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("alpha-bound (reduced smoke) logs a parent run, one child per configuration, metrics and artifacts", async () => {
  const phases: string[] = [];
  const result = await runAblation("alpha-bound", {
    preset: "smoke",
    trackingUri: server.url,
    experiment: "test-ablations",
    journalDir: path.join(dir, "journal"),
    set: {
      freeClasses: [100],
      freeAlphas: [1, 16],
      freeSteps: 60,
      trainAlphas: [8],
      trainableInits: [1],
      steps: 15,
      trainPerClass: 30,
      testPerClass: 10,
    },
    onProgress: (p) => phases.push(p.phase),
  });
  assert.is(result.results.length, 4);
  assert.ok(result.parentRunId, "the parent run reached the server");
  assert.is(result.pending, 0, "nothing left in the journal");
  assert.ok(result.url?.startsWith(server.url));
  assert.ok(
    phases.includes("start") && phases.includes("step") && phases.includes("done") && phases.at(-1) === "summary",
  );

  // The science: above alpha_low(100, 0.9) = 6.78 free features reach p >= 0.9; at alpha = 1 they cannot exceed the bound.
  const free = result.results.filter((r) => r.config.kind === "free");
  const at = (a: number) => free.find((r) => r.config.alpha === a)!.result.metrics;
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
  assert.is(pparams.freeAlphas, "1,16");

  const children = await client.searchAllRuns({
    experimentIds: [parent.info.experiment_id],
    filter: `tags.mlflow.parentRunId = '${result.parentRunId}'`,
  });
  assert.is(children.length, 4);
  assert.equal(children.map((c) => c.info.run_id).sort(), [...result.childRunIds].sort());
  for (const child of children) {
    assert.is(child.info.status, "FINISHED");
    const params = Object.fromEntries((child.data.params ?? []).map((p) => [p.key, p.value]));
    for (const key of ["kind", "classes", "alpha", "learnAlpha", "seed", "label"])
      assert.ok(key in params, `child param ${key}`);
    const metrics = new Set((child.data.metrics ?? []).map((m) => m.key));
    assert.ok(
      metrics.has(params.kind === "free" ? "mean_target_probability" : "test_accuracy"),
      `${params.label}: ${[...metrics]}`,
    );
  }
  const learned = children.find((c) =>
    (c.data.params ?? []).some((p) => p.key === "learnAlpha" && p.value === "true"),
  )!;
  const history = await client.getMetricHistory(learned.info.run_id, "alpha");
  assert.ok(history.length >= 2, "a trainable alpha is logged per step");

  const figures = (await client.listArtifacts(result.parentRunId!, "figures")).map((f) => path.basename(f.path));
  for (const name of ["alpha-low-curve.html", "free-embedding.html", "accuracy-vs-alpha.html", "trainable-alpha.html"])
    assert.ok(figures.includes(name), `${name} in ${figures}`);
  const tables = (await client.listArtifacts(result.parentRunId!, "tables")).map((f) => path.basename(f.path));
  assert.ok(tables.includes("free-embedding.json") && tables.includes("training.json"), `${tables}`);
});

test.run();
