/**
 * Notebook display helpers on tslab (the one place that loads it): figures, tables, markdown and a live
 * progress display (one display entry overwritten in place, rendered by src/progress.ts).
 * Outside a kernel tslab.display throws "Not ready"; every helper here then does nothing and returns
 * false, so the same code runs in scripts and tests.
 *
 * Saved outputs must read well where the notebook is not trusted (every fresh clone: nbformat trusts
 * no cell with display data until the reader signs it). Untrusted, JupyterLab renders only its "safe"
 * renderers, first by rank: text/html (sanitized: scripts removed, so a Plotly <div> stays blank),
 * text/markdown, text/latex, image/png|jpeg|gif, text/plain; image/svg+xml and JavaScript are not
 * safe and show nothing. nbconvert's HTML export (and viewers built on it) prefer text/html, then
 * markdown, svg, png. So each output is one bundle of several mime types:
 * - a figure: image/png (headless Chromium, src/plots/html.ts) or, without one, a text/markdown table
 *   of its numbers; plus application/vnd.plotly.v1+json, plain JSON that Plotly-aware front ends
 *   (VS Code, JupyterLab with jupyterlab-plotly) draw interactively and the others skip; never
 *   text/html, which would win the choice and show blank;
 * - a table: text/html (renders sanitized), text/markdown and text/plain.
 */
import { figurePng, type PlotlyFigure } from "../plots/html";
import { escapeHtml, type ProgressView, progressHtml } from "../progress";

export { escapeHtml, type ProgressView, progressHtml };

/** The mime type Plotly's own renderers (jupyterlab-plotly, VS Code, nteract) draw. */
export const PLOTLY_MIME = "application/vnd.plotly.v1+json";
/** The largest Plotly JSON (characters) a figure's output carries beside its PNG. */
export const PLOTLY_JSON_LIMIT = 100_000;

/** One display output: mime type -> data (strings; JSON values for +json types; binary as base64). */
export type MimeBundle = Record<string, unknown>;

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
/** tslab's kernel side: sends one display_data message (set while a cell executes). */
interface TslabJupyter {
  lastWriteDisplayData:
    | ((data: { data: MimeBundle; metadata: object; transient: object }, update: boolean) => void)
    | null;
}

let tslabModule: { public: Tslab; jupyter: TslabJupyter } | null | undefined;

function tslab(): { public: Tslab; jupyter: TslabJupyter } | null {
  if (tslabModule === undefined) {
    try {
      // tslab's Display sends one mime type per output; a bundle goes through the same sender.
      tslabModule = { public: require("tslab") as Tslab, jupyter: require("tslab/dist/jupyter") as TslabJupyter };
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
    fn(t.public);
    return true;
  } catch {
    return false;
  }
}

/** Whether a cell is executing in a kernel here (display calls would show). */
export function inKernel(): boolean {
  return typeof tslab()?.jupyter.lastWriteDisplayData === "function";
}

/** Shows one output holding every representation in `bundle` (the front end picks one). */
export function showBundle(bundle: MimeBundle): boolean {
  const send = tslab()?.jupyter.lastWriteDisplayData;
  if (typeof send !== "function") return false;
  try {
    send({ data: bundle, metadata: {}, transient: {} }, false);
    return true;
  } catch {
    return false;
  }
}

function figureTitle(figure: PlotlyFigure): string {
  const title = figure.layout?.title;
  const text = typeof title === "string" ? title : (title as { text?: unknown } | undefined)?.text;
  return typeof text === "string" ? text.replace(/<[^>]*>/g, "") : "figure";
}

/** At most this many points per trace go into a figure's markdown table. */
const TABLE_POINTS = 25;

/** A markdown table of a figure's numbers (each trace's x, y and error), where no picture can be made. */
export function figureMarkdown(figure: PlotlyFigure): string {
  const lines = [
    `**${figureTitle(figure)}** (no PNG renderer here: the figure's numbers)`,
    "",
    "| trace | x | y | ± |",
    "|---|---|---|---|",
  ];
  figure.data.forEach((raw, k) => {
    const trace = raw as { name?: unknown; x?: unknown; y?: unknown; error_y?: { array?: unknown } };
    const name = markdownCell(typeof trace.name === "string" ? trace.name : `trace ${k + 1}`);
    const ys = Array.isArray(trace.y) ? trace.y : [];
    const xs = Array.isArray(trace.x) ? trace.x : ys.map((_, i) => i);
    const errors = Array.isArray(trace.error_y?.array) ? (trace.error_y.array as unknown[]) : [];
    for (const [i, y] of ys.slice(0, TABLE_POINTS).entries()) {
      const cells = [xs[i], y, errors[i]].map((v) => markdownCell(cellText(v)));
      lines.push(`| ${name} | ${cells.join(" | ")} |`);
    }
    if (ys.length > TABLE_POINTS) lines.push(`| ${name} | ... | ${ys.length - TABLE_POINTS} more points | |`);
  });
  return lines.join("\n");
}

/** A figure's output bundle: PNG (or its numbers as markdown), the Plotly JSON, a plain-text title. */
export async function figureBundle(
  figure: PlotlyFigure,
  options: { width?: number; height?: number } = {},
): Promise<MimeBundle> {
  const layout = figure.layout ?? {};
  const width = options.width ?? (typeof layout.width === "number" ? layout.width : 900);
  const height = options.height ?? (typeof layout.height === "number" ? layout.height : 480);
  const png = await figurePng(figure, { width, height, scale: 1 });
  const bundle: MimeBundle = {
    "text/plain": `${figureTitle(figure)} (Plotly figure, ${figure.data.length} traces)`,
  };
  const plotly = { data: figure.data, layout: { ...layout, height } };
  // The interactive copy is an extra for viewers that render it; a large one (a ROC with thousands of
  // points) would make the saved notebook too big to diff, and the PNG already shows it.
  if (!("png" in png) || JSON.stringify(plotly).length <= PLOTLY_JSON_LIMIT) bundle[PLOTLY_MIME] = plotly;
  if ("png" in png) bundle["image/png"] = png.png.toString("base64");
  else bundle["text/markdown"] = figureMarkdown(figure);
  return bundle;
}

/** Shows a Plotly figure (see the top of this file for what a reader sees). */
export async function showFigure(
  figure: PlotlyFigure,
  options: { width?: number; height?: number } = {},
): Promise<boolean> {
  if (!inKernel()) return false;
  return showBundle(await figureBundle(figure, options));
}

export function showHtml(html: string): boolean {
  return attempt((t) => t.display.html(html));
}

export function showMarkdown(markdown: string): boolean {
  return showBundle({ "text/markdown": markdown, "text/plain": markdown });
}

function cellText(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (!Number.isFinite(v) || Number.isInteger(v)) return String(v);
    return Math.abs(v) >= 100 ? v.toFixed(1) : Number(v.toPrecision(4)).toString();
  }
  return String(v);
}

function markdownCell(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

function tableColumns(rows: Array<Record<string, unknown>>): string[] {
  const columns: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!columns.includes(k)) columns.push(k);
  return columns;
}

/** An HTML table of row objects (columns: the union of the rows' keys, in first-seen order). */
export function tableHtml(rows: Array<Record<string, unknown>>, title?: string): string {
  const columns = tableColumns(rows);
  const head = columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("");
  const body = rows
    .map((r) => `<tr>${columns.map((c) => `<td>${escapeHtml(cellText(r[c]))}</td>`).join("")}</tr>`)
    .join("\n");
  const caption = title ? `<caption style="text-align:left;font-weight:bold">${escapeHtml(title)}</caption>` : "";
  return `<table class="marginlab-table">${caption}<thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/** The same table in markdown (a bold title line, then a pipe table). */
export function tableMarkdown(rows: Array<Record<string, unknown>>, title?: string): string {
  const columns = tableColumns(rows);
  const line = (cells: string[]) => `| ${cells.map(markdownCell).join(" | ")} |`;
  return [
    ...(title ? [`**${markdownCell(title)}**`, ""] : []),
    line(columns),
    `|${columns.map(() => "---").join("|")}|`,
    ...rows.map((r) => line(columns.map((c) => cellText(r[c])))),
  ].join("\n");
}

export function showTable(rows: Array<Record<string, unknown>>, title?: string): boolean {
  const markdown = tableMarkdown(rows, title);
  return showBundle({ "text/html": tableHtml(rows, title), "text/markdown": markdown, "text/plain": markdown });
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
    const t = tslab()?.public;
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
