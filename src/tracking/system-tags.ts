/**
 * The system tags MLflow's own client sets on a new run (mlflow/utils/mlflow_tags.py): user, source,
 * git commit/branch/dirty flag/repo URL (with any credentials stripped from the URL).
 *
 * Where the code came from: a notebook (its path from the kernel's Jupyter session, JPY_SESSION_NAME,
 * which Jupyter Server sets for each kernel and the project's headless executor sets too), a
 * `marginlab <command>` (the command line, set by the CLI), else the script node runs.
 */
import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { projectRoot } from "../project";

export interface GitInfo {
  commit?: string;
  branch?: string;
  dirty?: boolean;
  repoUrl?: string;
}

function git(args: string[], cwd: string): string | undefined {
  try {
    return execFileSync("git", args, {
      cwd,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 5000,
    }).trim();
  } catch {
    return undefined;
  }
}

const gitCache = new Map<string, GitInfo>();

/** Git facts for the repository holding `dir` (cached per folder; empty outside a repository). */
export function gitInfo(dir: string): GitInfo {
  const cached = gitCache.get(dir);
  if (cached) return cached;
  const info: GitInfo = {};
  const commit = git(["rev-parse", "HEAD"], dir);
  if (commit && /^[0-9a-f]{40,64}$/.test(commit)) {
    info.commit = commit;
    const branch = git(["rev-parse", "--abbrev-ref", "HEAD"], dir);
    if (branch && branch !== "HEAD") info.branch = branch;
    // Tracked files only, as GitPython's is_dirty() that MLflow uses.
    const status = git(["status", "--porcelain", "--untracked-files=no"], dir);
    if (status !== undefined) info.dirty = status.length > 0;
    const remote = git(["remote", "get-url", "origin"], dir);
    if (remote) info.repoUrl = remote.replace(/\/\/[^/@\s]*@/, "//");
  }
  gitCache.set(dir, info);
  return info;
}

export function currentUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? process.env.USERNAME ?? "unknown";
  }
}

export interface SourceOptions {
  /** mlflow.source.name; default: the notebook, the `marginlab` command line, or the script being run. */
  sourceName?: string;
  /** Folder whose git repository describes the code; default: the source's folder, else the project root. */
  gitDir?: string;
  env?: NodeJS.ProcessEnv;
}

export function inNotebook(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.MARGINLAB_IN_NOTEBOOK === "1" || env.JPY_SESSION_NAME !== undefined;
}

/**
 * The notebook this kernel runs, as an absolute path: JPY_SESSION_NAME (absolute from JupyterLab; a
 * server-relative path is resolved against the kernel's folder, the project root where
 * `npm run lab` starts the server). MARGINLAB_NOTEBOOK_PATH overrides it.
 */
export function notebookPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const named = env.MARGINLAB_NOTEBOOK_PATH ?? env.JPY_SESSION_NAME;
  return named ? path.resolve(named) : undefined;
}

let commandSource: string | undefined;

/** The CLI names itself ("marginlab train --steps 5") as the source of the runs it starts. */
export function setCommandSource(commandLine: string | undefined): void {
  commandSource = commandLine;
}

/** mlflow.user, mlflow.source.*, mlflow.source.git.* for a run started by this process. */
export function systemTags(options: SourceOptions = {}): Record<string, string> {
  const env = options.env ?? process.env;
  // A `marginlab` command is never a notebook, even when a kernel started it.
  const notebook = commandSource === undefined && inNotebook(env);
  // Inside a kernel, argv[1] is the kernel's own script, not the user's code.
  const script = !notebook && process.argv[1] ? path.resolve(process.argv[1]) : undefined;
  const nbPath = notebook ? notebookPath(env) : undefined;
  const sourceName =
    options.sourceName ?? (notebook ? (nbPath ?? `notebook in ${process.cwd()}`) : (commandSource ?? script ?? "node"));
  const tags: Record<string, string> = {
    "mlflow.user": currentUser(),
    "mlflow.source.name": sourceName,
    "mlflow.source.type": notebook ? "NOTEBOOK" : "LOCAL",
  };
  // The code's own repository when it is in one (a user's script, a notebook), else the project's,
  // whatever the working directory.
  const sourceDir = nbPath ? path.dirname(nbPath) : script ? path.dirname(script) : undefined;
  const candidates = options.gitDir ? [options.gitDir] : [sourceDir, projectRoot, process.cwd()];
  let git_: GitInfo = {};
  for (const dir of candidates) {
    if (!dir) continue;
    git_ = gitInfo(dir);
    if (git_.commit) break;
  }
  if (git_.commit) tags["mlflow.source.git.commit"] = git_.commit;
  if (git_.branch) tags["mlflow.source.git.branch"] = git_.branch;
  if (git_.dirty !== undefined) tags["mlflow.source.git.dirty"] = String(git_.dirty);
  if (git_.repoUrl) tags["mlflow.source.git.repoURL"] = git_.repoUrl;
  return tags;
}
