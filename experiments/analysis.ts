/**
 * The statistics of an ablation, computed from its results alone (so a local run and a summary
 * rebuilt from MLflow give the same): per configuration the mean, std and 95 % interval over the
 * healthy seeds of every final metric, the collapsed seeds by name and the convergence check; per
 * comparison of the paper the paired test over the seeds where both arms are healthy and its verdict.
 */

import { meanInterval, verdictOf } from "../src/eval/stats";
import { configHash } from "../src/tracking/params";
import { convergence } from "../src/train/convergence";
import type { Analysis, Comparison, ComparisonResult, Config, ConfigStatistics, ResultOf, SummaryTable } from "./types";

/** The configuration's hash (marginlab.configHash): what identifies it across seeds and runs. */
export function configKey(config: Config): string {
  return configHash(config);
}

function isHealthy(r: ResultOf): boolean {
  return !r.result.collapse?.collapsed;
}

function configStatistics(label: string, runs: ResultOf[]): ConfigStatistics {
  const healthy = runs.filter(isHealthy);
  const names: string[] = [];
  for (const r of healthy) for (const k of Object.keys(r.result.metrics)) if (!names.includes(k)) names.push(k);
  const metrics: ConfigStatistics["metrics"] = {};
  for (const name of names) {
    const values = healthy.map((r) => r.result.metrics[name]).filter((v) => Number.isFinite(v));
    if (values.length > 0) metrics[name] = meanInterval(values);
  }
  const converged: ConfigStatistics["converged"] = { seeds: [], of: 0, relativeImprovement: {}, shareOfFall: {} };
  for (const r of runs) {
    const history = r.result.lossHistory;
    if (!history || history.length < 2) continue;
    converged.of++;
    const c = convergence(history);
    converged.relativeImprovement[r.seed] = c.relativeImprovement;
    converged.shareOfFall[r.seed] = c.shareOfFall;
    if (c.converged) converged.seeds.push(r.seed);
  }
  return {
    label,
    configHash: configKey(runs[0].config),
    seeds: runs.map((r) => r.seed),
    collapsed: runs
      .filter((r) => !isHealthy(r))
      .map((r) => ({
        seed: r.seed,
        reasons: [...(r.result.collapse?.reasons ?? [])],
        details: [...(r.result.collapse?.details ?? [])],
      })),
    metrics,
    converged,
  };
}

function compare(c: Comparison, byLabel: Map<string, ResultOf[]>): ComparisonResult {
  const base = byLabel.get(c.baseline);
  const treat = byLabel.get(c.treatment);
  if (!base || !treat)
    throw new Error(
      `comparison "${c.name}": configuration "${!base ? c.baseline : c.treatment}" is not in the grid (have ${[...byLabel.keys()].join(", ")}).`,
    );
  const seeds: number[] = [];
  const excluded: ComparisonResult["excluded"] = [];
  const b: number[] = [];
  const t: number[] = [];
  for (const rb of base) {
    const rt = treat.find((r) => r.seed === rb.seed);
    const why = !rt
      ? `no ${c.treatment} run`
      : !isHealthy(rb)
        ? `${c.baseline} collapsed (${rb.result.collapse?.reasons.join(", ")})`
        : !isHealthy(rt)
          ? `${c.treatment} collapsed (${rt.result.collapse?.reasons.join(", ")})`
          : !Number.isFinite(rb.result.metrics[c.metric]) || !Number.isFinite(rt.result.metrics[c.metric])
            ? `${c.metric} missing or not finite`
            : undefined;
    if (why || !rt) excluded.push({ seed: rb.seed, why: why ?? "" });
    else {
      seeds.push(rb.seed);
      b.push(rb.result.metrics[c.metric]);
      t.push(rt.result.metrics[c.metric]);
    }
  }
  return { ...c, verdict: verdictOf(t, b, c.expected), seeds, excluded };
}

/** Groups the results by configuration (grid order) and computes the statistics and verdicts. */
export function analyze(results: ResultOf[], comparisons: Comparison[] = []): Analysis {
  const byLabel = new Map<string, ResultOf[]>();
  for (const r of results) {
    const list = byLabel.get(r.config.label) ?? [];
    list.push(r);
    byLabel.set(r.config.label, list);
  }
  for (const list of byLabel.values()) list.sort((a, b) => a.seed - b.seed);
  return {
    configs: [...byLabel.entries()].map(([label, runs]) => configStatistics(label, runs)),
    comparisons: comparisons.map((c) => compare(c, byLabel)),
  };
}

const r4 = (v: number) => (Number.isFinite(v) ? Number(v.toFixed(4)) : v);

/** The verdicts table: one row per comparison with the numbers the verdict rests on. */
export function verdictTable(a: Analysis): SummaryTable {
  return {
    name: "verdicts",
    title: "The paper's comparisons: paired over seeds, verdict computed (held / not shown / contradicted)",
    rows: a.comparisons.map((c) => ({
      comparison: c.name,
      claim: c.claim,
      metric: c.metric,
      expected: `${c.treatment} ${c.expected === "greater" ? ">" : "<"} ${c.baseline}`,
      mean_diff: r4(c.verdict.meanDiff),
      ci95_low: r4(c.verdict.ci[0]),
      ci95_high: r4(c.verdict.ci[1]),
      t: r4(c.verdict.t),
      df: c.verdict.df,
      p: Number.isFinite(c.verdict.p) ? Number(c.verdict.p.toPrecision(3)) : c.verdict.p,
      wilcoxon_p: c.verdict.wilcoxon ? Number(c.verdict.wilcoxon.p.toPrecision(3)) : null,
      n: c.verdict.n,
      verdict: c.verdict.verdict,
      paper: c.paper ?? "",
      excluded: c.excluded.map((e) => `seed ${e.seed}: ${e.why}`).join("; "),
    })),
  };
}

/** "mean ± std [95 % interval]" (the interval from two seeds on); "" when there is no value. */
export function formatStatistic(s: { mean: number; std: number; ci: [number, number]; n: number } | undefined): string {
  if (!s) return "";
  const f = (v: number) => String(r4(v));
  return s.n >= 2 ? `${f(s.mean)} ± ${f(s.std)} [${f(s.ci[0])}, ${f(s.ci[1])}]` : `${f(s.mean)} (n = 1)`;
}

/** Per configuration (all, or those labelled in `labels`): mean, std, 95 % interval over healthy seeds. */
export function statisticsTable(
  a: Analysis,
  metrics: string[],
  o: { name?: string; title?: string; labels?: string[] } = {},
): SummaryTable {
  return {
    name: o.name ?? "statistics",
    title: o.title ?? "Per configuration over seeds: mean ± std [95 % interval] (collapsed runs left out)",
    rows: a.configs
      .filter((c) => !o.labels || o.labels.includes(c.label))
      .map((c) => {
        const row: Record<string, string | number | boolean | null> = { configuration: c.label };
        for (const m of metrics) row[m] = formatStatistic(c.metrics[m]);
        row.seeds = c.seeds.length;
        row.collapsed = c.collapsed.length;
        row.converged = c.converged.of > 0 ? `${c.converged.seeds.length}/${c.converged.of}` : null;
        return row;
      }),
  };
}

/** The collapsed or diverged runs by name (configuration, seed, reasons). */
export function collapsedTable(a: Analysis): SummaryTable {
  return {
    name: "collapsed",
    title: "Collapsed or diverged runs (left out of every statistic)",
    rows: a.configs.flatMap((c) =>
      c.collapsed.map((x) => ({
        configuration: c.label,
        seed: x.seed,
        reasons: x.reasons.join(", "),
        details: x.details.join("; "),
      })),
    ),
  };
}

/** One line per verdict, and one naming the collapsed runs, for notes and the parent's description. */
export function verdictNotes(a: Analysis): string[] {
  const notes = a.comparisons.map(
    (c) =>
      `${c.claim} [${c.metric}, ${c.treatment} - ${c.baseline}] ${c.verdict.text}${c.paper ? ` (paper: ${c.paper})` : ""}`,
  );
  const collapsed = a.configs.flatMap((c) =>
    c.collapsed.map((x) => `${c.label} seed ${x.seed} (${x.reasons.join(", ")})`),
  );
  if (collapsed.length > 0) notes.push(`Collapsed or diverged, left out: ${collapsed.join("; ")}.`);
  const unconverged = a.configs.filter((c) => c.converged.of > 0 && c.converged.seeds.length < c.converged.of);
  if (unconverged.length > 0)
    notes.push(
      `Not converged (the last 10 % of steps still improved the training loss by >= 1 %; in brackets the seeds, ` +
        `that improvement and its share of the run's whole fall in loss): ${unconverged.map(unconvergedText).join(", ")}.`,
    );
  return notes;
}

/** "arcface (3/3 seeds: 14-24 %, 0.4-0.8 % of the fall)": how far from a plateau a configuration's seeds ended. */
function unconvergedText(c: ConfigStatistics): string {
  const seeds = Object.keys(c.converged.relativeImprovement)
    .map(Number)
    .filter((seed) => !c.converged.seeds.includes(seed));
  const range = (values: number[]) => {
    const pct = values.filter(Number.isFinite).map((v) => 100 * v);
    if (pct.length === 0) return "n/a";
    const [lo, hi] = [Math.min(...pct), Math.max(...pct)];
    const digits = hi < 10 ? 1 : 0;
    return lo.toFixed(digits) === hi.toFixed(digits)
      ? `${hi.toFixed(digits)} %`
      : `${lo.toFixed(digits)}-${hi.toFixed(digits)} %`;
  };
  const improvement = range(seeds.map((s) => c.converged.relativeImprovement[s]));
  const share = range(seeds.map((s) => c.converged.shareOfFall[s]));
  return `${c.label} (${seeds.length}/${c.converged.of} seeds: ${improvement}, ${share} of the fall)`;
}
