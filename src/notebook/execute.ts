/**
 * Executes a notebook headlessly with nbconvert on the project's kernel. tslab reports a failing
 * cell only as text on that cell's stderr (no traceback), so on failure this digs that text out.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { venvTool } from "../project";

export const KERNEL_NAME = "marginlab";

export interface NotebookOutput {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
}

export interface NotebookCell {
  cell_type: string;
  source: string | string[];
  outputs?: NotebookOutput[];
  metadata?: Record<string, unknown>;
}

export interface ExecutedNotebook {
  path: string;
  cells: NotebookCell[];
  seconds: number;
}

export interface ExecuteOptions {
  /** Where the executed copy goes; defaults to a temp folder. Pass the source path to execute in place. */
  outputPath?: string;
  env?: NodeJS.ProcessEnv;
  /** Per-cell timeout in seconds (nbconvert's ExecutePreprocessor.timeout). */
  cellTimeoutSeconds?: number;
  kernelName?: string;
}

export class NotebookError extends Error {
  override name = "NotebookError";
}

export function textOf(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join("") : (value ?? "");
}

function jupyterExecutable(env: NodeJS.ProcessEnv): string {
  const local = venvTool("jupyter", env);
  return existsSync(local) ? local : "jupyter";
}

/** Runs `jupyter <args>` from `cwd`; the exit code and the combined output. */
function runJupyter(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; log: string }> {
  return new Promise((resolve) => {
    const child = spawn(jupyterExecutable(env), args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    child.stdout.on("data", (chunk) => {
      log += chunk;
    });
    child.stderr.on("data", (chunk) => {
      log += chunk;
    });
    child.on("error", (error) => resolve({ code: -1, log: `${log}\n${error.message}` }));
    child.on("close", (code) => resolve({ code: code ?? -1, log }));
  });
}

/** Exports an (executed) notebook to a standalone HTML page with nbconvert; returns its path. */
export async function exportNotebookHtml(notebookPath: string, outputPath: string): Promise<string> {
  const source = path.resolve(notebookPath);
  const target = path.resolve(outputPath);
  const args = [
    "nbconvert",
    "--to",
    "html",
    "--output-dir",
    path.dirname(target),
    "--output",
    path.basename(target),
    source,
  ];
  const { code, log } = await runJupyter(args, path.dirname(source), process.env);
  if (code !== 0 || !existsSync(target))
    throw new NotebookError(
      `nbconvert --to html ${path.basename(source)} failed:\n${log.trim().split("\n").slice(-20).join("\n")}`,
    );
  return target;
}

export async function executeNotebook(notebookPath: string, options: ExecuteOptions = {}): Promise<ExecutedNotebook> {
  const source = path.resolve(notebookPath);
  if (!existsSync(source)) throw new NotebookError(`notebook not found: ${source}`);
  const outputPath = path.resolve(
    options.outputPath ?? path.join(mkdtempSync(path.join(tmpdir(), "marginlab-nb-")), path.basename(source)),
  );
  // As Jupyter Server does for each kernel: the session's notebook, which runs record as their source.
  const env = { ...process.env, ...options.env, JPY_SESSION_NAME: source };
  const args = [
    "nbconvert",
    "--to",
    "notebook",
    "--execute",
    `--ExecutePreprocessor.kernel_name=${options.kernelName ?? KERNEL_NAME}`,
    `--ExecutePreprocessor.timeout=${options.cellTimeoutSeconds ?? 1800}`,
    "--output-dir",
    path.dirname(outputPath),
    "--output",
    path.basename(outputPath),
    source,
  ];
  const started = Date.now();
  // The kernel starts in the notebook's folder, so its relative imports of src/ resolve.
  const { code, log } = await runJupyter(args, path.dirname(source), env);
  const seconds = (Date.now() - started) / 1000;
  if (code !== 0) {
    // nbclient's message holds the failing cell's source and its stderr (tslab's only error trace).
    const at = log.indexOf("An error occurred while executing");
    const report = (at >= 0 ? log.slice(at) : log).trim().split("\n").slice(0, 40).join("\n");
    throw new NotebookError(`${path.basename(source)} failed after ${seconds.toFixed(1)} s:\n${report}`);
  }
  const nb = JSON.parse(readFileSync(outputPath, "utf8")) as { cells: NotebookCell[] };
  return { path: outputPath, cells: nb.cells, seconds };
}
