/**
 * Compact Plotly figures for notebook outputs: a <div> plus a few hundred bytes of script, instead of
 * the 4.8 MB plotly.js bundle per cell. plotly.js is loaded once per page, from the Jupyter server
 * (<baseUrl>files/node_modules/plotly.js-dist-min/plotly.min.js, when JupyterLab serves the project
 * root), falling back to the CDN build of the same version.
 */
import { PLOTLY_CDN, type PlotlyFigure, scriptSafeJson } from "./html";

export { PLOTLY_CDN };
export const PLOTLY_SERVER_PATH = "files/node_modules/plotly.js-dist-min/plotly.min.js";

/** Script text: defines window.__marginlabPlotly, a promise of Plotly, loading the library at most once. */
export function plotlyLoaderScript(): string {
  return `(function(){if(window.__marginlabPlotly)return;window.__marginlabPlotly=new Promise(function(ok,bad){if(window.Plotly)return ok(window.Plotly);var base="/";try{var c=document.getElementById("jupyter-config-data");if(c)base=JSON.parse(c.textContent).baseUrl||"/";}catch(e){}function add(src,next){var s=document.createElement("script");s.src=src;s.onload=function(){window.Plotly?ok(window.Plotly):next()};s.onerror=next;document.head.appendChild(s);}add(base.replace(/\\/?$/,"/")+${JSON.stringify(PLOTLY_SERVER_PATH)},function(){add(${JSON.stringify(PLOTLY_CDN)},function(){bad(new Error("plotly.js could not be loaded"))})});});})();`;
}

let counter = 0;

/** A self-contained HTML fragment that draws `figure` (a few KB plus the figure's data). */
export function inlineFigureHtml(figure: PlotlyFigure, options: { id?: string; height?: number } = {}): string {
  const id = options.id ?? `marginlab-fig-${Date.now().toString(36)}-${(counter++).toString(36)}`;
  const layoutHeight = typeof figure.layout?.height === "number" ? (figure.layout.height as number) : undefined;
  const height = options.height ?? layoutHeight ?? 420;
  const config = { responsive: true, displaylogo: false, ...(figure.config ?? {}) };
  return [
    `<div id="${id}" class="marginlab-figure" style="width:100%;height:${height}px"></div>`,
    `<script>${plotlyLoaderScript()}window.__marginlabPlotly.then(function(P){P.newPlot(${JSON.stringify(id)},${scriptSafeJson(figure.data)},${scriptSafeJson(figure.layout ?? {})},${scriptSafeJson(config)});}).catch(function(e){var d=document.getElementById(${JSON.stringify(id)});if(d)d.textContent=String(e);});</script>`,
  ].join("\n");
}
