// Nothing lost: the server is killed mid-run and restarted; `sync` then delivers exact counts with no
// duplicates, even when replayed twice. A 400 on one key is isolated and reported while the rest is
// logged. The server here is the embedded default (ensureEmbeddedServer), which also checks its
// server.json record, reuse, and restart on the same port.
import { copyFileSync, cpSync, existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { MlflowClient } from "../src/tracking/client";
import { type EmbeddedServerInfo, ensureEmbeddedServer, stopEmbeddedServer } from "../src/tracking/embedded";
import { RunJournal } from "../src/tracking/journal";
import { startRun } from "../src/tracking/run";
import { RejectedItemError } from "../src/tracking/sender";
import { syncJournals } from "../src/tracking/sync";
import { python, removeTempDirs, tempDir } from "./tracking-helpers";

const serverDir = tempDir("embedded");
const journalDir = tempDir("journal");
let server: EmbeddedServerInfo;
let client: MlflowClient;

function killHard(pid: number) {
  process.kill(-pid, "SIGKILL");
}

async function waitDead(pid: number) {
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

test.before(async () => {
  const started = await ensureEmbeddedServer({ dir: serverDir });
  assert.is(started.started, true);
  server = started;
  client = new MlflowClient({
    trackingUri: server.url,
    retry: { maxRetries: 0, backoffFactor: 0.1, backoffJitter: 0, maxBackoffMs: 100 },
  });
});
test.after(async () => {
  client?.close();
  await stopEmbeddedServer(serverDir);
  removeTempDirs();
});

test("embedded server: recorded in server.json and reused", async () => {
  const record = JSON.parse(readFileSync(path.join(serverDir, "server.json"), "utf8"));
  assert.is(record.url, server.url);
  assert.is(record.pid, server.pid);
  const again = await ensureEmbeddedServer({ dir: serverDir });
  assert.is(again.started, false);
  assert.is(again.pid, server.pid);
});

test("server killed mid-run and restarted: the run carries on, sync delivers exact counts, twice is a no-op", async () => {
  const parent = await startRun({
    trackingUri: server.url,
    journalDir,
    experiment: "faults",
    name: "parent",
    flushIntervalMs: 50,
  });
  const run = await parent.child({ name: "victim", params: { lr: 0.01 } });
  for (let step = 0; step < 300; step++) run.logMetrics({ a: step, b: -step }, step);
  assert.is(await run.flush(), 0);

  killHard(server.pid);
  await waitDead(server.pid);
  // Logging goes on while the server is gone; none of these calls waits on the network.
  const t0 = Date.now();
  for (let step = 300; step < 1000; step++) run.logMetrics({ a: step, b: -step, c: step * 0.5 }, step);
  run.logParams({ late: "yes" });
  run.setTags({ phase: "offline" });
  run.logArtifact(Buffer.from("weights"), "model/weights.bin");
  assert.ok(Date.now() - t0 < 2000, `logging took ${Date.now() - t0} ms`);
  // A child started while the server is down exists only in the journal for now.
  const offline = await parent.child({ name: "born-offline", params: { lr: 0.02 }, startTimeoutMs: 500 });
  assert.is(offline.id, undefined);
  offline.logMetrics({ a: 1 }, 0);
  const offlineEnd = await offline.end("FINISHED", { timeoutMs: 300 });
  const end = await run.end("FINISHED", { timeoutMs: 1000 });
  assert.ok(end.pending > 0, `items waiting: ${end.pending}`);
  assert.ok(end.journal && existsSync(end.journal));
  assert.ok(offlineEnd.pending > 0);
  const parentEnd = await parent.end("FINISHED", { timeoutMs: 300 });

  // Keep a copy of the journal as it is now: replaying it again later simulates lost acknowledgements.
  const copy = `${end.journal}.copy`;
  copyFileSync(end.journal!, copy);
  const files = end.journal!.replace(/\.jsonl$/, ".files");
  cpSync(files, `${files}.copy`, { recursive: true });

  const restarted = await ensureEmbeddedServer({ dir: serverDir });
  assert.is(restarted.started, true);
  assert.is(restarted.url, server.url, "restarted on the recorded port");
  server = restarted;

  const reports = await syncJournals({ dir: journalDir, client });
  assert.ok(reports.length >= 3, JSON.stringify(reports));
  for (const r of reports) assert.is(r.after, 0, JSON.stringify(r));
  assert.equal(await syncJournals({ dir: journalDir, client }), [], "nothing left to sync");

  // Replay the stale copy (everything after the kill, as if never acknowledged): no duplicates.
  copyFileSync(copy, end.journal!);
  cpSync(`${files}.copy`, files, { recursive: true });
  const replay = await syncJournals({ dir: journalDir, client });
  assert.is(replay.length, 1);
  assert.is(replay[0].after, 0);
  assert.is(replay[0].runId, end.runId);

  const read = await python<{
    counts: Record<string, number>;
    unique: Record<string, number>;
    status: string;
    params: Record<string, string>;
    tags: Record<string, string>;
    files: string[];
    runs: Array<{ name: string; status: string; parent: string | null }>;
  }>(
    `
import json, mlflow
from mlflow import MlflowClient
c = MlflowClient()
counts, unique = {}, {}
for k in ["a", "b", "c"]:
    h = c.get_metric_history("${end.runId}", k)
    counts[k] = len(h)
    unique[k] = len({(m.step, m.value) for m in h})
r = c.get_run("${end.runId}")
exp = c.get_experiment_by_name("faults")
runs = [{"name": x.info.run_name, "status": x.info.status, "parent": x.data.tags.get("mlflow.parentRunId")} for x in mlflow.search_runs([exp.experiment_id], output_format="list")]
print(json.dumps({"counts": counts, "unique": unique, "status": r.info.status, "params": r.data.params, "tags": r.data.tags,
  "files": [f.path for f in c.list_artifacts("${end.runId}", "model")], "runs": runs}))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
  assert.equal(read.counts, { a: 1000, b: 1000, c: 700 });
  assert.equal(read.unique, read.counts);
  assert.is(read.status, "FINISHED");
  assert.equal(read.params, { lr: "0.01", late: "yes" });
  assert.is(read.tags.phase, "offline");
  assert.equal(read.files, ["model/weights.bin"]);
  const byName = Object.fromEntries(read.runs.map((r) => [r.name, r]));
  assert.is(read.runs.length, 3, "no duplicate runs");
  assert.is(byName["born-offline"].status, "FINISHED");
  assert.is(byName["born-offline"].parent, parentEnd.runId);
  assert.is(byName.victim.parent, parentEnd.runId);
  assert.is(byName.parent.status, "FINISHED");
  assert.equal(
    await client.downloadArtifact((await client.getRun(end.runId!)).info.artifact_uri, "model/weights.bin"),
    Buffer.from("weights"),
  );
});

// A run whose process died without end() (a real SIGKILL): test/tracking-defects.test.ts, defect 8.

test("a 400 on one key: the key is isolated and reported, everything else is logged", async () => {
  // A run made by MLflow's Python client with lr=0.1; marginlab continues it (MLFLOW_RUN_ID style) and
  // logs lr=0.2, which the server refuses: params are immutable.
  const made = await python<{ id: string }>(
    `
import json, mlflow
from mlflow import MlflowClient
c = MlflowClient()
e = mlflow.set_experiment("faults-400")
r = c.create_run(e.experiment_id, run_name="from-python")
c.log_param(r.info.run_id, "lr", "0.1")
print(json.dumps({"id": r.info.run_id}))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
  const errors: Error[] = [];
  const run = await startRun({ trackingUri: server.url, journalDir, runId: made.id, onError: (e) => errors.push(e) });
  assert.is(run.id, made.id);
  run.logParams({ lr: 0.2, batch: 64, dim: 512 });
  for (let s = 0; s < 20; s++) run.logMetrics({ loss: 1 / (s + 1) }, s);
  const end = await run.end();
  assert.is(end.pending, 0);
  assert.is(errors.length, 1, errors.map((e) => e.message).join("\n"));
  const error = errors[0] as RejectedItemError;
  assert.instance(error, RejectedItemError);
  assert.is(error.key, "lr");
  assert.match(error.message, /MLflow rejected param "lr": .*HTTP 400 INVALID_PARAMETER_VALUE/);
  assert.equal(end.errors, errors);
  const got = await client.getRun(made.id);
  const params = Object.fromEntries((got.data.params ?? []).map((p) => [p.key, p.value]));
  assert.equal(params, { lr: "0.1", batch: "64", dim: "512" });
  assert.is((await client.getMetricHistory(made.id, "loss")).length, 20);
  assert.is(got.info.status, "FINISHED");
  // The rejection is in the journal, so sync does not retry it forever.
  const done = RunJournal.open(path.join(journalDir, "done", `${run.localId}.jsonl`));
  assert.is(done.rejected.length, 1);
  assert.is(done.pendingCount, 0);
  done.close();
});

test.run();
