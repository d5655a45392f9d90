/**
 * Starts and stops a real `mlflow server` from the project environment, bound to 127.0.0.1 by default:
 * a SQLite backend store and proxied artifacts under one folder, or (for a team) a PostgreSQL store
 * and a shared artifact location with several workers.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { venvTool } from "../project";

export interface MlflowServerOptions {
  /** Folder for the server log (and, by default, mlflow.db and artifacts/). */
  dir: string;
  /** Default: sqlite:///<dir>/mlflow.db. A postgresql://... URI needs psycopg (3) in the venv. */
  backendStoreUri?: string;
  /** Where proxied artifacts go: a folder, or a URI MLflow supports (s3://, gs://, ...). Default <dir>/artifacts. */
  artifactsDestination?: string;
  /** uvicorn worker processes (default 1; SQLite allows one writer, so more only helps PostgreSQL). */
  workers?: number;
  host?: string;
  /** 0 or absent: a free port. */
  port?: number;
  /** Extra arguments, e.g. ["--app-name", "basic-auth"]. */
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** How long to wait for /health. */
  startTimeoutMs?: number;
  /** Let the server outlive this process (the embedded default server); stop() still works. */
  detach?: boolean;
}

export interface MlflowServer {
  url: string;
  port: number;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** The mlflow executable: the project venv's, else the one on PATH. */
export function mlflowExecutable(env: NodeJS.ProcessEnv = process.env): string {
  const local = venvTool("mlflow", env);
  return existsSync(local) ? local : "mlflow";
}

async function waitForHealth(url: string, child: ChildProcess, timeoutMs: number, logFile: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`mlflow server exited with code ${child.exitCode} before answering; see ${logFile}`);
    }
    try {
      const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      if (response.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`mlflow server did not answer ${url}/health within ${timeoutMs} ms; see ${logFile}`);
}

export async function startMlflowServer(options: MlflowServerOptions): Promise<MlflowServer> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port || (await freePort(host));
  mkdirSync(options.dir, { recursive: true });
  const logFile = path.join(options.dir, "server.log");
  const out = openSync(logFile, "a");
  const args = [
    "server",
    "--host",
    host,
    "--port",
    String(port),
    "--backend-store-uri",
    options.backendStoreUri ?? `sqlite:///${path.join(options.dir, "mlflow.db")}`,
    "--artifacts-destination",
    options.artifactsDestination ?? path.join(options.dir, "artifacts"),
    "--workers",
    String(options.workers ?? 1),
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(mlflowExecutable(options.env), args, {
    cwd: options.dir,
    // MLflow 3.x also starts seven huey job consumers (GenAI jobs, trace rollups) that run tracking
    // does not use; on a small machine they cost seconds of start-up and a core. Opt back in with
    // MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true.
    env: { MLFLOW_SERVER_ENABLE_JOB_EXECUTION: "false", ...process.env, ...options.env },
    stdio: ["ignore", out, out],
    // Its own process group, so stop() also ends uvicorn's workers.
    detached: true,
  });
  closeSync(out); // the child has its own copy
  if (options.detach) child.unref();
  const url = `http://${host}:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.pid === undefined) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    // A detached server was unref'd: without this, awaiting its exit would let the event loop drain.
    child.ref();
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    }, 10_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitForHealth(url, child, options.startTimeoutMs ?? 90_000, logFile);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, port, pid: child.pid!, logFile, stop };
}
