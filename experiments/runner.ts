/**
 * The experimental protocol every ablation runs on. The plan (`planTasks`) is a pure function of
 * (ablation, preset, settings): configurations x seeds, seed-major, so that every prefix of the
 * plan holds complete pairs; a task's seed alone fixes initialisation and data order, so compared
 * arms are paired. `runTask` runs one task by itself (a cluster array task calls it). `runAblation`
 * runs the plan locally, one configuration's seeds after another, as a sweep (src/tracking/sweep.ts
 * runSweep) and logs the layout: the ablation's parent run (settings, verdicts as tags
 * and in its description, a headline metric, tables and figures) -> one child per configuration
 * (its params, the shared settings, and the across-seed mean, std and 95 % interval of every final
 * metric) -> one grandchild per seed (its curves and final metrics). Progress goes to a callback.
 */

import os from "node:os";
import type { CollapseCheck } from "../src/eval/collapse";
import type { SequenceProgress } from "../src/progress";
import type { MlflowClient, MlflowRun } from "../src/tracking/client";
import { trackingClient } from "../src/tracking/connect";
import { flattenConfig } from "../src/tracking/params";
import { type Run, type RunEndResult, type StartRunOptions, startRun } from "../src/tracking/run";
import { runSweep } from "../src/tracking/sweep";
import { LIMITS } from "../src/tracking/validate";
import { convergence } from "../src/train/convergence";
import { TrainingError } from "../src/train/trainer";
import { analyze, collapsedTable, configKey, verdictNotes, verdictTable } from "./analysis";
import { checkExperimentData } from "./data-source";
import { decodeJson, encodeJson } from "./json";
import { getAblation } from "./registry";
import { checkPreset, resolveSettings } from "./settings";
import type {
  Analysis,
  AnyAblation,
  Config,
  ConfigResult,
  Preset,
  ResultOf,
  RunContext,
  Settings,
  SettingValue,
  Summary,
} from "./types";

/** An ablation's progress: task `index` of `total` ("<configuration> seed <seed>"), `step` of `steps` inside it. */
export interface Progress extends SequenceProgress {
  phase: "start" | "step" | "done" | "summary";
  message?: string;
  /** The finished task's metrics (phase "done"). */
  metrics?: Record<string, number>;
}

export interface RunAblationOptions {
  preset?: Preset | string;
  /** Setting overrides: typed values, or strings parsed to the preset value's type. */
  set?: Record<string, SettingValue>;
  /** Log to MLflow (default true). False: run locally only. */
  track?: boolean;
  /** MLflow server URL; default MLFLOW_TRACKING_URI, else the embedded server. */
  trackingUri?: string;
  /** MLflow experiment name (default "marginlab-ablations"). */
  experiment?: string;
  onProgress?: (p: Progress) => void;
  /** Where the runs' write-ahead journal lives (default <project>/.marginlab/journal). */
  journalDir?: string;
  /** Seconds to wait for MLflow to take everything at the end (default 60). */
  flushTimeoutSeconds?: number;
}

export interface AblationRun {
  name: string;
  preset: Preset;
  /** The setting overrides given, and the settings they resolved to. */
  set: Record<string, SettingValue>;
  settings: Settings;
  /** When the run started (ISO) and the 1-minute load average at its start and end. */
  started: string;
  load: { start?: number; end?: number; cpuUtilizationPercent?: number };
  /** The commit that ran (summarize: the parent's; a local run: undefined, the checkout's). */
  commit?: string;
  dirty?: boolean;
  /** One per task, in configuration order with each configuration's seeds together. */
  results: Array<ResultOf<Config>>;
  analysis: Analysis;
  summary: Summary;
  wallSeconds: number;
  /** The parent run (when tracking). */
  parentRunId?: string;
  url?: string;
  /** One per configuration. */
  childRunIds: string[];
  /** One per task. */
  taskRunIds: string[];
  /** Artifact paths on the parent. */
  artifacts: string[];
  /** Items still waiting in the journal (not yet on the server); `marginlab sync` sends them. */
  pending: number;
  /** Tracking problems that did not stop the run (e.g. no PNG renderer). */
  warnings: string[];
}

export interface Task {
  /** Place in the plan (0-based). */
  index: number;
  configIndex: number;
  config: Config;
  configHash: string;
  seed: number;
}

export interface Plan {
  ablation: string;
  preset: Preset;
  settings: Settings;
  configs: Config[];
  seeds: number[];
  tasks: Task[];
}

/**
 * The seeds of a plan: `seeds` (how many) from `seed` (the first), default one seed. Seeds are
 * consecutive integers so that a larger `seeds` extends a smaller plan's seeds.
 */
export function seedsOf(settings: Settings): number[] {
  const first = settings.seed ?? 1;
  const count = settings.seeds ?? 1;
  if (typeof first !== "number" || !Number.isInteger(first))
    throw new Error(`setting seed = ${JSON.stringify(first)} is not valid: expected an integer.`);
  if (typeof count !== "number" || !Number.isInteger(count) || count < 1)
    throw new Error(`setting seeds = ${JSON.stringify(count)} is not valid: expected an integer >= 1.`);
  return Array.from({ length: count }, (_, k) => first + k);
}

/** The task list of an ablation: a pure function of (ablation, preset, setting overrides). */
export function planTasks(
  nameOrAblation: string | AnyAblation,
  preset: Preset | string = "smoke",
  set: Record<string, SettingValue> = {},
): Plan {
  const ablation = typeof nameOrAblation === "string" ? getAblation(nameOrAblation) : nameOrAblation;
  const p = checkPreset(ablation.name, preset);
  const settings = resolveSettings(ablation, p, set);
  const configs = ablation.grid(settings) as Config[];
  if (configs.length === 0) throw new Error(`ablation "${ablation.name}": the settings give no configurations.`);
  const labels = new Set<string>();
  for (const c of configs) {
    if (labels.has(c.label))
      throw new Error(`ablation "${ablation.name}": two configurations are labelled "${c.label}".`);
    labels.add(c.label);
  }
  const seeds = seedsOf(settings);
  const tasks: Task[] = [];
  for (const seed of seeds)
    configs.forEach((config, configIndex) => {
      tasks.push({ index: tasks.length, configIndex, config, configHash: configKey(config), seed });
    });
  return { ablation: ablation.name, preset: p, settings, configs, seeds, tasks };
}

/**
 * Runs one task. A run that diverges (the trainer's TrainingError: a non-finite loss or gradient)
 * returns as collapsed ("loss-nan") instead of failing the ablation; any other error is rethrown.
 */
export async function runTask(
  ablation: AnyAblation,
  plan: Plan,
  task: Task,
  hooks: Partial<Pick<RunContext, "log" | "progress">> = {},
): Promise<ResultOf> {
  const started = performance.now();
  let result: ConfigResult;
  try {
    result = await ablation.runOne(task.config, {
      settings: plan.settings,
      seed: task.seed,
      index: task.index,
      total: plan.tasks.length,
      log: hooks.log ?? (() => undefined),
      progress: hooks.progress ?? (() => undefined),
    });
  } catch (error) {
    if (!(error instanceof TrainingError)) throw error;
    const collapse: CollapseCheck = { collapsed: true, reasons: ["loss-nan"], details: [`loss-nan: ${error.message}`] };
    result = { metrics: {}, collapse };
  }
  return { config: task.config, seed: task.seed, result, seconds: (performance.now() - started) / 1000 };
}

function settingParams(settings: Settings): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(settings)) out[`setting.${k}`] = Array.isArray(v) ? v.join(",") : v;
  return out;
}

/** A configuration's params: its fields (without the label) and the shared settings. */
function configParams(config: Config, settings: Settings): Record<string, unknown> {
  const { label: _label, ...fields } = config;
  return { ...flattenConfig(fields), ...settingParams(settings) };
}

function finiteOnly(m: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(m)) if (Number.isFinite(v)) out[k] = v;
  return out;
}

/** Params and metrics share the compare view: a metric named like a param is a bug in the ablation. */
function checkNoCollision(params: Record<string, unknown>, metrics: Record<string, number>, where: string): void {
  const clash = Object.keys(metrics).filter((k) => k in params);
  if (clash.length > 0)
    throw new Error(`${where}: metric names ${clash.join(", ")} are also param names; rename the metric or the field.`);
}

/** What a configuration's child run holds: mean (under the metric's own name), std and 95 % interval. */
export function aggregateMetrics(stats: Analysis["configs"][number]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, s] of Object.entries(stats.metrics)) {
    out[name] = s.mean;
    if (s.n >= 2) {
      out[`${name}_std`] = s.std;
      out[`${name}_ci95_low`] = s.ci[0];
      out[`${name}_ci95_high`] = s.ci[1];
    }
  }
  out.seeds_run = stats.seeds.length;
  out.seeds_collapsed = stats.collapsed.length;
  if (stats.converged.of > 0) out.seeds_converged = stats.converged.seeds.length;
  return finiteOnly(out);
}

// --- the runs' layout (shared by the local run, the planned tasks and summarize) ---

/** Tags the layout is searched by: the run's role and, below the parent, the parent's id. */
const ROLE = "marginlab.role";
const ABLATION_RUN = "marginlab.ablationRun";
/**
 * The 1-minute load average when a run started and ended (the conditions of its wall time): on a local
 * run's parent, and on every task run, from which summarize takes a planned (--jobs, cluster) run's.
 */
const LOAD_START = "marginlab.load.start";
const LOAD_END = "marginlab.load.end";
/** On a FAILED or KILLED task run that a retry replaced: the replacement's id. */
export const SUPERSEDED_BY = "marginlab.supersededBy";
/** The artifact a task run holds its whole result in (metrics, curves, collapse): what summarize reads. */
export const TASK_RESULT_ARTIFACT = "task/result.json";

function commonTags(plan: Plan): Record<string, string> {
  return { "marginlab.ablation": plan.ablation, "marginlab.preset": plan.preset };
}

/** Where the parent run keeps every note in full (its description holds what fits MLflow's tag limit). */
export const NOTES_ARTIFACT = "summary/notes.md";

/**
 * The parent's Markdown description: title, claim and the notes (verdicts first). MLflow keeps at most
 * LIMITS.tagValueLength characters in a tag: the notes that do not fit are counted and pointed to.
 */
export function describeAblation(ablation: AnyAblation, plan: Plan, notes: string[]): string {
  const head = `**${ablation.title}** (${plan.preset} preset, ${plan.configs.length} configurations x ${plan.seeds.length} seeds)`;
  let text = `${head}\n\n${ablation.claim}`;
  const room = LIMITS.tagValueLength - 200; // the pointer line below
  for (let i = 0; i < notes.length; i++) {
    const line = `${i === 0 ? "\n\n" : "\n"}- ${notes[i]}`;
    if (text.length + line.length > room) {
      return `${text}\n- ... ${notes.length - i} more notes (MLflow's description limit): the artifact ${NOTES_ARTIFACT} has all of them.`;
    }
    text += line;
  }
  return text;
}

function parentOptions(
  ablation: AnyAblation,
  plan: Plan,
  o: RunAblationOptions,
): StartRunOptions & { tags: Record<string, string> } {
  return {
    experiment: o.experiment ?? "marginlab-ablations",
    name: `${ablation.name}-${plan.preset}`,
    trackingUri: o.trackingUri,
    journalDir: o.journalDir,
    params: settingParams(plan.settings),
    tags: {
      ...commonTags(plan),
      [ROLE]: "ablation",
      // the overrides as given: a task (--index) rebuilds the same plan from the parent alone
      "marginlab.set": JSON.stringify(o.set ?? {}),
      "marginlab.tasks": String(plan.tasks.length),
      "marginlab.configurations": String(plan.configs.length),
      "marginlab.seeds": plan.seeds.join(","),
    },
    description: describeAblation(ablation, plan, []),
  };
}

function childOptions(plan: Plan, configIndex: number, parentId: string | undefined) {
  const config = plan.configs[configIndex];
  return {
    name: config.label,
    params: configParams(config, plan.settings),
    hashConfig: false,
    tags: {
      ...commonTags(plan),
      [ROLE]: "configuration",
      ...(parentId ? { [ABLATION_RUN]: parentId } : {}),
      "marginlab.configHash": configKey(config),
      "marginlab.configIndex": String(configIndex),
    },
  };
}

function taskOptions(plan: Plan, task: Task, parentId: string | undefined) {
  return {
    name: `${task.config.label} seed ${task.seed}`,
    params: { ...configParams(task.config, plan.settings), seed: task.seed },
    hashConfig: false,
    tags: {
      ...commonTags(plan),
      [ROLE]: "task",
      ...(parentId ? { [ABLATION_RUN]: parentId } : {}),
      "marginlab.configHash": task.configHash,
      "marginlab.seed": String(task.seed),
      "marginlab.task": String(task.index),
    },
  };
}

function encodeResult(task: Task, r: ResultOf): string {
  return encodeJson({ configHash: task.configHash, seed: r.seed, seconds: r.seconds, result: r.result });
}

function decodeResult(text: string, task: Task, where: string): ResultOf {
  const body = decodeJson(text) as { configHash: string; seed: number; seconds: number; result: ConfigResult };
  if (body.configHash !== task.configHash || body.seed !== task.seed)
    throw new Error(`${where}: ${TASK_RESULT_ARTIFACT} is of another task (configuration hash or seed differ).`);
  return { config: task.config, seed: task.seed, result: body.result as ConfigResult, seconds: body.seconds };
}

/** Logs a finished task's final metrics, collapse tag and whole result to its run, and ends it FINISHED. */
async function recordTask(run: Run, task: Task, r: ResultOf): Promise<void> {
  const final = finiteOnly(r.result.metrics);
  if (r.result.lossHistory && r.result.lossHistory.length >= 2) {
    const c = convergence(r.result.lossHistory);
    final.convergence_last10pct_improvement = c.relativeImprovement;
    final.convergence_last10pct_share_of_fall = c.shareOfFall;
  }
  run.logMetrics(finiteOnly(final), 0);
  if (r.result.collapse?.collapsed) run.setTag("marginlab.collapsed", r.result.collapse.reasons.join(","));
  run.setTags({ [LOAD_END]: os.loadavg()[0].toFixed(2) });
  run.logArtifact(Buffer.from(encodeResult(task, r)), TASK_RESULT_ARTIFACT);
  await run.end("FINISHED");
}

/** The statistics, verdicts, tables, figures and notes of a plan's results (any order). */
export function summarizeResults(ablation: AnyAblation, plan: Plan, results: ResultOf[]) {
  const { configs, settings } = plan;
  const ordered = [...results].sort((a, b) => configs.indexOf(a.config) - configs.indexOf(b.config) || a.seed - b.seed);
  const analysis = analyze(ordered, ablation.comparisons?.(settings, configs) ?? []);
  const own = ablation.summarize(ordered, settings, analysis);
  const computed = [verdictTable(analysis), collapsedTable(analysis)].filter((t) => t.rows.length > 0);
  const summary: Summary = {
    tables: [...computed.slice(0, 1), ...own.tables, ...computed.slice(1)],
    figures: own.figures,
    notes: [...verdictNotes(analysis), ...own.notes],
  };
  return { results: ordered, analysis, summary };
}

/** Logs a configuration's across-seed aggregates (aggregateMetrics) to its run. */
function logAggregates(child: Run, stats: Analysis["configs"][number]): void {
  child.logMetrics(aggregateMetrics(stats), 0);
}

/**
 * Writes the summary onto the parent (tables, figures, verdict tags, metrics, the notes artifact and the
 * description), where a local run and summarize both write it (the caller ends the parent).
 */
async function writeParentSummary(
  ablation: AnyAblation,
  plan: Plan,
  parent: Run,
  s: ReturnType<typeof summarizeResults>,
  wallSeconds: number,
): Promise<{ artifacts: string[]; warnings: string[] }> {
  const { analysis, summary } = s;
  const artifacts: string[] = [];
  const warnings: string[] = [];
  for (const table of summary.tables) artifacts.push(parent.logTable(table.rows, `tables/${table.name}.json`));
  for (const figure of summary.figures) {
    const logged = await parent.logFigure(figure.figure, `figures/${figure.name}`, { imageKey: figure.name });
    artifacts.push(logged.html);
    if (logged.png) artifacts.push(logged.png);
    else if (logged.pngSkipped && !warnings.some((w) => w.startsWith("no PNG")))
      warnings.push(`no PNG figures: ${logged.pngSkipped}`);
  }
  const tags: Record<string, string> = {};
  const metrics: Record<string, number> = {
    wall_seconds: wallSeconds,
    tasks: plan.tasks.length,
    configurations: plan.configs.length,
    runs_collapsed: analysis.configs.reduce((n, c) => n + c.collapsed.length, 0),
    comparisons_held: analysis.comparisons.filter((c) => c.verdict.verdict === "held").length,
    comparisons_contradicted: analysis.comparisons.filter((c) => c.verdict.verdict === "contradicted").length,
  };
  for (const c of analysis.comparisons) {
    tags[`marginlab.verdict.${c.name}`] = c.verdict.verdict;
    metrics[`verdict.${c.name}.mean_diff`] = c.verdict.meanDiff;
    metrics[`verdict.${c.name}.p`] = c.verdict.p;
  }
  // the headline: the first comparison's mean difference (what the ablation is about)
  if (analysis.comparisons.length > 0) metrics.headline_mean_diff = analysis.comparisons[0].verdict.meanDiff;
  parent.setTags(tags);
  parent.logMetrics(finiteOnly(metrics), 0);
  artifacts.push(parent.logArtifact(Buffer.from(summary.notes.map((n) => `- ${n}`).join("\n") + "\n"), NOTES_ARTIFACT));
  parent.setDescription(describeAblation(ablation, plan, summary.notes));
  return { artifacts, warnings };
}

/**
 * Runs one task with the progress callback's view of the whole plan (`position`: tasks done before it);
 * metrics go to `run` when given.
 */
function runTaskWithProgress(
  ablation: AnyAblation,
  plan: Plan,
  task: Task,
  run: Run | undefined,
  emit: (p: Omit<Progress, "fraction" | "elapsedSeconds" | "etaSeconds" | "total">, fraction: number) => void,
  position: number,
): Promise<ResultOf> {
  const total = plan.tasks.length;
  const label = `${task.config.label} seed ${task.seed}`;
  emit({ index: task.index, label, step: 0, steps: 0, phase: "start" }, position / total);
  return runTask(ablation, plan, task, {
    log(metrics, step = 0) {
      run?.logMetrics(finiteOnly(metrics), step);
    },
    progress(done, steps, message) {
      const inner = steps > 0 ? done / steps : 0;
      emit({ index: task.index, label, step: done, steps, phase: "step", message }, (position + inner) / total);
    },
  });
}

/** Runs a task into its run (when tracking): FINISHED with its result, or FAILED and rethrown. */
async function runAndRecord(
  ablation: AnyAblation,
  plan: Plan,
  task: Task,
  run: Run | undefined,
  emit: Parameters<typeof runTaskWithProgress>[4],
  position = task.index,
): Promise<ResultOf> {
  let r: ResultOf;
  run?.setTags({ [LOAD_START]: os.loadavg()[0].toFixed(2) });
  try {
    r = await runTaskWithProgress(ablation, plan, task, run, emit, position);
    checkNoCollision(
      configParams(task.config, plan.settings),
      r.result.metrics,
      `ablation "${ablation.name}", configuration "${task.config.label}"`,
    );
  } catch (error) {
    await run?.end("FAILED");
    throw error;
  }
  if (run) await recordTask(run, task, r);
  return r;
}

function progressEmitter(total: number, onProgress: ((p: Progress) => void) | undefined, t0: number) {
  let lastFraction = 0;
  return (p: Omit<Progress, "fraction" | "elapsedSeconds" | "etaSeconds" | "total">, fraction: number) => {
    lastFraction = Math.max(lastFraction, Math.min(1, fraction));
    const e = (performance.now() - t0) / 1000;
    const eta = lastFraction > 0.02 ? (e / lastFraction) * (1 - lastFraction) : undefined;
    onProgress?.({ ...p, total, fraction: lastFraction, elapsedSeconds: e, etaSeconds: eta });
  };
}

export async function runAblation(
  nameOrAblation: string | AnyAblation,
  options: RunAblationOptions = {},
): Promise<AblationRun> {
  const ablation = typeof nameOrAblation === "string" ? getAblation(nameOrAblation) : nameOrAblation;
  const plan = planTasks(ablation, options.preset ?? "smoke", options.set ?? {});
  await checkExperimentData(plan.settings); // the user's files are read and checked before any run exists
  const { tasks, preset } = plan;
  const t0 = performance.now();
  const started = new Date().toISOString();
  const loadStart = os.loadavg()[0];
  const elapsed = () => (performance.now() - t0) / 1000;
  const emit = progressEmitter(tasks.length, options.onProgress, t0);
  const taskRunIds: string[] = [];
  const results: ResultOf[] = [];

  // one configuration's seeds, each in a grandchild of the configuration's run (when tracking), whose
  // across-seed aggregates it then logs
  const runConfiguration = async (configIndex: number, child?: Run, parentId?: string) => {
    const own: ResultOf[] = [];
    for (const task of tasks.filter((t) => t.configIndex === configIndex)) {
      const grandchild = child ? await child.child(taskOptions(plan, task, parentId)) : undefined;
      if (grandchild?.id) taskRunIds.push(grandchild.id);
      const done = results.length;
      const r = await runAndRecord(ablation, plan, task, grandchild, emit, done);
      own.push(r);
      results.push(r);
      const label = `${task.config.label} seed ${task.seed}`;
      emit(
        { index: task.index, label, step: 1, steps: 1, phase: "done", metrics: r.result.metrics },
        (done + 1) / tasks.length,
      );
    }
    if (child) logAggregates(child, analyze(own).configs[0]);
  };
  const summarize = () => {
    emit({ index: tasks.length - 1, label: "summary", step: 0, steps: 0, phase: "summary" }, 1);
    return summarizeResults(ablation, plan, results);
  };

  let s: ReturnType<typeof summarizeResults> | undefined;
  let written: { artifacts: string[]; warnings: string[] } | undefined;
  let url: string | undefined;
  const childRunIds: string[] = [];
  let end: RunEndResult | undefined;
  if (options.track ?? true) {
    // the parent / configuration layout is a sweep over the configurations (src/tracking/sweep.ts)
    const po = parentOptions(ablation, plan, options);
    const sweep = await runSweep(
      {
        ...po,
        tags: { ...po.tags, [LOAD_START]: loadStart.toFixed(2) },
        configs: plan.configs.map((_, configIndex) => ({ configIndex })),
        childOptions: ({ configIndex }, _i, parent) => childOptions(plan, configIndex, parent.id),
        finish: async (parent, children) => {
          s = summarize();
          for (const c of children) if (c.runId) childRunIds.push(c.runId);
          written = await writeParentSummary(ablation, plan, parent, s, elapsed());
          parent.setTags({ [LOAD_END]: os.loadavg()[0].toFixed(2) });
          url = parent.url;
        },
        endTimeoutMs: (options.flushTimeoutSeconds ?? 60) * 1000,
      },
      (child, { configIndex }, _i, parent) => runConfiguration(configIndex, child, parent.id),
    );
    end = sweep.parent;
  } else {
    for (let i = 0; i < plan.configs.length; i++) await runConfiguration(i);
    s = summarize();
  }
  return {
    name: ablation.name,
    preset,
    set: options.set ?? {},
    settings: plan.settings,
    started,
    load: { start: loadStart, end: os.loadavg()[0] },
    ...(s as ReturnType<typeof summarizeResults>),
    wallSeconds: elapsed(),
    parentRunId: end?.runId,
    url,
    childRunIds,
    taskRunIds,
    artifacts: written?.artifacts ?? [],
    pending: end?.pending ?? 0,
    warnings: [...(written?.warnings ?? []), ...(end?.errors ?? []).map((e) => e.message)],
  };
}

// --- planned ablations: a parent on the server, tasks run by index anywhere, summarized afterwards ---

/** A mistake in what the caller asked (bad index, not an ablation's parent): the CLI exits 2. */
export class PlanError extends Error {}

export interface PlannedAblation {
  plan: Plan;
  parentRunId: string;
  url?: string;
  /** One per configuration, created up front so that concurrent tasks find them. */
  childRunIds: string[];
  /** The command of each task, in plan order. */
  commands: string[];
}

/** The shell command that runs task `index` of the parent's plan. */
export function taskCommand(plan: Plan, index: number, parentRunId: string): string {
  return `npx marginlab ablate ${plan.ablation} --preset ${plan.preset} --index ${index} --parent ${parentRunId}`;
}

/**
 * Creates the parent run and one child per configuration (left RUNNING) and returns the plan's task
 * commands. Needs the server: a task finds its parent there.
 */
export async function planAblation(
  nameOrAblation: string | AnyAblation,
  options: RunAblationOptions = {},
): Promise<PlannedAblation> {
  const ablation = typeof nameOrAblation === "string" ? getAblation(nameOrAblation) : nameOrAblation;
  const plan = planTasks(ablation, options.preset ?? "smoke", options.set ?? {});
  await checkExperimentData(plan.settings);
  const parent = await startRun({ ...parentOptions(ablation, plan, options), systemMetrics: false });
  const parentRunId = parent.id;
  if (!parentRunId) {
    await parent.discard();
    throw new Error("MLflow was not reached: a planned ablation needs the server (set MLFLOW_TRACKING_URI).");
  }
  const childRunIds: string[] = [];
  for (let i = 0; i < plan.configs.length; i++) {
    const child = await parent.child(childOptions(plan, i, parentRunId));
    await child.end("RUNNING");
    if (child.id) childRunIds.push(child.id);
  }
  await parent.end("RUNNING");
  const commands = plan.tasks.map((t) => taskCommand(plan, t.index, parentRunId));
  return { plan, parentRunId, url: parent.url, childRunIds, commands };
}

const tagFilter = (key: string, value: string) => `tags.\`${key}\` = '${value.replace(/'/g, "\\'")}'`;

function tagOf(run: MlflowRun, key: string): string | undefined {
  return run.data.tags?.find((t) => t.key === key)?.value;
}

/** Earliest first (start time, then id): every process picks the same one of several. */
function earliest(runs: MlflowRun[]): MlflowRun | undefined {
  return [...runs].sort(
    (a, b) => (a.info.start_time ?? 0) - (b.info.start_time ?? 0) || a.info.run_id.localeCompare(b.info.run_id),
  )[0];
}

interface ParentPlan {
  client: MlflowClient;
  parent: MlflowRun;
  plan: Plan;
}

/** The parent run and the plan it was made with (its ablation, preset and overrides tags). */
async function readParent(parentRunId: string, options: RunAblationOptions): Promise<ParentPlan> {
  const client = await trackingClient({ trackingUri: options.trackingUri, shared: true });
  let parent: MlflowRun;
  try {
    parent = await client.getRun(parentRunId);
  } catch (error) {
    throw new PlanError(`--parent ${parentRunId}: no such run on the server (${(error as Error).message}).`);
  }
  const name = tagOf(parent, "marginlab.ablation");
  if (tagOf(parent, ROLE) !== "ablation" || !name)
    throw new PlanError(`--parent ${parentRunId}: not an ablation's parent run (made by \`marginlab ablate --plan\`).`);
  const plan = planTasks(
    name,
    tagOf(parent, "marginlab.preset") ?? "smoke",
    JSON.parse(tagOf(parent, "marginlab.set") ?? "{}"),
  );
  const expected = Number(tagOf(parent, "marginlab.tasks"));
  if (plan.tasks.length !== expected)
    throw new PlanError(
      `--parent ${parentRunId}: its plan had ${expected} tasks, this code makes ${plan.tasks.length}; run the tasks with the version that planned them.`,
    );
  return { client, parent, plan };
}

function searchLayout(p: ParentPlan, filters: string[]): Promise<MlflowRun[]> {
  const filter = [tagFilter(ABLATION_RUN, p.parent.info.run_id), ...filters].join(" and ");
  return p.client.searchAllRuns({ experimentIds: [p.parent.info.experiment_id], filter });
}

/** How long a process that created a missing configuration child waits for others doing the same. */
const CHILD_SETTLE_MS = 2000;

/**
 * The configuration's child under the parent. --plan creates them all, so a task normally only
 * finds it. When it is missing, concurrent tasks may each create one: each waits for the others'
 * creations to land, then all take the earliest (start time, then id) and the others delete theirs.
 */
async function configChild(p: ParentPlan, configIndex: number, options: RunAblationOptions): Promise<string> {
  const search = () =>
    searchLayout(p, [tagFilter(ROLE, "configuration"), tagFilter("marginlab.configIndex", String(configIndex))]);
  const found = earliest(await search());
  if (found) return found.info.run_id;
  const mine = await startRun({
    ...childOptions(p.plan, configIndex, p.parent.info.run_id),
    parent: p.parent.info.run_id,
    experimentId: p.parent.info.experiment_id,
    trackingUri: options.trackingUri,
    journalDir: options.journalDir,
    client: p.client,
    systemMetrics: false,
  });
  await mine.end("RUNNING");
  await new Promise((resolve) => setTimeout(resolve, CHILD_SETTLE_MS));
  const winner = earliest(await search());
  if (!winner) throw new Error(`configuration ${configIndex}: the child run just created is not on the server.`);
  if (mine.id && winner.info.run_id !== mine.id) await p.client.deleteRun(mine.id);
  return winner.info.run_id;
}

export interface PlannedTaskResult {
  task: Task;
  /** True when a FINISHED run of the task was already there (nothing ran). */
  skipped: boolean;
  runId: string;
  /** Earlier FAILED, KILLED or unfinished runs of the task that this one replaced. */
  superseded: string[];
  result?: ResultOf;
}

/**
 * Runs task `index` of the parent's plan as a grandchild (under its configuration's child). Safe to
 * retry: a FINISHED run of the same configuration hash and seed makes it a no-op; earlier FAILED,
 * KILLED or unfinished runs are tagged marginlab.supersededBy and summaries read the new one.
 */
export async function runPlannedTask(
  parentRunId: string,
  index: number,
  options: RunAblationOptions = {},
  expect: { ablation?: string; preset?: string } = {},
): Promise<PlannedTaskResult> {
  const p = await readParent(parentRunId, options);
  const { plan } = p;
  for (const [what, given, planned] of [
    ["ablation", expect.ablation, plan.ablation],
    ["preset", expect.preset, plan.preset],
  ])
    if (given !== undefined && given !== planned)
      throw new PlanError(`--parent ${parentRunId} is a plan of ${what} "${planned}", not "${given}".`);
  if (!Number.isInteger(index) || index < 0 || index >= plan.tasks.length)
    throw new PlanError(`--index ${index} is out of range: the plan has tasks 0..${plan.tasks.length - 1}.`);
  const task = plan.tasks[index];
  const previous = (await searchTaskRuns(p, task)).filter((r) => !tagOf(r, SUPERSEDED_BY));
  const done = earliest(previous.filter((r) => r.info.status === "FINISHED"));
  if (done) return { task, skipped: true, runId: done.info.run_id, superseded: [] };

  const ablation = getAblation(plan.ablation);
  const childId = await configChild(p, task.configIndex, options);
  const run = await startRun({
    ...taskOptions(plan, task, parentRunId),
    parent: childId,
    experimentId: p.parent.info.experiment_id,
    trackingUri: options.trackingUri,
    journalDir: options.journalDir,
    client: p.client,
    systemMetrics: false,
  });
  const runId = run.id;
  if (!runId) {
    await run.discard();
    throw new Error("MLflow was not reached: a planned task needs the server (MLFLOW_TRACKING_URI).");
  }
  const superseded = previous.map((r) => r.info.run_id);
  for (const old of previous) {
    // RUNNING: an attempt that died without ending its run (an index runs once at a time)
    if (old.info.status === "RUNNING")
      await p.client.updateRun(old.info.run_id, { status: "KILLED", endTime: Date.now() });
    await p.client.setTag(old.info.run_id, SUPERSEDED_BY, runId);
  }
  const emit = progressEmitter(plan.tasks.length, options.onProgress, performance.now());
  const r = await runAndRecord(ablation, plan, task, run, emit);
  return { task, skipped: false, runId, superseded, result: r };
}

function searchTaskRuns(p: ParentPlan, task: Task): Promise<MlflowRun[]> {
  return searchLayout(p, [
    tagFilter(ROLE, "task"),
    tagFilter("marginlab.configHash", task.configHash),
    tagFilter("marginlab.seed", String(task.seed)),
  ]);
}

/**
 * Rebuilds the parent's tables, figures, statistics and verdicts from what the server holds (each
 * task's result artifact; superseded runs are left out) and writes them like a local run does.
 * Every task needs a FINISHED run; the error names the ones that have none.
 */
export async function summarizeAblation(parentRunId: string, options: RunAblationOptions = {}): Promise<AblationRun> {
  const p = await readParent(parentRunId, options);
  const { plan, client } = p;
  const ablation = getAblation(plan.ablation);
  const all = await searchLayout(p, [tagFilter(ROLE, "task")]);
  const finished = new Map<string, MlflowRun[]>();
  for (const r of all) {
    if (r.info.status !== "FINISHED" || tagOf(r, SUPERSEDED_BY)) continue;
    const key = `${tagOf(r, "marginlab.configHash")}/${tagOf(r, "marginlab.seed")}`;
    finished.set(key, [...(finished.get(key) ?? []), r]);
  }
  const runOf = (t: Task) => earliest(finished.get(`${t.configHash}/${t.seed}`) ?? []);
  const missing = plan.tasks.filter((t) => !runOf(t));
  if (missing.length > 0)
    throw new PlanError(
      `parent run ${parentRunId}: ${missing.length} of ${plan.tasks.length} tasks have no FINISHED run (indices ${missing.map((t) => t.index).join(", ")}); run them with --index I --parent ${parentRunId}, then summarize again.`,
    );
  const taskRuns = plan.tasks.map((t) => runOf(t) as MlflowRun);
  const results = await Promise.all(
    plan.tasks.map(async (t, i) => {
      const run = taskRuns[i];
      const where = `task ${t.index} (run ${run.info.run_id})`;
      const data = await client.downloadArtifact(run.info.artifact_uri, TASK_RESULT_ARTIFACT).catch((error) => {
        throw new Error(`${where}: ${TASK_RESULT_ARTIFACT} could not be read: ${(error as Error).message}`);
      });
      return decodeResult(data.toString("utf8"), t, where);
    }),
  );
  const s = summarizeResults(ablation, plan, results);
  const continued = (runId: string) =>
    startRun({
      runId,
      experimentId: p.parent.info.experiment_id,
      trackingUri: options.trackingUri,
      journalDir: options.journalDir,
      client,
      systemMetrics: false,
      handleSignals: false,
    });
  const childRunIds: string[] = [];
  for (let i = 0; i < plan.configs.length; i++) {
    const child = await continued(await configChild(p, i, options));
    logAggregates(child, s.analysis.configs[i]);
    await child.end("FINISHED");
    if (child.id) childRunIds.push(child.id);
  }
  const parent = await continued(parentRunId);
  // a run that ended before (a local run summarized again) keeps its own wall time
  const startTime = p.parent.info.start_time ?? Date.now();
  const ended = p.parent.info.status === "FINISHED" && p.parent.info.end_time ? p.parent.info.end_time : Date.now();
  const wallSeconds = (ended - startTime) / 1000;
  let written: { artifacts: string[]; warnings: string[] };
  try {
    written = await writeParentSummary(ablation, plan, parent, s, wallSeconds);
  } catch (error) {
    // the summary is not on the parent: it says so (FAILED) until a summarize succeeds
    await parent.end("FAILED", { timeoutMs: 10_000 }).catch(() => undefined);
    throw error;
  }
  const end = await parent.end("FINISHED", { timeoutMs: (options.flushTimeoutSeconds ?? 60) * 1000 });
  for (const e of end.errors) written.warnings.push(e.message);
  return {
    name: ablation.name,
    preset: plan.preset,
    set: JSON.parse(tagOf(p.parent, "marginlab.set") ?? "{}"),
    settings: plan.settings,
    started: new Date(startTime).toISOString(),
    load: { ...loadOf(p.parent, taskRuns), cpuUtilizationPercent: await cpuUse(client, parentRunId) },
    commit: tagOf(p.parent, "mlflow.source.git.commit"),
    dirty: tagOf(p.parent, "mlflow.source.git.dirty") === "true",
    ...s,
    wallSeconds,
    parentRunId,
    url: parent.url,
    childRunIds,
    taskRunIds: taskRuns.map((r) => r.info.run_id),
    artifacts: written.artifacts,
    pending: end.pending,
    warnings: written.warnings,
  };
}

/**
 * The load a run's wall time was measured under: the parent's own tags (a local run), else the load when
 * the first task started and when the last one ended (a planned run's tasks tag their own).
 */
function loadOf(parent: MlflowRun, taskRuns: MlflowRun[]): { start?: number; end?: number } {
  const tag = (r: MlflowRun | undefined, k: string) => {
    const v = r && tagOf(r, k);
    return v === undefined ? undefined : Number(v);
  };
  if (tag(parent, LOAD_START) !== undefined) return { start: tag(parent, LOAD_START), end: tag(parent, LOAD_END) };
  const first = earliest(taskRuns);
  const last = [...taskRuns].sort((a, b) => (b.info.end_time ?? 0) - (a.info.end_time ?? 0))[0];
  return { start: tag(first, LOAD_START), end: tag(last, LOAD_END) };
}

/** The machine's mean CPU use over a run, from its system metrics (undefined when none were sampled). */
async function cpuUse(client: MlflowClient, runId: string): Promise<number | undefined> {
  const history = await client.getMetricHistory(runId, "system/cpu_utilization_percentage").catch(() => undefined);
  if (!history || history.length === 0) return undefined;
  let sum = 0;
  for (const m of history) sum += m.value;
  return sum / history.length;
}

/** Formats rows as a fixed-width text table (the CLI's summary). */
export function textTable(rows: Array<Record<string, unknown>>): string {
  if (rows.length === 0) return "(no rows)";
  const columns: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!columns.includes(k)) columns.push(k);
  const cell = (v: unknown) =>
    v === undefined || v === null ? "" : typeof v === "number" ? formatNumber(v) : String(v);
  const cells = rows.map((r) => columns.map((c) => cell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]))
      .join("  ")
      .trimEnd();
  return [line(columns), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n");
}

export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 10) return v.toFixed(2);
  return v.toFixed(4).replace(/\.?0+$/, "");
}
