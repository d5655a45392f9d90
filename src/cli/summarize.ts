/**
 * `marginlab summarize RUN_ID`: rebuilds an ablation's tables, figures, statistics and verdicts from
 * what MLflow holds under its parent run (the tasks' results) and writes them to the parent and the
 * configurations' children, as a local run does; prints the tables.
 */
import path from "node:path";
import { recordPath } from "../../experiments/record";
import { PlanError, summarizeAblation } from "../../experiments/runner";
import { closeFigureRenderer } from "../plots/html";
import { printSummary, saveRecord } from "./ablate";

export const summary = "rebuild an ablation's summary from MLflow: marginlab summarize <parent run id>";

const USAGE = `usage: marginlab summarize <parent run id> [--record [PATH]]

Reads every task run under the ablation's parent run (MLFLOW_TRACKING_URI, else the embedded server),
computes the statistics and verdicts, and logs the tables, figures and aggregates to the parent and its
configuration runs. Every task needs a FINISHED run (superseded retries are left out).
  --record [PATH]  also write the run's record (default results/ablations/<name>-<preset>.json)`;

export async function run(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const at = args.indexOf("--record");
  const record =
    at >= 0 ? { path: args[at + 1] && !args[at + 1].startsWith("-") ? args[at + 1] : undefined } : undefined;
  const rest = at >= 0 ? args.filter((_, i) => i !== at && !(record?.path && i === at + 1)) : args;
  if (rest.length !== 1 || rest[0].startsWith("-")) {
    console.error(`marginlab summarize: expected one parent run id, got ${JSON.stringify(args)}\n\n${USAGE}`);
    return 2;
  }
  try {
    const result = await summarizeAblation(rest[0]);
    printSummary(result);
    console.log(`\n${result.name} (${result.preset}): ${result.taskRunIds.length} tasks summarized`);
    if (record) saveRecord(result, path.resolve(record.path ?? recordPath(result.name, result.preset)));
    for (const w of result.warnings) console.error(`note: ${w}`);
    if (result.url) console.log(`MLflow run: ${result.url}`);
    return 0;
  } catch (error) {
    if (!(error instanceof PlanError)) throw error;
    console.error(`marginlab summarize: ${error.message}`);
    return 2;
  } finally {
    await closeFigureRenderer().catch(() => undefined);
  }
}
