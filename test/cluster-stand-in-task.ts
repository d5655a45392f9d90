// The stand-in for `marginlab ablate NAME --preset P --index I --parent RUN_ID` in the Slurm test:
// the same arguments, the same contract (docs/cluster.md, "What a task command must do"), a tiny
// task list instead of training. Task I of the plan is (configuration, seed) number I; it
//  - exits 0 without logging when a FINISHED run with that configuration hash and seed is under the parent;
//  - marks a RUNNING one KILLED first (Slurm runs one instance of an array index at a time, so a
//    RUNNING run there is an attempt that died without ending it), then runs anew: KILLED and
//    FAILED attempts stay as history and the new FINISHED run is the one summaries read;
//  - logs STEPS steps a STEP_MS apart through marginlab's Run API, as a child of the parent.
// SIGTERM (scontrol requeue, scancel) ends the run KILLED through the Run API's signal handler.
// Env: MARGINLAB_STANDIN_STEPS (40), MARGINLAB_STANDIN_STEP_MS (250), MARGINLAB_STANDIN_JOURNAL.
import { MlflowClient } from "../src/tracking/client";
import { configHash } from "../src/tracking/params";
import { startRun } from "../src/tracking/run";

/** The plan: a pure function of (ablation, preset), the same in every task. */
export function standInPlan(ablation: string, preset: string): Array<{ config: { margin: number }; seed: number }> {
  if (ablation !== "stand-in") throw new Error(`unknown ablation "${ablation}" (the stand-in knows: stand-in)`);
  const seeds = preset === "smoke" ? [1, 2] : preset === "full" ? [1, 2, 3, 4, 5] : undefined;
  if (!seeds) throw new Error(`unknown preset "${preset}" (allowed: smoke, full)`);
  return [0.2, 0.35, 0.5].flatMap((margin) => seeds.map((seed) => ({ config: { margin }, seed })));
}

function option(args: string[], name: string): string {
  const i = args.indexOf(name);
  const value = i >= 0 ? args[i + 1] : undefined;
  if (value === undefined) throw new Error(`missing ${name}`);
  return value;
}

async function main(args: string[]): Promise<number> {
  const ablation = args[0];
  const preset = option(args, "--preset");
  const index = Number(option(args, "--index"));
  const parent = option(args, "--parent");
  const plan = standInPlan(ablation, preset);
  if (!Number.isInteger(index) || index < 0 || index >= plan.length) {
    console.error(`--index ${index}: the plan of ${ablation}/${preset} has tasks 0..${plan.length - 1}`);
    return 2;
  }
  const { config, seed } = plan[index];
  const hash = configHash(config);
  const client = new MlflowClient();
  const parentRun = await client.getRun(parent);
  const experimentId = parentRun.info.experiment_id;
  const attempts = await client.searchAllRuns({
    experimentIds: [experimentId],
    filter: `tags.mlflow.parentRunId = '${parent}' and tags.marginlab.configHash = '${hash}' and tags.marginlab.seed = '${seed}'`,
  });
  const finished = attempts.find((r) => r.info.status === "FINISHED");
  if (finished) {
    console.log(`task ${index}: already FINISHED as run ${finished.info.run_id}; skipping`);
    return 0;
  }
  for (const stale of attempts.filter((r) => r.info.status === "RUNNING")) {
    await client.updateRun(stale.info.run_id, { status: "KILLED", endTime: Date.now() });
    console.log(`task ${index}: marked the unfinished attempt ${stale.info.run_id} KILLED`);
  }
  const steps = Number(process.env.MARGINLAB_STANDIN_STEPS ?? 40);
  const stepMs = Number(process.env.MARGINLAB_STANDIN_STEP_MS ?? 250);
  const run = await startRun({
    parent,
    experimentId,
    name: `margin=${config.margin} seed=${seed}`,
    params: { ...config, seed },
    hashConfig: false,
    tags: {
      "marginlab.configHash": hash,
      "marginlab.seed": String(seed),
      "marginlab.task": String(index),
      "marginlab.slurmJob": `${process.env.SLURM_ARRAY_JOB_ID ?? ""}_${process.env.SLURM_ARRAY_TASK_ID ?? ""}`,
      "marginlab.attempt": process.env.SLURM_RESTART_COUNT ?? "0",
    },
    journalDir: process.env.MARGINLAB_STANDIN_JOURNAL,
  });
  console.log(`task ${index}: run ${run.id} (margin ${config.margin}, seed ${seed})`);
  for (let step = 0; step < steps && !run.ended; step++) {
    run.logMetrics({ loss: config.margin * 10 + seed + 1 / (step + 1) }, step);
    await new Promise((r) => setTimeout(r, stepMs));
  }
  // Ended already: SIGTERM's handler is ending it KILLED and then re-raises the signal.
  if (run.ended) return new Promise<number>(() => {});
  const result = await run.end("FINISHED");
  if (result.pending > 0 || result.errors.length > 0) {
    console.error(
      `task ${index}: ${result.pending} items not delivered: ${result.errors.map((e) => e.message).join("; ")}`,
    );
    return 1;
  }
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error) => {
      console.error(error instanceof Error ? error.message : error);
      process.exit(1);
    },
  );
}
