// Offline without waiting (issue 15): with the tracking server down for a whole sweep (a parent, 4
// children, a grandchild each), logging runs at full speed with one warning naming the URI and
// `npx marginlab sync`; then the server comes up, sync delivers every run into its experiment with
// its parent links, read back with MLflow's own Python client.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { MlflowClient } from "../src/tracking/client";
import { onTrackingOffline, type TrackingOfflineEvent } from "../src/tracking/reachability";
import { freePort } from "../src/tracking/server";
import { runSweep } from "../src/tracking/sweep";
import { syncJournals } from "../src/tracking/sync";
import { python, removeTempDirs, startServer, tempDir } from "./tracking-helpers";

const stops: Array<() => Promise<void>> = [];
test.after(async () => {
  for (const stop of stops) await stop();
  removeTempDirs();
});

test("server down for a whole sweep: no waiting, one warning; sync delivers every run nested in its experiment", async () => {
  const port = await freePort();
  const uri = `http://127.0.0.1:${port}`;
  const journalDir = tempDir("journal");
  const events: TrackingOfflineEvent[] = [];
  const unsubscribe = onTrackingOffline((e) => events.push(e));
  const t0 = Date.now();
  const sweep = await runSweep(
    {
      trackingUri: uri,
      journalDir,
      experiment: "offline-sweep",
      name: "ablation",
      configs: [{ m: 0.1 }, { m: 0.2 }, { m: 0.3 }, { m: 0.4 }],
      handleSignals: false,
    },
    async (child, config) => {
      const seed = await child.child({ name: `seed-${config.m}`, params: { seed: 1 } });
      for (let step = 0; step < 200; step++) {
        child.logMetrics({ loss: config.m / (step + 1) }, step);
        seed.logMetrics({ loss: config.m / (step + 2) }, step);
      }
      await seed.end();
      return config.m;
    },
  );
  const seconds = (Date.now() - t0) / 1000;
  unsubscribe();
  console.log(
    `  sweep with the server down: ${seconds.toFixed(2)} s; user sees: ${events.map((e) => e.message).join(" | ")}`,
  );
  assert.ok(seconds < 5, `the offline sweep took ${seconds} s`);
  assert.is(events.length, 1, "one warning");
  assert.ok(events[0].message.includes(uri));
  assert.match(events[0].message, /npx marginlab sync/);
  assert.ok(events[0].message.includes(journalDir));
  assert.ok(sweep.parent.pending > 0 && sweep.children.every((c) => c.end.pending > 0 && c.runId === undefined));

  const server = await startServer({ port });
  stops.push(() => server.stop());
  const client = new MlflowClient({ trackingUri: server.url });
  const reports = await syncJournals({ dir: journalDir, client });
  client.close();
  assert.is(reports.length, 9);
  for (const r of reports) assert.is(r.after, 0, JSON.stringify(r));

  const read = await python<{
    experiments: string[];
    runs: Array<{ name: string; id: string; parent: string | null; status: string; n: number }>;
  }>(
    `
import json, mlflow
from mlflow import MlflowClient
c = MlflowClient()
exps = [e.name for e in c.search_experiments()]
runs = []
for e in c.search_experiments():
    for r in mlflow.search_runs([e.experiment_id], output_format="list"):
        runs.append({"name": r.info.run_name, "id": r.info.run_id, "exp": e.name, "parent": r.data.tags.get("mlflow.parentRunId"),
          "status": r.info.status, "n": len(c.get_metric_history(r.info.run_id, "loss"))})
        assert e.name == "offline-sweep", (e.name, r.info.run_name)
print(json.dumps({"experiments": exps, "runs": runs}))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
  const byName = Object.fromEntries(read.runs.map((r) => [r.name, r]));
  assert.is(read.runs.length, 9, JSON.stringify(read.runs));
  const parent = byName.ablation;
  assert.is(parent.parent, null);
  for (let i = 0; i < 4; i++) {
    const child = byName[`ablation-${i}`];
    assert.is(child.parent, parent.id, `child ${i} nested under the parent`);
    assert.is(child.n, 200);
    assert.is(child.status, "FINISHED");
    const seed = byName[`seed-${(i + 1) / 10}`];
    assert.is(seed.parent, child.id, `seed run ${i} nested under its child`);
    assert.is(seed.n, 200);
  }
});

test.run();
