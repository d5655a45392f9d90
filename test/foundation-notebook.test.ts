// The kernel spec is registered and nbconvert runs a TypeScript notebook that imports src/ and displays HTML.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { executeNotebook, textOf } from "../src/notebook/execute";
import { projectRoot, venvTool } from "../src/project";

const jupyter = existsSync(venvTool("jupyter")) ? venvTool("jupyter") : "jupyter";

test("the marginlab kernel spec is registered and names existing node and tslab paths", () => {
  const listing = spawnSync(jupyter, ["kernelspec", "list", "--json"], { encoding: "utf8" });
  assert.is(listing.status, 0, listing.stderr);
  const spec = JSON.parse(listing.stdout).kernelspecs.marginlab;
  assert.ok(spec, "kernel spec 'marginlab' exists");
  assert.is(spec.spec.display_name, "TypeScript (marginlab)");
  assert.is(spec.spec.language, "typescript");
  for (const file of spec.spec.argv.slice(0, 2)) assert.ok(existsSync(file), `${file} exists`);
  assert.is(spec.spec.env.TF_CPP_MIN_LOG_LEVEL, "2");
  assert.is(spec.spec.env.MARGINLAB_ROOT, projectRoot);
});

test("nbconvert executes a TypeScript notebook: native backend, src/ import, HTML display, env parameters", async () => {
  const result = await executeNotebook(path.join(__dirname, "fixtures", "hello.ipynb"), {
    env: { MARGINLAB_FIXTURE_PARAM: "42" },
    cellTimeoutSeconds: 120,
  });
  const code = result.cells.filter((c) => c.cell_type === "code");
  const html = (code[0].outputs ?? []).find((o) => o.data?.["text/html"]);
  assert.ok(html, "the first cell displayed HTML");
  assert.match(
    textOf(html!.data!["text/html"] as string),
    /id="marginlab-fixture">backend=tensorflow device=(CPU|GPU) sum=6</,
  );
  const printed = (code[1].outputs ?? []).map((o) => textOf(o.text)).join("");
  assert.match(printed, new RegExp(`root=${projectRoot} tfLog=2 param=42`));
});

test("a failing cell makes executeNotebook reject with the cell's error text", async () => {
  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(path.join(tmpdir(), "marginlab-nbfail-"));
  const nb = {
    cells: [
      {
        cell_type: "code",
        execution_count: null,
        metadata: {},
        outputs: [],
        source: "throw new Error('fixture failure 17');",
      },
    ],
    metadata: { kernelspec: { name: "marginlab", display_name: "TypeScript (marginlab)", language: "typescript" } },
    nbformat: 4,
    nbformat_minor: 5,
  };
  const file = path.join(dir, "fail.ipynb");
  writeFileSync(file, JSON.stringify(nb));
  try {
    await executeNotebook(file, { cellTimeoutSeconds: 60 });
    assert.unreachable("should have thrown");
  } catch (error) {
    assert.match(String(error), /fixture failure 17/);
  }
});

test.run();
