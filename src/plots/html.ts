/**
 * Plotly figures outside a notebook: a standalone HTML file that previews in the MLflow artifact
 * browser with no internet, and a PNG rendered by a headless Chromium when one is installed
 * (playwright-core driving /usr/bin/chromium). One browser is reused for all figures.
 *
 * The MLflow UI shows an .html artifact in an iframe made from a blob: URL with sandbox="allow-scripts"
 * (an opaque origin): a relative <script src> cannot resolve there, fetch() is cross-origin, but a
 * classic script from the server loads, and the blob URL still names the server's origin. The server
 * sends `.js` artifacts as text/plain with nosniff (refused as a script) but `.mjs` as text/javascript.
 * So a run keeps one copy of plotly.js as an `.mjs` artifact and each figure is a few KB that loads it
 * from `<origin>/get-artifact?path=...&run_uuid=...`; the sibling relative path (a downloaded artifact
 * folder) and the CDN are the fallbacks. Without a run id (offline) the figure inlines plotly.js.
 */
import { existsSync, readFileSync } from "node:fs";
import { escapeHtml } from "../progress";

const PLOTLY_VERSION = (require("plotly.js-dist-min/package.json") as { version: string }).version;
/** The CDN build of the bundled plotly.js version (a fallback where the internet is reachable). */
export const PLOTLY_CDN = `https://cdn.plot.ly/plotly-${PLOTLY_VERSION}.min.js`;

/** A loose Plotly figure: data traces, layout and config as plotly.js takes them. */
export interface PlotlyFigure {
  data: unknown[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
}

export const DEFAULT_CHROMIUM = "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

let plotlySource: string | undefined;

/** plotly.js (plotly.js-dist-min) as text, read once. */
export function plotlyJs(): string {
  if (plotlySource === undefined) {
    const file = require.resolve("plotly.js-dist-min/plotly.min.js");
    // Defensive: a literal "</script" inside would end the inline <script> element early.
    plotlySource = readFileSync(file, "utf8").replace(/<\/script/gi, "<\\/script");
  }
  return plotlySource;
}

/** JSON that is safe inside <script>: no "</script", "<!--", or line separators that end it. */
export function scriptSafeJson(value: unknown): string {
  return JSON.stringify(value ?? null)
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

/** The run artifact that holds a run's one copy of plotly.js (".mjs": served as JavaScript). */
export const PLOTLY_ARTIFACT = `plotly/plotly-${PLOTLY_VERSION}.min.mjs`;

/** Where a figure page gets plotly.js: inlined (~4.8 MB), or a run's copy on the MLflow server. */
export type PlotlySource = { inline: true } | { runId: string; artifact: string; figurePath: string };

/** Relative path from one artifact to another (both run-relative, "/"-separated). */
function relativeArtifactPath(from: string, to: string): string {
  const up = from
    .split("/")
    .slice(0, -1)
    .map(() => "..");
  return [...up, to].join("/");
}

/** Script that loads plotly.js from the candidates in turn, then draws. */
function loaderScript(source: Exclude<PlotlySource, { inline: true }>, draw: string): string {
  const relative = relativeArtifactPath(source.figurePath, source.artifact);
  const query = `/get-artifact?path=${encodeURIComponent(source.artifact)}&run_uuid=${encodeURIComponent(source.runId)}`;
  return `(function(){var c=[];try{var o=new URL(location.href).origin;if(o&&o!=="null")c.push(o+${JSON.stringify(query)});}catch(e){}
c.push(${JSON.stringify(relative)});c.push(${JSON.stringify(PLOTLY_CDN)});
function draw(){${draw}}
function next(i){if(window.Plotly)return draw();if(i>=c.length){document.getElementById("g").textContent="plotly.js could not be loaded (tried: "+c.join(", ")+")";return;}
var s=document.createElement("script");s.src=c[i];s.onload=function(){window.Plotly?draw():next(i+1)};s.onerror=function(){next(i+1)};document.head.appendChild(s);}
next(0);})();`;
}

/**
 * A standalone HTML page showing the figure. `source` says where plotly.js comes from: inlined by
 * default (~4.8 MB, works anywhere), or a run's copy (a few KB; see the top of this file).
 */
export function figureHtml(figure: PlotlyFigure, title = "figure", source: PlotlySource = { inline: true }): string {
  const config = { responsive: true, ...(figure.config ?? {}) };
  const draw = `Plotly.newPlot("g", ${scriptSafeJson(figure.data)}, ${scriptSafeJson(figure.layout ?? {})}, ${scriptSafeJson(config)});`;
  return [
    "<!doctype html>",
    '<html><head><meta charset="utf-8">',
    `<title>${escapeHtml(title)}</title>`,
    "<style>html,body{margin:0;height:100%}#g{width:100%;height:100%}</style>",
    "</head><body>",
    '<div id="g"></div>',
    "inline" in source
      ? `<script>${plotlyJs()}</script>\n<script>${draw}</script>`
      : `<script>${loaderScript(source, draw)}</script>`,
    "</body></html>",
    "",
  ].join("\n");
}

export interface PngOptions {
  width?: number;
  height?: number;
  scale?: number;
  /** Chromium to drive; default MARGINLAB_CHROMIUM or /usr/bin/chromium. */
  executablePath?: string;
}

export type PngResult = { png: Buffer } | { skipped: string };

interface Renderer {
  close(): Promise<void>;
  render(figure: PlotlyFigure, width: number, height: number, scale: number): Promise<Buffer>;
}

let renderer: Promise<Renderer> | undefined;
let rendererPath: string | undefined;

async function launch(executablePath: string): Promise<Renderer> {
  const { chromium } = await import("playwright-core");
  // playwright gives the browser a fresh temporary profile of its own.
  const browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
  const page = await browser.newPage();
  // plotly.js is loaded once into one page; each figure is drawn off-screen by Plotly.toImage.
  await page.setContent('<!doctype html><html><head><meta charset="utf-8"></head><body></body></html>');
  await page.addScriptTag({ content: plotlyJs() });
  return {
    async close() {
      await browser.close().catch(() => undefined);
    },
    async render(figure, width, height, scale) {
      const dataUrl = await page.evaluate(
        ([fig, w, h, s]) =>
          // biome-ignore lint/suspicious/noExplicitAny: plotly.js global inside the page
          (globalThis as any).Plotly.toImage(fig, { format: "png", width: w, height: h, scale: s }) as Promise<string>,
        [{ data: figure.data, layout: figure.layout ?? {} }, width, height, scale] as const,
      );
      return Buffer.from(dataUrl.slice(dataUrl.indexOf(",") + 1), "base64");
    },
  };
}

/** Why no PNG can be made here, or undefined when a Chromium exists. */
export function chromiumUnavailable(
  executablePath = process.env.MARGINLAB_CHROMIUM ?? DEFAULT_CHROMIUM,
): string | undefined {
  if (!existsSync(executablePath)) {
    return `no headless Chromium at ${executablePath} (install Debian's chromium, or set MARGINLAB_CHROMIUM); HTML only`;
  }
  return undefined;
}

/** Renders a PNG with the shared headless browser; {skipped: reason} when there is no Chromium. */
export async function figurePng(figure: PlotlyFigure, options: PngOptions = {}): Promise<PngResult> {
  const executablePath = options.executablePath ?? process.env.MARGINLAB_CHROMIUM ?? DEFAULT_CHROMIUM;
  const missing = chromiumUnavailable(executablePath);
  if (missing) return { skipped: missing };
  if (renderer && rendererPath !== executablePath) await closeFigureRenderer();
  if (!renderer) {
    rendererPath = executablePath;
    renderer = launch(executablePath);
    renderer.catch(() => {
      renderer = undefined;
    });
  }
  let r: Renderer;
  try {
    r = await renderer;
  } catch (error) {
    return {
      skipped: `headless Chromium at ${executablePath} did not start: ${(error as Error).message.split("\n")[0]}`,
    };
  }
  const layout = figure.layout ?? {};
  const width = options.width ?? (typeof layout.width === "number" ? layout.width : 900);
  const height = options.height ?? (typeof layout.height === "number" ? layout.height : 540);
  return { png: await r.render(figure, width, height, options.scale ?? 2) };
}

/** Closes the shared browser (the next PNG starts a new one). */
export async function closeFigureRenderer(): Promise<void> {
  const current = renderer;
  renderer = undefined;
  rendererPath = undefined;
  if (current) await (await current.catch(() => undefined))?.close();
}
