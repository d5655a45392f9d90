// Shared by the workflow tests: one TypeScript cell run in this checkout's kernel, and a CLI command
// interrupted once its output shows it is under way.
import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type ExecutedNotebook, executeNotebook } from "../src/notebook/execute";
import { tempDir } from "./tracking-helpers";

const root = path.join(__dirname, "..");
const notebookDirs: string[] = [];

/**
 * Writes `<name>.ipynb` with one cell inside this checkout (so it lies in this repository) and runs
 * it with this checkout's kernel spec first on JUPYTER_PATH (the shared venv's spec may name another
 * checkout). tslab compiles relative imports only, from the kernel's folder: the project root.
 */
export async function runCell(
  name: string,
  source: string,
  env: Record<string, string>,
  cellTimeoutSeconds = 120,
): Promise<ExecutedNotebook & { notebook: string }> {
  const dir = path.join(root, "test", `.tmp-${name}-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  notebookDirs.push(dir);
  const notebook = path.join(dir, `${name}.ipynb`);
  writeFileSync(
    notebook,
    JSON.stringify({
      cells: [{ cell_type: "code", execution_count: null, metadata: {}, outputs: [], source }],
      metadata: { kernelspec: { name: "marginlab", display_name: "TypeScript (marginlab)", language: "typescript" } },
      nbformat: 4,
      nbformat_minor: 5,
    }),
  );
  const jupyterPath = tempDir("jupyter");
  const { writeKernelSpec } = await import(path.join(root, "scripts", "setup", "kernel-spec.mjs"));
  writeKernelSpec(jupyterPath);
  const executed = await executeNotebook(notebook, {
    env: { ...env, JUPYTER_PATH: jupyterPath },
    cellTimeoutSeconds,
  });
  return { ...executed, notebook };
}

/** Removes the notebook folders runCell made. */
export function removeNotebookDirs(): void {
  for (const dir of notebookDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Runs `marginlab <args>`, sends SIGINT `delayMs` after stderr matches `ready`; the exit code and stderr. */
export async function interruptCli(
  args: string[],
  ready: RegExp,
  env: Record<string, string>,
  delayMs = 0,
): Promise<{ code: number | null; err: string }> {
  const child = spawn(process.execPath, [path.join(root, "bin", "marginlab.cjs"), ...args], {
    cwd: tempDir("cwd"),
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: "2", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  const result = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const guard = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`"marginlab ${args.join(" ")}" never printed ${ready}: ${err}`));
    }, 180_000);
    child.stderr.on("data", (d) => {
      err += d;
      if (ready.test(err)) {
        clearTimeout(guard);
        resolve();
      }
    });
  });
  await new Promise((resolve) => setTimeout(resolve, delayMs));
  child.kill("SIGINT");
  const code = await result;
  return { code, err };
}
