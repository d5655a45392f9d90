// Basic auth: a server started with MLflow's basic-auth app accepts marginlab's runs with
// credentials and refuses them clearly without; the password never shows in errors, params or tags.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { MlflowClient } from "../src/tracking/client";
import { startRun } from "../src/tracking/run";
import type { MlflowServer } from "../src/tracking/server";
import { python, removeTempDirs, startServer, tempDir } from "./tracking-helpers";

const password = `pw-${Math.random().toString(36).slice(2)}-secret`;
const journalDir = tempDir("journal");
let server: MlflowServer;

test.before(async () => {
  server = await startServer({
    extraArgs: ["--app-name", "basic-auth"],
    env: { MLFLOW_AUTH_ADMIN_PASSWORD: password, MLFLOW_FLASK_SERVER_SECRET_KEY: `key-${Math.random()}` },
  });
});
test.after(async () => {
  await server?.stop();
  removeTempDirs();
});

test("with credentials: the run is logged (read back by MLflow's Python client with the same credentials)", async () => {
  const client = new MlflowClient({ trackingUri: server.url, credentials: { username: "admin", password } });
  const run = await startRun({ client, journalDir, experiment: "auth-test", name: "authed", params: { lr: 0.1 } });
  for (let s = 0; s < 100; s++) run.logMetrics({ loss: 1 / (s + 1) }, s);
  // A value that happens to contain the password is not sent as is.
  run.setTags({ leaked: `token=${password}` });
  const end = await run.end("FINISHED", { timeoutMs: 120_000 });
  assert.equal(end.errors, []);
  assert.is(end.pending, 0);
  const read = await python<{
    n: number;
    status: string;
    tags: Record<string, string>;
    params: Record<string, string>;
  }>(
    `
import json
from mlflow import MlflowClient
c = MlflowClient()
r = c.get_run("${run.id}")
print(json.dumps({"n": len(c.get_metric_history("${run.id}", "loss")), "status": r.info.status, "tags": r.data.tags, "params": r.data.params}))
`,
    { MLFLOW_TRACKING_URI: server.url, MLFLOW_TRACKING_USERNAME: "admin", MLFLOW_TRACKING_PASSWORD: password },
  );
  assert.is(read.n, 100);
  assert.is(read.status, "FINISHED");
  assert.is(read.tags.leaked, "[redacted]");
  for (const value of [...Object.values(read.tags), ...Object.values(read.params)]) {
    assert.not.ok(value.includes(password), "no credential in tags or params");
  }
  client.close();
});

test("without or with wrong credentials: a clear error at startRun, no password in it", async () => {
  const cases: Array<[string, MlflowClient]> = [
    ["none", new MlflowClient({ trackingUri: server.url, credentials: {} })],
    ["wrong", new MlflowClient({ trackingUri: `http://admin:${password}x@${server.url.slice(7)}`, credentials: {} })],
  ];
  for (const [label, client] of cases) {
    try {
      await startRun({ client, journalDir, experiment: "auth-test", name: `denied-${label}` });
      assert.unreachable(`${label}: should throw`);
    } catch (error) {
      const message = (error as Error).message;
      assert.match(message, /HTTP 401/, `${label}: ${message}`);
      assert.match(message, /MLFLOW_TRACKING_USERNAME/);
      assert.not.ok(message.includes(password), `${label}: password in "${message}"`);
    }
    assert.not.ok(client.trackingUri.includes(password), "the URI keeps no password");
    client.close();
  }
});

test.run();
