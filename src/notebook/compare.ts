/**
 * compareRuns: an experiment, or a parent run with its children and grandchildren, as a table (one
 * row per run: the ablation/preset/config/seed tags, params, final metrics) and a Plotly figure: bars
 * of one metric per configuration with error bars across seeds, or parallel coordinates over the
 * runs. Plain data (no DOM); `showComparison` displays it in a notebook and does nothing elsewhere.
 */
import type { PlotlyFigure } from "../plots/html";
import { MlflowClient, type MlflowRun } from "../tracking/client";
import { trackingConfigFromEnv } from "../tracking/config";
import { showFigure, showTable } from "./display";

export interface CompareTarget {
  /** An experiment by name or id: all its runs. */
  experiment?: string;
  experimentId?: string;
  /** A parent run: it, its children and their children. */
  parentRunId?: string;
}

export interface CompareOptions {
  /** Server URL; default MLFLOW_TRACKING_URI. */
  trackingUri?: string;
  client?: MlflowClient;
  /** The metric the figure shows; default the first metric every leaf run has. */
  metric?: string;
  /** "bar" (mean per configuration, error bars = sample std across seeds) or "parallel". Default "bar". */
  figure?: "bar" | "parallel";
  /** Only runs that have no children (the per-seed runs of a sweep). Default false: every run. */
  leavesOnly?: boolean;
}

export interface ComparedRun {
  runId: string;
  name: string;
  status: string;
  parentRunId?: string;
  /** 0 for the target parent (or a top-level run of the experiment), 1 its children, 2 grandchildren. */
  depth: number;
  ablation?: string;
  preset?: string;
  /** The configuration: the marginlab.config tag, else (for a per-seed run) its parent's name, else its name. */
  config: string;
  seed?: string;
  params: Record<string, string>;
  metrics: Record<string, number>;
  hasChildren: boolean;
}

export interface ConfigSummary {
  config: string;
  n: number;
  mean: number;
  /** Sample standard deviation across the group's runs (0 for one run). */
  std: number;
  values: number[];
}

export interface Comparison {
  runs: ComparedRun[];
  /** One object per run: run, config, seed, ..., params as "param.<key>", metrics by their keys. */
  table: Array<Record<string, unknown>>;
  metric?: string;
  summary: ConfigSummary[];
  figure: PlotlyFigure;
}

const TAGS = {
  ablation: ["marginlab.ablation"],
  preset: ["marginlab.preset"],
  config: ["marginlab.config", "marginlab.configuration"],
  seed: ["marginlab.seed"],
} as const;

function kv(list: Array<{ key: string; value: string }> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { key, value } of list ?? []) out[key] = value;
  return out;
}

function firstTag(tags: Record<string, string>, keys: readonly string[]): string | undefined {
  for (const key of keys) if (tags[key] !== undefined) return tags[key];
  return undefined;
}

async function fetchRuns(client: MlflowClient, target: CompareTarget): Promise<{ runs: MlflowRun[]; root?: string }> {
  if (target.parentRunId) {
    const parent = await client.getRun(target.parentRunId);
    const all = await client.searchAllRuns({ experimentIds: [parent.info.experiment_id] });
    return { runs: all, root: target.parentRunId };
  }
  let experimentId = target.experimentId;
  if (!experimentId) {
    if (!target.experiment) throw new Error("compareRuns: give { experiment }, { experimentId } or { parentRunId }");
    const experiment = await client.getExperimentByName(target.experiment);
    if (!experiment)
      throw new Error(`compareRuns: no experiment named "${target.experiment}" on ${client.trackingUri}`);
    experimentId = experiment.experiment_id;
  }
  return { runs: await client.searchAllRuns({ experimentIds: [experimentId] }) };
}

/** The runs of the target as rows, parents before their children. */
export function toComparedRuns(all: MlflowRun[], root?: string): ComparedRun[] {
  const byId = new Map(all.map((r) => [r.info.run_id, r]));
  const children = new Map<string, MlflowRun[]>();
  for (const run of all) {
    const parent = kv(run.data.tags)["mlflow.parentRunId"];
    if (parent && byId.has(parent)) children.set(parent, [...(children.get(parent) ?? []), run]);
  }
  const tops = root
    ? [byId.get(root)].filter((r): r is MlflowRun => r !== undefined)
    : all.filter((r) => !byId.has(kv(r.data.tags)["mlflow.parentRunId"] ?? ""));
  const out: ComparedRun[] = [];
  const visit = (run: MlflowRun, depth: number, parent?: ComparedRun) => {
    const tags = kv(run.data.tags);
    const params = kv(run.data.params);
    const metrics: Record<string, number> = {};
    for (const m of run.data.metrics ?? []) metrics[m.key] = m.value;
    const name = run.info.run_name ?? tags["mlflow.runName"] ?? run.info.run_id;
    const seed = firstTag(tags, TAGS.seed) ?? params.seed;
    const kids = (children.get(run.info.run_id) ?? []).sort(
      (a, b) => (a.info.start_time ?? 0) - (b.info.start_time ?? 0),
    );
    const row: ComparedRun = {
      runId: run.info.run_id,
      name,
      status: run.info.status,
      parentRunId: tags["mlflow.parentRunId"],
      depth,
      ablation: firstTag(tags, TAGS.ablation) ?? parent?.ablation,
      preset: firstTag(tags, TAGS.preset) ?? parent?.preset,
      // A per-seed run (one with a seed, under a configuration run) belongs to its parent's configuration.
      config:
        firstTag(tags, TAGS.config) ??
        (seed !== undefined && parent && parent.depth > 0 && kids.length === 0 ? parent.config : name),
      seed,
      params,
      metrics,
      hasChildren: kids.length > 0,
    };
    out.push(row);
    for (const kid of kids) visit(kid, depth + 1, row);
  };
  for (const top of tops.sort((a, b) => (a.info.start_time ?? 0) - (b.info.start_time ?? 0))) visit(top, 0);
  return out;
}

/** Mean and sample std of `metric` per configuration, in order of first appearance. */
export function summarize(runs: ComparedRun[], metric: string): ConfigSummary[] {
  const groups = new Map<string, number[]>();
  for (const run of runs) {
    const value = run.metrics[metric];
    if (value === undefined || !Number.isFinite(value)) continue;
    groups.set(run.config, [...(groups.get(run.config) ?? []), value]);
  }
  return [...groups].map(([config, values]) => {
    const n = values.length;
    const mean = values.reduce((s, v) => s + v, 0) / n;
    const variance = n > 1 ? values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1) : 0;
    return { config, n, mean, std: Math.sqrt(variance), values };
  });
}

function tableOf(runs: ComparedRun[]): Array<Record<string, unknown>> {
  return runs.map((r) => {
    const row: Record<string, unknown> = {
      run: `${"  ".repeat(r.depth)}${r.name}`,
      status: r.status,
      ablation: r.ablation,
      preset: r.preset,
      config: r.config,
      seed: r.seed,
    };
    for (const [k, v] of Object.entries(r.params)) row[`param.${k}`] = v;
    for (const [k, v] of Object.entries(r.metrics)) row[k] = v;
    row.runId = r.runId;
    return row;
  });
}

function barFigure(summary: ConfigSummary[], metric: string): PlotlyFigure {
  return {
    data: [
      {
        type: "bar",
        x: summary.map((s) => s.config),
        y: summary.map((s) => s.mean),
        error_y: { type: "data", array: summary.map((s) => s.std), visible: true },
        text: summary.map((s) => `n=${s.n}`),
        hovertemplate: "%{x}<br>mean %{y:.4g} ± %{error_y.array:.3g}<br>%{text}<extra></extra>",
      },
    ],
    layout: {
      title: { text: `${metric}: mean ± std across seeds` },
      yaxis: { title: { text: metric } },
      margin: { b: 120 },
    },
  };
}

function parallelFigure(runs: ComparedRun[], metric: string): PlotlyFigure {
  const numericKeys = new Set<string>();
  for (const r of runs) for (const [k, v] of Object.entries(r.metrics)) if (Number.isFinite(v)) numericKeys.add(k);
  const keys = [...numericKeys].filter((k) => !k.startsWith("system/") && runs.every((r) => k in r.metrics));
  const configs = [...new Set(runs.map((r) => r.config))];
  const dimensions = [
    {
      label: "config",
      values: runs.map((r) => configs.indexOf(r.config)),
      tickvals: configs.map((_, i) => i),
      ticktext: configs,
    },
    ...keys.map((k) => ({ label: k, values: runs.map((r) => r.metrics[k]) })),
  ];
  return {
    data: [
      {
        type: "parcoords",
        line: { color: runs.map((r) => r.metrics[metric]), colorscale: "Viridis", showscale: true },
        dimensions,
      },
    ],
    layout: { title: { text: `runs, coloured by ${metric}` } },
  };
}

/**
 * Reads the runs of an experiment or a parent run from MLflow and returns the table, the
 * per-configuration summary of one metric, and a figure spec.
 */
export async function compareRuns(target: CompareTarget, options: CompareOptions = {}): Promise<Comparison> {
  const uri = options.trackingUri ?? trackingConfigFromEnv().trackingUri;
  if (!options.client && !uri)
    throw new Error("compareRuns: no tracking server (set MLFLOW_TRACKING_URI, or pass trackingUri or client)");
  const client = options.client ?? new MlflowClient({ trackingUri: uri });
  try {
    const { runs: all, root } = await fetchRuns(client, target);
    if (root && !all.some((r) => r.info.run_id === root))
      throw new Error(`compareRuns: run ${root} is not among its experiment's runs`);
    let runs = toComparedRuns(all, root);
    if (options.leavesOnly) runs = runs.filter((r) => !r.hasChildren);
    // The figure compares the runs that carry results: the leaves (per-seed or per-configuration runs).
    const leaves = runs.filter((r) => !r.hasChildren);
    const metric =
      options.metric ??
      Object.keys(leaves[0]?.metrics ?? {})
        .filter((k) => !k.startsWith("system/"))
        .find((k) => leaves.every((r) => k in r.metrics));
    const summary = metric ? summarize(leaves, metric) : [];
    if (options.metric && summary.length === 0)
      throw new Error(`compareRuns: no run has the metric "${options.metric}"`);
    const figure: PlotlyFigure = !metric
      ? { data: [], layout: { title: { text: "no metric common to the runs" } } }
      : options.figure === "parallel"
        ? parallelFigure(leaves, metric)
        : barFigure(summary, metric);
    return { runs, table: tableOf(runs), metric, summary, figure };
  } finally {
    if (!options.client) client.close();
  }
}

/** Shows a comparison's table and figure in a notebook (await it); false (and nothing shown) outside one. */
export async function showComparison(comparison: Comparison, options: { title?: string } = {}): Promise<boolean> {
  const shown = showTable(comparison.table, options.title);
  return (await showFigure(comparison.figure)) && shown;
}
