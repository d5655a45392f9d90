/**
 * Ready-made training callbacks: a CLI progress bar (rate and ETA), a live notebook display (tslab),
 * a tracker bridge (anything with logMetrics(values, step), e.g. the MLflow Run of src/tracking),
 * and periodic evaluation. Library code never prints: the progress bar writes only to the stream it
 * is given, and the notebook display only inside a tslab kernel.
 */
import type { StepMetrics, TrainCallback, TrainContext } from "./trainer";

export { checkpointEvery } from "./trainer";

/** What the tracker callback needs (the MLflow Run of src/tracking implements it). */
export interface MetricsTracker {
  logMetrics(values: Record<string, number>, step: number): void | Promise<void>;
}

/** Flattens step metrics to tracker keys: loss, head_loss, reg/<name>, lr, grad_norm, images_per_sec, epoch. */
export function metricsRecord(m: StepMetrics): Record<string, number> {
  const out: Record<string, number> = {
    loss: m.loss,
    head_loss: m.headLoss,
    lr: m.lr,
    grad_norm: m.gradNorm,
    images_per_sec: m.imagesPerSecond,
    epoch: m.epoch,
  };
  for (const [k, v] of Object.entries(m.regularizers)) out[`reg/${k}`] = v;
  for (const k of Object.keys(out)) if (!Number.isFinite(out[k])) delete out[k]; // trackers reject NaN
  return out;
}

/** Sends metrics to a tracker every `every` steps (default 1), and always on the last step. */
export function trackerCallback(tracker: MetricsTracker, o: { every?: number; prefix?: string } = {}): TrainCallback {
  const every = o.every ?? 1;
  return {
    async onStep(m) {
      if (m.step % every !== 0 && m.step !== m.totalSteps) return;
      const rec = metricsRecord(m);
      const values = o.prefix ? Object.fromEntries(Object.entries(rec).map(([k, v]) => [`${o.prefix}${k}`, v])) : rec;
      await tracker.logMetrics(values, m.step);
    },
  };
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(r).padStart(2, "0")}s` : `${r}s`;
}

/** One line of progress: bar, step/total, loss, lr, images/s and ETA. */
export function progressLine(m: StepMetrics, startStep: number, width = 24): string {
  const frac = m.totalSteps ? m.step / m.totalSteps : 1;
  const filled = Math.round(frac * width);
  const done = m.step - startStep;
  const perStep = done > 0 ? m.elapsedSeconds / done : Number.NaN;
  const eta = perStep * (m.totalSteps - m.step);
  const regs = Object.entries(m.regularizers)
    .map(([k, v]) => ` ${k} ${v.toFixed(4)}`)
    .join("");
  return (
    `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${m.step}/${m.totalSteps} ` +
    `loss ${m.loss.toFixed(4)}${regs} lr ${m.lr.toPrecision(3)} ${m.imagesPerSecond.toFixed(1)} img/s ETA ${formatDuration(eta)}`
  );
}

interface Writable {
  write(s: string): unknown;
  isTTY?: boolean;
}

/**
 * A CLI progress bar. On a terminal it redraws one line (at most every `intervalMs`); elsewhere it
 * writes a line every `every` steps. Pass the stream explicitly (e.g. process.stderr).
 */
export function progressBar(stream: Writable, o: { every?: number; intervalMs?: number } = {}): TrainCallback {
  let start = 0;
  let last = 0;
  const tty = stream.isTTY === true;
  const every = o.every ?? 50;
  return {
    onStart(info) {
      start = info.startStep;
    },
    onStep(m) {
      const now = Date.now();
      const final = m.step === m.totalSteps;
      if (tty) {
        if (!final && now - last < (o.intervalMs ?? 200)) return;
        last = now;
        stream.write(`\r${progressLine(m, start)}\x1b[K${final ? "\n" : ""}`);
      } else if (m.step % every === 0 || final) {
        stream.write(`${progressLine(m, start)}\n`);
      }
    },
  };
}

interface TslabDisplay {
  html(s: string): void;
  text(s: string): void;
}

/** tslab's display for a live output, or undefined outside a tslab kernel (where tslab's display throws). */
export function notebookDisplay(): TslabDisplay | undefined {
  try {
    // biome-ignore lint/suspicious/noExplicitAny: tslab is optional at runtime and untyped here.
    const tslab = require("tslab") as any;
    if (typeof tslab?.newDisplay !== "function") return undefined;
    const d = tslab.newDisplay() as TslabDisplay;
    d.text(""); // throws "Not ready" outside a kernel
    return d;
  } catch {
    return undefined;
  }
}

const escapeHtml = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

/**
 * A live progress display in a notebook: one output updated in place with a bar, the metrics and a
 * loss sparkline. Outside a kernel it does nothing (or forwards to `fallback`, e.g. progressBar(process.stderr)).
 */
export function notebookProgress(
  o: { intervalMs?: number; fallback?: TrainCallback; display?: TslabDisplay } = {},
): TrainCallback {
  const display = o.display ?? notebookDisplay();
  if (!display) return o.fallback ?? {};
  let start = 0;
  let last = 0;
  const losses: number[] = [];
  const render = (m: StepMetrics) => {
    const pct = m.totalSteps ? (100 * m.step) / m.totalSteps : 100;
    const shown = losses.slice(-200);
    const lo = Math.min(...shown);
    const hi = Math.max(...shown);
    const pts = shown
      .map(
        (v, i) =>
          `${((i / Math.max(1, shown.length - 1)) * 200).toFixed(1)},${(38 - ((v - lo) / (hi - lo || 1)) * 36).toFixed(1)}`,
      )
      .join(" ");
    display.html(
      `<div style="font-family:monospace;font-size:12px">` +
        `<div style="width:320px;height:10px;border:1px solid #888"><div style="width:${pct.toFixed(1)}%;height:100%;background:#4a8"></div></div>` +
        `<div>${escapeHtml(progressLine(m, start, 0).replace(/^\[\] /, ""))}</div>` +
        `<svg width="200" height="40"><polyline fill="none" stroke="#36c" points="${pts}"/></svg></div>`,
    );
  };
  return {
    onStart(info) {
      start = info.startStep;
    },
    onStep(m) {
      losses.push(m.loss);
      const now = Date.now();
      if (m.step !== m.totalSteps && now - last < (o.intervalMs ?? 250)) return;
      last = now;
      render(m);
    },
  };
}

/** Runs `evaluate` every `every` steps (and at the end) and hands its metrics to `onResult` (e.g. a tracker). */
export function evaluateEvery(
  every: number,
  evaluate: (ctx: TrainContext, step: number) => Promise<Record<string, number>>,
  onResult: (values: Record<string, number>, step: number) => void | Promise<void>,
): TrainCallback {
  let lastStep = 0;
  return {
    async onStep(m, ctx) {
      lastStep = m.step;
      if (m.step % every === 0) await onResult(await evaluate(ctx, m.step), m.step);
    },
    async onEnd(r, ctx) {
      if (r.steps > 0 && lastStep % every !== 0) await onResult(await evaluate(ctx, r.steps), r.steps);
    },
  };
}
