// Notebook display helpers outside a kernel (no-ops returning false) and the text forms of tables and
// figures (what an untrusted notebook shows; test/notebooks-untrusted.test.ts runs them in the kernel).
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  figureMarkdown,
  LiveProgress,
  progressHtml,
  showFigure,
  showMarkdown,
  showTable,
  tableHtml,
  tableMarkdown,
} from "../src/notebook/display";

test("outside a kernel every display helper is a no-op that returns false", async () => {
  assert.is(await showFigure({ data: [] }), false);
  assert.is(showMarkdown("x"), false);
  assert.is(showTable([{ a: 1 }]), false);
  const live = new LiveProgress();
  assert.is(live.active, false);
  live.update({ fraction: 0.5, label: "x" }, true); // does not throw
});

test("a figure's numbers as a markdown table: each trace's points with their error, long traces cut", () => {
  const md = figureMarkdown({
    data: [
      { type: "bar", name: "a|b", x: ["arcface", "cosface"], y: [0.91234, 0.5], error_y: { array: [0.01, 0.02] } },
      { type: "scatter", y: Array.from({ length: 30 }, (_, i) => i) },
    ],
    layout: { title: { text: "TAR <b>at</b> FAR" } },
  });
  const lines = md.split("\n");
  assert.is(lines[0], "**TAR at FAR** (no PNG renderer here: the figure's numbers)");
  assert.is(lines[4], "| a\\|b | arcface | 0.9123 | 0.01 |");
  assert.is(lines[6], "| trace 2 | 0 | 0 |  |");
  assert.is(lines.at(-1), "| trace 2 | ... | 5 more points | |");
  assert.is(lines.length, 4 + 2 + 25 + 1);
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
  assert.is(
    tableMarkdown(
      [
        { name: "x|y", v: 0.123456 },
        { name: "z", w: 3 },
      ],
      "T",
    ),
    "**T**\n\n| name | v | w |\n|---|---|---|\n| x\\|y | 0.1235 |  |\n| z |  | 3 |",
  );
});

test.run();
