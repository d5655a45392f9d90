// Opt-in (MARGINLAB_CLUSTER_TESTS=1): a real ablation as a Slurm job array, as docs/cluster.md tells
// users to run it. A one-node cluster on 127.0.0.1 (scripts/cluster/slurm-up.sh) and the team MLflow
// server on PostgreSQL; `npx marginlab ablate margins --preset smoke --plan` creates the parent;
// scripts/cluster/ablation.sbatch runs each task as `npx marginlab ablate ... --index I --parent ID`;
// one task is frozen mid-training and requeued. MLflow's own Python client then checks that every task
// arrived exactly once under the one parent (the killed attempt KILLED and superseded, nothing left
// RUNNING), a resubmitted array adds nothing, and `npx marginlab summarize` gives the same tables,
// per-configuration statistics and verdicts as the same ablation run locally without Slurm.
import { spawnSync } from "node:child_process";
import { chmodSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { projectRoot } from "../src/project";
import { MlflowClient } from "../src/tracking/client";
import { ensureTeamServer, stopTeamServer } from "../src/tracking/embedded";
import { python, removeTempDirs, tempDir } from "./tracking-helpers";

const ABLATION = "margins";
const PRESET = "smoke";
const THROTTLE = 2;
const scripts = path.join(projectRoot, "scripts", "cluster");

interface Ran {
  code: number | null;
  out: string;
  err: string;
  seconds: number;
}

function runSync(command: string, args: string[], env: NodeJS.ProcessEnv): Ran {
  const t0 = Date.now();
  const r = spawnSync(command, args, { cwd: projectRoot, env, encoding: "utf8", timeout: 20 * 60_000 });
  return { code: r.status, out: r.stdout ?? "", err: r.stderr ?? "", seconds: (Date.now() - t0) / 1000 };
}

/** A command that must succeed: its stdout, trimmed. */
function sh(command: string, args: string[], env: NodeJS.ProcessEnv): string {
  const r = runSync(command, args, env);
  if (r.code !== 0) throw new Error(`${command} ${args.join(" ")} exited ${r.code}: ${r.err.trim().slice(-2000)}`);
  return r.out.trim();
}

/** `npx marginlab ARGS` in the project root, as the docs write it (--no: never install anything). */
function marginlab(args: string[], env: NodeJS.ProcessEnv): Ran {
  const r = runSync("npx", ["--no", "marginlab", ...args], env);
  assert.is(r.code, 0, `npx marginlab ${args.join(" ")} exited ${r.code}: ${r.err.slice(-3000)}`);
  return r;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(250);
  }
}

const load = () => readFileSync("/proc/loadavg", "utf8").split(" ")[0];

/** The PIDs of the processes of task `index` (npm exec and the node CLI it starts), from /proc. */
function taskPids(index: number, parent: string): number[] {
  const needle = `--index ${index} --parent ${parent}`;
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ").includes(needle))
        pids.push(Number(entry));
    } catch {
      // the process ended meanwhile
    }
  }
  return pids;
}

function signalAll(pids: number[], signal: NodeJS.Signals) {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

interface LayoutRun {
  id: string;
  status: string;
  role: string;
  task: number | null;
  parentRun: string;
  supersededBy: string;
}

/** The parent and every run of its layout (configurations and tasks), read with MLflow's Python client. */
function layout(url: string, parent: string): Promise<{ parent: LayoutRun; runs: LayoutRun[] }> {
  return python(
    `
import json
from mlflow.tracking import MlflowClient
from mlflow.entities import ViewType
c = MlflowClient()
p = c.get_run(${JSON.stringify(parent)})
runs = c.search_runs([p.info.experiment_id], "tags.\`marginlab.ablationRun\` = '${parent}'", run_view_type=ViewType.ACTIVE_ONLY, max_results=5000)
def row(r):
    t = r.data.tags
    return {"id": r.info.run_id, "status": r.info.status, "role": t.get("marginlab.role", ""),
            "task": int(t["marginlab.task"]) if "marginlab.task" in t else None,
            "parentRun": t.get("mlflow.parentRunId", ""), "supersededBy": t.get("marginlab.supersededBy", "")}
print(json.dumps({"parent": row(p), "runs": [row(r) for r in runs]}))
`,
    { MLFLOW_TRACKING_URI: url },
  );
}

interface Outcome {
  verdicts: Record<string, string>;
  parentMetrics: Record<string, number>;
  configurations: Record<string, { label: string; metrics: Record<string, number> }>;
  tables: Record<string, unknown>;
}

/**
 * What an ablation's parent holds once summarized: verdict tags, the parent's metrics, each
 * configuration child's across-seed statistics (by configuration hash) and the tables/ artifacts.
 * Wall-clock metrics (wall_seconds, train_seconds, ...) differ between any two runs, and only a local
 * run samples system metrics (system/...): both are left out.
 */
function outcome(url: string, parent: string): Promise<Outcome> {
  return python(
    `
import json, os, tempfile
from mlflow.tracking import MlflowClient
c = MlflowClient()
untimed = lambda m: {k: v for k, v in m.items() if "seconds" not in k and not k.startswith("system/")}
p = c.get_run(${JSON.stringify(parent)})
children = c.search_runs([p.info.experiment_id], "tags.\`marginlab.role\` = 'configuration' and tags.\`marginlab.ablationRun\` = '${parent}'", max_results=1000)
tables = {}
with tempfile.TemporaryDirectory() as d:
    local = c.download_artifacts(p.info.run_id, "tables", d)
    for f in sorted(os.listdir(local)):
        with open(os.path.join(local, f)) as fh:
            tables[f] = json.load(fh)
print(json.dumps({
    "verdicts": {k: v for k, v in p.data.tags.items() if k.startswith("marginlab.verdict.")},
    "parentMetrics": untimed(p.data.metrics),
    "configurations": {r.data.tags["marginlab.configHash"]: {"label": r.info.run_name, "metrics": untimed(r.data.metrics)} for r in children},
    "tables": tables,
}))
`,
    { MLFLOW_TRACKING_URI: url },
  );
}

/** The summary tables and findings a command printed (everything before its closing "NAME (PRESET): ..." line). */
function printedSummary(stdout: string): string {
  const lines = stdout.split("\n");
  const end = lines.findIndex((l) => l.startsWith(`${ABLATION} (${PRESET}): `));
  assert.ok(end > 0, `no summary in:\n${stdout.slice(-2000)}`);
  return lines.slice(0, end).join("\n").trim();
}

let dir = ""; // the test's folder: Slurm's, PostgreSQL's and MLflow's state, the tasks' output files
const serverDirs = () => ({ dir: path.join(dir, "mlflow"), postgresDir: path.join(dir, "postgres") });
const env: NodeJS.ProcessEnv = { ...process.env, TF_CPP_MIN_LOG_LEVEL: "2" };
const state: {
  client?: MlflowClient;
  url: string;
  parent: string;
  tasks: number;
  job: string;
  killed?: { index: number; runId: string; statusBeforeRetry: string };
  figures: Record<string, string>;
} = { url: "", parent: "", tasks: 0, job: "", figures: {} };

function submit(parent: string): { job: string; seconds: () => number } {
  const t0 = Date.now();
  const job = sh(
    "sbatch",
    [
      "--parsable",
      `--array=0-${state.tasks - 1}%${THROTTLE}`,
      `--output=${path.join(dir, "slurm-%A_%a.out")}`,
      path.join(scripts, "ablation.sbatch"),
      ABLATION,
      PRESET,
      parent,
    ],
    env,
  ).split(";")[0];
  return { job, seconds: () => (Date.now() - t0) / 1000 };
}

const queueEmpty = (job: string) => sh("squeue", ["-h", "-j", job, "-o", "%i"], env) === "" || undefined;
const outputs = (job: string) =>
  readdirSync(dir)
    .filter((f) => f.startsWith(`slurm-${job}_`))
    .map((f) => readFileSync(path.join(dir, f), "utf8"));

/**
 * Freezes (SIGSTOP) the first task caught with its run RUNNING on the server, so that it is killed
 * mid-training whatever the machine's speed. A task that finished before it was frozen is let go and
 * the next one is tried.
 */
async function freezeTaskMidway(client: MlflowClient, experimentId: string) {
  const missed = new Set<number>();
  return until("a task to freeze mid-training", 600_000, async () => {
    const { runs } = await client.searchRuns({
      experimentIds: [experimentId],
      filter: `tags.\`marginlab.ablationRun\` = '${state.parent}' and tags.\`marginlab.role\` = 'task' and attributes.status = 'RUNNING'`,
    });
    for (const run of runs) {
      const index = Number(run.data.tags?.find((t) => t.key === "marginlab.task")?.value);
      if (missed.has(index)) continue;
      const pids = taskPids(index, state.parent);
      signalAll(pids, "SIGSTOP");
      await sleep(500); // a request already sent lands before we look
      if ((await client.getRun(run.info.run_id)).info.status === "RUNNING" && pids.length > 0)
        return { index, runId: run.info.run_id, pids };
      signalAll(pids, "SIGCONT");
      missed.add(index);
    }
    return undefined;
  });
}

if (process.env.MARGINLAB_CLUSTER_TESTS !== "1") {
  console.log("cluster-slurm: skipped (opt-in suite: set MARGINLAB_CLUSTER_TESTS=1; see docs/cluster.md)");
} else {
  test.before(async () => {
    dir = tempDir("cluster");
    env.MARGINLAB_SLURM_DIR = path.join(dir, "slurm");
    chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user when we are root
    const t0 = Date.now();
    const exportLine = sh("bash", [path.join(scripts, "slurm-up.sh")], env);
    env.SLURM_CONF = /SLURM_CONF=(\S+)/.exec(exportLine)?.[1];
    assert.ok(env.SLURM_CONF, exportLine);
    const server = await ensureTeamServer(serverDirs());
    assert.match(server.backendStore ?? "", /^postgresql:/, "the team server's store is PostgreSQL");
    state.url = server.url;
    env.MLFLOW_TRACKING_URI = server.url;
    state.client = new MlflowClient({ trackingUri: server.url });
    state.figures.up = `cluster + PostgreSQL-backed MLflow up in ${((Date.now() - t0) / 1000).toFixed(0)} s`;
  });

  test.after(async () => {
    state.client?.close();
    if (!dir) return;
    try {
      sh("bash", [path.join(scripts, "slurm-down.sh")], env);
    } finally {
      // a task process that outlived its job (a failed run of this test) is this test's to end
      for (let i = 0; state.parent && i < state.tasks; i++) signalAll(taskPids(i, state.parent), "SIGKILL");
      await stopTeamServer(serverDirs());
      removeTempDirs();
    }
    console.log(`cluster-slurm measured: ${Object.values(state.figures).join("; ")}`);
  });

  test("--plan, then the array with one task killed mid-training and requeued: each task FINISHED once", async () => {
    const client = state.client as MlflowClient;
    const planned = marginlab(["ablate", ABLATION, "--preset", PRESET, "--plan"], env);
    const [n, parent] = (planned.out.trim().split("\n").pop() ?? "").split(" ");
    state.tasks = Number(n);
    state.parent = parent;
    assert.ok(state.tasks >= 4 && /^[0-9a-f]{32}$/.test(parent), planned.out);
    const experimentId = (await client.getRun(parent)).info.experiment_id;

    const loadBefore = load();
    const array = submit(parent);
    state.job = array.job;
    const frozen = await freezeTaskMidway(client, experimentId);
    sh("scontrol", ["requeue", `${array.job}_${frozen.index}`], env);
    // Slurm sends SIGCONT and SIGTERM; the task's Run API ends its run KILLED and the process exits.
    await until(
      `task ${frozen.index}'s killed processes to exit`,
      60_000,
      () => frozen.pids.every((pid) => !taskPids(frozen.index, parent).includes(pid)) || undefined,
    );
    const statusBeforeRetry = (await client.getRun(frozen.runId)).info.status;
    state.killed = { index: frozen.index, runId: frozen.runId, statusBeforeRetry };
    const restarts = await until(`task ${frozen.index} to run again`, 300_000, () => {
      const shown = sh("scontrol", ["show", "job", `${array.job}_${frozen.index}`], env);
      const n = Number(/Restarts=(\d+)/.exec(shown)?.[1]);
      return n >= 1 && /JobState=(RUNNING|COMPLETED)/.test(shown) ? n : undefined;
    });
    await until("the array to finish", 900_000, () => queueEmpty(array.job));
    const arraySeconds = array.seconds();
    assert.is(restarts, 1, "Slurm ran the requeued task a second time");
    assert.is(statusBeforeRetry, "KILLED", "SIGTERM's handler ended the frozen attempt KILLED");

    const { runs } = await layout(state.url, parent);
    const tasks = runs.filter((r) => r.role === "task");
    const configurations = runs.filter((r) => r.role === "configuration");
    const live = tasks.filter((r) => !r.supersededBy);
    const superseded = tasks.filter((r) => r.supersededBy);
    assert.equal(
      live.map((r) => r.task).sort((a, b) => (a ?? 0) - (b ?? 0)),
      Array.from({ length: state.tasks }, (_, i) => i),
      "each task has exactly one run that counts",
    );
    assert.ok(
      live.every((r) => r.status === "FINISHED"),
      "every counted run FINISHED",
    );
    const retry = live.find((r) => r.task === frozen.index);
    assert.equal(
      superseded.map((r) => [r.id, r.status, r.supersededBy]),
      [[frozen.runId, "KILLED", retry?.id]],
      "the killed attempt: KILLED, superseded by the retry",
    );
    assert.ok(
      tasks.every((r) => configurations.some((c) => c.id === r.parentRun)),
      "every task under a configuration child",
    );
    assert.ok(
      configurations.every((c) => c.parentRun === parent),
      "every configuration child under the parent",
    );
    const texts = outputs(array.job);
    assert.is(texts.length, state.tasks, "one output file per task (appended across attempts)");
    const requeued = texts.filter((t) => /restart 1,/.test(t));
    assert.is(requeued.length, 1);
    assert.match(requeued[0], /restart 0,[\s\S]*restart 1,/);

    state.figures.array =
      `array 0-${state.tasks - 1}%${THROTTLE} of ${ABLATION}/${PRESET} with task ${frozen.index} requeued: ` +
      `${arraySeconds.toFixed(0)} s (load ${loadBefore} -> ${load()}); submitted ${state.tasks}, arrived ${live.length}, ` +
      `duplicated ${live.length - new Set(live.map((r) => r.task)).size}, retried ${superseded.length} ` +
      `(Slurm restarts ${restarts}; the killed attempt was ${statusBeforeRetry} before the retry)`;
  });

  test("the same array submitted again: every task finds its FINISHED run and skips, no run is added", async () => {
    const before = await layout(state.url, state.parent);
    const again = submit(state.parent);
    await until("the second array to finish", 600_000, () => queueEmpty(again.job));
    const seconds = again.seconds();
    const after = await layout(state.url, state.parent);
    assert.equal(
      after.runs.map((r) => r.id).sort(),
      before.runs.map((r) => r.id).sort(),
      "a resubmitted array adds no runs",
    );
    const skipped = outputs(again.job).filter((t) => /already FINISHED as run [0-9a-f]{32}, skipped/.test(t)).length;
    assert.is(skipped, state.tasks);
    state.figures.again = `resubmitted: ${skipped} of ${state.tasks} skipped in ${seconds.toFixed(0)} s`;
  });

  test("summarize = the same ablation run locally: tables, per-configuration statistics, verdicts; nothing RUNNING", async () => {
    const summarized = marginlab(["summarize", state.parent], env);
    const loadBefore = load();
    const local = marginlab(["ablate", ABLATION, "--preset", PRESET], env);
    state.figures.local = `the same ablation locally (one process, no Slurm): ${local.seconds.toFixed(0)} s (load ${loadBefore} -> ${load()})`;
    const localParent = /MLflow run: \S*?([0-9a-f]{32})/.exec(local.out)?.[1];
    assert.ok(localParent, local.out.slice(-1000));

    assert.is(printedSummary(summarized.out), printedSummary(local.out), "the printed tables and findings");
    const [fromArray, fromLocal] = await Promise.all([
      outcome(state.url, state.parent),
      outcome(state.url, localParent),
    ]);
    assert.ok(Object.keys(fromLocal.verdicts).length > 0, "the smoke preset has a verdict");
    assert.ok(Object.keys(fromLocal.tables).length > 0, "tables/ artifacts");
    const configurations = Object.values(fromLocal.configurations);
    assert.ok(configurations.length >= 2 && configurations.every((c) => Object.keys(c.metrics).length > 5));
    assert.equal(fromArray.configurations, fromLocal.configurations, "each configuration's across-seed statistics");
    assert.equal(fromArray.verdicts, fromLocal.verdicts, "the verdicts");
    assert.equal(fromArray.parentMetrics, fromLocal.parentMetrics, "the parent's metrics");
    assert.equal(fromArray.tables, fromLocal.tables, "the tables");

    const { parent, runs } = await layout(state.url, state.parent);
    assert.is(parent.status, "FINISHED");
    assert.equal(
      runs.filter((r) => r.status === "RUNNING").map((r) => r.id),
      [],
      "no run of the layout is left RUNNING",
    );
  });

  test.run();
}
