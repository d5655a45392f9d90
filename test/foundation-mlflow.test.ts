// The MLflow server from the project environment starts on 127.0.0.1 on a free port, answers its REST API, and stops.
import { mkdtempSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { startMlflowServer } from "../src/tracking/server";

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

test("mlflow server: starts, answers REST, stops", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "marginlab-mlflow-"));
  const server = await startMlflowServer({ dir });
  try {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const created = await fetch(`${server.url}/api/2.0/mlflow/experiments/create`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "foundation-test" }),
    });
    assert.is(created.status, 200, await created.clone().text());
    const { experiment_id } = (await created.json()) as { experiment_id: string };
    const got = await fetch(`${server.url}/api/2.0/mlflow/experiments/get?experiment_id=${experiment_id}`);
    const body = (await got.json()) as { experiment: { name: string } };
    assert.is(body.experiment.name, "foundation-test");
  } finally {
    await server.stop();
  }
  assert.is(await portOpen(server.port), false, "port closed after stop");
});

test.run();
