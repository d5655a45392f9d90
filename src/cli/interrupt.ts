/**
 * Ctrl-C during a tracked command: end the live runs KILLED (flushing what the server takes), say
 * what was saved where and how to send the rest, and exit 130 (143 for SIGTERM). A second Ctrl-C
 * exits at once; the journal keeps whatever was not sent.
 */
import { endLiveRuns, type RunEndResult } from "../tracking/run";

/** Lines that say, per run, whether it is on the server or waits in the journal, and how to sync. */
export function interruptReport(results: RunEndResult[], notes: string[] = []): string {
  const lines: string[] = [];
  if (results.length === 0) lines.push("no MLflow run was open");
  let waiting = 0;
  for (const r of results) {
    const name = r.runId ? `run ${r.runId}` : `run ${r.localId} (not yet on the server)`;
    if (r.pending === 0) lines.push(`${name}: ended ${r.status}, everything logged is on the MLflow server`);
    else {
      waiting += r.pending;
      lines.push(`${name}: ended ${r.status}; ${r.pending} items saved in the journal ${r.journal ?? ""}`.trimEnd());
    }
  }
  lines.push(...notes);
  if (waiting > 0) lines.push("send what waits in the journal with `npx marginlab sync` once the server is reachable");
  return lines.join("\n");
}

/** What a command saved besides its runs (checkpoints, ...), said after an interrupt. */
export const interruptNotes: Array<() => string | undefined> = [];

/** Ends live runs until none is left (a run may start while others are ending). */
async function endAllRuns(): Promise<RunEndResult[]> {
  const results: RunEndResult[] = [];
  for (let round = 0; round < 3; round++) {
    const ended = await endLiveRuns("KILLED", { timeoutMs: 5000 });
    if (ended.length === 0) break;
    results.push(...ended);
  }
  return results;
}

/** Installs the handler for a command; the tracking layer sees this listener and leaves the ending to it. */
export function reportInterrupts(command: string): void {
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    const code = signal === "SIGTERM" ? 143 : 130;
    if (interrupted) process.exit(code);
    interrupted = true;
    process.stderr.write(
      `\nmarginlab ${command}: interrupted (${signal}); ending the runs KILLED and flushing (Ctrl-C again quits at once)\n`,
    );
    const notes = () => interruptNotes.map((note) => note()).filter((n): n is string => Boolean(n));
    endAllRuns()
      .then(
        (results) => process.stderr.write(`${interruptReport(results, notes())}\n`),
        (error: Error) => process.stderr.write(`could not end the runs: ${error.message}; the journal keeps them\n`),
      )
      .finally(() => process.exit(code));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}
