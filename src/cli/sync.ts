/** `marginlab sync`: send what run journals still hold to the tracking server. */
import { projectRoot } from "../project";
import { trackingClient } from "../tracking/connect";
import { defaultJournalDir } from "../tracking/journal";
import { syncJournals } from "../tracking/sync";

export const summary = "send logged items that never reached the MLflow server (from .marginlab/journal)";

export async function run(args: string[]): Promise<number> {
  let dir = defaultJournalDir(projectRoot);
  let trackingUri: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--journal") dir = args[++i];
    else if (args[i] === "--tracking-uri") trackingUri = args[++i];
    else if (args[i] === "--help" || args[i] === "-h") {
      console.log("usage: marginlab sync [--journal DIR] [--tracking-uri URL]\n\n" + summary);
      return 0;
    } else {
      console.error(`marginlab sync: unknown option "${args[i]}" (allowed: --journal DIR, --tracking-uri URL)`);
      return 2;
    }
  }
  const client = await trackingClient({ trackingUri });
  try {
    const reports = await syncJournals({ dir, client });
    if (reports.length === 0) console.log(`nothing to sync in ${dir}`);
    let waiting = 0;
    for (const r of reports) {
      waiting += r.after;
      const what = r.skipped
        ? `skipped (${r.skipped})`
        : `${r.before - r.after} of ${r.before} items sent${r.after ? `, ${r.after} still waiting` : ""}`;
      console.log(`${r.localId}  run ${r.runId ?? "(not created)"}: ${what}`);
      for (const e of r.errors) console.log(`  error: ${e}`);
    }
    return waiting > 0 ? 1 : 0;
  } finally {
    client.close();
  }
}
