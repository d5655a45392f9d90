// Runs, nested sweeps, metrics, params, tags, figures, tables and statuses against a real MLflow
// server, read back through MLflow's own Python client. One server for the whole file.
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { chromiumUnavailable } from "../src/plots/html";
import { splitBatch } from "../src/tracking/batch";
import { MlflowClient } from "../src/tracking/client";
import { authorizationHeader, trackingConfigFromEnv } from "../src/tracking/config";
import { runningEmbeddedServer } from "../src/tracking/embedded";
import { configHash, flattenConfig } from "../src/tracking/params";
import { Redactor } from "../src/tracking/redaction";
import { startRun, withRun } from "../src/tracking/run";
import type { MlflowServer } from "../src/tracking/server";
import { runSweep } from "../src/tracking/sweep";
import { systemTags } from "../src/tracking/system-tags";
import { keyProblem } from "../src/tracking/validate";
import { python, removeTempDirs, startServer, tempDir } from "./tracking-helpers";

let server: MlflowServer & { dir: string };
let client: MlflowClient;
const journalDir = tempDir("journal");

test.before(async () => {
  server = await startServer();
  client = new MlflowClient({ trackingUri: server.url });
});
test.after(async () => {
  client?.close();
  await server?.stop();
  removeTempDirs();
});

test("keys and batches: MLflow's rules are enforced before sending", () => {
  assert.is(keyProblem("train/loss"), undefined);
  assert.is(keyProblem("a b:c-d.e_f"), undefined);
  for (const bad of ["", "a//b", "/a", "a/", "../a", "a/./b", "loss!", "x".repeat(251)]) {
    assert.ok(keyProblem(bad), `"${bad}" should be rejected`);
  }
  const metrics = Array.from({ length: 2500 }, (_, i) => ({ key: `k${i % 7}`, value: i, timestamp: 1, step: i }));
  const params = Array.from({ length: 250 }, (_, i) => ({ key: `p${i}`, value: "v".repeat(5000) }));
  const tags = Array.from({ length: 150 }, (_, i) => ({ key: `t${i}`, value: "x" }));
  const batches = splitBatch({ metrics, params, tags });
  let m = 0;
  let p = 0;
  let t = 0;
  for (const b of batches) {
    const body = JSON.stringify({ run_id: "0123456789abcdef0123456789abcdef", ...b });
    assert.ok(Buffer.byteLength(body) < 1_000_000, `batch body ${Buffer.byteLength(body)} bytes`);
    assert.ok((b.metrics?.length ?? 0) <= 1000 && (b.params?.length ?? 0) <= 100 && (b.tags?.length ?? 0) <= 100);
    assert.ok((b.metrics?.length ?? 0) + (b.params?.length ?? 0) + (b.tags?.length ?? 0) <= 1000);
    m += b.metrics?.length ?? 0;
    p += b.params?.length ?? 0;
    t += b.tags?.length ?? 0;
  }
  assert.equal([m, p, t], [2500, 250, 150]);
  // 250 params of 5000 chars do not fit in 1 MB at 100 per request: size splits them further.
  assert.ok(batches.length > 3, `${batches.length} batches`);
  assert.equal(flattenConfig({ a: { b: 1, c: [1, 2] }, d: true, e: undefined }), {
    "a.b": "1",
    "a.c": "[1,2]",
    d: "true",
  });
  assert.is(configHash({ x: 1, y: { z: 2 } }), configHash({ y: { z: 2 }, x: 1 }));
  assert.is.not(configHash({ x: 1 }), configHash({ x: 2 }));
  assert.is(new Redactor(["s3cret"]).text("http://me:s3cret@host/x failed: s3cret"), "http://***@host/x failed: ***");
});

test("configuration from the MLFLOW_* environment; credentials split off the URI", () => {
  const config = trackingConfigFromEnv({
    MLFLOW_TRACKING_URI: "https://alice:p%40ss@mlflow.example.org:8443/",
    MLFLOW_EXPERIMENT_NAME: "exp",
    MLFLOW_EXPERIMENT_ID: "7",
    MLFLOW_RUN_ID: "abc",
    MLFLOW_TRACKING_TOKEN: "tok-123456",
    MLFLOW_TRACKING_INSECURE_TLS: "TRUE",
    MLFLOW_HTTP_REQUEST_MAX_RETRIES: "3",
    MLFLOW_HTTP_REQUEST_TIMEOUT: "5",
  });
  assert.is(config.trackingUri, "https://mlflow.example.org:8443");
  assert.equal(config.credentials, { token: "tok-123456", username: "alice", password: "p@ss" });
  assert.equal([config.experimentName, config.experimentId, config.runId], ["exp", "7", "abc"]);
  assert.is(config.tls.insecure, true);
  assert.is(config.retry.maxRetries, 3);
  assert.is(config.timeoutMs, 5000);
  // Basic wins over the token when both are set, as in MLflow.
  assert.is(authorizationHeader(config.credentials), `Basic ${Buffer.from("alice:p@ss").toString("base64")}`);
  assert.is(authorizationHeader({ token: "t" }), "Bearer t");
  // The kernel spec sets MARGINLAB_IN_NOTEBOOK=1.
  assert.is(systemTags({ env: { MARGINLAB_IN_NOTEBOOK: "1" } })["mlflow.source.type"], "NOTEBOOK");
  assert.is(systemTags({ env: {}, sourceName: "train.ts" })["mlflow.source.type"], "LOCAL");
  assert.is(systemTags({ env: {}, sourceName: "train.ts" })["mlflow.source.name"], "train.ts");
  assert.throws(
    () => trackingConfigFromEnv({ MLFLOW_TRACKING_INSECURE_TLS: "yes" }),
    /MLFLOW_TRACKING_INSECURE_TLS="yes" is not a boolean/,
  );
  assert.throws(
    () => trackingConfigFromEnv({ MLFLOW_TRACKING_URI: "sqlite:///x.db" }),
    /scheme "sqlite:" is not supported/,
  );
  assert.throws(() => trackingConfigFromEnv({ MLFLOW_HTTP_REQUEST_MAX_RETRIES: "-1" }), /MAX_RETRIES="-1"/);
  assert.throws(
    () => new MlflowClient({ trackingUri: "https://localhost:1", tls: { caFile: "/nonexistent/ca.pem" } }),
    /MLFLOW_TRACKING_SERVER_CERT_PATH: cannot read "\/nonexistent\/ca.pem"/,
  );
});

test("a sweep's childOptions name and tag its children, finish writes onto the parent before it ends; a throwing finish ends it FAILED", async () => {
  const seen: string[] = [];
  const ok = await runSweep(
    {
      trackingUri: server.url,
      journalDir,
      experiment: "sweep-hooks",
      name: "hooks",
      configs: [{ k: 1 }, { k: 2 }],
      childOptions: (config, index, parent) => ({
        name: `k=${config.k}`,
        params: { k: config.k },
        tags: { "test.parent": parent.id ?? "", "test.index": String(index) },
      }),
      finish: (parent, children) => {
        seen.push(...children.map((c) => c.end.status));
        parent.setTags({ "test.summary": children.map((c) => c.value).join(",") });
      },
    },
    (run, config, _index, parent) => {
      run.logMetrics({ k2: config.k * config.k }, 0);
      return `${config.k}@${parent.id === undefined ? "" : "p"}`;
    },
  );
  assert.equal(seen, ["FINISHED", "FINISHED"], "finish runs after every child ended");
  assert.is(ok.parent.status, "FINISHED");
  const parent = await client.getRun(ok.parent.runId!);
  assert.is(parent.data.tags?.find((t) => t.key === "test.summary")?.value, "1@p,2@p");
  const first = await client.getRun(ok.children[0].runId!);
  assert.is(first.info.run_name, "k=1");
  assert.is(first.data.tags?.find((t) => t.key === "test.parent")?.value, ok.parent.runId);
  assert.is(first.data.tags?.find((t) => t.key === "mlflow.parentRunId")?.value, ok.parent.runId);

  let parentId: string | undefined;
  const failing = await runSweep(
    {
      trackingUri: server.url,
      journalDir,
      experiment: "sweep-hooks",
      name: "hooks-failing-summary",
      configs: [{ k: 1 }],
      finish: (p) => {
        parentId = p.id;
        throw new Error("summary failed");
      },
    },
    () => undefined,
  ).then(
    () => undefined,
    (e: Error) => e,
  );
  assert.match(String(failing?.message), /summary failed/);
  assert.is((await client.getRun(parentId!)).info.status, "FAILED");
});

test("a sweep: parent + children, 5,000 metric points, params, tags, figure, table, statuses", async () => {
  const errors: Error[] = [];
  const result = await runSweep(
    {
      trackingUri: server.url,
      journalDir,
      experiment: "sweep-test",
      name: "margin-sweep",
      description: "**margin** sweep",
      params: { dataset: "synthetic" },
      configs: [
        { loss: "arcface", margin: 0.5, optimizer: { lr: 0.1, momentum: 0.9 } },
        { loss: "cosface", margin: 0.35, optimizer: { lr: 0.1, momentum: 0.9 } },
        { loss: "broken", margin: 0, optimizer: { lr: 0.1, momentum: 0.9 } },
      ],
      continueOnError: true,
      onError: (e) => errors.push(e),
    },
    async (run, config, index) => {
      if (config.loss === "broken") throw new Error("diverged");
      // 5 keys x 1,000 steps = 5,000 points on the first child, fewer on the second.
      const steps = index === 0 ? 1000 : 10;
      for (let step = 0; step < steps; step++) {
        run.logMetrics(
          {
            "train/loss": 1 / (step + 1),
            "train/acc": step / steps,
            "val/loss": 2 / (step + 1),
            "val/acc": (step * 0.5) / steps,
            "system/lr": 0.1 * 0.99 ** step,
          },
          step,
        );
      }
      run.logMetrics({ "train/loss": Number.NaN, "train/acc": Number.POSITIVE_INFINITY }, steps);
      run.setTags({ "marginlab.note": `child ${index}` });
      if (index === 0) {
        const figure = await run.logFigure(
          {
            data: [{ x: [0, 1, 2], y: [3, 1, 2], type: "scatter", name: "</script><b>x</b>" }],
            layout: { title: { text: "loss" } },
          },
          "plots/loss",
        );
        run.logTable(
          [
            { class: 0, accuracy: 0.91 },
            { class: 1, accuracy: 0.87, note: "hard" },
          ],
          "tables/per_class",
        );
        run.logDataset({ name: "synthetic-faces", digest: "abc123", source: "generated://seed-7", context: "train" });
        return figure;
      }
      return undefined;
    },
  );
  assert.is(result.children.length, 3);
  assert.is(result.parent.status, "FAILED", "a failed child marks the sweep parent FAILED");
  assert.is(result.children[2].end.status, "FAILED");
  assert.is(result.children[2].error?.message, "diverged");
  for (const child of result.children) assert.is(child.end.pending, 0);
  assert.equal(result.children[0].end.nonFinite, { "train/loss": 1, "train/acc": 1 });
  assert.equal(errors, []);
  const figure = result.children[0].value!;
  assert.is(figure.html, "plots/loss.html");
  const noChromium = chromiumUnavailable();
  if (noChromium) assert.is(figure.pngSkipped, noChromium);
  else assert.is(figure.png, "plots/loss.png");

  const parentId = result.parent.runId!;
  const firstId = result.children[0].runId!;
  const read = await python<{
    runs: Array<{
      id: string;
      name: string;
      status: string;
      params: Record<string, string>;
      tags: Record<string, string>;
    }>;
    history: Record<string, Array<[number, number]>>;
    artifacts: string[];
    html: string;
    table: { columns: string[]; data: unknown[][] };
    png: number;
    inputs: Array<{ name: string; context: string }>;
  }>(
    `
import json, os, mlflow
from mlflow import MlflowClient
c = MlflowClient()
exp = c.get_experiment_by_name("sweep-test")
df = mlflow.search_runs([exp.experiment_id], output_format="list")
runs = [{"id": r.info.run_id, "name": r.info.run_name, "status": r.info.status, "params": r.data.params, "tags": r.data.tags} for r in df]
hist = {}
for key in ["train/loss", "train/acc", "val/loss", "val/acc", "system/lr"]:
    hist[key] = [[m.step, m.value] for m in c.get_metric_history("${firstId}", key)]
d = mlflow.artifacts.download_artifacts(run_id="${firstId}", artifact_path="")
files = sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)
png = os.path.getsize(os.path.join(d, "plots/loss.png")) if "plots/loss.png" in files else 0
run = c.get_run("${firstId}")
inputs = [{"name": i.dataset.name, "context": {t.key: t.value for t in i.tags}.get("mlflow.data.context")} for i in run.inputs.dataset_inputs]
print(json.dumps({"runs": runs, "history": hist, "artifacts": files, "html": open(os.path.join(d, "plots/loss.html")).read(),
  "table": json.load(open(os.path.join(d, "tables/per_class.json"))), "png": png, "inputs": inputs}))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
  assert.is(read.runs.length, 4);
  const parent = read.runs.find((r) => r.id === parentId)!;
  assert.is(parent.name, "margin-sweep");
  assert.is(parent.status, "FAILED");
  assert.is(parent.tags["mlflow.note.content"], "**margin** sweep");
  assert.is(parent.params.dataset, "synthetic");
  const children = read.runs.filter((r) => r.id !== parentId).sort((a, b) => a.name.localeCompare(b.name));
  assert.equal(
    children.map((r) => [r.name, r.status]),
    [
      ["margin-sweep-0", "FINISHED"],
      ["margin-sweep-1", "FINISHED"],
      ["margin-sweep-2", "FAILED"],
    ],
  );
  for (const [i, child] of children.entries()) {
    assert.is(child.tags["mlflow.parentRunId"], parentId);
    // The full flattened config on every child, and its hash.
    assert.equal(Object.keys(child.params).sort(), ["loss", "margin", "optimizer.lr", "optimizer.momentum"]);
    assert.is(child.params["optimizer.momentum"], "0.9");
    assert.is(child.tags["marginlab.configHash"], configHash(result.children[i].config));
    assert.is(child.tags["mlflow.source.type"], "LOCAL");
    assert.ok(child.tags["mlflow.user"]);
    assert.ok(child.tags["mlflow.source.name"]);
    assert.match(child.tags["mlflow.source.git.commit"] ?? "", /^[0-9a-f]{40}$/);
    assert.ok(["true", "false"].includes(child.tags["mlflow.source.git.dirty"]));
  }
  assert.is(children[0].params.margin, "0.5");
  assert.is(children[0].tags["marginlab.note"], "child 0");
  for (const [key, points] of Object.entries(read.history)) {
    assert.is(points.length, 1000, `${key}: 1000 points, no NaN/Inf sent`);
    assert.equal(
      points.map((p) => p[0]).sort((a, b) => a - b),
      Array.from({ length: 1000 }, (_, i) => i),
    );
  }
  const loss = new Map(read.history["train/loss"]);
  assert.is(loss.get(9), 0.1);
  assert.is(new Map(read.history["system/lr"]).get(3), 0.1 * 0.99 ** 3);
  assert.ok(
    read.artifacts.includes("plots/loss.html") && read.artifacts.includes("tables/per_class.json"),
    read.artifacts.join(","),
  );
  // A few KB that load the run's one copy of plotly.js (test/workflow-figures.test.ts renders it).
  assert.ok(read.html.includes("Plotly.newPlot") && read.html.length < 20_000, `${read.html.length} bytes`);
  assert.not.ok(read.html.includes("</script><b>"), "</script in data is escaped");
  assert.ok(read.html.includes("\\u003c/script\\u003e\\u003cb\\u003ex"));
  assert.equal(read.table, {
    columns: ["class", "accuracy", "note"],
    data: [
      [0, 0.91, null],
      [1, 0.87, "hard"],
    ],
  });
  if (!noChromium) assert.ok(read.png > 1000, `png ${read.png} bytes`);
  assert.equal(read.inputs, [{ name: "synthetic-faces", context: "train" }]);
});

test("withRun: FINISHED on success, FAILED when the body throws; metric history through the TS client", async () => {
  let id = "";
  await withRun({ trackingUri: server.url, journalDir, experiment: "status-test", name: "ok" }, (run) => {
    id = run.id!;
    for (let s = 0; s < 5; s++) run.logMetric("m", s * 2, s);
  });
  assert.is((await client.getRun(id)).info.status, "FINISHED");
  assert.equal(
    (await client.getMetricHistory(id, "m")).map((m) => [m.step, m.value]),
    [
      [0, 0],
      [1, 2],
      [2, 4],
      [3, 6],
      [4, 8],
    ],
  );
  let failedId = "";
  try {
    await withRun({ trackingUri: server.url, journalDir, experiment: "status-test", name: "boom" }, (run) => {
      failedId = run.id!;
      throw new Error("boom");
    });
    assert.unreachable("should rethrow");
  } catch (error) {
    assert.is((error as Error).message, "boom");
  }
  assert.is((await client.getRun(failedId)).info.status, "FAILED");
});

test("bad input fails at the call: bad key, changed param, missing artifact path", async () => {
  const run = await startRun({ trackingUri: server.url, journalDir, experiment: "status-test", params: { lr: 0.1 } });
  assert.throws(() => run.logMetrics({ "bad!key": 1 }, 0), /invalid metric key "bad!key"/);
  assert.throws(() => run.logMetrics({ ok: 1 }, 1.5), /step must be an integer/);
  assert.throws(() => run.logParams({ lr: 0.2 }), /param "lr" was already logged as "0.1"/);
  run.logParams({ lr: 0.1 }); // same value: fine
  assert.throws(() => run.logArtifact(Buffer.from("x")), /artifactPath/);
  assert.throws(() => run.setTags({ t: "x".repeat(8001) }), /at most 8000/);
  const end = await run.end();
  assert.is(end.pending, 0);
  assert.equal((await client.getRun(run.id!)).data.params, [{ key: "lr", value: "0.1" }]);
});

test("a deleted experiment's name: a clear error, nothing created", async () => {
  const id = await client.createExperiment("gone");
  await client.call("POST", "experiments/delete", { experiment_id: id });
  try {
    await startRun({ trackingUri: server.url, journalDir, experiment: "gone", startTimeoutMs: 20_000 });
    assert.unreachable("should throw");
  } catch (error) {
    assert.match((error as Error).message, /experiment "gone" exists but is deleted/);
    assert.match((error as Error).message, /restore/);
  }
  const restored = await client.getOrCreateExperiment("gone", { restoreDeleted: true });
  assert.is(restored.lifecycle_stage, "active");
  assert.is(restored.experiment_id, id);
});

test("SIGTERM: the run is flushed and ends KILLED; the embedded-server record is honoured", async () => {
  const dir = tempDir("sigterm");
  const script = path.join(dir, "train.ts");
  writeFileSync(
    script,
    `import { startRun } from ${JSON.stringify(path.resolve("src/tracking/run"))};
(async () => {
  const run = await startRun({ trackingUri: ${JSON.stringify(server.url)}, journalDir: ${JSON.stringify(dir)}, experiment: "signal-test", flushIntervalMs: 60000 });
  for (let s = 0; s < 50; s++) run.logMetrics({ loss: s }, s);
  console.log("RUN " + run.id);
  setInterval(() => undefined, 1000);
})();
`,
  );
  const child = spawn(process.execPath, ["--require", "tsx/cjs", script], { stdio: ["ignore", "pipe", "pipe"] });
  const runId = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /RUN (\w+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`exited ${code} before starting the run`)));
  });
  child.kill("SIGTERM");
  const signal = await new Promise((resolve) => child.on("exit", (_code, sig) => resolve(sig)));
  assert.is(signal, "SIGTERM", "the process still dies of the signal");
  const run = await client.getRun(runId);
  assert.is(run.info.status, "KILLED");
  assert.is(
    (await client.getMetricHistory(runId, "loss")).length,
    50,
    "the 50 points queued behind a 60 s linger were flushed",
  );

  // server.json is how the embedded default is found (doctor reads it too): a live record is reused,
  // a record of a dead process is not.
  writeFileSync(path.join(dir, "server.json"), JSON.stringify({ url: server.url, pid: server.pid, port: server.port }));
  assert.is((await runningEmbeddedServer(dir))?.url, server.url);
  writeFileSync(
    path.join(dir, "server.json"),
    JSON.stringify({ url: server.url, pid: 2 ** 22 + 7, port: server.port }),
  );
  assert.is(await runningEmbeddedServer(dir), undefined);
  assert.ok(readFileSync(path.join(dir, "server.json"), "utf8").includes("url"));
});

test.run();
