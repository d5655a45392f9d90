// One concurrent writer for test/cluster-postgres.test.ts: a run through marginlab's Run API that logs
// STEPS steps of two metrics and flushes every 50 steps (one log-batch request of 100 points, as a
// training loop logging each step sends them), so that eight of these keep the server's workers
// writing at once. Prints one JSON line: the end result.
// Usage: node --require tsx/cjs test/cluster-writer.ts URL EXPERIMENT INDEX STEPS JOURNAL_DIR
import { startRun } from "../src/tracking/run";

async function main(): Promise<void> {
  const [url, experiment, index, steps, journalDir] = process.argv.slice(2);
  const writer = Number(index);
  const run = await startRun({
    trackingUri: url,
    experiment,
    name: `writer-${writer}`,
    params: { writer },
    journalDir,
  });
  const started = Date.now();
  for (let step = 0; step < Number(steps); step++) {
    // Values that say which writer and step they belong to, so a read-back can check them exactly.
    run.logMetrics({ "train/loss": writer * 1e6 + step, "train/acc": step / Number(steps) }, step);
    if (step % 50 === 49) await run.flush();
  }
  const result = await run.end("FINISHED", { timeoutMs: 300_000 });
  console.log(
    JSON.stringify({
      runId: result.runId,
      pending: result.pending,
      errors: result.errors.map((e) => e.message),
      sent: result.sent,
      seconds: (Date.now() - started) / 1000,
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
