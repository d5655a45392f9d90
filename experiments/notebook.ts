/**
 * What a notebook cell calls: runs an ablation with a live progress display, then shows the figures
 * (compact inline Plotly), the tables, the findings and the MLflow run link. Outside a kernel the
 * displays are no-ops and it just returns the result.
 */
import { escapeHtml, LiveProgress, showFigure, showHtml, showMarkdown, showTable } from "../src/notebook/display";
import { formatDuration, sequenceView } from "../src/progress";
import { type AblationRun, type Progress, type RunAblationOptions, runAblation } from "./runner";
import type { SettingValue } from "./types";

/** The preset a notebook uses: MARGINLAB_PRESET, else "smoke". */
export function presetFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return env.MARGINLAB_PRESET && env.MARGINLAB_PRESET.trim() !== "" ? env.MARGINLAB_PRESET.trim() : "smoke";
}

export async function runInNotebook(
  name: string,
  options: { preset?: string; set?: Record<string, SettingValue> } & Omit<
    RunAblationOptions,
    "preset" | "set" | "onProgress"
  > = {},
): Promise<AblationRun> {
  const live = new LiveProgress();
  const onProgress = (p: Progress) => live.update(sequenceView(p), p.phase !== "step");
  const result = await runAblation(name, { ...options, onProgress });
  live.update(
    {
      fraction: 1,
      label: `done: ${result.results.length} runs of ${result.analysis.configs.length} configurations`,
      detail: `${formatDuration(result.wallSeconds)}`,
    },
    true,
  );
  showResults(result);
  return result;
}

/** Displays a finished run: figures, tables, findings, MLflow link. */
export function showResults(result: AblationRun): void {
  for (const f of result.summary.figures) showFigure(f.figure);
  for (const t of result.summary.tables) showTable(t.rows, t.title);
  if (result.summary.notes.length > 0) showMarkdown(result.summary.notes.map((n) => `- ${n}`).join("\n"));
  if (result.url) {
    showHtml(
      `<p>MLflow run (${escapeHtml(result.preset)} preset, ${result.wallSeconds.toFixed(1)} s): <a href="${escapeHtml(result.url)}" target="_blank">${escapeHtml(result.url)}</a></p>`,
    );
  }
}
