/**
 * `npm run notebooks`: executes every notebook in notebooks/ headlessly (nbconvert, marginlab kernel)
 * with MARGINLAB_PRESET=smoke, into a temporary folder (printed; the committed notebooks keep their
 * full-run outputs), and fails on any cell error.
 *
 *   node --require tsx/cjs scripts/run-notebooks.ts [--preset smoke|full] [--in-place] [--temp-server] [--jobs N] [name ...]
 *
 * With `--preset full` each notebook shows its ablation's record (results/ablations/<name>-full.json)
 * instead of training, so this takes about a minute a notebook; `--in-place` (full only) writes the
 * executed notebooks back into notebooks/, so the committed notebooks carry the full-run outputs. A
 * notebook whose record names a parent run is also exported to HTML and logged to that run as
 * `notebook/<name>.html` when the run is on the tracking server in use; otherwise it says why not.
 *
 * MLflow: MLFLOW_TRACKING_URI when set; with --temp-server a throwaway server in a temp folder
 * (stopped at the end); else the project's embedded server (`marginlab ui` shows it).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { decodeJson } from "../experiments/json";
import { recordPath } from "../experiments/record";
import { executeNotebook, exportNotebookHtml } from "../src/notebook/execute";
import { projectRoot } from "../src/project";
import { trackingClient } from "../src/tracking/connect";
import { onServerStart } from "../src/tracking/embedded";
import { type MlflowServer, startMlflowServer } from "../src/tracking/server";

export interface NotebookRun {
  name: string;
  ok: boolean;
  seconds: number;
  error?: string;
  output?: string;
  /** The HTML export logged to the record's parent run, or why there is none. */
  artifact?: { runId: string; path: string } | { skipped: string };
}

/** Where the executed notebook's HTML goes in its parent run. */
export function notebookArtifactPath(name: string): string {
  return `notebook/${name}.html`;
}

/**
 * Exports an executed notebook to HTML (nbconvert) and logs it to the parent run its record names,
 * when that run is on the tracking server in use (`trackingUri`, else MLFLOW_TRACKING_URI in `env`,
 * else the embedded server); `{skipped}` says why not.
 */
export async function logNotebookToParentRun(
  executed: string,
  recordFile: string,
  options: { trackingUri?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ runId: string; path: string } | { skipped: string }> {
  if (!existsSync(recordFile)) return { skipped: `no record ${path.relative(projectRoot, recordFile)}` };
  const { parentRunId } = decodeJson(readFileSync(recordFile, "utf8")) as { parentRunId?: string };
  if (!parentRunId) return { skipped: `${path.basename(recordFile)} names no parent run (it ran untracked)` };
  const client = await trackingClient({ trackingUri: options.trackingUri, env: options.env ?? process.env });
  try {
    let artifactUri: string;
    try {
      artifactUri = (await client.getRun(parentRunId)).info.artifact_uri;
    } catch (error) {
      return {
        skipped: `parent run ${parentRunId} is not on ${client.trackingUri} (${(error as Error).message.split("\n")[0]})`,
      };
    }
    const name = path.basename(executed, ".ipynb");
    const dir = mkdtempSync(path.join(tmpdir(), "marginlab-nbhtml-"));
    try {
      const html = await exportNotebookHtml(executed, path.join(dir, `${name}.html`));
      const target = notebookArtifactPath(name);
      await client.uploadArtifact(artifactUri, target, readFileSync(html), "text/html");
      return { runId: parentRunId, path: target };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    client.close();
  }
}

export function listNotebooks(dir = path.join(projectRoot, "notebooks")): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".ipynb") && !f.startsWith("."))
    .sort()
    .map((f) => path.join(dir, f));
}

export async function runNotebooks(
  options: {
    preset?: string;
    only?: string[];
    env?: NodeJS.ProcessEnv;
    outDir?: string;
    /** Write each executed notebook over its source in notebooks/ (full preset only). */
    inPlace?: boolean;
    /** Log each executed notebook's HTML to its record's parent run (default: for every preset but smoke). */
    logToParentRun?: boolean;
    log?: (line: string) => void;
    /** Notebooks executed at once (default 1). */
    concurrency?: number;
  } = {},
): Promise<NotebookRun[]> {
  const log = options.log ?? (() => undefined);
  const all = listNotebooks();
  const names = all.map((f) => path.basename(f, ".ipynb"));
  for (const n of options.only ?? []) {
    if (!names.includes(n)) throw new Error(`notebook "${n}" is not in notebooks/: allowed are ${names.join(", ")}.`);
  }
  const chosen =
    options.only && options.only.length > 0
      ? all.filter((f) => options.only!.includes(path.basename(f, ".ipynb")))
      : all;
  const preset = options.preset ?? "smoke";
  if (options.inPlace && preset !== "full")
    throw new Error(
      `--in-place writes into notebooks/, which carry full-run outputs: use it with --preset full, not ${preset}.`,
    );
  const outDir = options.inPlace
    ? undefined
    : (options.outDir ?? mkdtempSync(path.join(tmpdir(), "marginlab-notebooks-")));
  log(`executed notebooks go to ${outDir ?? "notebooks/ (in place)"}`);
  const runs: NotebookRun[] = new Array(chosen.length);
  const runOne = async (k: number) => {
    const file = chosen[k];
    const name = path.basename(file, ".ipynb");
    const started = Date.now();
    log(`running ${name} ...`);
    try {
      const result = await executeNotebook(file, {
        outputPath: outDir ? path.join(outDir, `${name}.ipynb`) : file,
        env: { ...options.env, MARGINLAB_PRESET: preset },
        cellTimeoutSeconds: 1800,
      });
      runs[k] = { name, ok: true, seconds: result.seconds, output: result.path };
      log(`ok   ${name} (${result.seconds.toFixed(1)} s): ${result.path}`);
      if (options.logToParentRun ?? preset !== "smoke") {
        const artifact = await logNotebookToParentRun(result.path, recordPath(name, preset), {
          env: { ...process.env, ...options.env },
        }).catch((error: Error) => ({ skipped: error.message }));
        runs[k].artifact = artifact;
        log(
          "skipped" in artifact
            ? `     ${name}: HTML not logged to MLflow: ${artifact.skipped}`
            : `     ${name}: HTML logged to parent run ${artifact.runId} as ${artifact.path}`,
        );
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      runs[k] = { name, ok: false, seconds: (Date.now() - started) / 1000, error: message };
      log(`FAIL ${name}\n${message}`);
    }
  };
  // a small pool: kernels spend most of their start-up compiling TypeScript, one core each
  let next = 0;
  const worker = async () => {
    while (next < chosen.length) await runOne(next++);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency ?? 1, chosen.length)) }, worker));
  return runs;
}

async function main(argv: string[]): Promise<number> {
  let preset = "smoke";
  let tempServer = false;
  let inPlace = false;
  let concurrency = 1;
  const only: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--preset") preset = argv[++i] ?? "";
    else if (a === "--temp-server") tempServer = true;
    else if (a === "--in-place") inPlace = true;
    else if (a === "--jobs" || a === "-j") concurrency = Number(argv[++i]);
    else if (a === "--help" || a === "-h") {
      console.log(
        "usage: run-notebooks.ts [--preset smoke|full] [--in-place] [--temp-server] [--jobs N] [notebook-name ...]",
      );
      return 0;
    } else if (a.startsWith("-")) {
      console.error(`run-notebooks: unknown option "${a}" (allowed: --preset, --in-place, --temp-server, --jobs)`);
      return 2;
    } else only.push(a);
  }
  if (!(Number.isInteger(concurrency) && concurrency >= 1)) {
    console.error(`run-notebooks: --jobs = ${concurrency} is not valid: expected a positive integer.`);
    return 2;
  }
  if (preset !== "smoke" && preset !== "full") {
    console.error(`run-notebooks: --preset = "${preset}" is not valid: allowed are smoke, full.`);
    return 2;
  }
  if (inPlace && preset !== "full") {
    console.error(`run-notebooks: --in-place needs --preset full (the committed notebooks carry full-run outputs).`);
    return 2;
  }
  onServerStart((event) => console.error(`run-notebooks: ${event.message}`));
  let server: MlflowServer | undefined;
  let serverDir: string | undefined;
  const env: NodeJS.ProcessEnv = {};
  if (tempServer && !process.env.MLFLOW_TRACKING_URI) {
    serverDir = mkdtempSync(path.join(tmpdir(), "marginlab-notebooks-mlflow-"));
    server = await startMlflowServer({ dir: serverDir });
    env.MLFLOW_TRACKING_URI = server.url;
    console.log(`temporary MLflow server: ${server.url}`);
  }
  try {
    const runs = await runNotebooks({ preset, only, env, concurrency, inPlace, log: (l) => console.log(l) });
    const failed = runs.filter((r) => !r.ok);
    console.log(
      `\n${runs.length - failed.length} of ${runs.length} notebooks ran without a cell error (preset ${preset}).`,
    );
    return failed.length === 0 && runs.length > 0 ? 0 : 1;
  } finally {
    await server?.stop();
    if (serverDir) rmSync(serverDir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(`run-notebooks: ${error instanceof Error ? error.message : String(error)}`);
      process.exitCode = 1;
    },
  );
}
