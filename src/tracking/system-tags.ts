/**
 * The system tags MLflow's own client sets on a new run (mlflow/utils/mlflow_tags.py): user, source,
 * git commit/branch/dirty flag/repo URL (with any credentials stripped from the URL).
 */
import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";

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
  /** mlflow.source.name; default: the notebook (MARGINLAB_NOTEBOOK_PATH) or the script being run. */
  sourceName?: string;
  /** Folder whose git repository describes the code; default: the script's folder, else the cwd. */
  gitDir?: string;
  env?: NodeJS.ProcessEnv;
}

export function inNotebook(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.MARGINLAB_IN_NOTEBOOK === "1";
}

/** mlflow.user, mlflow.source.*, mlflow.source.git.* for a run started by this process. */
export function systemTags(options: SourceOptions = {}): Record<string, string> {
  const env = options.env ?? process.env;
  const notebook = inNotebook(env);
  const script = process.argv[1] ? path.resolve(process.argv[1]) : undefined;
  // Inside a kernel, argv[1] is the kernel's own script; the notebook's path is known only if the
  // launcher exports it (MARGINLAB_NOTEBOOK_PATH), else the notebook's folder is the best clue.
  const sourceName =
    options.sourceName ??
    (notebook ? (env.MARGINLAB_NOTEBOOK_PATH ?? `notebook in ${process.cwd()}`) : (script ?? "node"));
  const tags: Record<string, string> = {
    "mlflow.user": currentUser(),
    "mlflow.source.name": sourceName,
    "mlflow.source.type": notebook ? "NOTEBOOK" : "LOCAL",
  };
  const git_ = gitInfo(options.gitDir ?? (script && !notebook ? path.dirname(script) : process.cwd()));
  if (git_.commit) tags["mlflow.source.git.commit"] = git_.commit;
  if (git_.branch) tags["mlflow.source.git.branch"] = git_.branch;
  if (git_.dirty !== undefined) tags["mlflow.source.git.dirty"] = String(git_.dirty);
  if (git_.repoUrl) tags["mlflow.source.git.repoURL"] = git_.repoUrl;
  return tags;
}
