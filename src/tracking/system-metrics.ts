/**
 * System metrics under MLflow's `system/` names (mlflow/system_metrics): CPU utilisation, system
 * memory, disk, this process's resident memory, and GPUs through nvidia-smi when it is there.
 * A sampler takes a sample every interval (10 s by default, as MLflow) and logs the mean of
 * `samplesBeforeLogging` samples at steps 0, 1, 2, ... Its timer is unref'd: it never keeps the
 * process alive.
 */
import { execFile } from "node:child_process";
import { readFileSync, statfsSync } from "node:fs";
import os from "node:os";

export interface SystemMetricsOptions {
  /** Milliseconds between samples; default MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL (seconds), else 10 s. */
  intervalMs?: number;
  /** Samples averaged into one logged point; default MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING, else 1. */
  samplesBeforeLogging?: number;
  /** Sample GPUs with nvidia-smi (default: when nvidia-smi runs). */
  gpu?: boolean;
  /** Adds a node level to the names: system/<nodeId>/... (default MLFLOW_SYSTEM_METRICS_NODE_ID). */
  nodeId?: string;
  env?: NodeJS.ProcessEnv;
}

/** Whether a run samples system metrics: MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING decides when set, else `fallback`. */
export function systemMetricsEnabled(fallback: boolean, env: NodeJS.ProcessEnv = process.env): boolean {
  const flag = env.MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING?.trim().toLowerCase();
  if (flag === "true" || flag === "1") return true;
  if (flag === "false" || flag === "0") return false;
  return fallback;
}

function positiveNumber(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}="${raw}" is not a positive number`);
  return value;
}

type CpuTimes = { idle: number; total: number };

function cpuTimes(): CpuTimes {
  let idle = 0;
  let total = 0;
  for (const cpu of os.cpus()) {
    const t = cpu.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.idle + t.irq;
  }
  return { idle, total };
}

/** Used memory as psutil computes it on Linux (total - MemAvailable); os.freemem elsewhere. */
function memoryUsed(): { used: number; total: number } {
  const total = os.totalmem();
  try {
    const match = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync("/proc/meminfo", "utf8"));
    if (match) return { used: total - Number(match[1]) * 1024, total };
  } catch {
    // not Linux
  }
  return { used: total - os.freemem(), total };
}

const NVIDIA_QUERY = "index,utilization.gpu,memory.used,memory.total,power.draw,power.limit";

/** One nvidia-smi query: MLflow's gpu_<i>_* names; undefined when nvidia-smi is absent or fails. */
function gpuSample(timeoutMs: number): Promise<Record<string, number> | undefined> {
  return new Promise((resolve) => {
    const child = execFile(
      "nvidia-smi",
      [`--query-gpu=${NVIDIA_QUERY}`, "--format=csv,noheader,nounits"],
      { timeout: timeoutMs, encoding: "utf8" },
      (error, stdout) => {
        if (error) return resolve(undefined);
        const out: Record<string, number> = {};
        for (const line of stdout.trim().split("\n")) {
          const [index, util, memUsed, memTotal, power, powerLimit] = line.split(",").map((v) => Number(v.trim()));
          if (!Number.isInteger(index)) continue;
          const g = `gpu_${index}_`;
          if (Number.isFinite(util)) out[`${g}utilization_percentage`] = util;
          if (Number.isFinite(memUsed)) out[`${g}memory_usage_megabytes`] = (memUsed * 1024 * 1024) / 1e6;
          if (Number.isFinite(memUsed) && memTotal > 0) out[`${g}memory_usage_percentage`] = (memUsed / memTotal) * 100;
          if (Number.isFinite(power)) out[`${g}power_usage_watts`] = power;
          if (Number.isFinite(power) && powerLimit > 0) out[`${g}power_usage_percentage`] = (power / powerLimit) * 100;
        }
        resolve(Object.keys(out).length > 0 ? out : undefined);
      },
    );
    // A query still running at exit must not hold the process.
    child.unref();
    (child.stdout as { unref?: () => void } | null)?.unref?.();
    (child.stderr as { unref?: () => void } | null)?.unref?.();
  });
}

/** Takes samples of the machine; CPU utilisation is over the time since the previous sample. */
export class SystemSampler {
  private last = cpuTimes();
  private gpu: boolean | undefined;

  constructor(options: { gpu?: boolean } = {}) {
    this.gpu = options.gpu;
  }

  /** One sample, with MLflow's names (no "system/" prefix). */
  async sample(): Promise<Record<string, number>> {
    const now = cpuTimes();
    const total = now.total - this.last.total;
    const busy = total - (now.idle - this.last.idle);
    this.last = now;
    const memory = memoryUsed();
    const values: Record<string, number> = {
      cpu_utilization_percentage: total > 0 ? (100 * busy) / total : 0,
      system_memory_usage_megabytes: memory.used / 1e6,
      system_memory_usage_percentage: (100 * memory.used) / memory.total,
      // Not one of MLflow's names: what this process holds, the number that matters for one training job.
      process_memory_rss_megabytes: process.memoryUsage.rss() / 1e6,
    };
    try {
      const disk = statfsSync("/");
      const used = (disk.blocks - disk.bfree) * disk.bsize;
      const available = disk.bavail * disk.bsize;
      values.disk_usage_megabytes = used / 1e6;
      values.disk_available_megabytes = available / 1e6;
      values.disk_usage_percentage = (100 * used) / (used + available);
    } catch {
      // no statfs here
    }
    if (this.gpu !== false) {
      const gpu = await gpuSample(5000);
      // The first failed query switches GPU sampling off (no nvidia-smi, no driver) unless asked for.
      if (gpu) Object.assign(values, gpu);
      else if (this.gpu === undefined) this.gpu = false;
    }
    return values;
  }
}

/** Means of each key over samples, rounded to 0.1 as MLflow's monitors do. */
export function aggregateSamples(samples: Array<Record<string, number>>): Record<string, number> {
  const sums = new Map<string, { sum: number; n: number }>();
  for (const sample of samples) {
    for (const [key, value] of Object.entries(sample)) {
      const s = sums.get(key) ?? { sum: 0, n: 0 };
      s.sum += value;
      s.n += 1;
      sums.set(key, s);
    }
  }
  const out: Record<string, number> = {};
  for (const [key, { sum, n }] of sums) out[key] = Math.round((sum / n) * 10) / 10;
  return out;
}

export type SystemMetricsLogger = (values: Record<string, number>, step: number) => void;

/** Samples in the background and logs `system/...` metrics through `log` until stopped. */
export class SystemMetricsMonitor {
  readonly intervalMs: number;
  readonly samplesBeforeLogging: number;
  readonly prefix: string;
  private readonly sampler: SystemSampler;
  private timer: NodeJS.Timeout | undefined;
  private samples: Array<Record<string, number>> = [];
  private step = 0;
  private busy: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly log: SystemMetricsLogger,
    options: SystemMetricsOptions = {},
  ) {
    const env = options.env ?? process.env;
    const intervalSeconds = positiveNumber(
      "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL",
      env.MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL,
    );
    this.intervalMs = options.intervalMs ?? (intervalSeconds ? intervalSeconds * 1000 : 10_000);
    if (!(this.intervalMs > 0)) throw new Error(`system metrics intervalMs=${this.intervalMs} must be > 0`);
    const samples =
      options.samplesBeforeLogging ??
      positiveNumber(
        "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING",
        env.MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING,
      ) ??
      1;
    if (!Number.isInteger(samples) || samples < 1)
      throw new Error(`system metrics samplesBeforeLogging=${samples} must be an integer >= 1`);
    this.samplesBeforeLogging = samples;
    const nodeId = options.nodeId ?? env.MLFLOW_SYSTEM_METRICS_NODE_ID;
    this.prefix = nodeId ? `system/${nodeId}/` : "system/";
    this.sampler = new SystemSampler({ gpu: options.gpu });
  }

  start(): this {
    if (this.timer || this.stopped) return this;
    this.timer = setInterval(() => {
      this.busy = this.busy.then(() => this.tick());
    }, this.intervalMs);
    this.timer.unref();
    return this;
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    let sample: Record<string, number>;
    try {
      sample = await this.sampler.sample();
    } catch {
      return; // a failed sample is skipped, never an error for the run
    }
    if (this.stopped) return;
    this.samples.push(sample);
    if (this.samples.length < this.samplesBeforeLogging) return;
    const values = aggregateSamples(this.samples.splice(0));
    const named: Record<string, number> = {};
    for (const [key, value] of Object.entries(values)) named[this.prefix + key] = value;
    try {
      this.log(named, this.step++);
    } catch {
      this.stopped = true; // the run has ended under us
    }
  }

  /** Stops sampling; resolves once a sample in flight has been dealt with. Nothing is logged after. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.busy;
  }
}
