// Shared by the tracking tests: a real MLflow server in a temp folder, and reading back through
// MLflow's own Python client (.venv/bin/python), so the checks do not trust marginlab's reader.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
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

/** Runs Python source with the project's MLflow; the script prints one JSON document. */
export function python<T = unknown>(source: string, env: Record<string, string>): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(projectRoot, ".venv", "bin", "python"), ["-c", source], {
      env: { ...process.env, MLFLOW_HTTP_REQUEST_MAX_RETRIES: "0", PYTHONWARNINGS: "ignore", ...env },
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
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`python exited ${code}: ${err.slice(-3000)}`));
      const last = out.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`python printed no JSON: ${out.slice(-2000)} ${err.slice(-2000)}`));
      }
    });
  });
}
