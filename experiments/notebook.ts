/**
 * What a notebook cell calls: runs an ablation with a live progress display, then shows the figures
 * (compact inline Plotly), the tables, the findings and the MLflow run link. Outside a kernel the
 * displays are no-ops and it just returns the result.
 */

import { existsSync } from "node:fs";
import path from "node:path";
import { LiveProgress, showFigure, showMarkdown, showTable } from "../src/notebook/display";
import { formatDuration, sequenceView } from "../src/progress";
import { projectRoot } from "../src/project";
import {
  type AblationRecord,
  provenanceLine,
  RecordError,
  readRecord,
  recordOfRun,
  recordPath,
  writeRecord,
} from "./record";
import { getAblation } from "./registry";
import { type AblationRun, type Progress, type RunAblationOptions, runAblation, summarizeResults } from "./runner";
import type { SettingValue } from "./types";

/** The preset a notebook uses: MARGINLAB_PRESET, else "smoke". */
export function presetFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return env.MARGINLAB_PRESET && env.MARGINLAB_PRESET.trim() !== "" ? env.MARGINLAB_PRESET.trim() : "smoke";
}

export interface NotebookRunOptions extends Omit<RunAblationOptions, "preset" | "set" | "onProgress"> {
  preset?: string;
  set?: Record<string, SettingValue>;
  /**
   * The run's record (experiments/record.ts). Default for every preset but smoke:
   * results/ablations/<name>-<preset>.json; false: none. When it exists and matches the preset and
   * settings, the notebook shows it instead of training again; a live run writes it.
   */
  record?: string | false;
  /** Train again even when a matching record exists. */
  rerun?: boolean;
}

export async function runInNotebook(name: string, options: NotebookRunOptions = {}): Promise<AblationRun> {
  const { record: recordOption, rerun, ...runOptions } = options;
  const preset = options.preset ?? "smoke";
  const file =
    recordOption === false ? undefined : (recordOption ?? (preset === "smoke" ? undefined : recordPath(name, preset)));
  if (file && !rerun && existsSync(file)) {
    try {
      const recorded = fromRecord(file, name, preset, options.set ?? {});
      showMarkdown(
        `Shown from the record \`${path.relative(projectRoot, file)}\`: ${provenanceLine(recorded.record)}. ` +
          `The statistics and verdicts below are computed from its ${recorded.run.results.length} task results now; ` +
          "pass `{ rerun: true }` to train again.",
      );
      await showResults(recorded.run, recorded.record);
      return recorded.run;
    } catch (error) {
      if (!(error instanceof RecordError)) throw error;
      showMarkdown(`The saved record cannot be shown (${error.message}); training now.`);
    }
  }
  const live = new LiveProgress();
  const onProgress = (p: Progress) => live.update(sequenceView(p), p.phase !== "step");
  const result = await runAblation(name, { ...runOptions, onProgress });
  live.update(
    {
      fraction: 1,
      label: `done: ${result.results.length} runs of ${result.analysis.configs.length} configurations`,
      detail: `${formatDuration(result.wallSeconds)}`,
    },
    true,
  );
  if (file) writeRecord(file, recordOfRun(result));
  await showResults(result);
  return result;
}

/** A record as a finished run: the statistics, verdicts, tables and figures recomputed from its results. */
export function fromRecord(
  file: string,
  name: string,
  preset: string,
  set: Record<string, SettingValue>,
): { record: AblationRecord; run: AblationRun } {
  const { record, plan, results } = readRecord(file);
  if (record.ablation !== name || record.preset !== preset)
    throw new RecordError(`${file} is the record of ${record.ablation} ${record.preset}, not of ${name} ${preset}`);
  if (JSON.stringify(record.set ?? {}) !== JSON.stringify(set))
    throw new RecordError(`${file} was run with settings ${JSON.stringify(record.set)}, not ${JSON.stringify(set)}`);
  const s = summarizeResults(getAblation(name), plan, results);
  const run: AblationRun = {
    name,
    preset: plan.preset,
    set: record.set,
    settings: plan.settings,
    started: record.started,
    load: record.load,
    commit: record.commit,
    dirty: record.dirty,
    ...s,
    wallSeconds: record.wallSeconds,
    parentRunId: record.parentRunId,
    childRunIds: [],
    taskRunIds: [],
    artifacts: [],
    pending: 0,
    warnings: [],
  };
  return { record, run };
}

/**
 * Displays a finished run: figures, tables, findings and where its MLflow runs are (the parent run's
 * id and `npx marginlab ui`, never a local server's address, which is dead on a reader's machine).
 */
export async function showResults(result: AblationRun, record?: AblationRecord): Promise<void> {
  for (const f of result.summary.figures) await showFigure(f.figure);
  for (const t of result.summary.tables) showTable(t.rows, t.title);
  if (result.summary.notes.length > 0) showMarkdown(result.summary.notes.map((n) => `- ${n}`).join("\n"));
  if (record?.parentRunId) {
    showMarkdown(
      `MLflow: parent run \`${record.parentRunId}\` (experiment "marginlab-ablations") in the MLflow store of the machine that ran it; \`npx marginlab ui\` opens yours.`,
    );
  } else if (result.parentRunId) {
    showMarkdown(
      `MLflow: parent run \`${result.parentRunId}\` (experiment "marginlab-ablations", ${result.preset} preset, ${result.wallSeconds.toFixed(1)} s); \`npx marginlab ui\` opens the project's server.`,
    );
  }
}
