/**
 * `marginlab ablate <name> [--preset smoke|full] [--set key=value ...] [--no-track]`: runs an
 * ablation (a parent MLflow run with a child per configuration), draws a progress bar with ETA on
 * stderr, and prints the summary tables and the MLflow run URL at the end.
 */
import { getAblation } from "../../experiments/registry";
import { type Progress, runAblation, textTable } from "../../experiments/runner";
import { checkPreset, parseAssignments, resolveSettings } from "../../experiments/settings";
import { PRESETS, type SettingValue } from "../../experiments/types";
import { closeFigureRenderer } from "../plots/html";
import { progressText, sequenceView, TextProgress } from "../progress";
import { trackingConfigFromEnv } from "../tracking/config";

export const summary = "run an ablation: marginlab ablate <name> [--preset smoke|full] [--set key=value ...]";

const USAGE = `usage: marginlab ablate <name> [--preset ${PRESETS.join("|")}] [--set key=value ...] [--no-track]

Runs an ablation as an MLflow parent run with one child run per configuration (MLFLOW_TRACKING_URI,
else the project's embedded server). \`marginlab list\` shows the ablations and their settings.
  --preset       smoke (seconds, for CI) or full (what the write-up reports); default smoke
  --set k=v      override a setting (lists: comma-separated), repeatable
  --no-track     run without MLflow`;

interface Parsed {
  name?: string;
  preset: string;
  sets: string[];
  track: boolean;
  help: boolean;
}

export function parseAblateArgs(args: string[]): Parsed {
  const out: Parsed = { preset: "smoke", sets: [], track: true, help: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = (flag: string) => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (a === "--help" || a === "-h") out.help = true;
    else if (a === "--preset") out.preset = value(a);
    else if (a.startsWith("--preset=")) out.preset = a.slice("--preset=".length);
    else if (a === "--set") out.sets.push(value(a));
    else if (a.startsWith("--set=")) out.sets.push(a.slice("--set=".length));
    else if (a === "--no-track") out.track = false;
    else if (a.startsWith("-")) throw new Error(`unknown option "${a}" (allowed: --preset, --set, --no-track, --help)`);
    else if (out.name === undefined) out.name = a;
    else throw new Error(`unexpected argument "${a}" (one ablation name at a time)`);
  }
  return out;
}

/** One progress line: overall bar, configuration, inner step, elapsed and ETA (src/progress.ts). */
export function progressLine(p: Progress, width = 24): string {
  return progressText(sequenceView(p), width);
}

export async function run(args: string[]): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parseAblateArgs(args);
  } catch (error) {
    console.error(`marginlab ablate: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.help) {
    console.log(USAGE);
    return 0;
  }
  let overrides: Record<string, SettingValue>;
  try {
    if (!parsed.name) throw new Error("which ablation? `marginlab list` shows them");
    const ablation = getAblation(parsed.name);
    const preset = checkPreset(ablation.name, parsed.preset);
    overrides = Object.fromEntries(parseAssignments(parsed.sets));
    resolveSettings(ablation, preset, overrides); // reject bad keys/values before anything starts
  } catch (error) {
    console.error(`marginlab ablate: ${(error as Error).message}`);
    return 2;
  }
  const bar = new TextProgress(process.stderr);
  const onProgress = (p: Progress) =>
    bar.update(sequenceView(p), p.phase === "summary" ? "final" : p.phase === "done" ? "log" : undefined);
  console.error(`marginlab ablate ${parsed.name} --preset ${parsed.preset}${parsed.track ? "" : " (not tracked)"}`);
  try {
    const result = await runAblation(parsed.name, {
      preset: parsed.preset,
      set: overrides,
      track: parsed.track,
      onProgress,
    });
    for (const table of result.summary.tables) console.log(`\n${table.title}\n${textTable(table.rows)}`);
    if (result.summary.notes.length > 0) console.log(`\n${result.summary.notes.map((n) => `- ${n}`).join("\n")}`);
    console.log(
      `\n${result.name} (${result.preset}): ${result.results.length} configurations in ${result.wallSeconds.toFixed(1)} s`,
    );
    for (const w of result.warnings) console.error(`note: ${w}`);
    if (result.url) {
      console.log(`MLflow run: ${result.url}`);
      // the embedded server outlives this command so that the link works; say how to stop it
      if (!trackingConfigFromEnv().trackingUri)
        console.log("(the project's MLflow server keeps running for the UI: `npx marginlab ui --stop` stops it)");
    } else if (parsed.track)
      console.log(`MLflow: not reached; ${result.pending} items wait in the journal (\`marginlab sync\` sends them)`);
    if (result.pending > 0 && result.url)
      console.log(`(${result.pending} items still wait in the journal: \`marginlab sync\`)`);
    return 0;
  } finally {
    await closeFigureRenderer().catch(() => undefined);
  }
}
