/**
 * Runs an ablation: resolves its settings, then one configuration after another, each inside an
 * MLflow child run of one parent run (full flattened configuration as params, metrics per step), and
 * logs the summary's tables and figures (HTML, and PNG when a headless Chromium exists) on the parent.
 * Progress goes to a callback (the CLI draws a bar with ETA; notebooks a live display).
 */
import { flattenConfig } from "../src/tracking/params";
import { type Run, startRun } from "../src/tracking/run";
import { getAblation } from "./registry";
import { checkPreset, resolveSettings } from "./settings";
import type { AnyAblation, Config, ConfigResult, Preset, ResultOf, Settings, SettingValue, Summary } from "./types";

export interface Progress {
  /** Configuration being run (0-based) and how many there are. */
  index: number;
  total: number;
  label: string;
  /** Steps done / total inside the configuration. */
  step: number;
  steps: number;
  /** Overall fraction done, in [0, 1]. */
  fraction: number;
  elapsedSeconds: number;
  /** Estimated seconds left (undefined until something finished). */
  etaSeconds?: number;
  phase: "start" | "step" | "done" | "summary";
  message?: string;
  /** The finished configuration's metrics (phase "done"). */
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
  results: Array<ResultOf<Config>>;
  summary: Summary;
  wallSeconds: number;
  /** The parent run (when tracking). */
  parentRunId?: string;
  url?: string;
  childRunIds: string[];
  /** Artifact paths on the parent. */
  artifacts: string[];
  /** Items still waiting in the journal (not yet on the server); `marginlab sync` sends them. */
  pending: number;
  /** Tracking problems that did not stop the run (e.g. no PNG renderer). */
  warnings: string[];
}

function scalarParams(settings: Settings): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(settings)) out[k] = Array.isArray(v) ? v.join(",") : v;
  return out;
}

export async function runAblation(
  nameOrAblation: string | AnyAblation,
  options: RunAblationOptions = {},
): Promise<AblationRun> {
  const ablation = typeof nameOrAblation === "string" ? getAblation(nameOrAblation) : nameOrAblation;
  const preset = checkPreset(ablation.name, options.preset ?? "smoke");
  const settings = resolveSettings(ablation, preset, options.set ?? {});
  const configs = ablation.grid(settings) as Config[];
  if (configs.length === 0) throw new Error(`ablation "${ablation.name}": the settings give no configurations.`);
  const track = options.track ?? true;
  const t0 = performance.now();
  const warnings: string[] = [];
  const childRunIds: string[] = [];
  const artifacts: string[] = [];
  const results: Array<ResultOf<Config>> = [];
  const elapsed = () => (performance.now() - t0) / 1000;
  let lastFraction = 0;
  const emit = (p: Omit<Progress, "fraction" | "elapsedSeconds" | "etaSeconds" | "total">, fraction: number) => {
    lastFraction = Math.max(lastFraction, Math.min(1, fraction));
    const e = elapsed();
    const eta = lastFraction > 0.02 ? (e / lastFraction) * (1 - lastFraction) : undefined;
    options.onProgress?.({ ...p, total: configs.length, fraction: lastFraction, elapsedSeconds: e, etaSeconds: eta });
  };

  let parent: Run | undefined;
  if (track) {
    parent = await startRun({
      experiment: options.experiment ?? "marginlab-ablations",
      name: `${ablation.name}-${preset}`,
      trackingUri: options.trackingUri,
      journalDir: options.journalDir,
      params: { ablation: ablation.name, preset, ...scalarParams(settings) },
      tags: {
        "marginlab.ablation": ablation.name,
        "marginlab.preset": preset,
        "marginlab.sweep.size": String(configs.length),
      },
      description: `**${ablation.title}** (${preset} preset)\n\n${ablation.claim}`,
    });
  }
  try {
    for (let index = 0; index < configs.length; index++) {
      const config = configs[index];
      const child = parent
        ? await parent.child({
            name: config.label,
            params: flattenConfig(config),
            tags: { "marginlab.sweep.index": String(index) },
          })
        : undefined;
      if (child?.id) childRunIds.push(child.id);
      const started = performance.now();
      emit({ index, label: config.label, step: 0, steps: 0, phase: "start" }, index / configs.length);
      let result: ConfigResult;
      try {
        result = await ablation.runOne(config, {
          settings,
          index,
          total: configs.length,
          log(metrics, step = 0) {
            const finite: Record<string, number> = {};
            for (const [k, v] of Object.entries(metrics)) if (Number.isFinite(v)) finite[k] = v;
            child?.logMetrics(finite, step);
          },
          progress(done, total, message) {
            const inner = total > 0 ? done / total : 0;
            emit(
              { index, label: config.label, step: done, steps: total, phase: "step", message },
              (index + inner) / configs.length,
            );
          },
        });
      } catch (error) {
        await child?.end("FAILED");
        throw error;
      }
      child?.logMetrics(finiteOnly(result.metrics), 0);
      await child?.end("FINISHED");
      const seconds = (performance.now() - started) / 1000;
      results.push({ config, result, seconds });
      emit(
        { index, label: config.label, step: 1, steps: 1, phase: "done", metrics: result.metrics },
        (index + 1) / configs.length,
      );
    }
    emit({ index: configs.length - 1, label: "summary", step: 0, steps: 0, phase: "summary" }, 1);
    const summary = ablation.summarize(results, settings);
    if (parent) {
      for (const table of summary.tables) artifacts.push(parent.logTable(table.rows, `tables/${table.name}.json`));
      for (const figure of summary.figures) {
        const logged = await parent.logFigure(figure.figure, `figures/${figure.name}`);
        artifacts.push(logged.html);
        if (logged.png) artifacts.push(logged.png);
        else if (logged.pngSkipped && !warnings.some((w) => w.startsWith("no PNG")))
          warnings.push(`no PNG figures: ${logged.pngSkipped}`);
      }
      parent.logMetrics({ wall_seconds: elapsed(), configurations: configs.length }, 0);
      if (summary.notes.length > 0)
        parent.setDescription(
          `**${ablation.title}** (${preset} preset)\n\n${ablation.claim}\n\n${summary.notes.map((n) => `- ${n}`).join("\n")}`,
        );
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
      results,
      summary,
      wallSeconds,
      parentRunId: parent?.id,
      url: parent?.url,
      childRunIds,
      artifacts,
      pending,
      warnings,
    };
  } catch (error) {
    await parent?.end("FAILED", { timeoutMs: 10_000 }).catch(() => undefined);
    throw error;
  }
}

function finiteOnly(m: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(m)) if (Number.isFinite(v)) out[k] = v;
  return out;
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
