/**
 * Ready-made training callbacks: a CLI progress bar (rate and ETA) and a live notebook display, both
 * rendered by src/progress.ts, a tracker bridge (anything with logMetrics(values, step), e.g. the MLflow Run of src/tracking),
 * and periodic evaluation. Library code never prints: the progress bar writes only to the stream it
 * is given, and the notebook display only inside a tslab kernel.
 */
import { type Display, LiveProgress } from "../notebook/display";
import { formatDuration, type ProgressView, progressText, TextProgress, type TextStream } from "../progress";
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

/** The progress view of a training step: `5/100 loss 3.2100 lr 0.100 45.3 img/s`, detail `ETA 1:20`. */
export function trainingView(m: StepMetrics, startStep: number): ProgressView {
  const done = m.step - startStep;
  const perStep = done > 0 ? m.elapsedSeconds / done : Number.NaN;
  const regs = Object.entries(m.regularizers)
    .map(([k, v]) => ` ${k} ${v.toFixed(4)}`)
    .join("");
  return {
    fraction: m.totalSteps ? m.step / m.totalSteps : 1,
    label: `${m.step}/${m.totalSteps} loss ${m.loss.toFixed(4)}${regs} lr ${m.lr.toPrecision(3)} ${m.imagesPerSecond.toFixed(1)} img/s`,
    detail: `ETA ${formatDuration(perStep * (m.totalSteps - m.step))}`,
  };
}

/** One line of progress: bar, percentage, step/total, loss, lr, images/s and ETA. */
export function progressLine(m: StepMetrics, startStep: number, width = 24): string {
  return progressText(trainingView(m, startStep), width);
}

/**
 * A CLI progress bar (src/progress.ts TextProgress). On a terminal it redraws one line (at most every
 * `intervalMs`); elsewhere it writes a line every `every` steps (default 50) and at the end. Warnings
 * (e.g. resuming from an older checkpoint) are written as `warning: ...` lines. Pass the stream
 * explicitly (e.g. process.stderr).
 */
export function progressBar(stream: TextStream, o: { every?: number; intervalMs?: number } = {}): TrainCallback {
  let start = 0;
  const bar = new TextProgress(stream, { intervalMs: o.intervalMs });
  const every = o.every ?? 50;
  return {
    onStart(info) {
      start = info.startStep;
    },
    onStep(m) {
      const mark = m.step === m.totalSteps ? "final" : m.step % every === 0 ? "log" : undefined;
      bar.update(trainingView(m, start), mark);
    },
    onWarning(w) {
      stream.write(`warning: ${w.message}\n`);
    },
  };
}

/**
 * A live progress display in a notebook (src/notebook/display.ts LiveProgress): one output updated in
 * place with a bar, the metrics and a loss sparkline. Outside a kernel it does nothing (or forwards to
 * `fallback`, e.g. progressBar(process.stderr)).
 */
export function notebookProgress(
  o: { intervalMs?: number; fallback?: TrainCallback; display?: Display } = {},
): TrainCallback {
  const live = new LiveProgress({ intervalMs: o.intervalMs, display: o.display });
  if (!live.active) return o.fallback ?? {};
  let start = 0;
  const losses: number[] = [];
  return {
    onStart(info) {
      start = info.startStep;
    },
    onStep(m) {
      losses.push(m.loss);
      live.update({ ...trainingView(m, start), sparkline: losses }, m.step === m.totalSteps);
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
