/**
 * The README's and docs' code blocks, as written. Every ```ts block runs as an ES module script with tsx
 * (top-level await allowed, imports resolved from the project root, as `npx tsx example.mts` does), so an
 * example that stops compiling or throws fails here. ```sh blocks are read line by line: each
 * `npx marginlab <command>` must name a command the CLI has, and each `npm run <script>` a script of
 * package.json (running them all would mean installing and training inside the test suite).
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { serverDuring } from "./tracking-helpers";

const root = path.join(__dirname, "..");
const documents = ["README.md", ...readdirSync(path.join(root, "docs")).map((f) => path.join("docs", f))].filter((f) =>
  f.endsWith(".md"),
);

interface Block {
  file: string;
  line: number;
  lang: string;
  code: string;
}

function blocks(file: string): Block[] {
  const lines = readFileSync(path.join(root, file), "utf8").split("\n");
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w+)?\s*$/.exec(lines[i]);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    out.push({ file, line: start + 1, lang: open[1] ?? "", code: body.join("\n") });
  }
  return out;
}

const all = documents.flatMap(blocks);
// Examples that track log to a real MLflow server of their own (not the user's embedded one).
const server = serverDuring(test);
const cliSource = readFileSync(path.join(root, "src", "cli.ts"), "utf8");
const commands = new Set([...cliSource.matchAll(/^\s+(\w+): \(\) => import\(/gm)].map((m) => m[1]));
const scripts = new Set(Object.keys(JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")).scripts));

test("the documents have code blocks to check", () => {
  assert.ok(all.filter((b) => b.lang === "ts").length >= 3, "ts blocks found");
  assert.ok(commands.has("ablate") && commands.has("train"), "CLI commands read from src/cli.ts");
});

for (const block of all.filter((b) => b.lang === "sh" || b.lang === "bash")) {
  test(`${block.file}:${block.line} (${block.lang}) names commands that exist`, () => {
    for (const raw of block.code.split("\n")) {
      const line = raw.replace(/#.*$/, "").trim();
      for (const m of line.matchAll(/npx marginlab ([\w-]+)/g)) {
        const name = m[1];
        assert.ok(
          commands.has(name) || name === "--help",
          `${block.file}:${block.line}: "npx marginlab ${name}" is not a command (have: ${[...commands].join(", ")})`,
        );
      }
      for (const m of line.matchAll(/npm run ([\w:-]+)/g))
        assert.ok(scripts.has(m[1]), `${block.file}:${block.line}: "npm run ${m[1]}" is not a package.json script`);
    }
  });
}

for (const [k, block] of all.filter((b) => b.lang === "ts").entries()) {
  test(`${block.file}:${block.line} (ts) runs as written`, () => {
    assert.ok(server.url, "the MLflow server for the examples started");
    const file = path.join(root, `.docs-example-${process.pid}-${k}.mts`);
    writeFileSync(file, block.code);
    try {
      const r = spawnSync(process.execPath, [path.join(root, "node_modules", "tsx", "dist", "cli.mjs"), file], {
        cwd: root,
        encoding: "utf8",
        timeout: 240_000,
        env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: "2", MLFLOW_TRACKING_URI: server.url },
      });
      assert.is(
        r.status,
        0,
        `${block.file}:${block.line} exited ${r.status}${r.signal ? ` (${r.signal})` : ""}:\n${(r.stderr || r.stdout).slice(-3000)}`,
      );
    } finally {
      rmSync(file, { force: true });
    }
  });
}

test.run();
