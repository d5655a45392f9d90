/** `marginlab train`: trains, checkpoints, resumes and reports verification; bad options are clear errors. */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";

const root = path.join(__dirname, "..");
const tmp = mkdtempSync(path.join(os.tmpdir(), "marginlab-cli-train-"));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [path.join(root, "bin/marginlab.cjs"), "train", "--no-track", ...args], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: "2" },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const base = [
  "--identities",
  "8",
  "--images",
  "6",
  "--size",
  "16",
  "--holdout",
  "4",
  "--backbone",
  "mobilefacenet-small",
];
const ckpt = () => path.join(tmp, "ck");

test("trains with checkpoints, then resumes and reports held-out verification", () => {
  const a = cli([
    ...base,
    "--steps",
    "4",
    "--batch",
    "12",
    "--opt",
    "adamw",
    "--lr",
    "0.003",
    "--emb",
    "16",
    "--checkpoint",
    ckpt(),
    "--every",
    "2",
  ]);
  assert.is(a.code, 0, a.err);
  assert.match(a.out, /trained 4 steps; final loss \d+\.\d+; checkpoint .*step-00000004/);
  assert.match(a.out, /held-out synthetic identities: accuracy \d+\.\d+% \+- \d+\.\d+/);
  assert.match(a.err, /4\/4 loss/);
  const b = cli([
    ...base,
    "--steps",
    "6",
    "--batch",
    "12",
    "--opt",
    "adamw",
    "--lr",
    "0.003",
    "--emb",
    "16",
    "--checkpoint",
    ckpt(),
    "--resume",
    ckpt(),
  ]);
  assert.is(b.code, 0, b.err);
  assert.match(b.out, /trained 6 steps \(resumed from .*step-00000004\)/);
});

test("bad options are clear errors (before data or models are built)", () => {
  const a = cli(["--batch", "0"]);
  assert.is(a.code, 2);
  assert.match(a.err, /batchSize = 0 is not valid/);
  const d = cli(["--bogus", "1"]);
  assert.match(d.err, /unknown option "--bogus"/);
});

test.run();
