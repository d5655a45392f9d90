// An ablation's record (experiments/record.ts): the CLI writes it, reading it back rebuilds the same
// statistics and verdicts without training, and a record that no longer matches the code is refused
// with what differs.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { fromRecord } from "../experiments/notebook";
import { type AblationRecord, RecordError, readRecord, recordOfRun, writeRecord } from "../experiments/record";
import { getAblation } from "../experiments/registry";
import { type AblationRun, describeAblation, NOTES_ARTIFACT, planTasks, runAblation } from "../experiments/runner";
import { readRecords, regenerateAblations } from "../scripts/ablation-tables";
import { projectRoot } from "../src/project";
import { LIMITS } from "../src/tracking/validate";
import { CUT_ALPHA_BOUND, cutAlphaBoundArgs } from "./ablation-helpers";

const SET = CUT_ALPHA_BOUND;
const dir = mkdtempSync(path.join(tmpdir(), "marginlab-record-"));
let run: AblationRun;

/** A task's metrics without its timings (which differ from run to run). */
function byTask<T extends { seed: number }>(rows: T[], label: (r: T) => string): T[] {
  return [...rows].sort((a, b) => label(a).localeCompare(label(b)) || a.seed - b.seed);
}

function numbers(metrics: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(metrics).filter(([k]) => !k.endsWith("seconds")));
}

function outcome(r: AblationRun) {
  return {
    tables: r.summary.tables.map((t) => ({ name: t.name, rows: t.rows })),
    notes: r.summary.notes,
    verdicts: r.analysis.comparisons.map((c) => [c.name, c.verdict.verdict, c.verdict.meanDiff, c.verdict.p]),
    figures: r.summary.figures.map((f) => f.name),
  };
}

test.before(async () => {
  run = await runAblation("alpha-bound", { track: false, set: SET });
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test("a record read back gives the same tables, notes and verdicts as the run", () => {
  const file = path.join(dir, "alpha-bound-smoke.json");
  writeRecord(file, recordOfRun(run));
  const { record, results } = readRecord(file);
  assert.is(record.tasks.length, run.results.length);
  assert.is(record.preset, "smoke");
  assert.ok(record.machine.includes(" x "), record.machine);
  assert.ok(typeof record.load.start === "number" && typeof record.load.end === "number");
  assert.equal(
    byTask(results, (r) => r.config.label).map((r) => [r.config.label, r.seed, r.result.metrics]),
    byTask(run.results, (r) => r.config.label).map((r) => [r.config.label, r.seed, r.result.metrics]),
    "the same results, timings included",
  );
  const shown = fromRecord(file, "alpha-bound", "smoke", SET);
  assert.equal(outcome(shown.run), outcome(run));
  assert.is(shown.run.wallSeconds, run.wallSeconds);
});

test("the parent's description stays within MLflow's tag limit and points to the notes artifact", () => {
  const ablation = getAblation("partial-fc");
  const plan = planTasks(ablation, "smoke", {});
  const notes = Array.from({ length: 60 }, (_, i) => `note ${i}: ${"x".repeat(180)}`);
  const text = describeAblation(ablation, plan, notes);
  assert.ok(text.length <= LIMITS.tagValueLength, `${text.length} characters`);
  const kept = notes.filter((n) => text.includes(n)).length;
  assert.ok(kept > 10 && kept < 60, `${kept} notes kept`);
  assert.match(text, `... ${60 - kept} more notes`);
  assert.match(text, NOTES_ARTIFACT);
  const short = describeAblation(ablation, plan, notes.slice(0, 3));
  assert.ok(notes.slice(0, 3).every((n) => short.includes(n)) && !short.includes("more notes"));
});

test("a record keeps NaN metrics (a diverged run) as NaN", () => {
  const record = structuredClone(recordOfRun(run));
  const metric = Object.keys(record.tasks[0].result.metrics)[0];
  record.tasks[0].result.metrics[metric] = Number.NaN;
  const file = path.join(dir, "nan.json");
  writeRecord(file, record);
  assert.ok(Number.isNaN(readRecord(file).results[0].result.metrics[metric]));
});

test("a record of other settings, a changed grid or another format is refused, naming what differs", () => {
  const base = recordOfRun(run);
  const write = (name: string, r: unknown) => {
    const file = path.join(dir, name);
    writeFileSync(file, JSON.stringify(r));
    return file;
  };
  const other: AblationRecord = { ...base, settings: { ...base.settings, steps: 999 } };
  assert.throws(
    () => readRecord(write("settings.json", other)),
    (e: Error) => {
      return e instanceof RecordError && /steps: 999 then, 10 now/.test(e.message);
    },
  );
  const missing: AblationRecord = { ...base, tasks: base.tasks.slice(1) };
  assert.throws(
    () => readRecord(write("missing.json", missing)),
    (e: Error) => e instanceof RecordError && /no recorded result for task 0/.test(e.message),
  );
  assert.throws(
    () => readRecord(write("format.json", { ...base, format: "v0" })),
    (e: Error) => /field "format" is "v0"/.test(e.message),
  );
  assert.throws(
    () => fromRecord(write("ok.json", base), "alpha-bound", "smoke", { ...SET, steps: 11 }),
    (e: Error) => e instanceof RecordError && /was run with settings/.test(e.message),
  );
});

test("the docs' ablation tables are generated from the records, with the verdicts the run computed", () => {
  const records = path.join(dir, "records");
  writeRecord(path.join(records, "alpha-bound-smoke.json"), recordOfRun(run));
  const all = readRecords(records);
  const text = [
    "intro",
    "<!-- ablations:begin -->",
    "stale",
    "<!-- ablations:end -->",
    "<!-- ablation:begin alpha-bound -->",
    "<!-- ablation:end -->",
    "<!-- ablation:begin margins -->",
    "<!-- ablation:end -->",
    "outro",
  ].join("\n");
  const out = regenerateAblations(text, all, "test.md");
  assert.ok(out.startsWith("intro\n") && out.endsWith("\noutro"));
  assert.not.match(out, /stale/);
  assert.match(out, /No record of margins yet/);
  assert.match(out, /From `results\/ablations\/alpha-bound-smoke.json`: smoke preset run of/);
  for (const c of run.analysis.comparisons) assert.ok(out.includes(`**${c.verdict.verdict}**`), c.name);
  assert.is(regenerateAblations(out, all, "test.md"), out, "regenerating is idempotent");
  assert.throws(() => regenerateAblations("<!-- ablation:begin x -->", all, "t.md"), /t.md: .* has no/);
});

test("`ablate --record PATH` writes the record; a smoke run writes none by default", async () => {
  const file = path.join(dir, "cli.json");
  const setArgs = cutAlphaBoundArgs();
  const cli = (args: string[]) =>
    new Promise<{ code: number; out: string }>((resolve) => {
      const child = spawn(process.execPath, [path.join(projectRoot, "bin", "marginlab.cjs"), ...args], {
        stdio: ["ignore", "pipe", "inherit"],
        env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: "2" },
      });
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
      });
      child.on("close", (code) => resolve({ code: code ?? -1, out }));
    });
  const r = await cli(["ablate", "alpha-bound", "--no-track", ...setArgs, "--record", file]);
  assert.is(r.code, 0, r.out);
  assert.match(r.out, /record: /);
  const { record } = readRecord(file);
  assert.is(record.tasks.length, run.results.length);
  assert.equal(
    byTask(record.tasks, (t) => t.label).map((t) => numbers(t.result.metrics)),
    byTask(run.results, (r) => r.config.label).map((x) => numbers(x.result.metrics)),
    "the same plan gives the same numbers in another process",
  );
  const plain = await cli(["ablate", "alpha-bound", "--no-track", ...setArgs]);
  assert.is(plain.code, 0);
  assert.not.match(plain.out, /record: /);
  const bad = await cli(["ablate", "alpha-bound", "--plan", "--record", file]);
  assert.is(bad.code, 2);
  assert.ok(readFileSync(file, "utf8").includes('"format"'), "a refused command leaves the record alone");
});

test.run();
