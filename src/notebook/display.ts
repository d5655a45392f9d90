/**
 * Notebook display helpers on tslab (the one place that loads it): a Plotly figure (compact HTML), a
 * table, a live progress display (one display entry overwritten in place, rendered by src/progress.ts).
 * Outside a kernel tslab.display throws "Not ready"; every helper here then does nothing and returns
 * false, so the same code runs in scripts and tests.
 */
import type { PlotlyFigure } from "../plots/html";
import { inlineFigureHtml } from "../plots/inline";
import { escapeHtml, type ProgressView, progressHtml } from "../progress";

export { escapeHtml, type ProgressView, progressHtml };

/** A tslab display (what `tslab.newDisplay()` returns); LiveProgress only needs `html`. */
export interface Display {
  html(s: string): void;
  text?(s: string): void;
  markdown?(s: string): void;
}
interface Tslab {
  display: Display;
  newDisplay(): Display;
}

let tslabModule: Tslab | null | undefined;

function tslab(): Tslab | null {
  if (tslabModule === undefined) {
    try {
      tslabModule = require("tslab") as Tslab;
    } catch {
      tslabModule = null;
    }
  }
  return tslabModule;
}

/** Runs a display call; false when there is no kernel to display in. */
function attempt(fn: (t: Tslab) => void): boolean {
  const t = tslab();
  if (!t) return false;
  try {
    fn(t);
    return true;
  } catch {
    return false;
  }
}

/** Shows a Plotly figure inline (plotly.js loaded once per page). */
export function showFigure(figure: PlotlyFigure, options: { height?: number } = {}): boolean {
  return attempt((t) => t.display.html(inlineFigureHtml(figure, options)));
}

export function showHtml(html: string): boolean {
  return attempt((t) => t.display.html(html));
}

export function showMarkdown(markdown: string): boolean {
  return attempt((t) => t.display.markdown?.(markdown));
}

function cellText(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (!Number.isFinite(v) || Number.isInteger(v)) return String(v);
    return Math.abs(v) >= 100 ? v.toFixed(1) : Number(v.toPrecision(4)).toString();
  }
  return String(v);
}

/** An HTML table of row objects (columns: the union of the rows' keys, in first-seen order). */
export function tableHtml(rows: Array<Record<string, unknown>>, title?: string): string {
  const columns: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!columns.includes(k)) columns.push(k);
  const head = columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("");
  const body = rows
    .map((r) => `<tr>${columns.map((c) => `<td>${escapeHtml(cellText(r[c]))}</td>`).join("")}</tr>`)
    .join("\n");
  const caption = title ? `<caption style="text-align:left;font-weight:bold">${escapeHtml(title)}</caption>` : "";
  return `<table class="marginlab-table">${caption}<thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

export function showTable(rows: Array<Record<string, unknown>>, title?: string): boolean {
  return attempt((t) => t.display.html(tableHtml(rows, title)));
}

/**
 * A live progress display: one output entry updated in place, at most every `intervalMs` (default 250)
 * unless forced. Shows into `display` when given, else into a new tslab display; outside a kernel it is
 * inactive and every update is a no-op.
 */
export class LiveProgress {
  private readonly view: Display | undefined;
  private last = 0;
  private readonly intervalMs: number;

  constructor(options: { intervalMs?: number; display?: Display } = {}) {
    this.intervalMs = options.intervalMs ?? 250;
    if (options.display) {
      this.view = options.display;
      return;
    }
    const t = tslab();
    try {
      this.view = t ? t.newDisplay() : undefined;
      this.view?.html(progressHtml({ fraction: 0, label: "starting" })); // throws "Not ready" outside a kernel
    } catch {
      this.view = undefined;
    }
  }

  /** Whether anything is displayed (false outside a kernel). */
  get active(): boolean {
    return this.view !== undefined;
  }

  update(p: ProgressView, force = false): void {
    if (!this.view) return;
    const now = Date.now();
    if (!force && now - this.last < this.intervalMs) return;
    this.last = now;
    try {
      this.view.html(progressHtml(p));
    } catch {
      // the kernel went away; progress is cosmetic
    }
  }
}
