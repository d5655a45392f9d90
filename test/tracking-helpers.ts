// Shared by the tracking tests: a real MLflow server in a temp folder, and reading back through
// MLflow's own Python client (.venv/bin/python), so the checks do not trust marginlab's reader.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Test } from "uvu";
import { projectRoot } from "../src/project";
import { type MlflowServer, type MlflowServerOptions, startMlflowServer } from "../src/tracking/server";

const created: string[] = [];

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `marginlab-${prefix}-`));
  created.push(dir);
  return dir;
}

/** Removes every folder tempDir made in this process (call after stopping the servers). */
export function removeTempDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export async function startServer(options: Partial<MlflowServerOptions> = {}): Promise<MlflowServer & { dir: string }> {
  const dir = options.dir ?? tempDir("mlflow");
  const server = await startMlflowServer({ dir, ...options });
  return { ...server, dir };
}

/**
 * A real MLflow server for the tests of one file: started before them (allowed 5 minutes by default: a
 * loaded machine takes more than 90 s), stopped after them, then `cleanUp` and the temp folders removed.
 * The object returned is the server once `before` has run.
 */
export function serverDuring(
  suite: Test,
  options: Partial<MlflowServerOptions> = {},
  cleanUp?: () => void,
): MlflowServer & { dir: string } {
  const server = {} as MlflowServer & { dir: string };
  suite.before(async () => {
    try {
      Object.assign(server, await startServer({ startTimeoutMs: 300_000, ...options }));
    } catch (error) {
      // uvu reports a failing hook only as "0 / N" passed: say why
      console.error(`the MLflow server for these tests did not start: ${(error as Error).message}`);
      throw error;
    }
  });
  suite.after(async () => {
    await server.stop?.();
    cleanUp?.();
    removeTempDirs();
  });
  return server;
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
}

/** Runs a command to its end, collecting stdout and stderr (env is added to this process's). */
export function runProcess(
  command: string,
  args: string[],
  o: { cwd?: string; env?: Record<string, string> } = {},
): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: o.cwd,
      env: { ...process.env, ...o.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.on("close", (code, signal) => resolve({ code, signal, out, err }));
  });
}

/** Runs Python source with the project's MLflow; the script prints one JSON document. */
export async function python<T = unknown>(source: string, env: Record<string, string>): Promise<T> {
  const { code, out, err } = await runProcess(path.join(projectRoot, ".venv", "bin", "python"), ["-c", source], {
    env: { MLFLOW_HTTP_REQUEST_MAX_RETRIES: "0", PYTHONWARNINGS: "ignore", ...env },
  });
  if (code !== 0) throw new Error(`python exited ${code}: ${err.slice(-3000)}`);
  const last = out.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(last) as T;
  } catch {
    throw new Error(`python printed no JSON: ${out.slice(-2000)} ${err.slice(-2000)}`);
  }
}
