/**
 * Logging throughput: 100,000 metric points (10 keys x 10,000 steps) to one local MLflow server,
 * through MLflow's Python client (MlflowClient.log_batch, 1,000 metrics per request; the peer in
 * bench/peers/mlflow_log_batch.py) and through marginlab's client, with the same batching:
 *   - MlflowClient.logBatch (the REST client alone, sequential requests, like the Python loop);
 *   - Run.logMetrics + end() (the whole path: validation, write-ahead journal, background batches).
 * Prints wall time and HTTP requests side by side, and checks every point arrived.
 *
 *   node --require tsx/cjs bench/tracking.ts [--reps 2] [--keys 10] [--steps 10000]
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { projectRoot } from "../src/project";
import { type Metric, MlflowClient } from "../src/tracking/client";
import { startRun } from "../src/tracking/run";
import { startMlflowServer } from "../src/tracking/server";
import { removeTempDirs, tempDir } from "../test/tracking-helpers";
import { writeResults } from "./common";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

interface Result {
  seconds: number;
  requests: number;
  points: number;
}

async function main() {
  const reps = arg("reps", 2);
  const keys = arg("keys", 10);
  const steps = arg("steps", 10_000);
  const batch = 1000;
  const server = await startMlflowServer({ dir: tempDir("bench-mlflow") });
  const client = new MlflowClient({ trackingUri: server.url });
  const experimentId = (await client.getOrCreateExperiment("bench-tracking")).experiment_id;
  const results: Record<string, Result[]> = { python: [], tsClient: [], tsRun: [] };
  try {
    for (let rep = 0; rep < reps; rep++) {
      // MLflow's Python client.
      const py = spawnSync(
        path.join(projectRoot, ".venv", "bin", "python"),
        [
          path.join(__dirname, "peers", "mlflow_log_batch.py"),
          "bench-tracking",
          String(keys),
          String(steps),
          String(batch),
        ],
        { env: { ...process.env, MLFLOW_TRACKING_URI: server.url, PYTHONWARNINGS: "ignore" }, encoding: "utf8" },
      );
      if (py.status !== 0) throw new Error(`python peer failed: ${py.stderr.slice(-2000)}`);
      const pyResult = JSON.parse(py.stdout.trim().split("\n").pop()!) as Result & { run_id: string };
      results.python.push(pyResult);

      // marginlab's REST client, same batches, same order.
      const run = await client.createRun({ experimentId, runName: "marginlab-logBatch" });
      const now = Date.now();
      const metrics: Metric[] = [];
      for (let s = 0; s < steps; s++)
        for (let k = 0; k < keys; k++)
          metrics.push({ key: `metric_${k}`, value: 1 / (s + 1) + k, timestamp: now, step: s });
      const before = client.stats.requests;
      let t = performance.now();
      await client.logBatch(run.info.run_id, { metrics });
      results.tsClient.push({
        seconds: (performance.now() - t) / 1000,
        requests: client.stats.requests - before,
        points: metrics.length,
      });
      await client.updateRun(run.info.run_id, { status: "FINISHED", endTime: Date.now() });

      // marginlab's Run: logMetrics per step, background batches, journal; timed until end() has flushed.
      const tracked = await startRun({
        client,
        experimentId,
        name: "marginlab-Run",
        journalDir: tempDir("bench-journal"),
        handleSignals: false,
      });
      const requestsBefore = client.stats.requests;
      t = performance.now();
      for (let s = 0; s < steps; s++) {
        const values: Record<string, number> = {};
        for (let k = 0; k < keys; k++) values[`metric_${k}`] = 1 / (s + 1) + k;
        tracked.logMetrics(values, s);
      }
      const loggedIn = (performance.now() - t) / 1000;
      const end = await tracked.end("FINISHED", { timeoutMs: 600_000 });
      if (end.pending !== 0) throw new Error(`${end.pending} items not sent`);
      results.tsRun.push({
        seconds: (performance.now() - t) / 1000,
        requests: client.stats.requests - requestsBefore,
        points: end.sent.metrics,
      });
      console.error(
        `rep ${rep + 1}: python ${pyResult.seconds.toFixed(2)} s, ts client ${results.tsClient[rep].seconds.toFixed(2)} s, ts Run ${results.tsRun[rep].seconds.toFixed(2)} s (logMetrics calls returned in ${loggedIn.toFixed(3)} s)`,
      );

      // Every point arrived, for each path.
      for (const id of [pyResult.run_id, run.info.run_id, tracked.id!]) {
        const history = await client.getMetricHistory(id, `metric_${keys - 1}`);
        if (history.length !== steps)
          throw new Error(`run ${id}: ${history.length} points for metric_${keys - 1}, expected ${steps}`);
      }
    }
  } finally {
    client.close();
    await server.stop();
    removeTempDirs();
  }
  const best = (rs: Result[]) => rs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const rows: Array<[string, Result]> = [
    ["MLflow Python MlflowClient.log_batch", best(results.python)],
    ["marginlab MlflowClient.logBatch", best(results.tsClient)],
    ["marginlab Run.logMetrics + end()", best(results.tsRun)],
  ];
  console.log(`${keys * steps} metric points (${keys} keys x ${steps} steps), 1000 per request, best of ${reps}:`);
  console.log(`${"client".padEnd(40)}${"wall s".padStart(8)}${"requests".padStart(10)}${"points/s".padStart(11)}`);
  for (const [name, r] of rows) {
    console.log(
      `${name.padEnd(40)}${r.seconds.toFixed(2).padStart(8)}${String(r.requests).padStart(10)}${Math.round(
        r.points / r.seconds,
      )
        .toString()
        .padStart(11)}`,
    );
  }
  const [peerName, peer] = rows[0];
  console.log(
    `results: ${writeResults(
      "tracking",
      rows.slice(1).map(([name, r]) => ({
        case: `${keys * steps} metric points to a local MLflow server / ${name}`,
        unit: "s",
        value: r.seconds,
        peer: { name: peerName, value: peer.seconds },
        ratio: peer.seconds / r.seconds,
        figures: { requests: r.requests, points: r.points, pointsPerSecond: r.points / r.seconds },
      })),
    )}`,
  );
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
