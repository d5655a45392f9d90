/**
 * The embedded default: with no MLFLOW_TRACKING_URI, marginlab runs `mlflow server` from the project
 * environment itself (SQLite store and artifacts under .marginlab/mlflow/, 127.0.0.1), records it in
 * .marginlab/mlflow/server.json ({url, pid, ...}, read by `marginlab doctor` too) and reuses it from
 * every later process. It is detached and never stopped implicitly: only `marginlab ui --stop` does.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { projectRoot } from "../project";
import { freePort, startMlflowServer } from "./server";

export interface EmbeddedServerInfo {
  url: string;
  pid: number;
  port: number;
  dir: string;
  startedAt: string;
}

export function embeddedDir(root: string = projectRoot): string {
  return path.join(root, ".marginlab", "mlflow");
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function healthy(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
    return response.ok;
  } catch {
    return false;
  }
}

/** The recorded server, if its process is alive and answers /health. */
export async function runningEmbeddedServer(dir: string = embeddedDir()): Promise<EmbeddedServerInfo | undefined> {
  const stateFile = path.join(dir, "server.json");
  if (!existsSync(stateFile)) return undefined;
  let info: EmbeddedServerInfo;
  try {
    info = JSON.parse(readFileSync(stateFile, "utf8"));
  } catch {
    return undefined;
  }
  if (!info.pid || !alive(info.pid) || !(await healthy(info.url))) return undefined;
  return info;
}

/** An exclusive lock file (O_EXCL) so two processes never start two servers; a stale one is broken. */
async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(dir, "server.lock");
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      const fd = openSync(lock, "wx");
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch {
      let stale = false;
      try {
        const pid = Number(readFileSync(lock, "utf8"));
        stale = !alive(pid) || Date.now() - statSync(lock).mtimeMs > 120_000;
      } catch {
        stale = true;
      }
      if (stale) {
        try {
          unlinkSync(lock);
        } catch {
          // someone else broke it
        }
        continue;
      }
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${lock}; remove it if no marginlab process is starting a server`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await fn();
  } finally {
    try {
      unlinkSync(lock);
    } catch {
      // already gone
    }
  }
}

/** The embedded server's URL, starting it when none runs (reusing the last port when it is free). */
export async function ensureEmbeddedServer(
  options: { dir?: string; startTimeoutMs?: number } = {},
): Promise<EmbeddedServerInfo & { started: boolean }> {
  const dir = options.dir ?? embeddedDir();
  mkdirSync(dir, { recursive: true });
  const running = await runningEmbeddedServer(dir);
  if (running) return { ...running, started: false };
  return withLock(dir, async () => {
    const again = await runningEmbeddedServer(dir);
    if (again) return { ...again, started: false };
    let port = 0;
    try {
      const previous = JSON.parse(readFileSync(path.join(dir, "server.json"), "utf8")) as EmbeddedServerInfo;
      if (previous.port && (await portFree(previous.port))) port = previous.port;
    } catch {
      // first start
    }
    const server = await startMlflowServer({
      dir,
      port: port || (await freePort()),
      detach: true,
      startTimeoutMs: options.startTimeoutMs,
    });
    const info: EmbeddedServerInfo = {
      url: server.url,
      pid: server.pid,
      port: server.port,
      dir,
      startedAt: new Date().toISOString(),
    };
    writeFileSync(path.join(dir, "server.json"), `${JSON.stringify(info, null, 2)}\n`);
    return { ...info, started: true };
  });
}

async function portFree(port: number): Promise<boolean> {
  const { createServer } = await import("node:net");
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/** Stops the embedded server (explicitly asked for only); false when none was running. */
export async function stopEmbeddedServer(dir: string = embeddedDir()): Promise<boolean> {
  const info = await runningEmbeddedServer(dir);
  if (!info) return false;
  try {
    process.kill(-info.pid, "SIGTERM");
  } catch {
    process.kill(info.pid, "SIGTERM");
  }
  const deadline = Date.now() + 15_000;
  while (alive(info.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  if (alive(info.pid)) process.kill(-info.pid, "SIGKILL");
  return true;
}
