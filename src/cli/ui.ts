/**
 * `marginlab ui`: the MLflow UI's URL, starting the embedded server when needed (--stop stops it).
 * `marginlab ui --postgres`: the team server instead (PostgreSQL store, shared artifacts; docs/cluster.md).
 */
import { trackingConfigFromEnv } from "../tracking/config";
import {
  type EmbeddedServerInfo,
  embeddedDir,
  ensureEmbeddedServer,
  ensureTeamServer,
  stopEmbeddedServer,
  stopTeamServer,
  type TeamServerOptions,
  teamServerDir,
} from "../tracking/embedded";

export const summary =
  "start the project's MLflow server if needed and print its URL (--postgres: the team server; --stop: stop it)";

const usage = `usage: marginlab ui [--stop]
       marginlab ui --postgres[=URI] [--artifacts DEST] [--host HOST] [--port N] [--workers N] [--stop] [-- MLFLOW_SERVER_ARGS...]

${summary}

  --postgres         the team server: MLflow with a PostgreSQL backend store, several workers.
                     Without =URI it runs a project-local PostgreSQL (scripts/cluster/postgres.sh,
                     data in .marginlab/postgres/, installed with apt-get when missing).
  --postgres=URI     use this database instead, e.g. postgresql://mlflow@db.lab:5432/mlflow
                     (the password from PGPASSFILE or ~/.pgpass, not the command line)
  --artifacts DEST   artifact store: a folder all hosts share (NFS) or s3://bucket/path
                     (default .marginlab/mlflow-team/artifacts)
  --host HOST        address to listen on (default 127.0.0.1)
  --port N           port (default: the last one when free, else a free one)
  --workers N        uvicorn workers (default 4)
  --stop             stop that server (with --postgres: and the project-local PostgreSQL)
  -- ARGS            passed to \`mlflow server\`, e.g. -- --allowed-hosts mlflow.lab:5000

Data: ${embeddedDir()} (embedded), ${teamServerDir()} (team)`;

interface UiArgs {
  stop: boolean;
  team?: TeamServerOptions;
}

function positiveInteger(flag: string, value: string | undefined): number {
  const n = Number(value);
  if (!value || !Number.isInteger(n) || n < 1 || n > 65535)
    throw new Error(`${flag} needs a whole number between 1 and 65535 (got "${value ?? ""}")`);
  return n;
}

function parseArgs(args: string[]): UiArgs {
  const dashes = args.indexOf("--");
  const own = dashes < 0 ? args : args.slice(0, dashes);
  const passThrough = dashes < 0 ? [] : args.slice(dashes + 1);
  const parsed: UiArgs = { stop: false };
  const team: TeamServerOptions = {};
  let isTeam = false;
  const teamOnly: string[] = [];
  for (let i = 0; i < own.length; i++) {
    const arg = own[i];
    const value = () => {
      const next = own[++i];
      if (next === undefined || next.startsWith("--")) throw new Error(`${arg} needs a value`);
      return next;
    };
    if (arg === "--stop") parsed.stop = true;
    else if (arg === "--postgres") isTeam = true;
    else if (arg.startsWith("--postgres=")) {
      isTeam = true;
      team.backendStoreUri = arg.slice("--postgres=".length);
    } else if (arg === "--artifacts") {
      team.artifacts = value();
      teamOnly.push(arg);
    } else if (arg === "--host") {
      team.host = value();
      teamOnly.push(arg);
    } else if (arg === "--port") {
      team.port = positiveInteger(arg, value());
      teamOnly.push(arg);
    } else if (arg === "--workers") {
      team.workers = positiveInteger(arg, value());
      teamOnly.push(arg);
    } else
      throw new Error(
        `unknown option "${arg}" (allowed: --stop, --postgres[=URI], --artifacts, --host, --port, --workers, -- ARGS)`,
      );
  }
  if (passThrough.length > 0) teamOnly.push("--");
  if (!isTeam && teamOnly.length > 0) throw new Error(`${teamOnly[0]} applies to the team server only: add --postgres`);
  if (isTeam) parsed.team = { ...team, extraArgs: passThrough };
  return parsed;
}

function describeStart(server: EmbeddedServerInfo & { started: boolean }, stopCommand: string): string {
  if (!server.started) return `the MLflow server was already running (pid ${server.pid})`;
  const store = server.backendStore ? `; store ${server.backendStore}` : "";
  return `started the MLflow server (pid ${server.pid}; data in ${server.dir}${store}); it keeps running: \`${stopCommand}\` stops it`;
}

export async function run(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(usage);
    return 0;
  }
  let parsed: UiArgs;
  try {
    parsed = parseArgs(args);
  } catch (error) {
    console.error(`marginlab ui: ${(error as Error).message}`);
    return 2;
  }
  if (parsed.team) {
    if (parsed.stop) {
      const stopped = await stopTeamServer();
      console.log(stopped ? "stopped the team MLflow server" : "no team MLflow server was running");
      return 0;
    }
    const server = await ensureTeamServer(parsed.team);
    console.log(server.url);
    console.error(describeStart(server, "marginlab ui --postgres --stop"));
    console.error(`tasks and notebooks log to it with: export MLFLOW_TRACKING_URI=${server.url}`);
    return 0;
  }
  if (parsed.stop) {
    const stopped = await stopEmbeddedServer();
    console.log(stopped ? "stopped the embedded MLflow server" : "no embedded MLflow server was running");
    return 0;
  }
  const configured = trackingConfigFromEnv().trackingUri;
  if (configured) {
    console.log(`${configured}  (MLFLOW_TRACKING_URI; unset it to use the project's own server)`);
    return 0;
  }
  const server = await ensureEmbeddedServer();
  console.log(server.url);
  console.error(describeStart(server, "marginlab ui --stop"));
  return 0;
}
