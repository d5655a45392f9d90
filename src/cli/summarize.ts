/**
 * `marginlab summarize RUN_ID`: rebuilds an ablation's tables, figures, statistics and verdicts from
 * what MLflow holds under its parent run (the tasks' results) and writes them to the parent and the
 * configurations' children, as a local run does; prints the tables.
 */
import { PlanError, summarizeAblation } from "../../experiments/runner";
import { closeFigureRenderer } from "../plots/html";
import { printSummary } from "./ablate";

export const summary = "rebuild an ablation's summary from MLflow: marginlab summarize <parent run id>";

const USAGE = `usage: marginlab summarize <parent run id>

Reads every task run under the ablation's parent run (MLFLOW_TRACKING_URI, else the embedded server),
computes the statistics and verdicts, and logs the tables, figures and aggregates to the parent and its
configuration runs. Every task needs a FINISHED run (superseded retries are left out).`;

export async function run(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  if (args.length !== 1 || args[0].startsWith("-")) {
    console.error(`marginlab summarize: expected one parent run id, got ${JSON.stringify(args)}\n\n${USAGE}`);
    return 2;
  }
  try {
    const result = await summarizeAblation(args[0]);
    printSummary(result);
    console.log(`\n${result.name} (${result.preset}): ${result.taskRunIds.length} tasks summarized`);
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
