// Figures that stay small and still render offline in the MLflow UI: each .html artifact is a few KB
// that loads the run's one copy of plotly.js. Checked in a real browser (Debian's chromium through
// playwright-core) on the real MLflow UI, with every request off this machine refused.
import { copyFileSync } from "node:fs";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { CHROMIUM_ARGS, chromiumUnavailable, DEFAULT_CHROMIUM, figureHtml, PLOTLY_ARTIFACT } from "../src/plots/html";
import { startRun } from "../src/tracking/run";
import { python, serverDuring, tempDir } from "./tracking-helpers";

const server = serverDuring(test);
const journalDir = tempDir("journal");
const figure = (title: string) => ({
  data: [{ type: "bar", x: ["arcface", "cosface"], y: [0.91, 0.88], error_y: { type: "data", array: [0.01, 0.02] } }],
  layout: { title: { text: title }, width: 640, height: 400 },
});

test("the HTML figure without a run id inlines plotly.js; with one it is a few KB", () => {
  assert.ok(figureHtml(figure("x")).length > 4_000_000);
  const small = figureHtml(figure("x"), "x", {
    runId: "r1",
    artifact: PLOTLY_ARTIFACT,
    figurePath: "figures/a/x.html",
  });
  assert.ok(small.length < 5000, `${small.length} bytes`);
  assert.ok(small.includes(`"../../${PLOTLY_ARTIFACT}"`), "the relative fallback climbs out of figures/a/");
  assert.ok(small.includes("/get-artifact?path=plotly%2Fplotly-"));
});

test("one copy of plotly.js per run; each figure a few KB; the UI's artifact view renders it offline", async () => {
  const run = await startRun({
    trackingUri: server.url,
    experiment: "figures",
    name: "figs",
    journalDir,
    systemMetrics: false,
  });
  await run.logFigure(figure("accuracy"), "figures/accuracy", { png: false });
  await run.logFigure(figure("second"), "second", { png: false });
  assert.is((await run.end()).pending, 0);
  const sizes = await python<Record<string, number>>(
    `
import json, mlflow
c = mlflow.MlflowClient()
def walk(p=None):
    for f in c.list_artifacts(${JSON.stringify(run.id)}, p):
        yield from (walk(f.path) if f.is_dir else [(f.path, f.file_size)])
print(json.dumps(dict(walk())))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
  assert.equal(Object.keys(sizes).sort(), ["figures/accuracy.html", PLOTLY_ARTIFACT, "second.html"]);
  assert.ok(sizes["figures/accuracy.html"] < 5000 && sizes["second.html"] < 5000, JSON.stringify(sizes));
  // The server sends the copy as JavaScript (a .js artifact would be text/plain with nosniff: refused).
  const copy = await fetch(`${server.url}/get-artifact?path=${encodeURIComponent(PLOTLY_ARTIFACT)}&run_uuid=${run.id}`);
  assert.match(copy.headers.get("content-type") ?? "", /javascript/);

  const missing = chromiumUnavailable();
  assert.is(missing, undefined, `this check needs a browser: ${missing}`);
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: DEFAULT_CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const origin = new URL(server.url).origin;
    const refused: string[] = [];
    // No internet: anything not on the MLflow server (or a blob: of its page) is refused.
    await page.context().route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith(origin) || url.startsWith("blob:") || url.startsWith("data:")) return route.continue();
      refused.push(url);
      return route.abort();
    });
    for (const name of ["figures/accuracy.html", "second.html"]) {
      await page.goto(`${server.url}/#/experiments/${run.experimentId}/runs/${run.id}/artifacts/${name}`);
      const frame = await new Promise<import("playwright-core").Frame>((resolve, reject) => {
        const deadline = Date.now() + 90_000;
        const look = async () => {
          for (const f of page.frames()) {
            if (f === page.mainFrame()) continue;
            if (
              (await f
                .locator(".main-svg")
                .count()
                .catch(() => 0)) > 0
            )
              return resolve(f);
          }
          if (Date.now() > deadline) return reject(new Error(`no plot rendered in the artifact view of ${name}`));
          setTimeout(look, 500);
        };
        void look();
      });
      assert.ok(frame.url().startsWith("blob:"), `the preview is a blob: iframe (${frame.url()})`);
      const bars = await frame.locator(".trace.bars .point").count();
      assert.is(bars, 2, "both bars drawn");
      const shot = path.join(tempDir("shot"), `${path.basename(name, ".html")}.png`);
      await page.screenshot({ path: shot });
      if (process.env.MARGINLAB_KEEP_SCREENSHOTS)
        copyFileSync(shot, path.join(process.env.MARGINLAB_KEEP_SCREENSHOTS, path.basename(shot)));
    }
    assert.not.ok(
      refused.some((u) => u.includes("plot.ly")),
      `the CDN was not needed: ${refused.join(", ")}`,
    );
  } finally {
    await browser.close();
  }
});

test.run();
