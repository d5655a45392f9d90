/**
 * `marginlab ablate <name> [--preset smoke|full] [--set key=value ...] [--no-track]`: runs an
 * ablation (a parent MLflow run with a child per configuration), draws a progress bar with ETA on
 * stderr, and prints the summary tables and the MLflow run URL at the end. `--plan` only creates the
 * parent and prints each task's command; `--index I --parent ID` runs task(s) of such a plan (a
 * cluster array task); `--jobs N` runs the plan's tasks in N worker processes and summarizes.
 */
import { spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { checkExperimentData } from "../../experiments/data-source";
import { recordOfRun, recordPath, writeRecord } from "../../experiments/record";
import { getAblation } from "../../experiments/registry";
import {
  type AblationRun,
  PlanError,
  type Progress,
  planAblation,
  planTasks,
  runAblation,
  runPlannedTask,
  summarizeAblation,
  textTable,
} from "../../experiments/runner";
import { checkPreset, parseAssignments } from "../../experiments/settings";
import { PRESETS, type SettingValue } from "../../experiments/types";
import { closeFigureRenderer } from "../plots/html";
import { progressText, sequenceView, TextProgress } from "../progress";
import { projectRoot } from "../project";
import { trackingConfigFromEnv } from "../tracking/config";

export const summary =
  "run an ablation: marginlab ablate <name> [--preset smoke|full|paper] [--set key=value ...] [--data PATH --eval A.bin,B.bin]";

const USAGE = `usage: marginlab ablate <name> [--preset ${PRESETS.join("|")}] [--set key=value ...] [--data PATH --eval A.bin,...] [--no-track]
       marginlab ablate <name> [--preset P] [--set k=v ...] --plan [--json]
       marginlab ablate <name> --index I[,J...] --parent RUN_ID
       marginlab ablate <name> [--preset P] [--set k=v ...] --jobs N|auto [--threads T]

Runs an ablation as an MLflow parent run with one child run per configuration (MLFLOW_TRACKING_URI,
else the project's embedded server). \`marginlab list\` shows the ablations and their settings.
  --preset       smoke (seconds, for CI), full (what the write-up reports, synthetic identities) or
                 paper (sized like the paper, e.g. iResNet-50 at 112x112 on CASIA-WebFace's 10,572
                 identities: needs --data and --eval, a GPU machine or a cluster); default smoke
  --set k=v      override a setting (lists: comma-separated), repeatable
  --data PATH    train on your data set instead of the synthetic identities: an InsightFace .rec/.idx
                 prefix (train -> train.rec + train.idx), a .rec, a folder with train.rec, or an image
                 folder (one sub-folder per identity); images are decoded RGB, resized to imageSize;
                 set trainIds to its identity count (the error says it)
  --eval A,B     verify on InsightFace .bin sets (lfw.bin,cfp_fp.bin,agedb_30.bin; same image size as
                 the training images): metrics lfw/acc (10-fold), lfw/auc, lfw/tar_far_1e-2 ..., and
                 mean/acc (what the comparisons use); goes with --data
  --no-track     run without MLflow
  --plan         create the parent run only; print the number of tasks and each task's command
  --json         with --plan: print {parentRunId, url, tasks, commands} as JSON
  --index I      run task I (or a comma-separated list) of the plan of --parent RUN_ID; a task that
                 already FINISHED is skipped, a FAILED or KILLED one is replaced
  --jobs N       run the tasks in N worker processes (auto: cores / threads), then summarize
  --threads T    TensorFlow threads per worker (default cores / jobs)
  --record PATH  where the run's record goes (every task's result with date, machine, load and
                 commit: what the notebooks and docs/experiments.md show); default
                 results/ablations/<name>-<preset>.json for every preset but smoke
  --no-record    write no record`;

interface Parsed {
  name?: string;
  preset: string;
  presetGiven: boolean;
  sets: string[];
  /** --data and --eval as given (the overrides `data` and `eval`, made absolute). */
  data?: string;
  eval?: string;
  track: boolean;
  help: boolean;
  plan: boolean;
  json: boolean;
  indices?: number[];
  parent?: string;
  jobs?: number | "auto";
  threads?: number;
  /** The record's path; false: none; undefined: the default for the preset. */
  record?: string | false;
}

function positiveInteger(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} ${text}: expected an integer >= 1.`);
  return n;
}

function indexList(text: string): number[] {
  return text.split(",").map((part) => {
    const n = Number(part.trim());
    if (part.trim() === "" || !Number.isInteger(n) || n < 0)
      throw new Error(`--index ${text}: "${part}" is not a task index (an integer >= 0).`);
    return n;
  });
}

export function parseAblateArgs(args: string[]): Parsed {
  const out: Parsed = {
    preset: "smoke",
    presetGiven: false,
    sets: [],
    track: true,
    help: false,
    plan: false,
    json: false,
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = (flag: string) => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (a === "--help" || a === "-h") out.help = true;
    else if (a === "--preset" || a.startsWith("--preset=")) {
      out.preset = a === "--preset" ? value(a) : a.slice("--preset=".length);
      out.presetGiven = true;
    } else if (a === "--set") out.sets.push(value(a));
    else if (a.startsWith("--set=")) out.sets.push(a.slice("--set=".length));
    else if (a === "--data" || a.startsWith("--data=")) out.data = a === "--data" ? value(a) : a.slice(7);
    else if (a === "--eval" || a.startsWith("--eval=")) out.eval = a === "--eval" ? value(a) : a.slice(7);
    else if (a === "--no-track") out.track = false;
    else if (a === "--plan") out.plan = true;
    else if (a === "--json") out.json = true;
    else if (a === "--index") out.indices = indexList(value(a));
    else if (a === "--parent") out.parent = value(a);
    else if (a === "--jobs") {
      const v = value(a);
      out.jobs = v === "auto" ? "auto" : positiveInteger(a, v);
    } else if (a === "--threads") out.threads = positiveInteger(a, value(a));
    else if (a === "--record") out.record = value(a);
    else if (a === "--no-record") out.record = false;
    else if (a.startsWith("-"))
      throw new Error(
        `unknown option "${a}" (allowed: --preset, --set, --data, --eval, --no-track, --plan, --json, --index, --parent, --jobs, --threads, --record, --no-record, --help)`,
      );
    else if (out.name === undefined) out.name = a;
    else throw new Error(`unexpected argument "${a}" (one ablation name at a time)`);
  }
  if ((out.indices === undefined) !== (out.parent === undefined))
    throw new Error("--index and --parent go together (a task of the plan of that parent run)");
  const modes = [out.plan, out.indices !== undefined, out.jobs !== undefined].filter(Boolean).length;
  if (modes > 1) throw new Error("--plan, --index and --jobs are different modes: give one");
  if (out.json && !out.plan) throw new Error("--json goes with --plan");
  if (out.threads !== undefined && out.jobs === undefined) throw new Error("--threads goes with --jobs");
  if (!out.track && modes > 0) throw new Error("--plan, --index and --jobs log to MLflow: drop --no-track");
  if (typeof out.record === "string" && (out.plan || out.indices !== undefined))
    throw new Error(
      "--record goes with a whole run (local or --jobs); after --plan, `marginlab summarize ID --record` writes it",
    );
  if (out.indices !== undefined && (out.sets.length > 0 || out.data !== undefined || out.eval !== undefined))
    throw new Error("--set, --data and --eval go with --plan: a task (--index) takes its settings from the parent run");
  return out;
}

/**
 * The overrides with --data / --eval added and their paths made absolute (also when given with --set),
 * so that the tasks of a plan, which read them from the parent run, find the files from any folder.
 */
function dataOverrides(parsed: Parsed, overrides: Record<string, SettingValue>): Record<string, SettingValue> {
  const out = { ...overrides };
  if (parsed.data !== undefined) out.data = parsed.data;
  if (parsed.eval !== undefined) out.eval = parsed.eval;
  const absolute = (v: string) => (v.trim() === "" ? v : path.resolve(v.trim()));
  if (typeof out.data === "string") out.data = absolute(out.data);
  if (out.eval !== undefined)
    out.eval = (Array.isArray(out.eval) ? out.eval.map(String) : String(out.eval).split(",")).map(absolute);
  return out;
}

/** Worker processes and TensorFlow threads for `--jobs`: jobs x threads stays within the cores. */
export function jobLayout(jobs: number | "auto", threads: number | undefined, cores = os.availableParallelism()) {
  const t = threads ?? (jobs === "auto" ? 1 : Math.max(1, Math.floor(cores / jobs)));
  const n = jobs === "auto" ? Math.max(1, Math.floor(cores / t)) : jobs;
  return { jobs: n, threads: t };
}

/** One progress line: overall bar, configuration, inner step, elapsed and ETA (src/progress.ts). */
export function progressLine(p: Progress, width = 24): string {
  return progressText(sequenceView(p), width);
}

export async function run(args: string[]): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parseAblateArgs(args);
  } catch (error) {
    console.error(`marginlab ablate: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.help) {
    console.log(USAGE);
    return 0;
  }
  let overrides: Record<string, SettingValue>;
  try {
    if (!parsed.name) throw new Error("which ablation? `marginlab list` shows them");
    const ablation = getAblation(parsed.name);
    const preset = checkPreset(ablation.name, parsed.preset);
    overrides = dataOverrides(parsed, Object.fromEntries(parseAssignments(parsed.sets)));
    // reject bad keys/values and grids, and read and check the user's data files, before anything starts
    await checkExperimentData(planTasks(ablation, preset, overrides).settings);
  } catch (error) {
    console.error(`marginlab ablate: ${(error as Error).message}`);
    return 2;
  }
  try {
    if (parsed.plan) return await plan(parsed, overrides);
    if (parsed.indices && parsed.parent) return await runIndices(parsed, parsed.indices, parsed.parent);
    if (parsed.jobs !== undefined) return await runJobs(parsed, overrides, parsed.jobs);
  } catch (error) {
    if (!(error instanceof PlanError)) throw error;
    console.error(`marginlab ablate: ${error.message}`);
    return 2;
  } finally {
    await closeFigureRenderer().catch(() => undefined);
  }
  const bar = new TextProgress(process.stderr);
  const onProgress = (p: Progress) =>
    bar.update(sequenceView(p), p.phase === "summary" ? "final" : p.phase === "done" ? "log" : undefined);
  console.error(`marginlab ablate ${parsed.name} --preset ${parsed.preset}${parsed.track ? "" : " (not tracked)"}`);
  try {
    const result = await runAblation(parsed.name, {
      preset: parsed.preset,
      set: overrides,
      track: parsed.track,
      onProgress,
    });
    printSummary(result);
    console.log(
      `\n${result.name} (${result.preset}): ${result.results.length} configurations in ${result.wallSeconds.toFixed(1)} s`,
    );
    saveRecord(result, recordFile(parsed));
    for (const w of result.warnings) console.error(`note: ${w}`);
    if (result.url) {
      console.log(`MLflow run: ${result.url}`);
      // the embedded server outlives this command so that the link works; say how to stop it
      if (!trackingConfigFromEnv().trackingUri)
        console.log("(the project's MLflow server keeps running for the UI: `npx marginlab ui --stop` stops it)");
    } else if (parsed.track)
      console.log(`MLflow: not reached; ${result.pending} items wait in the journal (\`marginlab sync\` sends them)`);
    if (result.pending > 0 && result.url)
      console.log(`(${result.pending} items still wait in the journal: \`marginlab sync\`)`);
    return 0;
  } finally {
    await closeFigureRenderer().catch(() => undefined);
  }
}

/** The record's path for a whole run: --record, none with --no-record, else the default but for smoke. */
function recordFile(parsed: Parsed): string | undefined {
  if (parsed.record === false) return undefined;
  if (typeof parsed.record === "string") return path.resolve(parsed.record);
  return parsed.preset === "smoke" ? undefined : recordPath(parsed.name as string, parsed.preset);
}

/** Writes the run's record and says where; a failure to write loses nothing else (MLflow has the run). */
export function saveRecord(result: AblationRun, file: string | undefined): void {
  if (!file) return;
  try {
    writeRecord(file, recordOfRun(result));
    console.log(`record: ${path.relative(process.cwd(), file) || file}`);
  } catch (error) {
    console.error(
      `marginlab: the record ${file} could not be written (${(error as Error).message}); the run is in MLflow`,
    );
  }
}

/** The summary tables and findings, as the local run and `summarize` print them. */
export function printSummary(result: Pick<AblationRun, "summary">): void {
  for (const table of result.summary.tables) console.log(`\n${table.title}\n${textTable(table.rows)}`);
  if (result.summary.notes.length > 0) console.log(`\n${result.summary.notes.map((n) => `- ${n}`).join("\n")}`);
}

async function plan(parsed: Parsed, overrides: Record<string, SettingValue>): Promise<number> {
  const planned = await planAblation(parsed.name as string, { preset: parsed.preset, set: overrides });
  if (parsed.json) {
    const { parentRunId, url, commands } = planned;
    console.log(JSON.stringify({ parentRunId, url, tasks: commands.length, commands }));
    return 0;
  }
  const n = planned.commands.length;
  console.log(
    `parent run ${planned.parentRunId}: ${n} tasks (0..${n - 1}); then \`npx marginlab summarize ${planned.parentRunId}\``,
  );
  if (planned.url) console.log(`MLflow run: ${planned.url}`);
  for (const c of planned.commands) console.log(c);
  // the last line for shells: N and the parent run id
  console.log(`${n} ${planned.parentRunId}`);
  return 0;
}

/** Runs the tasks one after another in this process; exit 1 if any failed (the others still run). */
async function runIndices(parsed: Parsed, indices: number[], parent: string): Promise<number> {
  let failed = 0;
  for (const index of indices) {
    try {
      const r = await runPlannedTask(
        parent,
        index,
        {},
        {
          ablation: parsed.name,
          preset: parsed.presetGiven ? parsed.preset : undefined,
        },
      );
      const what = `task ${index} (${r.task.config.label} seed ${r.task.seed})`;
      if (r.skipped) console.log(`${what}: already FINISHED as run ${r.runId}, skipped`);
      else
        console.log(
          `${what}: FINISHED as run ${r.runId}${r.superseded.length ? ` (supersedes ${r.superseded.join(", ")})` : ""}`,
        );
    } catch (error) {
      if (error instanceof PlanError) throw error;
      failed++;
      console.error(`marginlab ablate: task ${index} failed: ${(error as Error).message}`);
    }
  }
  return failed > 0 ? 1 : 0;
}

const CLI = path.join(projectRoot, "bin", "marginlab.cjs");

/** Plans, runs the tasks in worker processes (each its share, one TensorFlow pool each), summarizes. */
async function runJobs(
  parsed: Parsed,
  overrides: Record<string, SettingValue>,
  jobs: number | "auto",
): Promise<number> {
  const layout = jobLayout(jobs, parsed.threads);
  const t0 = performance.now();
  const planned = await planAblation(parsed.name as string, { preset: parsed.preset, set: overrides });
  const n = planned.commands.length;
  const workers = Math.min(layout.jobs, n);
  console.error(
    `marginlab ablate ${parsed.name} --preset ${parsed.preset}: ${n} tasks in ${workers} workers x ${layout.threads} TensorFlow threads (parent ${planned.parentRunId})`,
  );
  const env = {
    ...process.env,
    TF_NUM_INTRAOP_THREADS: String(layout.threads),
    TF_NUM_INTEROP_THREADS: "1",
    OMP_NUM_THREADS: String(layout.threads),
  };
  const shares = Array.from({ length: workers }, (_, w) => planned.plan.tasks.filter((t) => t.index % workers === w));
  const codes = await Promise.all(
    shares.map(
      (share) =>
        new Promise<number>((resolve) => {
          const indices = share.map((t) => t.index).join(",");
          const args = [CLI, "ablate", planned.plan.ablation, "--index", indices, "--parent", planned.parentRunId];
          const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "inherit"] });
          child.stdout.on("data", (d: Buffer) => process.stderr.write(d));
          child.on("close", (code) => resolve(code ?? 1));
        }),
    ),
  );
  if (codes.some((c) => c !== 0)) {
    console.error(
      `marginlab ablate: some tasks failed; rerun them with --index I --parent ${planned.parentRunId} (finished ones are skipped), then \`marginlab summarize ${planned.parentRunId}\``,
    );
    return 1;
  }
  const result = await summarizeAblation(planned.parentRunId);
  printSummary(result);
  const wall = (performance.now() - t0) / 1000;
  console.log(`\n${result.name} (${result.preset}): ${n} tasks in ${workers} workers, ${wall.toFixed(1)} s`);
  saveRecord(result, recordFile(parsed));
  for (const w of result.warnings) console.error(`note: ${w}`);
  if (result.url) console.log(`MLflow run: ${result.url}`);
  return 0;
}
