/**
 * `npm run results:table` (node --require tsx/cjs scripts/results-table.ts [--check] [files...]):
 * regenerates the results tables of README.md and docs/*.md from the benchmarks' JSON files
 * (results/bench/*.json, written by bench/common.ts' writeResults). A table goes between
 *
 *   <!-- results:begin -->                  every bench
 *   <!-- results:begin pipeline,heads -->   only these benches
 *   <!-- results:end -->
 *
 * and holds, per case, the newest row of any file: our figure, the peer's, the ratio, the date, the
 * machine and the load average during the run. Nothing between the markers is typed by hand.
 * The ablations' verdict tables (`<!-- ablation:begin NAME -->`, `<!-- ablations:begin -->`) come
 * from the ablations' records in results/ablations/ (scripts/ablation-tables.ts).
 * --check: change nothing, exit 1 when a table is out of date (for CI).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type ResultsFile, type ResultRow as Row, resultsDir } from "../bench/common";
import { readRecords, regenerateAblations } from "./ablation-tables";

const ROOT = path.resolve(__dirname, "..");
const RESULTS = resultsDir();
const BEGIN = /<!-- results:begin(?: ([\w,-]+))? -->/;
const END = "<!-- results:end -->";

/** The newest row of every (bench, case) over all files, in the order the benches first wrote them. */
export function newestRows(dir: string): { bench: string; command: string; row: Row }[] {
  if (!existsSync(dir)) return [];
  const byCase = new Map<string, { bench: string; command: string; row: Row }>();
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort();
  for (const f of files) {
    const file = path.join(dir, f);
    let data: ResultsFile;
    try {
      data = JSON.parse(readFileSync(file, "utf8")) as ResultsFile;
    } catch (e) {
      throw new Error(`${file}: not a results file (${(e as Error).message})`);
    }
    if (typeof data.bench !== "string" || !Array.isArray(data.rows))
      throw new Error(`${file}: not a results file (expected { bench, command, rows: [...] })`);
    data.rows.forEach((row, i) => {
      for (const k of ["case", "unit", "date", "machine"] as const)
        if (typeof row[k] !== "string") throw new Error(`${file}: rows[${i}].${k} is missing or not a string`);
      const key = `${data.bench}\u0000${row.case}`;
      const old = byCase.get(key);
      if (!old || old.row.date <= row.date)
        byCase.set(key, { bench: data.bench, command: row.command ?? data.command, row });
    });
  }
  return [...byCase.values()];
}

function figure(v: number, unit: string): string {
  if (unit === "ms/step" || unit === "ms per run")
    return v >= 10000 ? `${(v / 1000).toFixed(1)} s` : `${v.toFixed(0)} ms`;
  return `${v >= 100 ? v.toFixed(0) : v.toPrecision(3)} ${unit}`;
}

/** CPU time per step and peak RSS where the row has them: ", CPU 186 ms, 629 MB". */
function extras(figures: Record<string, number> | undefined, unit: string): string {
  const out: string[] = [];
  if (figures?.cpuMsPerStep !== undefined) out.push(`CPU ${figure(figures.cpuMsPerStep, unit)}`);
  const mb = figures?.peakRssMB;
  if (mb !== undefined) out.push(mb >= 1024 ? `${(mb / 1024).toFixed(2)} GB` : `${mb.toFixed(0)} MB`);
  return out.map((e) => `, ${e}`).join("");
}

/** The markdown table of these rows. */
export function renderTable(rows: { bench: string; command: string; row: Row }[]): string {
  const lines = [
    "| bench | what | marginlab | peer | ratio | measured | machine | load (1 min, start → end) |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const { bench, command, row: r } of rows) {
    const peer = r.peer ? `${r.peer.name} ${figure(r.peer.value, r.unit)}${extras(r.peer.figures, r.unit)}` : "—";
    const ratio = r.ratio !== undefined ? `${r.ratio.toFixed(2)}x` : "—";
    lines.push(
      `| \`${command.replace(/^node /, "")}\` (${bench}) | ${r.case} | ${figure(r.value, r.unit)}${extras(r.figures, r.unit)} | ${peer} | ${ratio} | ${r.date.slice(0, 16).replace("T", " ")} UTC | ${r.machine} | ${r.load.start.toFixed(2)} → ${r.load.end.toFixed(2)} |`,
    );
  }
  if (rows.length === 0) lines.push("| — | no results files yet | | | | | | |");
  return lines.join("\n");
}

/** The text with every marked table regenerated. */
export function regenerate(text: string, rows: { bench: string; command: string; row: Row }[], where: string): string {
  let out = "";
  let rest = text;
  for (;;) {
    const m = BEGIN.exec(rest);
    if (!m) return out + rest;
    const start = m.index + m[0].length;
    const end = rest.indexOf(END, start);
    if (end < 0) throw new Error(`${where}: "${m[0]}" has no "${END}" after it`);
    const benches = m[1]?.split(",");
    const chosen = benches ? rows.filter((r) => benches.includes(r.bench)) : rows;
    out += `${rest.slice(0, start)}\n${renderTable(chosen)}\n`;
    rest = rest.slice(end);
    // continue after the end marker
    out += END;
    rest = rest.slice(END.length);
  }
}

function main(): number {
  const args = process.argv.slice(2);
  const check = args.includes("--check");
  const given = args.filter((a) => !a.startsWith("--"));
  const docs = path.join(ROOT, "docs");
  const files = given.length
    ? given.map((f) => path.resolve(f))
    : [
        path.join(ROOT, "README.md"),
        ...readdirSync(docs)
          .filter((f) => f.endsWith(".md"))
          .map((f) => path.join(docs, f)),
      ];
  const rows = newestRows(RESULTS);
  const records = readRecords(path.join(ROOT, "results", "ablations"));
  let stale = 0;
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    const next = regenerateAblations(regenerate(text, rows, file), records, file);
    if (next === text) continue;
    stale++;
    if (check) console.log(`${path.relative(ROOT, file)}: results table out of date`);
    else {
      writeFileSync(file, next);
      console.log(
        `${path.relative(ROOT, file)}: results tables regenerated (${rows.length} bench rows, ${records.length} ablation records)`,
      );
    }
  }
  if (check && stale) {
    console.log("run `npm run results:table` to regenerate");
    return 1;
  }
  return 0;
}

if (require.main === module) process.exit(main());
