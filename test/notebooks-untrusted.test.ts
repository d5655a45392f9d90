// A notebook's saved outputs read well untrusted (a fresh clone; GitHub), and `npm run notebooks`
// logs the executed notebook's HTML to the record's parent run: a cut alpha-bound smoke run tracked
// on a real MLflow server, its record, one cell executed by nbconvert on the marginlab kernel.
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { recordOfRun, writeRecord } from "../experiments/record";
import { type AblationRun, runAblation } from "../experiments/runner";
import { logNotebookToParentRun, notebookArtifactPath } from "../scripts/run-notebooks";
import { PLOTLY_MIME } from "../src/notebook/display";
import { type NotebookOutput, textOf } from "../src/notebook/execute";
import { chromiumUnavailable } from "../src/plots/html";
import { MlflowClient } from "../src/tracking/client";
import type { MlflowServer } from "../src/tracking/server";
import { CUT_ALPHA_BOUND } from "./ablation-helpers";
import { removeTempDirs, startServer, tempDir } from "./tracking-helpers";
import { removeNotebookDirs, runCell } from "./workflow-helpers";

const SET = CUT_ALPHA_BOUND;

/**
 * What JupyterLab shows for an untrusted output: the first mime type, by renderer rank, whose
 * renderer is "safe" (read from JupyterLab 4's rendermime factories: html 50, markdown 60, latex 70,
 * images 90, plain text 120; svg and JavaScript are not safe). html is rendered sanitized.
 */
const UNTRUSTED_ORDER = [
  "text/html",
  "text/markdown",
  "text/latex",
  "image/bmp",
  "image/png",
  "image/jpeg",
  "image/gif",
  "image/webp",
  "text/plain",
];
function untrustedChoice(output: NotebookOutput): string | undefined {
  return UNTRUSTED_ORDER.find((mime) => output.data && mime in output.data);
}

let server: MlflowServer;
let client: MlflowClient;
let run: AblationRun;
let recordFile: string;
let executedPath: string;
let outputs: NotebookOutput[];

test.before(async () => {
  try {
    await prepare();
  } catch (error) {
    console.error(error); // uvu swallows a failing before hook's error
    throw error;
  }
});

async function prepare() {
  server = await startServer({ startTimeoutMs: 180_000 });
  client = new MlflowClient({ trackingUri: server.url });
  run = await runAblation("alpha-bound", { trackingUri: server.url, journalDir: tempDir("journal"), set: SET });
  recordFile = path.join(tempDir("record"), "alpha-bound-smoke.json");
  writeRecord(recordFile, recordOfRun(run));
  const source = `import { runInNotebook } from "./experiments/notebook";
await runInNotebook("alpha-bound", { preset: "smoke", set: ${JSON.stringify(SET)}, record: ${JSON.stringify(recordFile)} });`;
  const executed = await runCell("untrusted", source, { MLFLOW_TRACKING_URI: server.url }, 600);
  executedPath = executed.path;
  outputs = executed.cells[0].outputs ?? [];
}

test.after(async () => {
  client?.close();
  await server?.stop();
  removeNotebookDirs();
  removeTempDirs();
});

test("every figure is a bundle that renders untrusted: a PNG (or its numbers), never blank HTML", () => {
  assert.ok(run.parentRunId, "the run was tracked");
  const figures = outputs.filter((o) => o.data?.[PLOTLY_MIME]);
  assert.is(figures.length, run.summary.figures.length, "one output per figure");
  const picture = chromiumUnavailable() ? "text/markdown" : "image/png";
  for (const f of figures) {
    assert.is(untrustedChoice(f), picture, `untrusted shows the ${picture}: ${Object.keys(f.data!).join(", ")}`);
    assert.not.ok("text/html" in f.data!, "no HTML (it would win and show a blank div)");
  }
  if (picture === "image/png") {
    const png = Buffer.from(textOf(figures[0].data!["image/png"] as string), "base64");
    assert.equal([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a real PNG");
  }
});

test("tables and findings render untrusted; nothing needs scripts; no link to a local server port", () => {
  const displays = outputs.filter((o) => o.output_type === "display_data");
  for (const o of displays) {
    const mime = untrustedChoice(o);
    assert.ok(mime, `an output with no safe mime type: ${Object.keys(o.data ?? {}).join(", ")}`);
    assert.not.match(textOf(o.data![mime] as string), /<script/i, "what shows untrusted works without scripts");
  }
  const tables = displays.filter((o) => textOf(o.data?.["text/html"] as string).includes("marginlab-table"));
  assert.is(tables.length, run.summary.tables.length);
  for (const t of tables) assert.match(textOf(t.data!["text/markdown"] as string), /^\*\*.*\*\*\n\n\| .* \|\n\|---/);
  const everything = JSON.stringify(outputs);
  assert.not.ok(everything.includes("127.0.0.1:"), "no http://127.0.0.1:PORT in any output");
  const markdown = displays.map((o) => textOf(o.data?.["text/markdown"] as string)).join("\n");
  assert.ok(markdown.includes(`parent run \`${run.parentRunId}\``), "names the parent run");
  assert.match(markdown, /`npx marginlab ui`/);
  assert.match(markdown, /Shown from the record/);
});

test("the executed notebook's HTML is logged to the record's parent run; a run the server lacks is skipped", async () => {
  const logged = await logNotebookToParentRun(executedPath, recordFile, { trackingUri: server.url });
  assert.equal(logged, { runId: run.parentRunId, path: notebookArtifactPath("untrusted") });
  const files = await client.listArtifacts(run.parentRunId!, "notebook");
  assert.equal(
    files.map((f) => f.path),
    ["notebook/untrusted.html"],
  );
  const { artifact_uri } = (await client.getRun(run.parentRunId!)).info;
  const html = (await client.downloadArtifact(artifact_uri, "notebook/untrusted.html")).toString("utf8");
  assert.match(html, /<html/);
  if (!chromiumUnavailable()) assert.ok(html.includes("data:image/png;base64,"), "the export shows the figures' PNGs");
  assert.not.ok(html.includes("127.0.0.1:"));

  const elsewhere = path.join(tempDir("record"), "alpha-bound-smoke.json");
  const record = JSON.parse(readFileSync(recordFile, "utf8"));
  writeFileSync(elsewhere, JSON.stringify({ ...record, parentRunId: "0123456789abcdef0123456789abcdef" }));
  const skipped = await logNotebookToParentRun(executedPath, elsewhere, { trackingUri: server.url });
  assert.ok("skipped" in skipped && /parent run 0123456789abcdef0123456789abcdef is not on/.test(skipped.skipped));
  const untracked = path.join(tempDir("record"), "alpha-bound-smoke.json");
  writeFileSync(untracked, JSON.stringify({ ...record, parentRunId: undefined }));
  const none = await logNotebookToParentRun(executedPath, untracked, { trackingUri: server.url });
  assert.ok("skipped" in none && /names no parent run/.test(none.skipped), JSON.stringify(none));
});

test("the ablation's figures are in MLflow's image layout too (the UI's image grid)", async () => {
  if (chromiumUnavailable()) return; // logImage needs the PNG; the display test covers the fallback
  const images = await client.listArtifacts(run.parentRunId!, "images");
  const names = images.map((f) => f.path);
  for (const f of run.summary.figures)
    assert.ok(
      names.some((n) => n.startsWith(`images/${f.name}+step+0+`) && n.endsWith(".png")),
      `${f.name}: ${names.join(", ")}`,
    );
  const tags = (await client.getRun(run.parentRunId!)).data.tags ?? [];
  assert.ok(tags.some((t) => t.key === "mlflow.loggedImages" && t.value === "True"));
});

test.run();
