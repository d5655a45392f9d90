// Provenance as MLflow's own client records it, for script, CLI and notebook runs; `marginlab train`
// tracked; Ctrl-C during a tracked command. Against a real MLflow server, read back with MLflow's
// Python client; the notebook run goes through the project's headless executor and the real kernel.
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import sharp from "sharp";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { projectRoot } from "../src/project";
import { python, runProcess, serverDuring, tempDir } from "./tracking-helpers";
import { interruptCli, removeNotebookDirs, runCell } from "./workflow-helpers";

const root = path.join(__dirname, "..");
const tsx = path.join(root, "node_modules", "tsx", "dist", "cjs", "index.cjs");
const server = serverDuring(test, {}, removeNotebookDirs);
const journalDir = tempDir("journal");

const gitHead = (dir: string) => execFileSync("git", ["rev-parse", "HEAD"], { cwd: dir, encoding: "utf8" }).trim();
const gitBranch = (dir: string) =>
  execFileSync("git", ["rev-parse", "--abbrev-ref", "HEAD"], { cwd: dir, encoding: "utf8" }).trim();

interface RunView {
  status: string;
  tags: Record<string, string>;
  params: Record<string, string>;
  metrics: Record<string, number>;
  history?: Record<string, Array<[number, number]>>;
}

/** One run as MLflow's client sees it, found by name; `history` keys get their full histories. */
function readRun(name: string, experiment: string, history: string[] = []): Promise<RunView> {
  return python<RunView>(
    `
import json, mlflow
c = mlflow.MlflowClient()
exp = c.get_experiment_by_name(${JSON.stringify(experiment)})
runs = c.search_runs([exp.experiment_id], filter_string="attributes.run_name = '${name}'")
r = runs[0]
print(json.dumps({"status": r.info.status, "tags": r.data.tags, "params": r.data.params, "metrics": r.data.metrics,
  "history": {k: [[m.step, m.value] for m in c.get_metric_history(r.info.run_id, k)] for k in ${JSON.stringify(history)}}}))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
}

function node(args: string[], cwd: string, env: Record<string, string> = {}) {
  return runProcess(process.execPath, args, {
    cwd,
    env: { TF_CPP_MIN_LOG_LEVEL: "2", MLFLOW_TRACKING_URI: server.url, ...env },
  });
}

function runScript(name: string, experiment: string): string {
  return `
const { startRun } = require(${JSON.stringify(path.join(root, "src", "tracking", "run.ts"))});
(async () => {
  const run = await startRun({ experiment: ${JSON.stringify(experiment)}, name: ${JSON.stringify(name)},
    journalDir: ${JSON.stringify(journalDir)}, systemMetrics: false });
  run.logMetric("x", 1);
  const end = await run.end();
  if (end.pending !== 0) throw new Error("not delivered");
})().catch((e) => { console.error(e); process.exit(1); });
`;
}

test("a script outside any repository: git facts of the project root, whatever the working directory", async () => {
  const dir = tempDir("script");
  const script = path.join(dir, "outside.js");
  writeFileSync(script, runScript("outside", "provenance"));
  const cwd = tempDir("cwd");
  const r = await node(["--require", tsx, script], cwd);
  assert.is(r.code, 0, r.err);
  const run = await readRun("outside", "provenance");
  assert.is(run.tags["mlflow.source.type"], "LOCAL");
  assert.is(run.tags["mlflow.source.name"], script);
  assert.is(run.tags["mlflow.source.git.commit"], gitHead(projectRoot));
  assert.is(run.tags["mlflow.source.git.branch"], gitBranch(projectRoot));
  assert.ok(["true", "false"].includes(run.tags["mlflow.source.git.dirty"]), run.tags["mlflow.source.git.dirty"]);
});

test("a script in its own repository: that repository's commit, branch, dirty state and credential-free URL", async () => {
  const repo = tempDir("repo");
  const g = (...args: string[]) => execFileSync("git", args, { cwd: repo, encoding: "utf8" });
  g("init", "-q", "-b", "study");
  g("remote", "add", "origin", "https://alice:tok3n@git.example.org/lab/study.git");
  const script = path.join(repo, "study.js");
  writeFileSync(script, runScript("in-repo", "provenance"));
  g("add", "study.js");
  g("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "study");
  writeFileSync(script, `${runScript("in-repo-dirty", "provenance")}\n// edited\n`);
  const r = await node(["--require", tsx, script], tempDir("cwd"));
  assert.is(r.code, 0, r.err);
  const run = await readRun("in-repo-dirty", "provenance");
  assert.is(run.tags["mlflow.source.git.commit"], gitHead(repo));
  assert.is(run.tags["mlflow.source.git.branch"], "study");
  assert.is(run.tags["mlflow.source.git.dirty"], "true");
  assert.is(run.tags["mlflow.source.git.repoURL"], "https://git.example.org/lab/study.git");
});

const trainArgs = ["--identities", "6", "--images", "4", "--size", "16", "--holdout", "3"];
const small = [...trainArgs, "--backbone", "mobilefacenet-small", "--emb", "8", "--batch", "8", "--opt", "adamw"];

test("marginlab train is tracked: params, metrics per step, final metrics, provenance, system metrics", async () => {
  const r = await node(
    [
      path.join(root, "bin", "marginlab.cjs"),
      "train",
      ...small,
      "--steps",
      "5",
      "--experiment",
      "cli-train",
      "--name",
      "t1",
    ],
    tempDir("cwd"),
    { MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL: "0.2" },
  );
  assert.is(r.code, 0, r.err);
  assert.match(r.err, /MLflow run: http:\/\/127\.0\.0\.1:\d+\/#\/experiments\/\d+\/runs\/[0-9a-f]{32}/);
  const run = await readRun("t1", "cli-train", ["loss"]);
  assert.is(run.status, "FINISHED");
  assert.is(run.tags["mlflow.source.type"], "LOCAL");
  assert.is(
    run.tags["mlflow.source.name"],
    `marginlab train ${small.join(" ")} --steps 5 --experiment cli-train --name t1`,
  );
  assert.is(run.tags["mlflow.source.git.commit"], gitHead(projectRoot));
  assert.is(run.params["model.head"], "arcface");
  assert.is(run.params["optimizer.lr"], "0.001");
  assert.is(run.params["training.steps"], "5");
  // No param shares a name with a metric.
  for (const key of Object.keys(run.params)) assert.is(run.metrics[key], undefined, `param ${key} is also a metric`);
  assert.equal(
    run.history!.loss.map(([step]) => step),
    [1, 2, 3, 4, 5],
  );
  assert.is(run.metrics["final/steps"], 5);
  assert.ok(run.metrics["verify/heldout/accuracy"] >= 0 && run.metrics["verify/heldout/accuracy"] <= 1);
  assert.ok(run.metrics["system/cpu_utilization_percentage"] >= 0, Object.keys(run.metrics).join(", "));
});

test("--no-track logs nothing; option errors exit 2 before anything is built or tracked", async () => {
  const r = await node(
    [
      path.join(root, "bin", "marginlab.cjs"),
      "train",
      ...small,
      "--steps",
      "2",
      "--no-track",
      "--experiment",
      "untracked",
    ],
    tempDir("cwd"),
  );
  assert.is(r.code, 0, r.err);
  assert.not.match(r.err, /MLflow run/);
  const bad = await node([path.join(root, "bin", "marginlab.cjs"), "train", "--skip-bad-images"], tempDir("cwd"));
  assert.is(bad.code, 2);
  assert.match(bad.err, /--skip-bad-images applies to --data folder:<path> only/);
  const seen = await python<{ exists: boolean }>(
    `import json, mlflow\nprint(json.dumps({"exists": mlflow.MlflowClient().get_experiment_by_name("untracked") is not None}))`,
    { MLFLOW_TRACKING_URI: server.url },
  );
  assert.is(seen.exists, false);
});

test("--skip-bad-images: a corrupt JPEG in an image folder is skipped, counted, logged and reported", async () => {
  const data = tempDir("folder");
  for (const id of ["a", "b", "c"]) {
    mkdirSync(path.join(data, id));
    for (let i = 0; i < 3; i++) {
      const shade = 40 * i + (id.charCodeAt(0) - 97) * 60;
      await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: shade, g: 255 - shade, b: 90 } } })
        .jpeg()
        .toFile(path.join(data, id, `${i}.jpg`));
    }
  }
  const corrupt = path.join(data, "b", "9.jpg");
  writeFileSync(corrupt, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 1, 2, 3]));
  const args = [path.join(root, "bin", "marginlab.cjs"), "train", "--data", `folder:${data}`, "--size", "16"].concat([
    "--backbone",
    "mobilefacenet-small",
    "--emb",
    "8",
    "--batch",
    "4",
    "--steps",
    "2",
    "--experiment",
    "folders",
  ]);
  const r = await node([...args, "--name", "skipping", "--skip-bad-images"], tempDir("cwd"));
  assert.is(r.code, 0, r.err);
  assert.match(r.err, /skipped 1 images that do not decode/);
  assert.ok(r.err.includes(corrupt));
  const run = await readRun("skipping", "folders");
  assert.is(run.status, "FINISHED");
  assert.is(run.metrics["data/skipped_images"], 1);
});

test("Ctrl-C during marginlab train: the run ends KILLED, the report says what was saved, exit 130", async () => {
  const { code, err } = await interruptCli(
    ["train", ...small, "--steps", "100000", "--experiment", "cli-train", "--name", "interrupted"].concat([
      "--checkpoint",
      tempDir("ck"),
      "--every",
      "1000",
    ]),
    /backbone .* parameters/, // the run exists and training starts
    { MLFLOW_TRACKING_URI: server.url },
    4000,
  );
  assert.is(code, 130, err);
  assert.match(err, /interrupted \(SIGINT\); ending the runs KILLED/);
  assert.match(err, /run [0-9a-f]{32}: ended KILLED, everything logged is on the MLflow server/);
  assert.match(err, /checkpoints: .* \(continue with --resume /);
  const run = await readRun("interrupted", "cli-train", ["loss"]);
  assert.is(run.status, "KILLED");
  assert.ok(run.history!.loss.length >= 1, "the steps before Ctrl-C were logged");
});

test("Ctrl-C during marginlab ablate: parent and open child end KILLED, finished children stay, exit 130", async () => {
  const { code, err } = await interruptCli(
    ["ablate", "margins", "--preset", "smoke"],
    /\] +\d+% 1\/\d+ /, // the first configuration is done
    { MLFLOW_TRACKING_URI: server.url },
  );
  assert.is(code, 130, err);
  assert.match(err, /marginlab ablate: interrupted \(SIGINT\)/);
  assert.match(err, /ended KILLED/);
  const seen = await python<{ statuses: Record<string, string> }>(
    `
import json, mlflow
c = mlflow.MlflowClient()
exp = c.get_experiment_by_name("marginlab-ablations")
runs = c.search_runs([exp.experiment_id])
print(json.dumps({"statuses": {r.info.run_name: r.info.status for r in runs}}))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
  assert.is(seen.statuses["margins-smoke"], "KILLED", JSON.stringify(seen.statuses));
  assert.not.ok(Object.values(seen.statuses).includes("RUNNING"), JSON.stringify(seen.statuses));
  assert.ok(Object.values(seen.statuses).includes("FINISHED"), "the configuration done before Ctrl-C stays FINISHED");
});

test("a notebook run: NOTEBOOK with the notebook's path (JPY_SESSION_NAME from the executor) and git facts", async () => {
  const source = `import { startRun } from "./src/tracking/run";
const run = await startRun({ experiment: "provenance", name: "from-notebook", journalDir: ${JSON.stringify(journalDir)}, systemMetrics: false });
run.logMetric("x", 1);
const end = await run.end();
console.log("pending=" + end.pending);`;
  const executed = await runCell("provenance", source, { MLFLOW_TRACKING_URI: server.url });
  const printed = (executed.cells[0].outputs ?? [])
    .map((o) => (Array.isArray(o.text) ? o.text.join("") : (o.text ?? "")))
    .join("");
  assert.match(printed, /pending=0/);
  const run = await readRun("from-notebook", "provenance");
  assert.is(run.tags["mlflow.source.type"], "NOTEBOOK");
  assert.is(run.tags["mlflow.source.name"], executed.notebook);
  assert.is(run.tags["mlflow.source.git.commit"], gitHead(root));
  assert.is(run.tags["mlflow.source.git.branch"], gitBranch(root));
});

test.run();
