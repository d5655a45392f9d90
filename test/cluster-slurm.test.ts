// Opt-in (MARGINLAB_CLUSTER_TESTS=1): an ablation as a Slurm job array on a one-node cluster on
// 127.0.0.1 (scripts/cluster/slurm-up.sh), every task logging to the team MLflow server on
// PostgreSQL. scripts/cluster/ablation.sbatch runs the stand-in task command (the contract of
// `marginlab ablate --index I --parent RUN_ID`, test/cluster-stand-in-task.ts); one task is requeued
// mid-way. MLflow's own Python client then checks that every task arrived exactly once under the
// one parent, and a second submission of the whole array adds nothing.
import { spawnSync } from "node:child_process";
import { chmodSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { projectRoot } from "../src/project";
import { MlflowClient } from "../src/tracking/client";
import { ensureTeamServer, stopTeamServer } from "../src/tracking/embedded";
import { type Run, startRun } from "../src/tracking/run";
import { standInPlan } from "./cluster-stand-in-task";
import { python, removeTempDirs, tempDir } from "./tracking-helpers";

const STEPS = 40;
const PLAN = standInPlan("stand-in", "smoke");
const REQUEUED = 1; // the task killed mid-way
const THROTTLE = 2;
const standIn = path.join(projectRoot, "test", "cluster-stand-in-task.ts");

function sh(command: string, args: string[], env: NodeJS.ProcessEnv): string {
  const result = spawnSync(command, args, { cwd: projectRoot, env, encoding: "utf8", timeout: 20 * 60_000 });
  if (result.status !== 0)
    throw new Error(`${command} ${args.join(" ")} exited ${result.status}: ${result.stderr.trim().slice(-2000)}`);
  return result.stdout.trim();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(1000);
  }
}

interface Attempt {
  index: number;
  status: string;
  parent: string;
  attempt: string;
  points: number;
}

function attemptsUnder(url: string, parent: string): Promise<Attempt[]> {
  return python<Attempt[]>(
    `
import json
from mlflow.tracking import MlflowClient
from mlflow.entities import ViewType
c = MlflowClient()
p = c.get_run(${JSON.stringify(parent)})
runs = c.search_runs([p.info.experiment_id], "tags.mlflow.parentRunId = '${parent}'", run_view_type=ViewType.ALL, max_results=1000)
print(json.dumps([{
    "index": int(r.data.tags["marginlab.task"]),
    "status": r.info.status,
    "parent": r.data.tags["mlflow.parentRunId"],
    "attempt": r.data.tags.get("marginlab.attempt", ""),
    "points": len(c.get_metric_history(r.info.run_id, "loss")),
} for r in runs]))
`,
    { MLFLOW_TRACKING_URI: url },
  );
}

if (process.env.MARGINLAB_CLUSTER_TESTS !== "1") {
  console.log("cluster-slurm: skipped (opt-in suite: set MARGINLAB_CLUSTER_TESTS=1; see docs/cluster.md)");
} else {
  test("a Slurm array of stand-in tasks: every task exactly once under one parent, a requeued one replaced", async () => {
    const dir = tempDir("cluster");
    chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user when we are root
    const slurmDir = path.join(dir, "slurm");
    const env: NodeJS.ProcessEnv = { ...process.env, MARGINLAB_SLURM_DIR: slurmDir };
    const scripts = path.join(projectRoot, "scripts", "cluster");
    const dirs = { dir: path.join(dir, "mlflow"), postgresDir: path.join(dir, "postgres") };
    let openParent: Run | undefined;
    let openClient: MlflowClient | undefined;
    try {
      const t0 = Date.now();
      const exportLine = sh("bash", [path.join(scripts, "slurm-up.sh")], env);
      env.SLURM_CONF = /SLURM_CONF=(\S+)/.exec(exportLine)?.[1];
      assert.ok(env.SLURM_CONF, exportLine);
      const server = await ensureTeamServer(dirs);
      const upSeconds = (Date.now() - t0) / 1000;
      const client = new MlflowClient({ trackingUri: server.url });
      openClient = client;
      const parent = await startRun({ trackingUri: server.url, experiment: "cluster-array", name: "stand-in/smoke" });
      openParent = parent;
      const parentId = parent.id;
      assert.ok(parentId);
      const taskEnv = {
        ...env,
        MLFLOW_TRACKING_URI: server.url,
        MARGINLAB_ROOT: projectRoot,
        MARGINLAB_TASK_COMMAND: `${process.execPath} --require tsx/cjs ${standIn}`,
        MARGINLAB_STANDIN_STEPS: String(STEPS),
        MARGINLAB_STANDIN_JOURNAL: path.join(dir, "journal"),
      };
      const submit = () =>
        sh(
          "sbatch",
          [
            "--parsable",
            `--array=0-${PLAN.length - 1}%${THROTTLE}`,
            `--output=${path.join(dir, "slurm-%A_%a.out")}`,
            path.join(scripts, "ablation.sbatch"),
            "stand-in",
            "smoke",
            parentId,
          ],
          taskEnv,
        ).split(";")[0];
      const queueEmpty = (job: string) => sh("squeue", ["-h", "-j", job, "-o", "%i"], env) === "" || undefined;

      // 1. The array, with task REQUEUED requeued once it has logged a few steps.
      const t1 = Date.now();
      const job = submit();
      await until(`task ${REQUEUED} to log 5 steps`, 300_000, async () => {
        const runs = await client.searchRuns({
          experimentIds: [parent.experimentId!],
          filter: `tags.mlflow.parentRunId = '${parentId}' and tags.marginlab.task = '${REQUEUED}'`,
        });
        const running = runs.runs.find((r) => r.info.status === "RUNNING");
        if (!running) return undefined;
        return (await client.getMetricHistory(running.info.run_id, "loss")).length >= 5 || undefined;
      });
      sh("scontrol", ["requeue", `${job}_${REQUEUED}`], env);
      const restarts = await until(`task ${REQUEUED} to run again`, 300_000, () => {
        const shown = sh("scontrol", ["show", "job", `${job}_${REQUEUED}`], env);
        return /JobState=RUNNING/.test(shown) ? Number(/Restarts=(\d+)/.exec(shown)?.[1]) : undefined;
      });
      await until("the array to finish", 600_000, () => queueEmpty(job));
      const arraySeconds = (Date.now() - t1) / 1000;
      assert.is(restarts, 1);

      const attempts = await attemptsUnder(server.url, parentId);
      const finished = attempts.filter((a) => a.status === "FINISHED");
      const killed = attempts.filter((a) => a.status === "KILLED");
      assert.ok(
        attempts.every((a) => a.parent === parentId),
        "every run is a child of the one parent",
      );
      assert.equal(
        finished.map((a) => a.index).sort(),
        PLAN.map((_, i) => i),
        "each task FINISHED exactly once",
      );
      assert.ok(
        finished.every((a) => a.points === STEPS),
        `every finished run has ${STEPS} points`,
      );
      assert.equal(
        killed.map((a) => [a.index, a.attempt]),
        [[REQUEUED, "0"]],
        "the requeued task's first attempt, KILLED",
      );
      assert.is(attempts.length, PLAN.length + 1);
      const outputs = readdirSync(dir).filter((f) => f.startsWith(`slurm-${job}_`));
      assert.is(outputs.length, PLAN.length, "one output file per task (appended across attempts)");

      // 2. The same array again: every task finds its FINISHED run and skips.
      const t2 = Date.now();
      const again = submit();
      await until("the second array to finish", 600_000, () => queueEmpty(again));
      const againSeconds = (Date.now() - t2) / 1000;
      const after = await attemptsUnder(server.url, parentId);
      assert.is(after.length, attempts.length, "a resubmitted array adds no runs");
      const skipped = readdirSync(dir)
        .filter((f) => f.startsWith(`slurm-${again}_`))
        .filter((f) => /already FINISHED/.test(readFileSync(path.join(dir, f), "utf8"))).length;
      assert.is(skipped, PLAN.length);

      // 3. The local baseline: the same tasks one after another, no Slurm, under a second parent.
      const local = await startRun({
        trackingUri: server.url,
        experiment: "cluster-array",
        name: "stand-in/smoke local",
      });
      const t3 = Date.now();
      for (let i = 0; i < PLAN.length; i++) {
        const args = ["stand-in", "--preset", "smoke", "--index", String(i), "--parent", local.id ?? ""];
        sh(process.execPath, ["--require", "tsx/cjs", standIn, ...args], taskEnv);
      }
      const localSeconds = (Date.now() - t3) / 1000;
      await local.end("FINISHED");
      const localRuns = await attemptsUnder(server.url, local.id ?? "");
      assert.equal(
        localRuns.map((a) => a.status),
        Array(PLAN.length).fill("FINISHED"),
      );

      console.log(
        `slurm array of ${PLAN.length} tasks (%${THROTTLE}): cluster + server up in ${upSeconds.toFixed(0)} s; ` +
          `array ${arraySeconds.toFixed(0)} s; submitted ${PLAN.length}, arrived ${finished.length}, ` +
          `duplicated ${finished.length - new Set(finished.map((a) => a.index)).size}, retried ${killed.length} ` +
          `(Slurm restarts ${restarts}); resubmitted array: ${skipped} skipped in ${againSeconds.toFixed(0)} s; ` +
          `the same tasks one after another without Slurm: ${localSeconds.toFixed(0)} s`,
      );
    } finally {
      await openParent?.end("FINISHED");
      openClient?.close();
      sh("bash", [path.join(scripts, "slurm-down.sh")], env);
      await stopTeamServer(dirs);
      removeTempDirs();
    }
  });

  test.run();
}
