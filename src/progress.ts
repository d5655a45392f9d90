/**
 * The one progress module: a progress view (fraction, label, detail) rendered as the text line the CLI
 * draws (`TextProgress`, one redrawn line on a terminal, plain lines elsewhere) and as the HTML the
 * notebook widget shows (src/notebook/display.ts `LiveProgress`). Training (src/train/callbacks.ts) and
 * ablations (src/cli/ablate.ts, experiments/notebook.ts) build views; nothing here prints by itself.
 */

export interface ProgressView {
  /** Done, in [0, 1]. */
  fraction: number;
  label: string;
  /** Shown after the label (e.g. elapsed time and ETA). */
  detail?: string;
  /** Recent values (e.g. the loss) drawn as a sparkline in HTML. */
  sparkline?: number[];
}

/** Escapes text for HTML element content and double-quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] as string);
}

/** m:ss (h:mm:ss from an hour), or --:-- when unknown. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

const clamp01 = (f: number) => (Number.isFinite(f) ? Math.max(0, Math.min(1, f)) : 0);

/** `[#####...]  38% label  detail` */
export function progressText(view: ProgressView, width = 24): string {
  const f = clamp01(view.fraction);
  const filled = Math.round(f * width);
  const pct = `${(f * 100).toFixed(0).padStart(3)}%`;
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${pct} ${view.label}${view.detail ? `  ${view.detail}` : ""}`;
}

function sparklineSvg(values: number[]): string {
  const shown = values.filter(Number.isFinite).slice(-200);
  if (shown.length === 0) return "";
  const lo = Math.min(...shown);
  const hi = Math.max(...shown);
  const pts = shown
    .map(
      (v, i) =>
        `${((i / Math.max(1, shown.length - 1)) * 200).toFixed(1)},${(38 - ((v - lo) / (hi - lo || 1)) * 36).toFixed(1)}`,
    )
    .join(" ");
  return `<div><svg width="200" height="40"><polyline fill="none" stroke="#36c" points="${pts}"/></svg></div>`;
}

/** The notebook rendering of a view: a bar, the percentage, label and detail, and the sparkline if any. */
export function progressHtml(view: ProgressView): string {
  const pct = clamp01(view.fraction) * 100;
  return (
    `<div class="marginlab-progress" style="font-family:monospace">` +
    `<div style="width:320px;height:12px;border:1px solid #888;display:inline-block;vertical-align:middle"><div style="width:${pct.toFixed(1)}%;height:100%;background:#4c8bf5"></div></div>` +
    ` ${pct.toFixed(0)}% ${escapeHtml(view.label)}${view.detail ? ` <span style="color:#666">${escapeHtml(view.detail)}</span>` : ""}` +
    `${view.sparkline ? sparklineSvg(view.sparkline) : ""}</div>`
  );
}

/** Progress of a sequence of runs: run `index` of `total`, `step` of `steps` inside it (an ablation). */
export interface SequenceProgress {
  index: number;
  total: number;
  label: string;
  step: number;
  steps: number;
  fraction: number;
  elapsedSeconds: number;
  etaSeconds?: number;
}

/** `2/4 cfg 5/10`, detail `0:30 elapsed, ETA 0:50`. */
export function sequenceView(p: SequenceProgress): ProgressView {
  const inner = p.steps > 0 ? ` ${p.step}/${p.steps}` : "";
  return {
    fraction: p.fraction,
    label: `${p.index + 1}/${p.total} ${p.label}${inner}`,
    detail: `${formatDuration(p.elapsedSeconds)} elapsed, ETA ${formatDuration(p.etaSeconds)}`,
  };
}

/** What TextProgress writes to (process.stderr, or anything with write). */
export interface TextStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * A text progress line. On a terminal it redraws one line in place, at most every `intervalMs` (default
 * 200) unless the update is marked; elsewhere it writes a line only for marked updates. `"log"` marks an
 * update worth a line in a log, `"final"` the last one (which ends the terminal line).
 */
export class TextProgress {
  private last = 0;
  private readonly tty: boolean;

  constructor(
    private readonly stream: TextStream,
    private readonly options: { intervalMs?: number; width?: number } = {},
  ) {
    this.tty = stream.isTTY === true;
  }

  update(view: ProgressView, mark?: "log" | "final"): void {
    const line = progressText(view, this.options.width);
    if (!this.tty) {
      if (mark) this.stream.write(`${line}\n`);
      return;
    }
    const now = Date.now();
    if (!mark && now - this.last < (this.options.intervalMs ?? 200)) return;
    this.last = now;
    const cols = this.stream.columns ?? 0;
    this.stream.write(`\r${cols > 1 ? line.slice(0, cols - 1) : line}\x1b[K${mark === "final" ? "\n" : ""}`);
  }
}
