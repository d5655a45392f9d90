// Notebook display helpers outside a kernel (no-ops returning false) and the compact inline figure HTML.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { LiveProgress, progressHtml, showFigure, showTable, tableHtml } from "../src/notebook/display";
import { inlineFigureHtml, PLOTLY_CDN, PLOTLY_SERVER_PATH } from "../src/plots/inline";

test("outside a kernel every display helper is a no-op that returns false", () => {
  assert.is(showFigure({ data: [] }), false);
  assert.is(showTable([{ a: 1 }]), false);
  const live = new LiveProgress();
  assert.is(live.active, false);
  live.update({ fraction: 0.5, label: "x" }, true); // does not throw
});

test("an inline figure is a few KB: a div, its data, and a loader (server copy, then the CDN), not the plotly bundle", () => {
  const fig = {
    data: [{ type: "scatter", x: [1, 2, 3], y: [3, 1, 2], name: "</script><b>" }],
    layout: { height: 300 },
  };
  const html = inlineFigureHtml(fig, { id: "f1" });
  assert.ok(html.length < 4000, `${html.length} bytes`);
  assert.match(html, /<div id="f1" class="marginlab-figure" style="width:100%;height:300px">/);
  assert.ok(html.includes(PLOTLY_SERVER_PATH) && html.includes(PLOTLY_CDN));
  assert.ok(html.includes("jupyter-config-data"), "uses the page's baseUrl");
  assert.not.ok(html.includes("</script><b>"), "figure text cannot close the script element");
  assert.is((html.match(/<\/script>/g) ?? []).length, 1);
  const two = inlineFigureHtml(fig);
  const three = inlineFigureHtml(fig);
  assert.is.not(/id="([^"]+)"/.exec(two)![1], /id="([^"]+)"/.exec(three)![1], "each figure gets its own element id");
});

test("tables and progress render escaped HTML", () => {
  const html = tableHtml(
    [
      { name: "<x>", v: 0.123456 },
      { name: "y", w: 3 },
    ],
    "T & U",
  );
  assert.match(html, /<th>name<\/th><th>v<\/th><th>w<\/th>/);
  assert.match(html, /<td>&lt;x&gt;<\/td><td>0\.1235<\/td><td><\/td>/);
  assert.match(html, /T &amp; U/);
  assert.match(progressHtml({ fraction: 0.25, label: "a<b" }), /width:25\.0%.* 25% a&lt;b/);
});

test.run();
