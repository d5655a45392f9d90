// Every notebook runs headlessly (scripts/run-notebooks.ts: nbconvert, marginlab kernel, smoke preset)
// without a cell error, logs to MLflow, and shows figures (PNG + Plotly JSON), tables and the parent run.
import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { listNotebooks, runNotebooks } from "../scripts/run-notebooks";
import { PLOTLY_MIME } from "../src/notebook/display";
import { type NotebookCell, textOf } from "../src/notebook/execute";
import { serverDuring, tempDir } from "./tracking-helpers";

const dir = tempDir("nbtest");
const server = serverDuring(test, { dir: path.join(dir, "mlflow") });

test("the committed notebooks use the marginlab kernel and read MARGINLAB_PRESET", () => {
  const files = listNotebooks();
  assert.ok(files.length >= 1);
  for (const file of files) {
    const nb = JSON.parse(readFileSync(file, "utf8"));
    assert.is(nb.metadata.kernelspec.name, "marginlab", file);
    const code = (nb.cells as NotebookCell[])
      .filter((c) => c.cell_type === "code")
      .map((c) => textOf(c.source))
      .join("\n");
    assert.match(code, /presetFromEnv\(\)/, `${file} reads the preset from the environment`);
    assert.match(
      code,
      /from "\.\/experiments\/notebook"/,
      `${file} imports the experiments (kernel cwd = project root)`,
    );
    assert.ok(statSync(file).size < 1_000_000, `${file} stays small enough to diff`);
  }
});

test("run-notebooks executes every notebook with the smoke preset, without a cell error", async () => {
  const lines: string[] = [];
  const runs = await runNotebooks({
    env: { MLFLOW_TRACKING_URI: server.url },
    outDir: path.join(dir, "out"),
    concurrency: 2,
    log: (l) => lines.push(l),
  });
  assert.ok(lines.includes(`executed notebooks go to ${path.join(dir, "out")}`), lines.join("\n"));
  assert.is(runs.length, listNotebooks().length);
  for (const r of runs) {
    assert.ok(r.ok, `${r.name}: ${r.error}`);
    assert.is(r.artifact, undefined, "smoke runs write no record, so nothing is logged as the notebook's HTML");
    const nb = JSON.parse(readFileSync(r.output!, "utf8"));
    const outputs = (nb.cells as NotebookCell[]).flatMap((c) => c.outputs ?? []);
    const html = outputs.map((o) => textOf(o.data?.["text/html"] as string | string[] | undefined)).join("\n");
    const markdown = outputs.map((o) => textOf(o.data?.["text/markdown"] as string | string[] | undefined)).join("\n");
    const text = outputs.map((o) => textOf(o.text)).join("\n");
    assert.match(text, /preset: smoke/, `${r.name} ran the smoke preset`);
    assert.ok(
      outputs.some((o) => o.data?.[PLOTLY_MIME] && (o.data["image/png"] || o.data["text/markdown"])),
      `${r.name} shows a figure`,
    );
    assert.match(html, /<table class="marginlab-table">/, `${r.name} shows a table`);
    assert.match(markdown, /MLflow: parent run `[0-9a-f]{32}`/, `${r.name} names its MLflow parent run`);
    assert.not.ok(JSON.stringify(outputs).includes("127.0.0.1:"), `${r.name}: no link to a local server port`);
    assert.not.ok(html.includes("Plotly.register"), `${r.name}: no inlined plotly bundle`);
  }
});

test.run();
