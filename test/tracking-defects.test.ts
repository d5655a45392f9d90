// Issue 13's tracking faults, each reproduced against a real MLflow server and read back with MLflow's
// own Python client: a run deleted and restored while logging, two syncs at once, artifact paths that
// try to escape, a full and a read-only journal filesystem (small tmpfs mounts), secrets in names,
// NaN and circular params, a crashed run's lock, and batch fill under steady logging.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { projectRoot } from "../src/project";
import { MlflowClient } from "../src/tracking/client";
import { JournalError, RunJournal } from "../src/tracking/journal";
import { type StartRunOptions, startRun } from "../src/tracking/run";
import { RunUnavailableError } from "../src/tracking/sender";
import { freePort, type MlflowServer } from "../src/tracking/server";
import { syncJournals } from "../src/tracking/sync";
import { python, removeTempDirs, runProcess, startServer, tempDir } from "./tracking-helpers";

let server: MlflowServer & { dir: string };
let client: MlflowClient;
let deadUri: string;
const mounts: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rejects(fn: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await fn();
  } catch (error) {
    assert.match((error as Error).message, pattern);
    return;
  }
  assert.unreachable(`should have failed with ${pattern}`);
}

test.before(async () => {
  server = await startServer();
  client = new MlflowClient({ trackingUri: server.url });
  deadUri = `http://127.0.0.1:${await freePort()}`; // nothing listens there
});
test.after(async () => {
  client?.close();
  await server?.stop();
  for (const m of mounts) spawnSync("umount", ["-l", m]);
  removeTempDirs();
});

interface ReadBack {
  status: string;
  name: string;
  params: Record<string, string>;
  tags: Record<string, string>;
  counts: Record<string, number>;
  unique: Record<string, number>;
  files: string[];
}

/** A run as MLflow's Python client sees it: status, params, tags, metric counts (all and distinct steps). */
function readRun(runId: string, keys: string[]): Promise<ReadBack> {
  return python<ReadBack>(
    `
import json
from mlflow import MlflowClient
c = MlflowClient()
r = c.get_run("${runId}")
counts, unique = {}, {}
for k in ${JSON.stringify(keys)}:
    h = c.get_metric_history("${runId}", k)
    counts[k] = len(h)
    unique[k] = len({(m.step, m.value) for m in h})
print(json.dumps({"status": r.info.status, "name": r.info.run_name, "params": r.data.params, "tags": r.data.tags,
  "counts": counts, "unique": unique, "files": sorted(f.path for f in c.list_artifacts("${runId}"))}))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
}

/** A run in the "defects" experiment on the test server, with its own journal folder unless given. */
function start(name: string, extra: StartRunOptions = {}) {
  return startRun({ client, journalDir: tempDir("journal"), experiment: "defects", name, ...extra });
}

function mountTmpfs(options: string): string {
  const dir = tempDir("tmpfs");
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`mount -t tmpfs -o ${options} failed (needs root): ${r.stderr}`);
  mounts.push(dir);
  return dir;
}

/** A journal written with the server unreachable: `points` metric points, ended, nothing sent. */
async function offlineJournal(dir: string, points: number, name: string) {
  const run = await startRun({ trackingUri: deadUri, journalDir: dir, experiment: "defects", name });
  for (let s = 0; s < points / 2; s++) run.logMetrics({ a: s, b: -s }, s);
  const end = await run.end("FINISHED", { timeoutMs: 100 });
  assert.ok(end.pending > 0, "nothing sent while the server is down");
  return end;
}

test("1: run deleted at 30 % of logging and restored at 70 %: nothing rejected, 0 points lost", async () => {
  const errors: Error[] = [];
  const dir = tempDir("journal");
  const run = await start("delete-restore", {
    journalDir: dir,
    params: { lr: 0.1 },
    flushIntervalMs: 50,
    onError: (e) => errors.push(e),
  });
  const steps = 10_000; // 2 keys: 20,000 points
  for (let step = 0; step < steps; step++) {
    if (step === 0.3 * steps) await client.deleteRun(run.id!);
    if (step === 0.7 * steps) {
      // Make sure the sender has met the deleted run (under load it may lag behind), then restore.
      assert.ok((await run.flush({ timeoutMs: 20_000 })) > 0, "items wait while the run is deleted");
      await client.restoreRun(run.id!);
    }
    run.logMetrics({ a: step, b: -step }, step);
    if (step % 100 === 99) await sleep(10);
  }
  run.logParams({ late: "yes" });
  const end = await run.end();
  const read = await readRun(run.id!, ["a", "b"]);
  console.log(
    `  delete/restore: sent ${2 * steps} points, arrived ${read.counts.a + read.counts.b}, ` +
      `distinct ${read.unique.a + read.unique.b}, requests ${end.sent.requests}, pending ${end.pending}; ` +
      `user sees: ${errors.map((e) => e.message).join(" | ")}`,
  );
  assert.equal(read.counts, { a: steps, b: steps });
  assert.equal(read.unique, read.counts, "no duplicates");
  assert.equal(read.params, { lr: "0.1", late: "yes" });
  assert.is(read.status, "FINISHED");
  assert.is(end.pending, 0);
  assert.is(run.rejected.length, 0, "nothing marked rejected");
  assert.ok(errors.length >= 1 && errors.every((e) => e instanceof RunUnavailableError), errors.join("\n"));
  assert.match(errors[0].message, /must be in the 'active' state/);
  assert.match(errors[0].message, /nothing is dropped.*mlflow runs restore --run-id/);
  const done = RunJournal.open(path.join(dir, "done", `${run.localId}.jsonl`));
  assert.is(done.rejected.length, 0);
  done.close();
});

test("1: a run deleted for good: end() says so honestly (pending, the journal, what to do); restore + sync delivers", async () => {
  const dir = tempDir("journal");
  const run = await start("stays-deleted", { journalDir: dir });
  run.logMetrics({ a: 1 }, 0);
  await run.flush();
  await client.deleteRun(run.id!);
  for (let s = 1; s < 500; s++) run.logMetrics({ a: s }, s);
  const t0 = Date.now();
  const end = await run.end("FINISHED", { timeoutMs: 20_000 });
  assert.ok(Date.now() - t0 < 10_000, `end() took ${Date.now() - t0} ms: it must not wait out a deleted run`);
  assert.ok(end.pending >= 499, `pending ${end.pending}`);
  assert.ok(end.journal && existsSync(end.journal));
  assert.ok(end.errors.some((e) => e instanceof RunUnavailableError && e.message.includes(end.journal!)));
  await client.restoreRun(run.id!);
  const [report] = await syncJournals({ dir, client });
  assert.is(report.after, 0, JSON.stringify(report));
  const read = await readRun(run.id!, ["a"]);
  assert.equal(read.counts, { a: 500 });
  assert.is(read.status, "FINISHED");
});

test("2: two syncs at the same time (in one process, and as two `marginlab sync` processes): one run", async () => {
  const dir = tempDir("journal");
  const first = await offlineJournal(dir, 2000, "sync-twice-a");
  const reports = await Promise.all([syncJournals({ dir, client }), syncJournals({ dir, client })]);
  const cliDir = tempDir("journal");
  const second = await offlineJournal(cliDir, 20_000, "sync-twice-b");
  const cli = async () => {
    const bin = path.join(projectRoot, "bin", "marginlab.cjs");
    const r = await runProcess(process.execPath, [bin, "sync", "--journal", cliDir, "--tracking-uri", server.url], {
      cwd: projectRoot,
    });
    return `exit ${r.code}: ${r.out}${r.err}`;
  };
  const outputs = await Promise.all([cli(), cli()]);
  const found = await python<Record<string, { n: number; points: number }>>(
    `
import json, mlflow
from mlflow import MlflowClient
c = MlflowClient()
e = c.get_experiment_by_name("defects")
out = {}
for local in ["${first.localId}", "${second.localId}"]:
    runs = mlflow.search_runs([e.experiment_id], filter_string="tags.\`marginlab.localId\` = '" + local + "'", output_format="list")
    out[local] = {"n": len(runs), "points": sum(len(c.get_metric_history(r.info.run_id, k)) for r in runs for k in ["a", "b"])}
print(json.dumps(out))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
  console.log(
    `  two syncs: ${JSON.stringify(found)}; CLI: ${outputs.map((o) => o.trim().replace(/\n/g, " / ")).join(" || ")}`,
  );
  assert.equal(found[first.localId], { n: 1, points: 2000 }, JSON.stringify(reports));
  assert.equal(found[second.localId], { n: 1, points: 20_000 }, outputs.join("\n"));
  assert.ok(
    outputs.every((o) => o.startsWith("exit 0")),
    outputs.join("\n"),
  );
  for (const d of [dir, cliDir]) {
    const journal = readFileSync(path.join(d, "done", `${d === dir ? first.localId : second.localId}.jsonl`), "utf8");
    assert.is(journal.match(/\{"created":/g)?.length, 1, "the journal holds one run id");
  }
});

test("3: artifact paths cannot leave the run's folder: Run API, MlflowClient.uploadArtifact, sync replay", async () => {
  const victim = await start("victim");
  victim.logArtifact(Buffer.from("original"), "model.txt");
  await victim.end();
  const attacker = await start("attacker");
  const escaping = `../../${victim.id}/artifacts/model.txt`;
  // The Run API.
  for (const bad of [escaping, "a/../../b.txt", "./x", "a//b"]) {
    assert.throws(() => attacker.logArtifact(Buffer.from("evil"), bad), /must stay inside the run's artifact folder/);
  }
  // The low-level client, on the proxied store and on a local artifact root.
  const info = await client.getRun(attacker.id!);
  await client.uploadArtifact(info.info.artifact_uri, "fine/ok.txt", Buffer.from("ok")).then(() => undefined);
  await rejects(
    () => client.uploadArtifact(info.info.artifact_uri, escaping, Buffer.from("evil")),
    /must stay inside the run's artifact folder/,
  );
  const root = tempDir("local-artifacts");
  const runRoot = path.join(root, "1", "abc", "artifacts");
  await rejects(
    () => client.uploadArtifact(`file://${runRoot}`, "../../../escaped.txt", Buffer.from("evil")),
    /must stay inside/,
  );
  await client.uploadArtifact(`file://${runRoot}`, "inside.txt", Buffer.from("ok"));
  assert.equal(readdirSync(root), ["1"], "nothing written outside the run's folder");
  assert.ok(existsSync(path.join(runRoot, "inside.txt")));
  await attacker.end();
  // sync replaying a journal whose artifact paths (and bytes file) were tampered with.
  const dir = tempDir("journal");
  const offline = await startRun({ trackingUri: deadUri, journalDir: dir, experiment: "defects", name: "replayed" });
  offline.logArtifact(Buffer.from("ok"), "ok.txt");
  offline.logArtifact(Buffer.from("evil"), "evil.txt");
  offline.logArtifact(Buffer.from("steal"), "steal.txt");
  const end = await offline.end("FINISHED", { timeoutMs: 100 });
  const text = readFileSync(end.journal!, "utf8")
    .replace('"path":"evil.txt"', `"path":"${escaping}"`)
    .replace(/"file":"[^"]*steal.txt"/, '"file":"../../../../../../etc/hostname"');
  writeFileSync(end.journal!, text);
  const [report] = await syncJournals({ dir, client });
  assert.is(report.after, 0, JSON.stringify(report));
  assert.is(report.errors.length, 2, report.errors.join("\n"));
  assert.match(report.errors.join("\n"), /rejected artifact "\.\.\/\.\.\/.*must stay inside/);
  assert.match(report.errors.join("\n"), /etc\/hostname.*is not a file name/);
  const victimNow = await python<{ text: string }>(
    `
import json, mlflow
p = mlflow.artifacts.download_artifacts(run_id="${victim.id}", artifact_path="model.txt")
print(json.dumps({"text": open(p).read()}))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
  assert.is(victimNow.text, "original");
  assert.equal((await readRun(end.runId ?? report.runId!, [])).files, ["ok.txt"]);
});

test("5: a full journal disk stops logging with an error naming the journal and the disk; the run ends FAILED, nothing journaled is lost", async () => {
  const mnt = mountTmpfs("size=64k");
  const run = await start("disk-full", { journalDir: mnt, flushIntervalMs: 50 });
  let logged = 0;
  let failure: Error | undefined;
  for (let step = 0; step < 100_000 && !failure; step++) {
    try {
      run.logMetrics({ loss: 1 / (step + 1), acc: step / 1e5 }, step);
      logged += 2;
    } catch (error) {
      failure = error as Error;
    }
  }
  assert.instance(failure, JournalError);
  assert.match(failure!.message, /cannot write the run journal/);
  assert.ok(failure!.message.includes(run.journal.file), failure!.message);
  assert.ok(failure!.message.includes(`the disk at ${mnt} (tmpfs`), failure!.message);
  assert.match(failure!.message, /ENOSPC/);
  assert.throws(() => run.logMetrics({ loss: 0 }, 0), /cannot write the run journal/, "logging stays stopped");
  const end = await run.end("FINISHED");
  const read = await readRun(run.id!, ["loss", "acc"]);
  console.log(
    `  disk full: journaled ${logged} points before ENOSPC, arrived ${read.counts.loss + read.counts.acc}, ` +
      `status ${read.status}; user sees: ${failure!.message}`,
  );
  assert.is(end.status, "FAILED");
  assert.is(end.pending, 0);
  assert.ok(end.errors.includes(failure!));
  assert.is(read.status, "FAILED");
  assert.match(read.tags["marginlab.error"], /ENOSPC/);
  assert.is(read.counts.loss + read.counts.acc, logged);
  assert.equal(read.unique, read.counts);
});

test("5/7: a read-only journal folder: a clear error at startRun naming the folder and the disk; nothing created", async () => {
  const mnt = mountTmpfs("ro,size=64k");
  try {
    await startRun({ client, journalDir: path.join(mnt, "journal"), experiment: "defects-readonly", name: "ro" });
    assert.unreachable("startRun should throw");
  } catch (error) {
    const message = (error as Error).message;
    assert.instance(error, JournalError);
    assert.match(message, /cannot create the run journal .*\/journal\/.*\.jsonl \(EROFS: read-only file system\)/);
    assert.ok(message.includes(`the disk at ${mnt} (tmpfs, mounted read-only`), message);
    assert.match(message, /pass journalDir/);
  }
  assert.is(await client.getExperimentByName("defects-readonly"), undefined, "nothing reached the server");
});

test("6: secrets by name and by value never reach the journal or the server", async () => {
  const token = `tok-${Math.random().toString(36).slice(2)}`;
  const authed = new MlflowClient({ trackingUri: server.url, credentials: { token } });
  const dir = tempDir("journal");
  const run = await startRun({
    client: authed,
    journalDir: dir,
    experiment: "defects",
    name: `nightly-${token}`,
    params: { db_password: "hunter2", apiKey: "k-12345", lr: 0.1, note: `uses ${token}`, monkey: "banana" },
    tags: { github_token: "ghp_abcdef", "aws.secret": "s3cr3t", team: "vision", tokenizer: "bpe" },
  });
  run.logParams({ service: { key: "abc-987" } });
  run.setTags({ "mlflow.note.content": `see https://me:${token}@host/x` });
  const end = await run.end();
  assert.is(end.pending, 0);
  const read = await readRun(end.runId!, []);
  assert.is(read.name, "[redacted]");
  assert.equal(read.params, {
    db_password: "[redacted]",
    apiKey: "[redacted]",
    lr: "0.1",
    note: "[redacted]",
    monkey: "banana",
    "service.key": "[redacted]",
  });
  assert.is(read.tags.github_token, "[redacted]");
  assert.is(read.tags["aws.secret"], "[redacted]");
  assert.is(read.tags.team, "vision");
  assert.is(read.tags.tokenizer, "bpe");
  assert.is(read.tags["mlflow.note.content"], "[redacted]");
  const journal = readFileSync(path.join(dir, "done", `${run.localId}.jsonl`), "utf8");
  for (const secret of [token, "hunter2", "k-12345", "ghp_abcdef", "s3cr3t", "abc-987"]) {
    assert.not.ok(journal.includes(secret), `"${secret}" in the journal`);
    assert.not.ok(JSON.stringify(read).includes(secret), `"${secret}" on the server`);
  }
  authed.close();
});

test("7: NaN and infinite params follow MLflow's convention (nan, inf); circular params are a clear error", async () => {
  const run = await start("nan-params", {
    params: { lr: Number.NaN, schedule: [0.1, Number.POSITIVE_INFINITY], floor: Number.NEGATIVE_INFINITY },
  });
  const end = await run.end();
  const read = await readRun(end.runId!, []);
  assert.equal(read.params, { lr: "nan", schedule: "[0.1,inf]", floor: "-inf" });
  const loop: Record<string, unknown> = { lr: 0.1, model: { dim: 8 } };
  (loop.model as Record<string, unknown>).owner = loop;
  await rejects(
    () => startRun({ client, journalDir: tempDir("journal"), experiment: "defects-circular", params: loop }),
    /params: "model.owner" refers back to an object that contains it \(a circular reference\)/,
  );
  assert.is(await client.getExperimentByName("defects-circular"), undefined);
});

test("8: sync removes a crashed run's stale .lock and ends it FAILED", async () => {
  const dir = tempDir("journal");
  const script = path.join(tempDir("script"), "crash.ts");
  writeFileSync(
    script,
    `import { startRun } from ${JSON.stringify(path.join(projectRoot, "src/tracking/run"))};
(async () => {
  const run = await startRun({ trackingUri: ${JSON.stringify(server.url)}, journalDir: ${JSON.stringify(dir)}, experiment: "defects", name: "crashed" });
  for (let s = 0; s < 300; s++) run.logMetrics({ loss: s }, s);
  console.log(run.id);
  process.kill(process.pid, "SIGKILL");
})();
`,
  );
  const crashed = spawnSync(process.execPath, ["--require", "tsx/cjs", script], { cwd: projectRoot, encoding: "utf8" });
  assert.is(crashed.signal, "SIGKILL", crashed.stderr);
  const runId = crashed.stdout.trim();
  const locks = () => readdirSync(dir).filter((f) => f.endsWith(".lock"));
  assert.is(locks().length, 1, "the crash left its lock");
  const [report] = await syncJournals({ dir, client });
  assert.is(report.after, 0, JSON.stringify(report));
  assert.equal(locks(), [], "sync removed the stale lock");
  assert.ok(existsSync(path.join(dir, "done")));
  const read = await readRun(runId, ["loss"]);
  assert.is(read.status, "FAILED");
  assert.equal(read.counts, { loss: 300 });
});

test("8: steady logging fills batches (linger, then size): 20,000 points in as few requests as the rate allows", async () => {
  const lingerMs = 1000;
  const run = await start("steady", { flushIntervalMs: lingerMs });
  const keys = Array.from({ length: 10 }, (_, i) => `m${i}`);
  const t0 = Date.now();
  for (let step = 0; step < 2000; step++) {
    run.logMetrics(Object.fromEntries(keys.map((k, i) => [k, step * i])), step);
    if (step % 10 === 9) await sleep(20); // 100 points every ~20 ms, steadily
  }
  const ms = Date.now() - t0;
  const end = await run.end();
  const read = await readRun(end.runId!, keys);
  const arrived = Object.values(read.counts).reduce((a, b) => a + b, 0);
  // A full batch is 1000 points, or what the rate brings within one linger interval.
  const fill = Math.min(1000, (20_000 / ms) * lingerMs);
  console.log(
    `  steady logging: 20,000 points over ${ms} ms in ${end.sent.requests} log-batch requests ` +
      `(${Math.round(20_000 / end.sent.requests)} points each; full would be ${Math.round(fill)}), arrived ${arrived}`,
  );
  assert.is(arrived, 20_000);
  assert.ok(end.sent.requests <= Math.ceil((1.5 * 20_000) / fill) + 2, `${end.sent.requests} requests`);

  // Slow steady logging (10 points every ~20 ms): one request per linger interval, however fast the
  // server answers (sending whenever a request came back made one request per few points).
  const slow = await start("steady-slow", { flushIntervalMs: lingerMs });
  const t1 = Date.now();
  for (let step = 0; step < 200; step++) {
    slow.logMetrics(Object.fromEntries(keys.map((k, i) => [k, step * i])), step);
    await sleep(20);
  }
  const slowMs = Date.now() - t1;
  const slowEnd = await slow.end();
  console.log(`  slow steady logging: 2,000 points over ${slowMs} ms in ${slowEnd.sent.requests} requests`);
  assert.is(slowEnd.sent.metrics, 2000);
  assert.ok(slowEnd.sent.requests <= Math.ceil(slowMs / lingerMs) + 2, `${slowEnd.sent.requests} requests`);
});

test.run();
