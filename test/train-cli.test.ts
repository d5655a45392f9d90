/** `marginlab train`: trains, checkpoints, resumes and reports verification; bad options are clear errors. */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
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

test("Partial FC (--sample-rate): a run killed with SIGKILL mid-way resumes to the same weights as an uninterrupted one", async () => {
  const steps = 40;
  const args = [
    ...base,
    "--holdout",
    "0",
    "--identities",
    "24",
    "--sample-rate",
    "0.5",
    "--head",
    "cosface",
    "--batch",
    "12",
    "--emb",
    "16",
    "--schedule",
    "cosine",
    "--warmup",
    "3",
    "--steps",
    String(steps),
    "--every",
    "1",
  ];
  const whole = path.join(tmp, "pfc-whole");
  const a = cli([...args, "--checkpoint", whole]);
  assert.is(a.code, 0, a.err);
  const last = `step-${String(steps).padStart(8, "0")}`;

  const killed = path.join(tmp, "pfc-killed");
  const child = spawn(
    process.execPath,
    [path.join(root, "bin/marginlab.cjs"), "train", "--no-track", ...args, "--checkpoint", killed],
    { cwd: root, env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: "2" }, stdio: "ignore" },
  );
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)));
  // Kill it as soon as the checkpoint of step 5 is on disk: mid-run, possibly mid-write of the next one.
  while (!existsSync(path.join(killed, "step-00000005", "manifest.json")) && child.exitCode === null)
    await new Promise((r) => setTimeout(r, 10));
  child.kill("SIGKILL");
  assert.is(await exited, "SIGKILL", "the run was killed before it finished");
  assert.not.ok(existsSync(path.join(killed, last)), "the killed run did not reach its last step");

  const b = cli([...args, "--checkpoint", killed, "--resume", path.join(killed, "latest")]);
  assert.is(b.code, 0, b.err);
  const from = Number(/resumed from \S*step-(\d+)/.exec(b.out)?.[1]);
  assert.ok(from >= 5 && from < steps, `resumed from step ${from}`);
  const tensors = (dir: string) => readFileSync(path.join(dir, last, "tensors.bin"));
  assert.ok(
    tensors(whole).equals(tensors(killed)),
    "backbone, W, momentum and the sampling state at the last step are bit-identical",
  );
});

test("bad options are clear errors (before data or models are built)", () => {
  const a = cli(["--batch", "0"]);
  assert.is(a.code, 2);
  assert.match(a.err, /batchSize = 0 is not valid/);
  const d = cli(["--bogus", "1"]);
  assert.match(d.err, /unknown option "--bogus"/);
});

test.run();
