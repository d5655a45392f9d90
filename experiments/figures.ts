/**
 * Figures the ablations share, drawn from the protocol's statistics: a metric per configuration
 * with 95 % intervals over seeds as error bars, and ROC curves (TAR against FAR on all held-out
 * pairs) averaged over seeds with their spread.
 */
import { meanInterval } from "../src/eval/stats";
import type { Analysis, ResultOf, SummaryFigure } from "./types";

const r4 = (v: number) => (Number.isFinite(v) ? Number(v.toFixed(4)) : null);

type Stat = { mean: number; ci: [number, number]; n: number } | undefined;

/** Plotly's asymmetric error bars from 95 % intervals (none below two seeds). */
export function ciErrorBars(stats: Stat[]): Record<string, unknown> {
  return {
    type: "data",
    symmetric: false,
    array: stats.map((s) => (s && s.n >= 2 ? r4(s.ci[1] - s.mean) : 0)),
    arrayminus: stats.map((s) => (s && s.n >= 2 ? r4(s.mean - s.ci[0]) : 0)),
  };
}

/** The means of the stats, rounded (null where missing). */
export function means(stats: Stat[]): Array<number | null> {
  return stats.map((s) => (s ? r4(s.mean) : null));
}

/** Bars of a metric's mean over healthy seeds, error bars from the 95 % interval, collapsed seeds named. */
export function metricBars(
  a: Analysis,
  metric: string,
  o: { name: string; title: string; labels?: string[]; yTitle?: string; range?: [number, number] },
): SummaryFigure {
  const configs = a.configs.filter((c) => (!o.labels || o.labels.includes(c.label)) && c.metrics[metric]);
  const stats = configs.map((c) => c.metrics[metric]);
  const text = configs.map((c) =>
    c.collapsed.length ? `${c.collapsed.length} collapsed: seed ${c.collapsed.map((x) => x.seed).join(", ")}` : "",
  );
  return {
    name: o.name,
    title: o.title,
    figure: {
      data: [
        {
          type: "bar",
          x: configs.map((c) => c.label),
          y: means(stats),
          text,
          error_y: ciErrorBars(stats),
          hovertemplate: "%{x}: %{y} (95 % CI over seeds)<br>%{text}<extra></extra>",
        },
      ],
      layout: {
        title: { text: `${o.title} (mean over seeds, 95 % interval)` },
        yaxis: { title: { text: o.yTitle ?? metric }, ...(o.range ? { range: o.range } : {}) },
        height: 380,
      },
    },
  };
}

/**
 * Mean TAR against FAR over the healthy seeds of each configuration, from each run's
 * `extra.roc = { far, tar }` (log-spaced FARs, the same for every run of a plan), band = 95 % interval.
 */
export function rocFigure(results: ResultOf[], o: { name: string; title: string; labels?: string[] }): SummaryFigure {
  const labels = o.labels ?? [...new Set(results.map((r) => r.config.label))];
  const data: unknown[] = [];
  for (const label of labels) {
    const runs = results.filter(
      (r) => r.config.label === label && !r.result.collapse?.collapsed && r.result.extra?.roc !== undefined,
    );
    if (runs.length === 0) continue;
    const curves = runs.map((r) => r.result.extra?.roc as { far: number[]; tar: number[] });
    const far = curves[0].far;
    const stats = far.map((_, k) => meanInterval(curves.map((c) => c.tar[k]).filter((v) => Number.isFinite(v))));
    data.push({
      type: "scatter",
      mode: "lines",
      name: `${label} (n = ${runs.length})`,
      x: far,
      y: means(stats),
      error_y: { ...ciErrorBars(stats), thickness: 1 },
    });
  }
  return {
    name: o.name,
    title: o.title,
    figure: {
      data,
      layout: {
        title: { text: `${o.title} (mean over seeds, 95 % interval)` },
        xaxis: { title: { text: "FAR" }, type: "log" },
        yaxis: { title: { text: "TAR" }, range: [0, 1] },
        height: 420,
      },
    },
  };
}
