/**
 * The experimental protocol every ablation runs on. The plan (`planTasks`) is a pure function of
 * (ablation, preset, settings): configurations x seeds, seed-major, so that every prefix of the
 * plan holds complete pairs; a task's seed alone fixes initialisation and data order, so compared
 * arms are paired. `runTask` runs one task by itself (a cluster array task calls it). `runAblation`
 * runs the plan locally and logs the layout: the ablation's parent run (settings, verdicts as tags
 * and in its description, a headline metric, tables and figures) -> one child per configuration
 * (its params, the shared settings, and the across-seed mean, std and 95 % interval of every final
 * metric) -> one grandchild per seed (its curves and final metrics). Progress goes to a callback.
 */
import { type CollapseCheck, convergenceCheck } from "../src/eval/collapse";
import { flattenConfig } from "../src/tracking/params";
import { type Run, startRun } from "../src/tracking/run";
import { TrainingError } from "../src/train/trainer";
import { analyze, collapsedTable, configKey, verdictNotes, verdictTable } from "./analysis";
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

export interface Progress {
  /** Task being run (0-based) and how many there are. */
  index: number;
  total: number;
  /** "<configuration> seed <seed>". */
  label: string;
  /** Steps done / total inside the task. */
  step: number;
  steps: number;
  /** Overall fraction done, in [0, 1]. */
  fraction: number;
  elapsedSeconds: number;
  /** Estimated seconds left (undefined until something finished). */
  etaSeconds?: number;
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
  settings: Settings;
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

export async function runAblation(
  nameOrAblation: string | AnyAblation,
  options: RunAblationOptions = {},
): Promise<AblationRun> {
  const ablation = typeof nameOrAblation === "string" ? getAblation(nameOrAblation) : nameOrAblation;
  const plan = planTasks(ablation, options.preset ?? "smoke", options.set ?? {});
  const { settings, configs, tasks, preset } = plan;
  const track = options.track ?? true;
  const t0 = performance.now();
  const warnings: string[] = [];
  const artifacts: string[] = [];
  const results: ResultOf[] = [];
  const elapsed = () => (performance.now() - t0) / 1000;
  let lastFraction = 0;
  const emit = (p: Omit<Progress, "fraction" | "elapsedSeconds" | "etaSeconds" | "total">, fraction: number) => {
    lastFraction = Math.max(lastFraction, Math.min(1, fraction));
    const e = elapsed();
    const eta = lastFraction > 0.02 ? (e / lastFraction) * (1 - lastFraction) : undefined;
    options.onProgress?.({ ...p, total: tasks.length, fraction: lastFraction, elapsedSeconds: e, etaSeconds: eta });
  };
  const describe = (notes: string[]) =>
    `**${ablation.title}** (${preset} preset, ${configs.length} configurations x ${plan.seeds.length} seeds)\n\n${ablation.claim}${notes.length ? `\n\n${notes.map((n) => `- ${n}`).join("\n")}` : ""}`;

  let parent: Run | undefined;
  const children = new Map<number, Run>();
  const taskRunIds: string[] = [];
  const common = { "marginlab.ablation": ablation.name, "marginlab.preset": preset };
  if (track) {
    parent = await startRun({
      experiment: options.experiment ?? "marginlab-ablations",
      name: `${ablation.name}-${preset}`,
      trackingUri: options.trackingUri,
      journalDir: options.journalDir,
      params: settingParams(settings),
      tags: {
        ...common,
        "marginlab.tasks": String(tasks.length),
        "marginlab.configurations": String(configs.length),
        "marginlab.seeds": plan.seeds.join(","),
      },
      description: describe([]),
    });
  }
  const endAll = async (status: "FAILED") => {
    for (const c of children.values()) await c.end(status, { timeoutMs: 10_000 }).catch(() => undefined);
    await parent?.end(status, { timeoutMs: 10_000 }).catch(() => undefined);
  };
  try {
    for (const task of tasks) {
      const { config, seed } = task;
      const params = configParams(config, settings);
      let child = children.get(task.configIndex);
      if (parent && !child) {
        child = await parent.child({
          name: config.label,
          params,
          hashConfig: false,
          tags: {
            ...common,
            "marginlab.configHash": task.configHash,
            "marginlab.configIndex": String(task.configIndex),
          },
        });
        children.set(task.configIndex, child);
      }
      const grandchild = child
        ? await child.child({
            name: `${config.label} seed ${seed}`,
            params: { ...params, seed },
            hashConfig: false,
            tags: {
              ...common,
              "marginlab.configHash": task.configHash,
              "marginlab.seed": String(seed),
              "marginlab.task": String(task.index),
            },
          })
        : undefined;
      if (grandchild?.id) taskRunIds.push(grandchild.id);
      const label = `${config.label} seed ${seed}`;
      emit({ index: task.index, label, step: 0, steps: 0, phase: "start" }, task.index / tasks.length);
      let r: ResultOf;
      try {
        r = await runTask(ablation, plan, task, {
          log(metrics, step = 0) {
            grandchild?.logMetrics(finiteOnly(metrics), step);
          },
          progress(done, total, message) {
            const inner = total > 0 ? done / total : 0;
            emit(
              { index: task.index, label, step: done, steps: total, phase: "step", message },
              (task.index + inner) / tasks.length,
            );
          },
        });
      } catch (error) {
        await grandchild?.end("FAILED");
        throw error;
      }
      checkNoCollision(params, r.result.metrics, `ablation "${ablation.name}", configuration "${config.label}"`);
      if (grandchild) {
        const final = finiteOnly(r.result.metrics);
        if (r.result.lossHistory && r.result.lossHistory.length >= 2)
          final.convergence_last10pct_improvement = convergenceCheck(r.result.lossHistory).relativeImprovement;
        grandchild.logMetrics(finiteOnly(final), 0);
        if (r.result.collapse?.collapsed) grandchild.setTag("marginlab.collapsed", r.result.collapse.reasons.join(","));
        await grandchild.end("FINISHED");
      }
      results.push(r);
      emit(
        { index: task.index, label, step: 1, steps: 1, phase: "done", metrics: r.result.metrics },
        (task.index + 1) / tasks.length,
      );
    }
    emit({ index: tasks.length - 1, label: "summary", step: 0, steps: 0, phase: "summary" }, 1);
    const ordered = [...results].sort(
      (a, b) => configs.indexOf(a.config) - configs.indexOf(b.config) || a.seed - b.seed,
    );
    const comparisons = ablation.comparisons?.(settings, configs) ?? [];
    const analysis = analyze(ordered, comparisons);
    const own = ablation.summarize(ordered, settings, analysis);
    const computed = [verdictTable(analysis), collapsedTable(analysis)].filter((t) => t.rows.length > 0);
    const summary: Summary = {
      tables: [...computed.slice(0, 1), ...own.tables, ...computed.slice(1)],
      figures: own.figures,
      notes: [...verdictNotes(analysis), ...own.notes],
    };
    const childRunIds: string[] = [];
    for (const [configIndex, child] of [...children.entries()].sort((a, b) => a[0] - b[0])) {
      child.logMetrics(aggregateMetrics(analysis.configs[configIndex]), 0);
      await child.end("FINISHED");
      if (child.id) childRunIds.push(child.id);
    }
    if (parent) {
      for (const table of summary.tables) artifacts.push(parent.logTable(table.rows, `tables/${table.name}.json`));
      for (const figure of summary.figures) {
        const logged = await parent.logFigure(figure.figure, `figures/${figure.name}`);
        artifacts.push(logged.html);
        if (logged.png) artifacts.push(logged.png);
        else if (logged.pngSkipped && !warnings.some((w) => w.startsWith("no PNG")))
          warnings.push(`no PNG figures: ${logged.pngSkipped}`);
      }
      const tags: Record<string, string> = {};
      const metrics: Record<string, number> = {
        wall_seconds: elapsed(),
        tasks: tasks.length,
        configurations: configs.length,
        runs_collapsed: analysis.configs.reduce((s, c) => s + c.collapsed.length, 0),
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
      parent.setDescription(describe(summary.notes));
    }
    const wallSeconds = elapsed();
    let pending = 0;
    if (parent) {
      const end = await parent.end("FINISHED", { timeoutMs: (options.flushTimeoutSeconds ?? 60) * 1000 });
      pending = end.pending;
      for (const e of end.errors) warnings.push(e.message);
    }
    return {
      name: ablation.name,
      preset,
      settings,
      results: ordered,
      analysis,
      summary,
      wallSeconds,
      parentRunId: parent?.id,
      url: parent?.url,
      childRunIds,
      taskRunIds,
      artifacts,
      pending,
      warnings,
    };
  } catch (error) {
    await endAll("FAILED");
    throw error;
  }
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
