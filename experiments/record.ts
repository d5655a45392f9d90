/**
 * An ablation's record: everything one run of a plan produced (each task's metrics, curves and
 * collapse check) with when, where and from which commit it ran, as one JSON file
 * (results/ablations/<name>-<preset>.json). The committed notebooks show a full run from it and
 * docs/experiments.md's tables are generated from it, so neither needs the 20 minutes of training
 * again; the statistics and verdicts are recomputed from the task results each time they are read.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { projectRoot } from "../src/project";
import { gitInfo } from "../src/tracking/system-tags";
import { decodeJson, encodeJson } from "./json";
import { type AblationRun, type Plan, planTasks } from "./runner";
import type { ConfigResult, ResultOf, Settings, SettingValue } from "./types";

export const RECORD_FORMAT = "marginlab.ablation-record/1";

export interface RecordedTask {
  index: number;
  label: string;
  configHash: string;
  seed: number;
  seconds: number;
  result: ConfigResult;
}

export interface AblationRecord {
  format: typeof RECORD_FORMAT;
  ablation: string;
  preset: string;
  /** The setting overrides the run was given (the plan is rebuilt from ablation, preset and these). */
  set: Record<string, SettingValue>;
  /** The resolved settings: a record whose settings differ from today's plan is refused when read. */
  settings: Settings;
  /** ISO times of the run's start and end, and its wall time. */
  started: string;
  finished: string;
  wallSeconds: number;
  /** "<cores> x <CPU model>, <memory> GiB RAM" of the machine that trained. */
  machine: string;
  /** The conditions: 1-minute load average at the start and end, and the machine's mean CPU use. */
  load: { start?: number; end?: number; cpuUtilizationPercent?: number };
  commit?: string;
  dirty?: boolean;
  /** The MLflow parent run that holds the same results (when tracked). */
  parentRunId?: string;
  tasks: RecordedTask[];
}

/** Where a preset's record lives by default. */
export function recordPath(ablation: string, preset: string, dir = path.join(projectRoot, "results", "ablations")) {
  return path.join(dir, `${ablation}-${preset}.json`);
}

/** "<cores> x <CPU model>, <memory> GiB RAM". */
export function machineName(): string {
  return `${os.cpus().length} x ${os.cpus()[0]?.model ?? "unknown CPU"}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM`;
}

/** The record of a finished run (local, or rebuilt from MLflow by summarize). */
export function recordOfRun(run: AblationRun): AblationRecord {
  const plan = planTasks(run.name, run.preset, run.set);
  const git = gitInfo(projectRoot);
  const tasks = plan.tasks.map((task) => {
    const r = run.results.find((x) => x.config.label === task.config.label && x.seed === task.seed);
    if (!r) throw new Error(`ablation "${plan.ablation}": no result for task ${task.index} to record`);
    return {
      index: task.index,
      label: task.config.label,
      configHash: task.configHash,
      seed: task.seed,
      seconds: r.seconds,
      result: r.result,
    };
  });
  return {
    format: RECORD_FORMAT,
    ablation: plan.ablation,
    preset: plan.preset,
    set: run.set,
    settings: plan.settings,
    started: run.started,
    finished: new Date(Date.parse(run.started) + run.wallSeconds * 1000).toISOString(),
    wallSeconds: run.wallSeconds,
    machine: machineName(),
    load: run.load,
    commit: run.commit ?? git.commit,
    dirty: run.commit ? run.dirty : git.dirty,
    parentRunId: run.parentRunId,
    tasks,
  };
}

/** Writes the record atomically (a crash leaves the old file or the new one, never half of one). */
export function writeRecord(file: string, record: AblationRecord): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  // the fields pretty, a task per line: readable in a diff, a third of the size of indenting all
  const { tasks, ...head } = record;
  const fields = encodeJson(head, 1).slice(0, -2);
  writeFileSync(tmp, `${fields},\n "tasks": [\n${tasks.map((t) => `  ${encodeJson(t)}`).join(",\n")}\n ]\n}\n`);
  renameSync(tmp, file);
}

export class RecordError extends Error {}

/**
 * Reads a record and rebuilds its plan from today's ablation code; the results come back in plan
 * order. Refused, with what differs, when today's plan is not the one that ran (changed presets or
 * grid): such a record describes code that no longer exists.
 */
export function readRecord(file: string): { record: AblationRecord; plan: Plan; results: ResultOf[] } {
  let record: AblationRecord;
  try {
    record = decodeJson(readFileSync(file, "utf8")) as AblationRecord;
  } catch (error) {
    throw new RecordError(`${file}: not readable as an ablation record (${(error as Error).message})`);
  }
  if (record?.format !== RECORD_FORMAT)
    throw new RecordError(`${file}: field "format" is ${JSON.stringify(record?.format)}, expected "${RECORD_FORMAT}"`);
  for (const k of ["ablation", "preset", "started"] as const)
    if (typeof record[k] !== "string") throw new RecordError(`${file}: field "${k}" is missing or not a string`);
  if (!Array.isArray(record.tasks)) throw new RecordError(`${file}: field "tasks" is missing or not a list`);
  const plan = planTasks(record.ablation, record.preset, record.set ?? {});
  const changed = Object.keys({ ...plan.settings, ...record.settings }).filter(
    (k) => JSON.stringify(plan.settings[k]) !== JSON.stringify(record.settings[k]),
  );
  if (changed.length > 0)
    throw new RecordError(
      `${file}: recorded with other settings than today's ${record.ablation} ${record.preset} preset (${changed
        .map((k) => `${k}: ${JSON.stringify(record.settings[k])} then, ${JSON.stringify(plan.settings[k])} now`)
        .join("; ")}); run the preset again to record it`,
    );
  const results = plan.tasks.map((task) => {
    const t = record.tasks.find((x) => x.configHash === task.configHash && x.seed === task.seed);
    if (!t)
      throw new RecordError(
        `${file}: no recorded result for task ${task.index} (${task.config.label} seed ${task.seed}): the grid changed since the run; run the preset again`,
      );
    return { config: task.config, seed: task.seed, result: t.result, seconds: t.seconds };
  });
  return { record, plan, results };
}

/** The conditions of a record's wall time: "load average 0.4 -> 2.1" (1-minute, at the start and the end). */
export function loadText(r: AblationRecord): string {
  if (r.load.start !== undefined && r.load.end !== undefined)
    return `load average ${r.load.start.toFixed(2)} -> ${r.load.end.toFixed(2)}`;
  if (r.load.cpuUtilizationPercent !== undefined) return `mean CPU use ${r.load.cpuUtilizationPercent.toFixed(0)} %`;
  return "load not recorded";
}

/** "2026-12-02, 2 x Intel Xeon ..., load 1.2-1.9, commit 449d1f8, 20.5 min": the provenance line. */
export function provenanceLine(r: AblationRecord): string {
  const commit = r.commit
    ? `commit ${r.commit.slice(0, 7)}${r.dirty ? " (with uncommitted changes)" : ""}`
    : "no commit";
  return `${r.preset} preset run of ${r.started.slice(0, 10)} on ${r.machine}, ${loadText(r)}, ${commit}, wall time ${(r.wallSeconds / 60).toFixed(1)} min`;
}
