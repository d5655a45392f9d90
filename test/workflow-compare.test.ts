import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { compareRuns, showComparison } from "../src/notebook/compare";
import { PLOTLY_MIME } from "../src/notebook/display";
import { textOf } from "../src/notebook/execute";
import { startRun } from "../src/tracking/run";
import type { MlflowServer } from "../src/tracking/server";
import { removeTempDirs, startServer, tempDir } from "./tracking-helpers";
import { removeNotebookDirs, runCell } from "./workflow-helpers";

const _root = path.join(__dirname, "..");
let server: MlflowServer & { dir: string };
let parentId: string;
const journalDir = tempDir("journal");
const accuracy: Record<string, number[]> = { arcface: [0.9, 0.92, 0.94], cosface: [0.8, 0.86, 0.83] };

test.before(async () => {
  server = await startServer();
  const common = { "marginlab.ablation": "margins", "marginlab.preset": "smoke" };
  const parent = await startRun({
    trackingUri: server.url,
    experiment: "compare",
    name: "margins-smoke",
    journalDir,
    tags: common,
    params: { steps: 10 },
    systemMetrics: false,
  });
  for (const [config, values] of Object.entries(accuracy)) {
    const child = await parent.child({ name: config, params: { loss: config }, tags: common, systemMetrics: false });
    for (const [seed, value] of values.entries()) {
      const leaf = await child.child({
        name: `${config} seed ${seed}`,
        params: { loss: config, seed },
        tags: { ...common, "marginlab.seed": String(seed) },
        systemMetrics: false,
      });
      leaf.logMetrics({ test_accuracy: value, train_loss: 1 - value }, 0);
      await leaf.end();
    }
    await child.end();
  }
  await parent.end();
  parentId = parent.id!;
  // Another top-level run in the experiment.
  const other = await startRun({
    trackingUri: server.url,
    experiment: "compare",
    name: "other",
    journalDir,
    systemMetrics: false,
  });
  other.logMetric("test_accuracy", 0.5);
  await other.end();
});
test.after(async () => {
  await server?.stop();
  removeNotebookDirs();
  removeTempDirs();
});

const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
const std = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + (x - mean(v)) ** 2, 0) / (v.length - 1));

test("a parent run: one row per run in tree order, configurations with mean and std across seeds, a bar figure", async () => {
  const c = await compareRuns({ parentRunId: parentId }, { trackingUri: server.url, metric: "test_accuracy" });
  assert.equal(
    c.table.map((r) => r.run),
    [
      "margins-smoke",
      "  arcface",
      "    arcface seed 0",
      "    arcface seed 1",
      "    arcface seed 2",
      "  cosface",
      "    cosface seed 0",
      "    cosface seed 1",
      "    cosface seed 2",
    ],
  );
  const leaf = c.table[3];
  assert.equal([leaf.ablation, leaf.preset, leaf.config, leaf.seed], ["margins", "smoke", "arcface", "1"]);
  assert.is(leaf["param.loss"], "arcface");
  assert.is(leaf.test_accuracy, 0.92);
  assert.is(c.summary.length, 2);
  for (const s of c.summary) {
    assert.is(s.n, 3);
    assert.ok(Math.abs(s.mean - mean(accuracy[s.config])) < 1e-12, `${s.config} mean`);
    assert.ok(Math.abs(s.std - std(accuracy[s.config])) < 1e-12, `${s.config} std`);
  }
  const bar = c.figure.data[0] as { type: string; x: string[]; y: number[]; error_y: { array: number[] } };
  assert.is(bar.type, "bar");
  assert.equal(bar.x, ["arcface", "cosface"]);
  assert.equal(
    bar.error_y.array,
    c.summary.map((s) => s.std),
  );
  assert.is(await showComparison(c), false, "outside a notebook nothing is shown");
});

test("an experiment: every run; parallel coordinates over the leaves; clear errors", async () => {
  const c = await compareRuns({ experiment: "compare" }, { trackingUri: server.url, figure: "parallel" });
  assert.is(c.runs.length, 10);
  assert.is(c.metric, "test_accuracy");
  const pc = c.figure.data[0] as { type: string; dimensions: Array<{ label: string; values: number[] }> };
  assert.is(pc.type, "parcoords");
  assert.equal(
    pc.dimensions.map((d) => d.label),
    ["config", "test_accuracy"],
  );
  assert.is(pc.dimensions[1].values.length, 7, "6 seed runs and the other top-level run");
  const failure = (p: Promise<unknown>) =>
    p.then(
      () => "resolved",
      (e: Error) => e.message,
    );
  assert.match(
    await failure(compareRuns({ experiment: "nope" }, { trackingUri: server.url })),
    /no experiment named "nope"/,
  );
  assert.match(
    await failure(compareRuns({ parentRunId: parentId }, { trackingUri: server.url, metric: "missing" })),
    /no run has the metric "missing"/,
  );
});

test("in the kernel: showComparison displays the table and the figure", async () => {
  const source = `import { compareRuns, showComparison } from "./src/notebook/compare";
const c = await compareRuns({ parentRunId: ${JSON.stringify(parentId)} }, { metric: "test_accuracy" });
console.log("shown=" + (await showComparison(c, { title: "margins" })));`;
  const executed = await runCell("compare", source, { MLFLOW_TRACKING_URI: server.url });
  const outputs = executed.cells[0].outputs ?? [];
  const html = outputs.map((o) => textOf(o.data?.["text/html"] as string | string[] | undefined)).join("\n");
  assert.match(outputs.map((o) => textOf(o.text)).join(""), /shown=true/);
  assert.match(html, /<td>arcface<\/td>/);
  const figure = outputs.find((o) => o.data?.[PLOTLY_MIME]);
  assert.ok(figure, "the figure is an output with the Plotly JSON");
  assert.ok(
    figure.data!["image/png"] || figure.data!["text/markdown"],
    "and a picture or its numbers (untrusted-safe)",
  );
  assert.ok(JSON.stringify(figure.data![PLOTLY_MIME]).includes('"error_y"'));
});

test.run();
