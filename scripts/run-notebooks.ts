/**
 * `npm run notebooks`: executes every notebook in notebooks/ headlessly (nbconvert, marginlab kernel)
 * with MARGINLAB_PRESET=smoke, into a temporary folder (the committed notebooks keep their full-run
 * outputs), and fails on any cell error.
 *
 *   node --require tsx/cjs scripts/run-notebooks.ts [--preset smoke|full] [--temp-server] [--jobs N] [name ...]
 *
 * MLflow: MLFLOW_TRACKING_URI when set; with --temp-server a throwaway server in a temp folder
 * (stopped at the end); else the project's embedded server (`marginlab ui` shows it).
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { executeNotebook } from "../src/notebook/execute";
import { projectRoot } from "../src/project";
import { type MlflowServer, startMlflowServer } from "../src/tracking/server";

export interface NotebookRun {
  name: string;
  ok: boolean;
  seconds: number;
  error?: string;
  output?: string;
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
  const outDir = options.outDir ?? mkdtempSync(path.join(tmpdir(), "marginlab-notebooks-"));
  const runs: NotebookRun[] = new Array(chosen.length);
  const runOne = async (k: number) => {
    const file = chosen[k];
    const name = path.basename(file, ".ipynb");
    const started = Date.now();
    log(`running ${name} ...`);
    try {
      const result = await executeNotebook(file, {
        outputPath: path.join(outDir, `${name}.ipynb`),
        env: { ...options.env, MARGINLAB_PRESET: options.preset ?? "smoke" },
        cellTimeoutSeconds: 1800,
      });
      runs[k] = { name, ok: true, seconds: result.seconds, output: result.path };
      log(`ok   ${name} (${result.seconds.toFixed(1)} s)`);
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
  let concurrency = 1;
  const only: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--preset") preset = argv[++i] ?? "";
    else if (a === "--temp-server") tempServer = true;
    else if (a === "--jobs" || a === "-j") concurrency = Number(argv[++i]);
    else if (a === "--help" || a === "-h") {
      console.log("usage: run-notebooks.ts [--preset smoke|full] [--temp-server] [--jobs N] [notebook-name ...]");
      return 0;
    } else if (a.startsWith("-")) {
      console.error(`run-notebooks: unknown option "${a}" (allowed: --preset, --temp-server, --jobs)`);
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
    const runs = await runNotebooks({ preset, only, env, concurrency, log: (l) => console.log(l) });
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
