/**
 * The ablations' tables in README.md and docs/*.md, generated from the records
 * (results/ablations/<name>-<preset>.json, experiments/record.ts) by `npm run results:table`:
 *
 *   <!-- ablation:begin margins -->   that ablation's verdicts: mean difference, 95 % interval,
 *   <!-- ablation:end -->             paired t-test, n, the computed verdict, the paper's figure
 *   <!-- ablations:begin -->          one line per ablation: its verdicts, runs, collapsed runs,
 *   <!-- ablations:end -->            wall time, date, machine and load
 *
 * The statistics are recomputed from each record's task results, as the notebooks do.
 */
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { type AblationRecord, loadText, provenanceLine, readRecord } from "../experiments/record";
import { getAblation } from "../experiments/registry";
import { summarizeResults } from "../experiments/runner";
import type { Analysis } from "../experiments/types";

export interface RecordSummary {
  file: string;
  record: AblationRecord;
  analysis: Analysis;
}

/** Every record in `dir` (full preset first when an ablation has several), with its analysis. */
export function readRecords(dir: string): RecordSummary[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => {
      const file = path.join(dir, f);
      const { record, plan, results } = readRecord(file);
      const { analysis } = summarizeResults(getAblation(record.ablation), plan, results);
      return { file, record, analysis };
    });
}

const f3 = (v: number) => (Number.isFinite(v) ? (Math.abs(v) >= 100 ? v.toFixed(1) : v.toFixed(3)) : String(v));
const pText = (p: number) => (Number.isFinite(p) ? (p < 0.001 ? p.toExponential(1) : p.toPrecision(2)) : "—");
const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

/** One ablation: the provenance line, then a row per comparison the paper makes. */
export function renderAblation(s: RecordSummary | undefined, name: string): string {
  if (!s) return `_No record of ${name} yet: \`npx marginlab ablate ${name} --preset full\` writes one._`;
  const { record, analysis } = s;
  const lines = [
    `From \`results/ablations/${path.basename(s.file)}\`: ${provenanceLine(record)}.`,
    "",
    "| comparison | expected | metric | mean difference [95 % CI] | paired t (df) | p | n | verdict | the paper |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const c of analysis.comparisons) {
    const v = c.verdict;
    const expected = `${c.treatment} ${c.expected === "greater" ? ">" : "<"} ${c.baseline}`;
    lines.push(
      `| ${cell(c.claim)} | ${cell(expected)} | ${c.metric} | ${f3(v.meanDiff)} [${f3(v.ci[0])}, ${f3(v.ci[1])}] | ${f3(v.t)} (${v.df}) | ${pText(v.p)} | ${v.n} | **${v.verdict}** | ${cell(c.paper ?? "")} |`,
    );
  }
  if (analysis.comparisons.length === 0) lines.push("| (this ablation declares no comparisons) | | | | | | | | |");
  const collapsed = analysis.configs.flatMap((c) =>
    c.collapsed.map((x) => `${c.label} seed ${x.seed} (${x.reasons.join(", ")})`),
  );
  lines.push(
    "",
    collapsed.length > 0
      ? `Collapsed runs, left out of every statistic: ${collapsed.join("; ")}.`
      : "No run collapsed.",
  );
  return lines.join("\n");
}

/** All ablations, a line each. */
export function renderOverview(all: RecordSummary[]): string {
  const lines = [
    "| ablation | preset | held | not shown | contradicted | runs (collapsed) | converged runs | fall done | wall time | run of | machine, load |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const { record, analysis } of all) {
    const by = (v: string) =>
      analysis.comparisons
        .filter((c) => c.verdict.verdict === v)
        .map((c) => c.name)
        .join(", ") || "—";
    const collapsed = analysis.configs.reduce((n, c) => n + c.collapsed.length, 0);
    const converged = analysis.configs.reduce((n, c) => n + c.converged.seeds.length, 0);
    const checked = analysis.configs.reduce((n, c) => n + c.converged.of, 0);
    // Runs whose last 10 % of steps gave < 1 % of their whole fall in loss: fitting towards 0, not still descending.
    const fallDone = analysis.configs.reduce(
      (n, c) => n + Object.values(c.converged.shareOfFall).filter((share) => share < 0.01).length,
      0,
    );
    lines.push(
      `| ${record.ablation} | ${record.preset} | ${by("held")} | ${by("not shown")} | ${by("contradicted")} | ${record.tasks.length} (${collapsed}) | ${checked > 0 ? `${converged}/${checked}` : "—"} | ${checked > 0 ? `${fallDone}/${checked}` : "—"} | ${(record.wallSeconds / 60).toFixed(1)} min | ${record.started.slice(0, 10)}, commit ${record.commit?.slice(0, 7) ?? "?"} | ${record.machine}, ${loadText(record)} |`,
    );
  }
  if (all.length === 0) lines.push("| — | no records yet | | | | | | | | | |");
  return lines.join("\n");
}

const BLOCK = /<!-- (ablation|ablations):begin ?([\w-]*) -->/;

/** The text with every ablation block regenerated from the records. */
export function regenerateAblations(text: string, all: RecordSummary[], where: string): string {
  let out = "";
  let rest = text;
  for (;;) {
    const m = BLOCK.exec(rest);
    if (!m) return out + rest;
    const endMarker = `<!-- ${m[1]}:end -->`;
    const start = m.index + m[0].length;
    const end = rest.indexOf(endMarker, start);
    if (end < 0) throw new Error(`${where}: "${m[0]}" has no "${endMarker}" after it`);
    const body =
      m[1] === "ablations"
        ? renderOverview(all.filter((s) => s.record.preset !== "smoke"))
        : renderAblation(
            all.find((s) => s.record.ablation === m[2] && s.record.preset === "full") ??
              all.find((s) => s.record.ablation === m[2]),
            m[2],
          );
    out += `${rest.slice(0, start)}\n${body}\n${endMarker}`;
    rest = rest.slice(end + endMarker.length);
  }
}
