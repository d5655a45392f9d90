/**
 * `marginlab doctor`: checks every piece the lab needs and says how to fix what is missing.
 * Each check is independent; a failing one never hides the others.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import * as gpuEnv from "../scripts/setup/gpu-env.cjs";
import type { BackendInfo } from "./backend";
import { chromiumUnavailable, DEFAULT_CHROMIUM } from "./plots/html";
import { projectRoot, venvDir, venvTool } from "./project";

export type CheckStatus = "ok" | "missing" | "warn";

export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do when status is not ok. */
  fix?: string;
  /** Required checks make the doctor exit non-zero when they fail; optional ones only warn. */
  required: boolean;
}

export interface DoctorOptions {
  env?: NodeJS.ProcessEnv;
  /** The tracking server to probe; defaults to MLFLOW_TRACKING_URI or the embedded server's URL. */
  trackingUri?: string;
  timeoutMs?: number;
}

const SETUP_FIX = "run `npm install` (or `npm run setup`) in the marginlab folder";

interface ToolResult {
  ok: boolean;
  /** stdout then stderr, trimmed. */
  out: string;
  stdout: string;
  stderr: string;
}

/** Runs a tool asynchronously, so the slow Python start-ups of the checks overlap. */
function runTool(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<ToolResult> {
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    // Our own timer (spawn's `timeout` option stays armed when the command does not exist and keeps
    // the process alive for the whole timeout).
    const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    timer.unref();
    child.on("exit", () => clearTimeout(timer));
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    child.on("error", (error) => resolve({ ok: false, out: error.message, stdout, stderr: error.message }));
    child.on("close", (code) => resolve({ ok: code === 0, out: `${stdout}${stderr}`.trim(), stdout, stderr }));
  });
}

function checkNode(): CheckResult {
  const [major, minor] = process.versions.node.split(".").map(Number);
  const ok = major > 20 || (major === 20 && minor >= 19);
  return {
    name: "Node.js",
    status: ok ? "ok" : "missing",
    detail: `v${process.versions.node}`,
    fix: ok ? undefined : "install Node.js 20.19 or newer",
    required: true,
  };
}

/** Loads the backend in a child process: a broken binding must not take the doctor down with it. */
async function checkBackend(env: NodeJS.ProcessEnv): Promise<CheckResult> {
  const script = `const { backendInfo } = require(${JSON.stringify(path.join(__dirname, "backend.ts"))}); process.stdout.write(JSON.stringify(backendInfo));`;
  const result = await runTool(process.execPath, ["--require", require.resolve("tsx/cjs"), "-e", script], {
    ...env,
    TF_CPP_MIN_LOG_LEVEL: "3",
  });
  if (result.ok)
    return {
      name: "TensorFlow backend",
      status: "ok",
      detail: describeBackend(JSON.parse(result.stdout)),
      required: true,
    };
  // The thrown error's own line ("BackendError: ..." carries its fix), not tsx's code frame around it.
  const lines = result.stderr.split("\n");
  const message = lines.find((line) => /^\s*\w*Error: /.test(line)) ?? lines.find((line) => /Error/.test(line)) ?? "";
  const backendError = /^\s*BackendError: /.test(message);
  return {
    name: "TensorFlow backend",
    status: "missing",
    detail:
      message
        .trim()
        .replace(/^BackendError: /, "")
        .slice(0, 600) || "does not load",
    fix: backendError ? undefined : SETUP_FIX, // a BackendError names its own fix
    required: true,
  };
}

/** Which library on which device, e.g. "@tensorflow/tfjs-node-gpu on GPU (NVIDIA H200), TensorFlow 2.21.0 from ...". */
export function describeBackend(info: BackendInfo): string {
  const device =
    info.device === "GPU" && info.gpus.length > 0 ? `GPU (${[...new Set(info.gpus)].join(", ")})` : info.device;
  return `${info.package} on ${device}: libtensorflow ${info.tensorflowVersion} from ${info.libtensorflow.origin} (${info.libtensorflow.path}), tfjs ${info.tfjsVersion} [${info.reason}]`;
}

/** Only with the GPU build installed: its CUDA libraries, whether they are on the loader path, the devices. */
function checkGpuBuild(env: NodeJS.ProcessEnv): CheckResult[] {
  if (!gpuEnv.gpuBuildInstalled(projectRoot)) return [];
  const dirs = gpuEnv.cudaLibraryDirs(projectRoot);
  const missing = gpuEnv.missingLoaderDirs(projectRoot, env);
  const visible = gpuEnv.cudaDeviceVisible(env);
  const devices = visible ? gpuEnv.gpuNames().join(", ") || "a CUDA device" : "no CUDA device visible";
  if (dirs.length === 0) {
    return [
      {
        name: "GPU build",
        status: "warn",
        detail: `${gpuEnv.GPU_PACKAGE} is installed, but no CUDA libraries are linked at ${gpuEnv.cudaWheelsDir(projectRoot)}`,
        fix: "run `MARGINLAB_GPU=1 npm run setup`",
        required: false,
      },
    ];
  }
  const onPath = missing.length === 0 ? "all on LD_LIBRARY_PATH" : `${missing.length} not on LD_LIBRARY_PATH`;
  return [
    {
      name: "GPU build",
      status: visible && missing.length > 0 ? "warn" : "ok",
      detail: `${dirs.length} CUDA library folders under ${path.dirname(path.dirname(dirs[0]))} (${onPath}); ${devices}`,
      fix: 'start through `npx marginlab` or the Jupyter kernel, or `eval "$(node scripts/setup/gpu-env.cjs)"` first',
      required: false,
    },
  ];
}

async function checkPython(env: NodeJS.ProcessEnv, skipPython: boolean): Promise<CheckResult> {
  const python = venvTool("python", env);
  if (!existsSync(python)) {
    return {
      name: "Python environment",
      status: skipPython ? "warn" : "missing",
      detail: `no ${python}`,
      fix: skipPython ? "MARGINLAB_SKIP_PYTHON=1: using Jupyter and MLflow from PATH" : SETUP_FIX,
      required: !skipPython,
    };
  }
  const version = await runTool(python, ["--version"], env);
  return {
    name: "Python environment",
    status: version.ok ? "ok" : "missing",
    detail: `${venvDir(env)} (${version.out})`,
    fix: version.ok ? undefined : SETUP_FIX,
    required: !skipPython,
  };
}

/** A tool from the venv, or from PATH when the user brings their own (MARGINLAB_SKIP_PYTHON=1). */
function tool(name: string, env: NodeJS.ProcessEnv): string {
  const local = venvTool(name, env);
  return existsSync(local) ? local : name;
}

type PackageVersions = Record<"jupyterlab" | "nbconvert" | "mlflow", string | null>;

/** Versions of the Python packages, read in one interpreter start (their CLIs take seconds each). */
async function pythonPackageVersions(env: NodeJS.ProcessEnv): Promise<PackageVersions> {
  const script = `import json, importlib.metadata as m
def v(p):
    try: return m.version(p)
    except m.PackageNotFoundError: return None
print(json.dumps({p: v(p) for p in ("jupyterlab", "nbconvert", "mlflow")}))`;
  const result = await runTool(tool("python", env) === "python" ? "python3" : tool("python", env), ["-c", script], env);
  if (!result.ok) return { jupyterlab: null, nbconvert: null, mlflow: null };
  return JSON.parse(result.stdout) as PackageVersions;
}

function checkPackage(name: string, version: string | null, command: string, env: NodeJS.ProcessEnv): CheckResult {
  // The version says the package is installed; the command must also be where Jupyter/MLflow users run it.
  const executable = tool(command, env);
  const runnable = executable.includes(path.sep) || findOnPath(command, env);
  const ok = version !== null && runnable;
  return {
    name,
    status: ok ? "ok" : "missing",
    detail: ok ? `${version} (${executable})` : version === null ? "not installed" : `\`${command}\` not found`,
    fix: ok ? undefined : SETUP_FIX,
    required: true,
  };
}

function findOnPath(command: string, env: NodeJS.ProcessEnv): boolean {
  return (env.PATH ?? "").split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, command)));
}

async function checkKernelSpec(env: NodeJS.ProcessEnv): Promise<CheckResult> {
  const jupyter = tool("jupyter", env);
  const listing = await runTool(jupyter, ["kernelspec", "list", "--json"], env);
  const name = "Kernel spec (marginlab)";
  if (!listing.ok)
    return { name, status: "missing", detail: "`jupyter kernelspec list` failed", fix: SETUP_FIX, required: true };
  const specs = JSON.parse(listing.out.slice(listing.out.indexOf("{"))).kernelspecs as Record<
    string,
    { resource_dir: string; spec: { argv: string[]; display_name: string } }
  >;
  const spec = specs.marginlab;
  if (!spec) return { name, status: "missing", detail: "not registered", fix: SETUP_FIX, required: true };
  const missingPaths = spec.spec.argv.slice(0, 2).filter((p) => !existsSync(p));
  if (missingPaths.length > 0) {
    return {
      name,
      status: "missing",
      detail: `points at missing ${missingPaths.join(", ")}`,
      fix: `${SETUP_FIX} (the project moved?)`,
      required: true,
    };
  }
  return { name, status: "ok", detail: `"${spec.spec.display_name}" at ${spec.resource_dir}`, required: true };
}

/** The embedded server writes its URL here (see src/tracking/server.ts). */
function embeddedServerUrl(): string | undefined {
  const stateFile = path.join(path.resolve(__dirname, ".."), ".marginlab", "mlflow", "server.json");
  try {
    return JSON.parse(readFileSync(stateFile, "utf8")).url;
  } catch {
    return undefined;
  }
}

async function checkTrackingServer(env: NodeJS.ProcessEnv, options: DoctorOptions): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const uri = options.trackingUri ?? env.MLFLOW_TRACKING_URI ?? embeddedServerUrl();
  if (!uri) {
    results.push({
      name: "Tracking server",
      status: "ok",
      detail: "MLFLOW_TRACKING_URI unset: runs start the embedded local server on demand (`npx marginlab ui`)",
      required: false,
    });
    return results;
  }
  const shown = redactUrl(uri);
  try {
    // fetch refuses URLs with credentials (and would echo them in its error): send them as a header.
    const url = new URL("health", uri.endsWith("/") ? uri : `${uri}/`);
    const headers: Record<string, string> = {};
    if (url.username || url.password) {
      headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString("base64")}`;
      url.username = "";
      url.password = "";
    }
    const response = await fetch(url, { headers, signal: AbortSignal.timeout(options.timeoutMs ?? 3000) });
    results.push({
      name: "Tracking server",
      status: response.ok ? "ok" : "warn",
      detail: `${shown}: HTTP ${response.status}`,
      fix: response.ok
        ? undefined
        : "check the server's logs; a 403 means --allowed-hosts does not include this host name",
      required: false,
    });
  } catch (error) {
    results.push({
      name: "Tracking server",
      status: "warn",
      detail: `${shown} unreachable (${error instanceof Error ? error.message : error})`,
      fix: "start it (`npx marginlab ui` for the embedded one) or unset MLFLOW_TRACKING_URI; runs keep logging to the journal meanwhile",
      required: false,
    });
  }
  return results;
}

/** Strips user:password from a URL before it is shown. */
export function redactUrl(uri: string): string {
  try {
    const url = new URL(uri);
    if (url.username || url.password) {
      url.username = "***";
      url.password = "";
    }
    return url.toString();
  } catch {
    return uri;
  }
}

export async function runDoctor(options: DoctorOptions = {}): Promise<CheckResult[]> {
  const env = options.env ?? process.env;
  const skipPython = env.MARGINLAB_SKIP_PYTHON === "1";
  const [backend, python, versions, kernel, server] = await Promise.all([
    checkBackend(env),
    checkPython(env, skipPython),
    pythonPackageVersions(env),
    checkKernelSpec(env),
    checkTrackingServer(env, options),
  ]);
  return [
    checkNode(),
    backend,
    python,
    checkPackage("JupyterLab", versions.jupyterlab, "jupyter-lab", env),
    checkPackage("nbconvert", versions.nbconvert, "jupyter-nbconvert", env),
    kernel,
    checkPackage("MLflow", versions.mlflow, "mlflow", env),
    checkChromium(env),
    ...checkGpuBuild(env),
    ...server,
  ];
}

/** Headless Chromium (PNG figures, the browser checks); optional: figures fall back to HTML only. */
function checkChromium(env: NodeJS.ProcessEnv): CheckResult {
  const executable = env.MARGINLAB_CHROMIUM ?? DEFAULT_CHROMIUM;
  const missing = chromiumUnavailable(executable);
  return missing
    ? {
        name: "Chromium",
        status: "warn",
        detail: missing,
        fix: "npm run setup (installs Debian's chromium as root), or set MARGINLAB_CHROMIUM",
        required: false,
      }
    : { name: "Chromium", status: "ok", detail: `${executable} (PNG figures)`, required: false };
}

export function formatDoctorTable(results: CheckResult[]): string {
  const mark = { ok: "ok", missing: "MISSING", warn: "warn" } as const;
  const rows = results.map((r) => [r.name, mark[r.status], r.detail]);
  const widths = [0, 1].map((i) => Math.max(...rows.map((row) => row[i].length), i === 0 ? 5 : 6));
  const lines = [
    `${"check".padEnd(widths[0])}  ${"status".padEnd(widths[1])}  detail`,
    `${"-".repeat(widths[0])}  ${"-".repeat(widths[1])}  ${"-".repeat(40)}`,
  ];
  for (const [i, row] of rows.entries()) {
    lines.push(`${row[0].padEnd(widths[0])}  ${row[1].padEnd(widths[1])}  ${row[2]}`);
    const fix = results[i].fix;
    if (fix && results[i].status !== "ok") lines.push(`${"".padEnd(widths[0])}  ${"".padEnd(widths[1])}  fix: ${fix}`);
  }
  return lines.join("\n");
}

export function doctorPassed(results: CheckResult[]): boolean {
  return results.every((r) => r.status === "ok" || !r.required);
}
