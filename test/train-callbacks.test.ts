/** Progress, notebook and tracker callbacks, driven by the real trainer on a tiny model. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createBackbone } from "../src/backbones";
import { tf } from "../src/backend";
import type { Dataset } from "../src/data/dataset";
import { Softmax } from "../src/losses/softmax";
import { formatDuration, progressText, sequenceView, TextProgress } from "../src/progress";
import {
  evaluateEvery,
  type MetricsTracker,
  metricsRecord,
  notebookProgress,
  progressBar,
  trackerCallback,
} from "../src/train/callbacks";
import { train } from "../src/train/trainer";

// compile-time check: the MLflow Run of src/tracking is a MetricsTracker
const runIsTracker: import("../src/tracking/run").Run extends MetricsTracker ? true : never = true;
void runIsTracker;

const data: Dataset = {
  name: "toy",
  size: 32,
  numClasses: 4,
  labels: Int32Array.from({ length: 32 }, (_, i) => i % 4),
  shape: [8, 8, 1],
  async get(i) {
    const data = new Uint8Array(64).map((_, k) => ((i % 4) * 60 + k * (1 + (i % 4))) % 256);
    return { data, width: 8, height: 8, channels: 1, label: i % 4 };
  },
};

function setup() {
  const backbone = createBackbone({ name: "lenet++", inputShape: [8, 8, 1], widths: [4], embeddingDim: 3, seed: 1 });
  const head = new Softmax({ numClasses: 4, embeddingDim: 3, seed: 1 });
  return { backbone, head };
}

test("tracker receives flattened metrics per step; progress bar writes rate and ETA lines", async () => {
  const logged: { values: Record<string, number>; step: number }[] = [];
  const tracker = { logMetrics: (values: Record<string, number>, step: number) => void logged.push({ values, step }) };
  const lines: string[] = [];
  const stream = { write: (s: string) => void lines.push(s), isTTY: false };
  const evals: number[] = [];
  const m = setup();
  await train({
    ...m,
    data,
    pipeline: { batchSize: 8 },
    steps: 5,
    optimizer: { type: "sgd", lr: 0.1 },
    regularizers: [
      { name: "wnorm", weight: 0.01, fn: (w) => tf.sum(tf.square(w)) as import("../src/losses/head").Scalar },
    ],
    callbacks: [
      trackerCallback(tracker, { every: 2 }),
      progressBar(stream, { every: 2 }),
      evaluateEvery(
        2,
        async (_ctx, step) => ({ acc: step / 10 }),
        (v, step) => void evals.push(step, v.acc),
      ),
    ],
  });
  assert.equal(
    logged.map((l) => l.step),
    [2, 4, 5],
  );
  assert.equal(Object.keys(logged[0].values).sort(), [
    "epoch",
    "grad_norm",
    "head_loss",
    "images_per_sec",
    "loss",
    "lr",
    "reg/wnorm",
  ]);
  assert.ok(Math.abs(logged[0].values.loss - logged[0].values.head_loss - 0.01 * logged[0].values["reg/wnorm"]) < 1e-5);
  assert.is(lines.length, 3);
  assert.match(
    lines[0],
    /^\[#+\.+\] {2}40% 2\/5 loss \d+\.\d{4} wnorm \d+\.\d{4} lr 0\.100 [\d.]+ img\/s {2}ETA \d+:\d\d\n$/,
  );
  assert.match(lines[2], /^\[#{24}\] 100% 5\/5 /);
  assert.equal(evals, [2, 0.2, 4, 0.4, 5, 0.5]);
  m.backbone.dispose();
  m.head.dispose();
});

test("notebook progress: a no-op outside a kernel (or the fallback), live HTML into a display", async () => {
  const fallback = progressBar({ write: () => undefined });
  assert.is(notebookProgress({ fallback }), fallback, "outside a tslab kernel the fallback is used");
  const html: string[] = [];
  const display = { html: (s: string) => void html.push(s), text: () => undefined };
  const m = setup();
  await train({
    ...m,
    data,
    pipeline: { batchSize: 8 },
    steps: 3,
    optimizer: { type: "adamw", lr: 0.01 },
    callbacks: [notebookProgress({ display, intervalMs: 0 })],
  });
  assert.is(html.length, 3);
  assert.match(html[2], /width:100\.0%/);
  assert.match(html[2], /3\/3 loss/);
  assert.match(html[2], /<polyline/);
  m.backbone.dispose();
  m.head.dispose();
});

test("metricsRecord drops non-finite values; durations format", () => {
  const r = metricsRecord({
    step: 1,
    totalSteps: 2,
    epoch: 0,
    loss: 1,
    headLoss: 1,
    regularizers: { x: Number.NaN },
    lr: 0.1,
    gradNorm: 2,
    activeClasses: 4,
    stepMs: 1,
    headMs: 0.5,
    imagesPerSecond: 3,
    elapsedSeconds: 1,
  });
  assert.not.ok("reg/x" in r);
  assert.is(formatDuration(59), "0:59");
  assert.is(formatDuration(61), "1:01");
  assert.is(formatDuration(3700), "1:01:40");
  assert.is(formatDuration(Number.NaN), "--:--");
});

test("one text progress line for training and ablations: redrawn on a terminal, plain lines elsewhere", () => {
  const view = sequenceView({ index: 0, total: 2, label: "a", step: 3, steps: 4, fraction: 0.5, elapsedSeconds: 61 });
  assert.is(progressText(view, 4), "[##..]  50% 1/2 a 3/4  1:01 elapsed, ETA --:--");
  const tty: string[] = [];
  const onTerminal = new TextProgress(
    { write: (s: string) => void tty.push(s), isTTY: true, columns: 20 },
    { intervalMs: 1e6 },
  );
  onTerminal.update(view);
  onTerminal.update(view); // within the interval: not redrawn
  onTerminal.update(view, "final");
  const cut = progressText(view).slice(0, 19); // the terminal is 20 columns wide
  assert.equal(tty, [`\r${cut}\x1b[K`, `\r${cut}\x1b[K\n`]);
  const log: string[] = [];
  const inLog = new TextProgress({ write: (s: string) => void log.push(s) });
  inLog.update(view);
  inLog.update(view, "log");
  assert.equal(log, [`${progressText(view)}\n`]);
});

test.run();
