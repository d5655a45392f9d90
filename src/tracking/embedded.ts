/**
 * The embedded default: with no MLFLOW_TRACKING_URI, marginlab runs `mlflow server` from the project
 * environment itself (SQLite store and artifacts under .marginlab/mlflow/, 127.0.0.1), records it in
 * .marginlab/mlflow/server.json ({url, pid, ...}, read by `marginlab doctor` too) and reuses it from
 * every later process. It is detached and never stopped implicitly: only `marginlab ui --stop` does.
 *
 * The team server (`marginlab ui --postgres`) is the same mechanism in .marginlab/mlflow-team/ with a
 * PostgreSQL backend store (by default a project-local cluster that scripts/cluster/postgres.sh runs
 * in .marginlab/postgres/), a shared artifact location and several workers: many concurrent writers,
 * e.g. the tasks of a Slurm array, without SQLite's "database is locked".
 */
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { projectRoot, venvTool } from "../project";
import { freePort, type MlflowServerOptions, startMlflowServer } from "./server";

export interface EmbeddedServerInfo {
  url: string;
  pid: number;
  port: number;
  dir: string;
  startedAt: string;
  /** The backend store URI (without any password); absent: SQLite in dir. */
  backendStore?: string;
  /** The artifact destination; absent: dir/artifacts. */
  artifacts?: string;
  /** The project-local PostgreSQL folder this server's store lives in (stopped with it). */
  postgresDir?: string;
}

/** How the server is started; the defaults are the embedded SQLite server's. */
export type ServerStoreOptions = Pick<
  MlflowServerOptions,
  "backendStoreUri" | "artifactsDestination" | "workers" | "host" | "extraArgs" | "env"
>;

/** What is about to happen when a marginlab server is started (it takes seconds; the CLI says so). */
export interface ServerStartEvent {
  dir: string;
  port: number;
  message: string;
}

const startListeners = new Set<(event: ServerStartEvent) => void>();

/** Calls `listener` each time this process starts an embedded or team server. Returns an unsubscribe. */
export function onServerStart(listener: (event: ServerStartEvent) => void): () => void {
  startListeners.add(listener);
  return () => startListeners.delete(listener);
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

function recordedInfo(dir: string): EmbeddedServerInfo | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir, "server.json"), "utf8")) as EmbeddedServerInfo;
  } catch {
    return undefined;
  }
}

/** The recorded server, if its process is alive and answers /health. */
export async function runningEmbeddedServer(dir: string = embeddedDir()): Promise<EmbeddedServerInfo | undefined> {
  const info = recordedInfo(dir);
  if (!info?.pid || !alive(info.pid) || !(await healthy(info.url))) return undefined;
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
  options: {
    dir?: string;
    startTimeoutMs?: number;
    /** 0 or absent: the last port when it is free, else a free one. */
    port?: number;
    server?: ServerStoreOptions;
    /** Recorded in server.json (see EmbeddedServerInfo.postgresDir). */
    postgresDir?: string;
  } = {},
): Promise<EmbeddedServerInfo & { started: boolean }> {
  const dir = options.dir ?? embeddedDir();
  mkdirSync(dir, { recursive: true });
  const running = await runningEmbeddedServer(dir);
  if (running) return { ...running, started: false };
  return withLock(dir, async () => {
    const again = await runningEmbeddedServer(dir);
    if (again) return { ...again, started: false };
    let port = options.port ?? 0;
    const previous = recordedInfo(dir);
    if (!port && previous?.port && (await portFree(previous.port))) port = previous.port;
    const store = options.server ?? {};
    port ||= await freePort();
    const event = {
      dir,
      port,
      message: `starting the MLflow server on port ${port} (data in ${path.relative(process.cwd(), dir) || dir}; about 6 s) ...`,
    };
    for (const listener of startListeners) listener(event);
    const server = await startMlflowServer({
      ...store,
      dir,
      port,
      detach: true,
      startTimeoutMs: options.startTimeoutMs,
    });
    const info: EmbeddedServerInfo = {
      url: server.url,
      pid: server.pid,
      port: server.port,
      dir,
      startedAt: new Date().toISOString(),
      ...(store.backendStoreUri ? { backendStore: withoutPassword(store.backendStoreUri) } : {}),
      ...(store.artifactsDestination ? { artifacts: store.artifactsDestination } : {}),
      ...(options.postgresDir ? { postgresDir: options.postgresDir } : {}),
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

// --- the team server: PostgreSQL backend store, shared artifacts ---

export function teamServerDir(root: string = projectRoot): string {
  return path.join(root, ".marginlab", "mlflow-team");
}

export function projectPostgresDir(root: string = projectRoot): string {
  return path.join(root, ".marginlab", "postgres");
}

export interface TeamServerOptions {
  /** A postgresql://user@host:port/db URI; absent: the project-local cluster (started when needed). */
  backendStoreUri?: string;
  /** Artifact destination: a folder every host of the team sees, or s3://..., gs://...; default <dir>/artifacts. */
  artifacts?: string;
  host?: string;
  port?: number;
  /** uvicorn workers (default 4). */
  workers?: number;
  /** More `mlflow server` arguments, e.g. ["--allowed-hosts", "mlflow.lab:5000"]. */
  extraArgs?: string[];
  /** Default .marginlab/mlflow-team. */
  dir?: string;
  /** The project-local PostgreSQL cluster's folder; default .marginlab/postgres. */
  postgresDir?: string;
  startTimeoutMs?: number;
}

function withoutPassword(uri: string): string {
  return uri.replace(/^([a-z0-9+]+:\/\/[^:/@]+):[^@]*@/i, "$1:***@");
}

function postgresScript(command: "start" | "stop", dir: string): string {
  const script = path.join(projectRoot, "scripts", "cluster", "postgres.sh");
  const result = spawnSync("bash", [script, command], {
    env: { ...process.env, MARGINLAB_PG_DIR: dir },
    encoding: "utf8",
    timeout: 15 * 60_000, // a first start may apt-get install postgresql
  });
  if (result.status !== 0) {
    throw new Error(
      `${script} ${command} failed (exit ${result.status}): ${(result.stderr ?? "").trim().slice(-2000)}`,
    );
  }
  return result.stdout.trim();
}

/** Starts the project-local PostgreSQL cluster (initialising it the first time); its store URI and password file. */
export function startProjectPostgres(dir: string = projectPostgresDir()): { uri: string; passFile: string } {
  const uri = postgresScript("start", dir).split("\n").pop() ?? "";
  return { uri, passFile: path.join(dir, "pgpass") };
}

export function stopProjectPostgres(dir: string = projectPostgresDir()): void {
  postgresScript("stop", dir);
}

/** MLflow's SQLAlchemy 2.1 store opens postgresql:// through psycopg 3; say how to get it instead of a bare traceback. */
function checkPsycopg(): void {
  const python = venvTool("python");
  const probe = spawnSync(existsSync(python) ? python : "python3", ["-c", "import psycopg"], { encoding: "utf8" });
  if (probe.status !== 0) {
    throw new Error(
      "MLflow's PostgreSQL store needs psycopg (3), which the project's Python environment lacks: `npm run setup` installs requirements.txt (psycopg[binary]), or run `.venv/bin/pip install 'psycopg[binary]'`",
    );
  }
}

/** The team server's URL, starting it (and the project-local PostgreSQL unless a URI is given) when none runs. */
export async function ensureTeamServer(
  options: TeamServerOptions = {},
): Promise<EmbeddedServerInfo & { started: boolean }> {
  const dir = options.dir ?? teamServerDir();
  const running = await runningEmbeddedServer(dir);
  if (running) return { ...running, started: false };
  if (options.backendStoreUri && !/^postgres(ql)?(\+\w+)?:\/\//.test(options.backendStoreUri)) {
    throw new Error(
      `backend store "${withoutPassword(options.backendStoreUri)}" is not a PostgreSQL URI; use postgresql://user@host:port/database`,
    );
  }
  checkPsycopg();
  const postgresDir = options.backendStoreUri ? undefined : (options.postgresDir ?? projectPostgresDir());
  const local = postgresDir ? startProjectPostgres(postgresDir) : undefined;
  try {
    return await ensureEmbeddedServer({
      dir,
      port: options.port,
      // Several workers each import MLflow, and a first start creates the tables: slower than SQLite's one.
      startTimeoutMs: options.startTimeoutMs ?? 300_000,
      postgresDir,
      server: {
        backendStoreUri: local?.uri ?? options.backendStoreUri,
        artifactsDestination: options.artifacts,
        workers: options.workers ?? 4,
        host: options.host,
        extraArgs: options.extraArgs,
        // The local cluster's password stays in its libpq password file, out of every command line.
        env: local ? { PGPASSFILE: local.passFile } : undefined,
      },
    });
  } catch (error) {
    // No server to use it: do not leave the PostgreSQL started for it running.
    if (postgresDir) stopProjectPostgres(postgresDir);
    throw error;
  }
}

/**
 * Stops the team server and then the project-local PostgreSQL it used (the one server.json names;
 * without a record, `postgresDir` or .marginlab/postgres); false when no MLflow server was running.
 */
export async function stopTeamServer(options: { dir?: string; postgresDir?: string } = {}): Promise<boolean> {
  const dir = options.dir ?? teamServerDir();
  const recorded = recordedInfo(dir);
  // A recorded server says which cluster it used (none for --postgres=URI); else the given or default one.
  const postgresDir = recorded ? recorded.postgresDir : (options.postgresDir ?? projectPostgresDir());
  const stopped = await stopEmbeddedServer(dir);
  if (postgresDir && existsSync(path.join(postgresDir, "data"))) stopProjectPostgres(postgresDir);
  return stopped;
}
