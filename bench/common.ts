/**
 * Shared machinery of `marginlab bench`: every measured case runs in its own child process (so that
 * its peak resident set size, VmHWM from /proc/self/status, is its own), prints one JSON line, and the
 * parent prints marginlab's figures beside the PyTorch peer's and their ratio.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export const ROOT = path.resolve(__dirname, "..");
export const PEER_PYTHON = path.join(ROOT, ".venv-peers", "bin", "python");

export interface Measurement {
  name: string;
  impl: "marginlab" | "pytorch";
  /** Median time per step (or evaluation) after warm-up, ms. */
  medianMs: number;
  stepsMs: number[];
  /** Peak resident set size of the process that ran the case, MiB. */
  peakRssMB: number;
  [key: string]: unknown;
}

export interface Failure {
  name: string;
  impl: "marginlab" | "pytorch";
  error: string;
}

/** The 1-minute load average when a case's process started and when it ended (set by runWorker / runPeer). */
export interface LoadDuring {
  loadAverage?: { start: number; end: number };
}

export type Result = (Measurement | Failure) & LoadDuring;

export function isFailure(r: Result): r is Failure {
  return (r as Failure).error !== undefined;
}

/** VmHWM of this process in MiB (peak RSS). */
export function peakRssMB(): number {
  const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** Milliseconds per call of `step` after `warmup` untimed calls. */
export function timeSteps(step: () => void, warmup: number, repeats: number): number[] {
  for (let i = 0; i < warmup; i++) step();
  const out: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    step();
    out.push(performance.now() - t0);
  }
  return out;
}

/** Worker side: prints the measurement as the last stdout line. */
export function emit(m: { name: string; stepsMs: number[] } & Record<string, unknown>): void {
  const out: Measurement = { ...m, impl: "marginlab", medianMs: median(m.stepsMs), peakRssMB: peakRssMB() };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function parseLast(
  name: string,
  impl: Measurement["impl"],
  status: number | null,
  stdout: string,
  stderr: string,
): Result {
  const lines = stdout.trim().split("\n");
  const last = lines[lines.length - 1];
  if (status === 0 && last?.startsWith("{")) {
    try {
      return JSON.parse(last) as Measurement;
    } catch {
      // fall through
    }
  }
  const tail = `${stderr}${stdout}`.trim().split("\n").slice(-3).join(" | ");
  return { name, impl, error: `exit ${status}: ${tail.slice(0, 400)}` };
}

/** Runs `bench/<file>.ts --worker <case> <params>` in a fresh Node process. */
export function runWorker(file: string, caseName: string, params: object, timeoutS = 1800): Result {
  const start = os.loadavg()[0];
  const r = spawnSync(
    process.execPath,
    ["--require", "tsx/cjs", path.join(ROOT, "bench", file), "--worker", caseName, JSON.stringify(params)],
    {
      cwd: ROOT,
      encoding: "utf8",
      timeout: timeoutS * 1000,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: "2" },
    },
  );
  const out = parseLast(caseName, "marginlab", r.status, r.stdout ?? "", r.stderr ?? (r.error ? String(r.error) : ""));
  return { ...out, loadAverage: { start, end: os.loadavg()[0] } };
}

/** Runs a PyTorch peer script from bench/peers with .venv-peers/bin/python. */
export function runPeer(script: string, name: string, args: string[], timeoutS = 1800): Result {
  if (!existsSync(PEER_PYTHON)) {
    return { name, impl: "pytorch", error: `${PEER_PYTHON} not found: run \`npm run setup:peers\`` };
  }
  const start = os.loadavg()[0];
  const r = spawnSync(PEER_PYTHON, [path.join(ROOT, "bench", "peers", script), ...args], {
    cwd: path.join(ROOT, "bench", "peers"),
    encoding: "utf8",
    timeout: timeoutS * 1000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const out = parseLast(name, "pytorch", r.status, r.stdout ?? "", r.stderr ?? (r.error ? String(r.error) : ""));
  return { ...out, loadAverage: { start, end: os.loadavg()[0] } };
}

function fmtMs(ms: number): string {
  return ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`;
}

function fmtMB(mb: number): string {
  return mb >= 1024 ? `${(mb / 1024).toFixed(2)} GB` : `${mb.toFixed(0)} MB`;
}

/**
 * One line per result; `vs` pairs a marginlab row with its PyTorch peer (speed ratio = peer time / ours).
 * The rows are also recorded for writeResults, their medianMs in `unit` ("ms/step", or what one timed run is).
 */
export function printRows(title: string, rows: Result[], pairs: [Result, Result][] = [], unit = "ms/step"): void {
  recordRows(title, rows, pairs, unit);
  console.log(`\n${title}`);
  for (const r of rows) {
    if (isFailure(r)) console.log(`  ${r.impl.padEnd(9)} ${r.name.padEnd(52)} FAILED: ${r.error}`);
    else
      console.log(
        `  ${r.impl.padEnd(9)} ${r.name.padEnd(52)} ${fmtMs(r.medianMs).padStart(9)} / step   peak RSS ${fmtMB(r.peakRssMB).padStart(8)}   (${r.stepsMs.length} timed: ${r.stepsMs.map((t) => t.toFixed(0)).join(", ")} ms)`,
      );
  }
  for (const [ours, peer] of pairs) {
    if (isFailure(ours) || isFailure(peer)) continue;
    console.log(`  speed ${ours.name} vs ${peer.name}: ${(peer.medianMs / ours.medianMs).toFixed(2)}x PyTorch`);
  }
}

/** The machine, without the load: "<cores> x <CPU model>, <memory> GiB RAM". */
export function machineName(): string {
  return `${os.cpus().length} x ${os.cpus()[0]?.model ?? "unknown CPU"}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM`;
}

/** The conditions the figures were taken under (shared machines: the load matters). */
export function machineLine(): string {
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
  return `${machineName()}, load average ${load}`;
}

/**
 * One row of a results file (results/bench/<bench>-<date>.json): a measured case, with its peer when
 * one ran, and the conditions. scripts/results-table.ts renders the README's and docs' tables from them.
 */
export interface ResultRow {
  /** The case, e.g. "train step: iResNet [1,1,1,1] ... B=64 / marginlab". Unique within a bench. */
  case: string;
  /** What `value` counts: "ms/step" for timed steps (lower is better), or a rate such as "points/s". */
  unit: string;
  value: number;
  peer?: { name: string; value: number; figures?: Record<string, number> };
  /** How many times faster than the peer: peer time / ours (for rates, ours / peer). */
  ratio?: number;
  /** Further figures, e.g. { peakRssMB, imagesPerSecond }. */
  figures?: Record<string, number>;
  /** ISO time the row was measured. */
  date: string;
  /** machineName(): cores, CPU model, memory. */
  machine: string;
  /** 1-minute load average when the case started and ended (its peer's run included). */
  load: { start: number; end: number };
  /** The command line that measured it. */
  command?: string;
}

export interface ResultsFile {
  bench: string;
  /** The command line of the latest run that wrote the file (each row has its own). */
  command: string;
  rows: ResultRow[];
}

/** Where results files go: results/bench/ in the project (committed), or MARGINLAB_RESULTS_DIR. */
export function resultsDir(): string {
  return process.env.MARGINLAB_RESULTS_DIR ?? path.join(ROOT, "results", "bench");
}

const recorded: ResultRow[] = [];
/** The load when this process started benchmarking: the default start of rows given to writeResults directly. */
const loadAtStart = os.loadavg()[0];

function loadOf(...rs: Result[]): { start: number; end: number } {
  const now = os.loadavg()[0];
  return { start: rs[0]?.loadAverage?.start ?? now, end: rs[rs.length - 1]?.loadAverage?.end ?? now };
}

function figuresOf(r: Measurement): Record<string, number> {
  const out: Record<string, number> = { peakRssMB: r.peakRssMB };
  for (const [k, v] of Object.entries(r))
    if (typeof v === "number" && Number.isFinite(v) && k !== "medianMs" && k !== "peakRssMB") out[k] = v;
  return out;
}

/** Turns printed rows into ResultRows: each pair becomes one row with its peer, other measurements rows of their own. */
function recordRows(title: string, rows: Result[], pairs: [Result, Result][], unit: string): void {
  const paired = new Set<Result>();
  const date = new Date().toISOString();
  const base = { date, machine: machineName(), unit };
  for (const [ours, peer] of pairs) {
    if (isFailure(ours) || isFailure(peer)) continue;
    paired.add(ours).add(peer);
    recorded.push({
      ...base,
      case: `${title} / ${ours.name}`,
      value: ours.medianMs,
      peer: { name: peer.name, value: peer.medianMs, figures: figuresOf(peer) },
      ratio: peer.medianMs / ours.medianMs,
      figures: figuresOf(ours),
      load: loadOf(ours, peer),
    });
  }
  for (const r of rows) {
    if (isFailure(r) || paired.has(r)) continue;
    recorded.push({
      ...base,
      case: `${title} / ${r.impl === "pytorch" ? "" : "marginlab "}${r.name}`,
      value: r.medianMs,
      figures: figuresOf(r),
      load: loadOf(r),
    });
  }
}

/**
 * Writes the rows this process printed (printRows) plus `extra` rows (load by default: from this
 * process's start to now) to results/bench/<bench>-<YYYY-MM-DD>.json.
 * A file of the same day is merged: rows of the same case are replaced, others kept. Written to a
 * temporary file and renamed, so a reader never sees half a file. Returns the path.
 */
export function writeResults(
  bench: string,
  extra: (Omit<ResultRow, "date" | "machine" | "load"> & Partial<Pick<ResultRow, "load">>)[] = [],
): string {
  const date = new Date().toISOString();
  const load = { start: loadAtStart, end: os.loadavg()[0] };
  const command = ["node", path.relative(ROOT, process.argv[1] ?? ""), ...process.argv.slice(2)].join(" ");
  const rows = [...recorded, ...extra.map((r) => ({ load, ...r, date, machine: machineName() }))].map((r) => ({
    ...r,
    command,
  }));
  const dir = resultsDir();
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${bench}-${date.slice(0, 10)}.json`);
  // a case measured again replaces its row in place; new cases are appended
  const merged: ResultRow[] = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as ResultsFile).rows : [];
  for (const r of rows) {
    const at = merged.findIndex((m) => m.case === r.case);
    if (at >= 0) merged[at] = r;
    else merged.push(r);
  }
  const content: ResultsFile = { bench, command, rows: merged };
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(content, null, 2)}\n`);
  renameSync(tmp, file);
  recorded.length = 0;
  return file;
}

/** --key value / --flag options. */
export function parseArgs(args: string[]): Record<string, string | boolean> {
  const out: Record<string, string | boolean> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument "${a}": options are --name value or --flag`);
    const key = a.slice(2);
    const next = args[i + 1];
    if (next !== undefined && !next.startsWith("--")) {
      out[key] = next;
      i++;
    } else out[key] = true;
  }
  return out;
}

export function intOption(opts: Record<string, string | boolean>, key: string, fallback: number): number {
  const v = opts[key];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${key} = ${String(v)} is invalid: must be an integer >= 1`);
  return n;
}

/** --key 10000,20000: integers >= 1, comma-separated. */
export function intListOption(opts: Record<string, string | boolean>, key: string, fallback: number[]): number[] {
  const v = opts[key];
  if (typeof v !== "string") return fallback;
  return v.split(",").map((item) => intOption({ [key]: item }, key, 0));
}

/** The sizes and repetitions of a timed training step: --dim (512), --batch (256), --warmup, --repeats. */
export interface StepOptions {
  dim: number;
  batch: number;
  warmup: number;
  repeats: number;
}

export function stepOptions(
  opts: Record<string, string | boolean>,
  defaults: { warmup: number; repeats: number },
): StepOptions {
  return {
    dim: intOption(opts, "dim", 512),
    batch: intOption(opts, "batch", 256),
    warmup: intOption(opts, "warmup", defaults.warmup),
    repeats: intOption(opts, "repeats", defaults.repeats),
  };
}

/** A peer script's command line from its parameters, in their order: { classes: 10 } -> --classes 10. */
export function peerArgs(params: object): string[] {
  return Object.entries(params).flatMap(([k, v]) => [`--${k}`, String(v)]);
}

/** Worker dispatch: when a bench file is run as `--worker <case> <json>`. */
export function workerArgs(): { caseName: string; params: Record<string, number | string | boolean> } | null {
  const i = process.argv.indexOf("--worker");
  if (i < 0) return null;
  return { caseName: process.argv[i + 1], params: JSON.parse(process.argv[i + 2] ?? "{}") };
}

/** Per-op figures of one stretch of work (a training step), from the native backend's own op calls. */
export interface OpProfile {
  /** Wall time of the stretch, ms. */
  wallMs: number;
  /** TensorFlow ops run by the native backend: count and summed wall time by op name. */
  nativeOps: { op: string; count: number; ms: number }[];
  /** tfjs kernels (tf.profile's names; kernels called inside custom gradients are counted too). */
  tfjsKernels: { kernel: string; count: number }[];
  /** Host round trips: tensors read back to JavaScript (dataSync, arraySync, data, array). */
  downloads: number;
  /** Tensors created from JavaScript values (batches, constants) and copied into TensorFlow. */
  uploads: number;
}

/**
 * Counts and times every TensorFlow op the native backend runs between start() and stop(): the
 * binding's executeOp is the one door every tfjs-node kernel (and every op called by name) goes
 * through, and tensorDataSync / createTensor the doors for host round trips. tfjs kernel names come
 * from tf.profile running over the same stretch.
 */
export function opProbe(tf: typeof import("@tensorflow/tfjs-node")) {
  // biome-ignore lint/suspicious/noExplicitAny: the native binding is not in tfjs' public types
  const backend = tf.backend() as any as { binding: Record<string, (...a: unknown[]) => unknown> };
  // the addon's exports are read-only: the backend gets a stand-in whose prototype is the real binding
  const binding = backend.binding;
  const probed = Object.create(binding) as typeof binding;
  const override = (name: string, f: (...a: unknown[]) => unknown) =>
    Object.defineProperty(probed, name, { value: f, configurable: true });
  const ops = new Map<string, { count: number; ms: number }>();
  let downloads = 0;
  let uploads = 0;
  let t0 = 0;
  let profile: Promise<{ kernels: { name: string }[] }> | undefined;
  let finish: (() => void) | undefined;
  return {
    start(): void {
      ops.clear();
      downloads = 0;
      uploads = 0;
      override("executeOp", (...a: unknown[]) => {
        const s = performance.now();
        const out = binding.executeOp(...a);
        const e = ops.get(a[0] as string) ?? { count: 0, ms: 0 };
        e.count++;
        e.ms += performance.now() - s;
        ops.set(a[0] as string, e);
        return out;
      });
      override("tensorDataSync", (...a: unknown[]) => {
        downloads++;
        return binding.tensorDataSync(...a);
      });
      override("createTensor", (...a: unknown[]) => {
        uploads++;
        return binding.createTensor(...a);
      });
      backend.binding = probed;
      // tf.profile turns kernel recording on synchronously and keeps it on until the promise settles
      const stretch = new Promise<number>((resolve) => {
        finish = () => resolve(0);
      });
      profile = tf.profile(() => stretch) as never;
      t0 = performance.now();
    },
    async stop(): Promise<OpProfile> {
      const wallMs = performance.now() - t0;
      backend.binding = binding;
      finish?.();
      const info = await profile!;
      const kernels = new Map<string, number>();
      for (const k of info.kernels) kernels.set(k.name, (kernels.get(k.name) ?? 0) + 1);
      return {
        wallMs,
        nativeOps: [...ops].map(([op, v]) => ({ op, ...v })).sort((a, b) => b.ms - a.ms),
        tfjsKernels: [...kernels].map(([kernel, count]) => ({ kernel, count })).sort((a, b) => b.count - a.count),
        downloads,
        uploads,
      };
    },
  };
}

/** The profile as a table: native ops by time, then the tfjs kernel counts and round trips. */
export function printProfile(title: string, p: OpProfile, top = 25): void {
  const nativeMs = p.nativeOps.reduce((a, o) => a + o.ms, 0);
  const calls = p.nativeOps.reduce((a, o) => a + o.count, 0);
  console.log(`\n${title}`);
  console.log(
    `  step wall ${p.wallMs.toFixed(1)} ms; native ops ${calls} calls, ${nativeMs.toFixed(1)} ms; outside ops (JavaScript, tape, data) ${(p.wallMs - nativeMs).toFixed(1)} ms`,
  );
  console.log(`  host round trips: ${p.downloads} reads to JavaScript, ${p.uploads} tensors copied in`);
  console.log(`  ${"TensorFlow op".padEnd(34)} ${"calls".padStart(6)} ${"ms".padStart(8)} ${"ms/call".padStart(8)}`);
  for (const o of p.nativeOps.slice(0, top))
    console.log(
      `  ${o.op.padEnd(34)} ${String(o.count).padStart(6)} ${o.ms.toFixed(2).padStart(8)} ${(o.ms / o.count).toFixed(3).padStart(8)}`,
    );
  if (p.nativeOps.length > top) console.log(`  ... ${p.nativeOps.length - top} more ops`);
  const kernels = p.tfjsKernels.reduce((a, k) => a + k.count, 0);
  console.log(`  tfjs kernels (${kernels} calls): ${p.tfjsKernels.map((k) => `${k.kernel} ${k.count}`).join(", ")}`);
}
