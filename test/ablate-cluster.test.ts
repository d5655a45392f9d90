// An ablation run as planned tasks: `--set` ranges are checked before any run exists (exit 2); `--plan`
// creates the parent and the configurations' children and lists the tasks; each task runs by index
// under that parent (concurrently creating a missing configuration child only once); a retry skips a
// FINISHED task and supersedes a FAILED one; `summarize` rebuilds the same tables, verdicts and
// aggregates as a local run of the same ablation; `--jobs 2` gives the same results. Real MLflow server,
// checked with MLflow's own Python client.
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  type AblationRun,
  planAblation,
  runAblation,
  runPlannedTask,
  SUPERSEDED_BY,
  summarizeAblation,
  TASK_RESULT_ARTIFACT,
} from "../experiments/runner";
import { projectRoot } from "../src/project";
import { MlflowClient } from "../src/tracking/client";
import type { MlflowServer } from "../src/tracking/server";
import { CUT_ALPHA_BOUND_TEXT, cutAlphaBoundArgs } from "./ablation-helpers";
import { python, removeTempDirs, runProcess, startServer, tempDir } from "./tracking-helpers";

const SET = CUT_ALPHA_BOUND_TEXT;
const setArgs = cutAlphaBoundArgs();

let server: MlflowServer & { dir: string };
let journalDir: string;
let local: AblationRun;

async function cli(args: string[], env: Record<string, string> = {}) {
  const r = await runProcess(process.execPath, [path.join(projectRoot, "bin", "marginlab.cjs"), ...args], {
    env: { MLFLOW_TRACKING_URI: server.url, TF_CPP_MIN_LOG_LEVEL: "2", ...env },
  });
  return { ...r, code: r.code ?? -1 };
}

/** Every run on the server (all experiments, deleted ones too), read with MLflow's Python client. */
function serverRuns() {
  return python<Array<{ id: string; status: string; deleted: boolean; tags: Record<string, string> }>>(
    `
import json, mlflow
c = mlflow.MlflowClient()
out = []
for e in c.search_experiments(view_type=3):
    for r in c.search_runs([e.experiment_id], run_view_type=3, max_results=5000):
        out.append({"id": r.info.run_id, "status": r.info.status, "deleted": r.info.lifecycle_stage == "deleted", "tags": r.data.tags})
print(json.dumps(out))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
}

const opts = () => ({ trackingUri: server.url, journalDir, experiment: "ablate-cluster" });

/** The summary's tables (name -> rows) and verdicts, which must not depend on how the tasks ran. */
function outcome(r: AblationRun) {
  return {
    tables: r.summary.tables.map((t) => ({ name: t.name, rows: t.rows })),
    notes: r.summary.notes,
    verdicts: r.analysis.comparisons.map((c) => [c.name, c.verdict.verdict]),
    figures: r.summary.figures.map((f) => f.name),
  };
}

test.before(async () => {
  server = await startServer({ startTimeoutMs: 180_000 });
  journalDir = tempDir("ablate-journal");
});

test.after(async () => {
  await server?.stop();
  removeTempDirs();
});

test("--set steps=-5 exits 2 naming the setting, the value and the range, before any run exists", async () => {
  const r = await cli(["ablate", "alpha-bound", "--set", "steps=-5"]);
  assert.is(r.code, 2, r.err);
  assert.match(r.err, /--set steps=-5 is not valid: steps must be an integer >= 1\./);
  const list = await cli(["ablate", "alpha-bound", "--set", "trainAlphas=2,-1", "--plan"]);
  assert.is(list.code, 2, list.err);
  assert.match(
    list.err,
    /trainAlphas=2,-1 is not valid: each element of trainAlphas must be a number > 0 \(-1 is not\)/,
  );
  assert.equal(await serverRuns(), []);
});

test("local run of the cut smoke ablation (the reference)", async () => {
  local = await runAblation("alpha-bound", { ...opts(), set: SET });
  assert.is(local.pending, 0);
  assert.is(local.taskRunIds.length, 10);
  assert.ok(local.analysis.comparisons.length > 0, "the cut grid keeps at least one of the paper's comparisons");
});

test("plan -> tasks by index (retry skips, failed one superseded, missing child made once) -> summarize = local", async () => {
  const planned = await planAblation("alpha-bound", { ...opts(), set: SET });
  assert.is(planned.commands.length, 10);
  assert.is(planned.childRunIds.length, 5);
  assert.is(
    planned.commands[3],
    `npx marginlab ablate alpha-bound --preset smoke --index 3 --parent ${planned.parentRunId}`,
  );
  const parent = planned.parentRunId;
  const client = new MlflowClient({ trackingUri: server.url });
  const { tasks } = planned.plan;

  // a task that failed before (a FAILED run with the task's tags) is replaced, and tagged as superseded
  const first = await runPlannedTask(parent, 0, opts());
  assert.is(first.skipped, false);
  const failedTask = tasks[1];
  const parentInfo = await client.getRun(parent);
  const stale = await client.createRun({
    experimentId: parentInfo.info.experiment_id,
    runName: "stale attempt",
    tags: [
      ["marginlab.role", "task"],
      ["marginlab.ablationRun", parent],
      ["marginlab.configHash", failedTask.configHash],
      ["marginlab.seed", String(failedTask.seed)],
      ["mlflow.parentRunId", planned.childRunIds[failedTask.configIndex]],
    ].map(([key, value]) => ({ key, value })),
  });
  await client.updateRun(stale.info.run_id, { status: "FAILED", endTime: Date.now() });
  const replaced = await runPlannedTask(parent, 1, opts());
  assert.equal(replaced.superseded, [stale.info.run_id]);

  // a retry of a FINISHED task does nothing
  const again = await runPlannedTask(parent, 0, opts());
  assert.is(again.skipped, true);
  assert.is(again.runId, first.runId);

  // the configuration child of tasks 2 and 7 (same configuration, seeds 1 and 2) was deleted: both
  // tasks, run concurrently, end up under one new child
  assert.is(tasks[2].configIndex, tasks[7].configIndex);
  await client.deleteRun(planned.childRunIds[tasks[2].configIndex]);
  await Promise.all([runPlannedTask(parent, 2, opts()), runPlannedTask(parent, 7, opts())]);

  for (const t of tasks) if (![0, 1, 2, 7].includes(t.index)) await runPlannedTask(parent, t.index, opts());
  const summarized = await summarizeAblation(parent, opts());
  assert.equal(outcome(summarized), outcome(local));

  const runs = (await serverRuns()).filter((r) => !r.deleted);
  const under = runs.filter((r) => r.tags["marginlab.ablationRun"] === parent);
  const taskRuns = under.filter((r) => r.tags["marginlab.role"] === "task");
  const children = under.filter((r) => r.tags["marginlab.role"] === "configuration");
  assert.is(children.length, 5, "one child per configuration, none duplicated");
  assert.ok(children.every((c) => c.status === "FINISHED"));
  const live = taskRuns.filter((r) => !r.tags[SUPERSEDED_BY]);
  assert.is(live.length, 10, "every task arrived exactly once");
  assert.ok(live.every((r) => r.status === "FINISHED"));
  const childIds = new Set(children.map((c) => c.id));
  assert.ok(
    live.every((r) => childIds.has(r.tags["mlflow.parentRunId"])),
    "every task under its configuration child",
  );
  assert.is(runs.find((r) => r.id === stale.info.run_id)?.tags[SUPERSEDED_BY], replaced.runId);

  // the parent holds what a local run's parent holds: verdict tags, the same tables, the children's aggregates
  const p = runs.find((r) => r.id === parent);
  const l = runs.find((r) => r.id === local.parentRunId);
  const verdictTags = (t: Record<string, string>) =>
    Object.entries(t)
      .filter(([k]) => k.startsWith("marginlab.verdict."))
      .sort();
  assert.ok(verdictTags(l?.tags ?? {}).length > 0);
  assert.equal(verdictTags(p?.tags ?? {}), verdictTags(l?.tags ?? {}));
  assert.is(p?.status, "FINISHED");
  const aggregates = await python<Record<string, Record<string, number>>>(
    `
import json, mlflow
c = mlflow.MlflowClient()
out = {}
for pid in ${JSON.stringify([parent, local.parentRunId])}:
    e = c.get_run(pid).info.experiment_id
    for r in c.search_runs([e], filter_string="tags.\`marginlab.role\` = 'configuration' and tags.\`marginlab.ablationRun\` = '%s'" % pid):
        out[pid + "/" + r.data.tags["marginlab.configHash"]] = r.data.metrics
print(json.dumps(out))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
  // wall-clock metrics (train_seconds, ...) differ between any two runs; everything else must agree
  const untimed = (m: Record<string, number> | undefined) =>
    Object.fromEntries(Object.entries(m ?? {}).filter(([k]) => !k.includes("seconds")));
  for (const c of planned.plan.configs) {
    const hash = tasks.find((t) => t.config === c)?.configHash;
    const mine = untimed(aggregates[`${parent}/${hash}`]);
    assert.ok(Object.keys(mine).length > 5, c.label);
    assert.equal(mine, untimed(aggregates[`${local.parentRunId}/${hash}`]), c.label);
  }
  const artifact = await client.downloadArtifact(
    (await client.getRun(first.runId)).info.artifact_uri,
    TASK_RESULT_ARTIFACT,
  );
  assert.is(JSON.parse(artifact.toString("utf8")).seed, tasks[0].seed);
});

test("summarize of an unfinished plan names the missing tasks and exits 2", async () => {
  const plan = await cli(["ablate", "alpha-bound", ...setArgs, "--plan"]);
  assert.is(plan.code, 0, plan.err);
  const lines = plan.out.trim().split("\n");
  const [n, parentRunId] = (lines.pop() ?? "").split(" ");
  assert.is(n, "10", "the last line is `N RUN_ID`");
  assert.is(lines.filter((l) => l.startsWith("npx marginlab ablate alpha-bound")).length, 10);
  const planned = { parentRunId };
  const r = await cli(["summarize", planned.parentRunId]);
  assert.is(r.code, 2, r.err);
  assert.match(r.err, /10 of 10 tasks have no FINISHED run \(indices 0, 1, 2/);
  const bad = await cli(["ablate", "alpha-bound", "--index", "10", "--parent", planned.parentRunId]);
  assert.is(bad.code, 2, bad.err);
  assert.match(bad.err, /--index 10 is out of range: the plan has tasks 0\.\.9/);
});

test("--plan --json, and --jobs 2 (worker processes) gives the local run's tables and verdicts", async () => {
  const plan = await cli(["ablate", "alpha-bound", ...setArgs, "--plan", "--json"]);
  assert.is(plan.code, 0, plan.err);
  const json = JSON.parse(plan.out.trim().split("\n").pop() ?? "");
  assert.is(json.tasks, 10);
  assert.is(json.commands.length, 10);
  assert.match(json.commands[0], new RegExp(`--index 0 --parent ${json.parentRunId}$`));

  const r = await cli(["ablate", "alpha-bound", ...setArgs, "--jobs", "2", "--threads", "1"]);
  assert.is(r.code, 0, r.err);
  assert.match(r.err, /10 tasks in 2 workers x 1 TensorFlow threads/);
  const parentId = /parent ([0-9a-f]{32})/.exec(r.err)?.[1] as string;
  const summarized = await summarizeAblation(parentId, opts());
  assert.equal(outcome(summarized), outcome(local));
  assert.ok(
    summarized.artifacts.some((a) => a.endsWith("summary/notes.md")),
    summarized.artifacts.join(", "),
  );
  // the planned parent has no load of its own: it is the first task's start and the last one's end
  const { start, end } = summarized.load;
  assert.ok(
    typeof start === "number" && start >= 0 && typeof end === "number" && end >= 0,
    JSON.stringify(summarized.load),
  );
});

test.run();
