// Images and system metrics in MLflow's layouts, against a real MLflow server, read back with MLflow's
// Python client and through the artifact-list API the UI's image grid uses.
import { spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { imagePaths } from "../src/tracking/images";
import { startRun } from "../src/tracking/run";
import { aggregateSamples, SystemSampler } from "../src/tracking/system-metrics";
import { python, serverDuring, tempDir } from "./tracking-helpers";

const server = serverDuring(test);
const journalDir = tempDir("journal");

test("logImage: MLflow's step-indexed layout, WebP thumbnail and tag, as the UI's image grid reads them", async () => {
  const run = await startRun({
    trackingUri: server.url,
    experiment: "media",
    name: "images",
    journalDir,
    systemMetrics: false,
  });
  // A 40 x 20 RGB gradient from raw pixels at step 0; a PNG (encoded bytes) at step 3; floats at step 4.
  const raw = new Uint8Array(40 * 20 * 3).map((_, i) => i % 256);
  await run.logImage("embeddings/train", { data: raw, width: 40, height: 20, channels: 3 }, 0);
  const png = await sharp({ create: { width: 300, height: 600, channels: 3, background: "#3366cc" } })
    .png()
    .toBuffer();
  await run.logImage("embeddings/train", png, 3);
  await run.logImage("gray", { data: new Float32Array(16).fill(0.5), width: 4, height: 4, channels: 1 }, 4);
  assert.throws(() => imagePaths("bad:key", 0, 1), /may only contain letters, digits/);
  const end = await run.end();
  assert.is(end.pending, 0);

  const seen = await python<{
    tag: string;
    files: string[];
    sizes: Record<string, [number, number]>;
    pixel: number[];
  }>(
    `
import json, mlflow, os, tempfile
from PIL import Image
c = mlflow.MlflowClient()
run_id = ${JSON.stringify(run.id)}
files = [f.path for f in c.list_artifacts(run_id, "images")]
d = tempfile.mkdtemp()
sizes, pixel = {}, None
for f in files:
    local = c.download_artifacts(run_id, f, d)
    im = Image.open(local)
    sizes[f] = list(im.size)
    if "step+0+" in f and f.endswith(".png"):
        pixel = list(im.convert("RGB").getpixel((1, 0)))
print(json.dumps({"tag": c.get_run(run_id).data.tags.get("mlflow.loggedImages"), "files": files, "sizes": sizes, "pixel": pixel}))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
  assert.is(seen.tag, "True");
  assert.is(seen.files.length, 6);
  // The UI splits the names on "+": key (with "~" for "/"), step, timestamp, uuid, optional "compressed".
  const parsed = seen.files.map((f) => {
    const [key, stepWord, step, tsWord, ts, uuid, compressed] = path
      .basename(f)
      .replace(/\.(png|webp)$/, "")
      .split("+");
    assert.is(stepWord, "step");
    assert.is(tsWord, "timestamp");
    assert.ok(Number(ts) > 1.7e12 && /^[0-9a-f-]{36}$/.test(uuid), f);
    return { key, step: Number(step), thumb: compressed === "compressed", ext: path.extname(f), file: f };
  });
  assert.equal(parsed.map((p) => `${p.key}@${p.step}${p.thumb ? " webp" : ""}`).sort(), [
    "embeddings~train@0",
    "embeddings~train@0 webp",
    "embeddings~train@3",
    "embeddings~train@3 webp",
    "gray@4",
    "gray@4 webp",
  ]);
  for (const p of parsed) assert.is(p.ext, p.thumb ? ".webp" : ".png");
  const size = (key: string, step: number, thumb: boolean) =>
    seen.sizes[parsed.find((p) => p.key === key && p.step === step && p.thumb === thumb)!.file];
  assert.equal(size("embeddings~train", 0, false), [40, 20]);
  assert.equal(size("embeddings~train", 0, true), [256, 128]); // long side 256, as compress_image_size
  assert.equal(size("embeddings~train", 3, true), [128, 256]);
  assert.equal(size("gray", 4, true), [256, 256]);
  assert.equal(seen.pixel, [3, 4, 5]); // pixel (x=1, y=0) of the raw gradient
  // The listing the UI's image grid asks for.
  const listing = (await (
    await fetch(`${server.url}/ajax-api/2.0/mlflow/artifacts/list?run_uuid=${run.id}&path=images`)
  ).json()) as { files: Array<{ path: string }> };
  assert.equal(listing.files.map((f) => f.path).sort(), [...seen.files].sort());
});

test("system metrics: MLflow's system/ names, sampled in the background at the interval, stopped at run end", async () => {
  const run = await startRun({
    trackingUri: server.url,
    experiment: "media",
    name: "system",
    journalDir,
    systemMetrics: { intervalMs: 150 },
  });
  await new Promise((resolve) => setTimeout(resolve, 1200));
  const end = await run.end();
  assert.is(end.pending, 0);
  await new Promise((resolve) => setTimeout(resolve, 500)); // nothing may arrive after the end
  const seen = await python<{ keys: string[]; steps: number[]; memory: number; percent: number; rss: number }>(
    `
import json, mlflow
c = mlflow.MlflowClient()
run_id = ${JSON.stringify(run.id)}
m = c.get_run(run_id).data.metrics
h = c.get_metric_history(run_id, "system/cpu_utilization_percentage")
print(json.dumps({"keys": sorted(m), "steps": [x.step for x in h], "memory": m["system/system_memory_usage_megabytes"],
  "percent": m["system/system_memory_usage_percentage"], "rss": m["system/process_memory_rss_megabytes"]}))
`,
    { MLFLOW_TRACKING_URI: server.url },
  );
  for (const key of [
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/system_memory_usage_percentage",
    "system/process_memory_rss_megabytes",
    "system/disk_usage_percentage",
  ])
    assert.ok(seen.keys.includes(key), `${key} in ${seen.keys.join(", ")}`);
  // ~8 ticks in 1.2 s on a loaded machine: at least 3, at steps 0, 1, 2, ...
  assert.ok(seen.steps.length >= 3, `${seen.steps.length} points`);
  assert.equal(
    seen.steps,
    seen.steps.map((_, i) => i),
  );
  assert.ok(seen.memory > 0 && seen.memory < os.totalmem() / 1e6, `${seen.memory} MB`);
  assert.ok(seen.percent > 0 && seen.percent <= 100);
  assert.ok(seen.rss > 10 && seen.rss < 20_000, `rss ${seen.rss} MB`);
});

test("a sample: CPU over the time since the last one; means rounded to 0.1 like MLflow's monitors", async () => {
  const sampler = new SystemSampler({ gpu: false });
  const end = Date.now() + 300;
  while (Date.now() < end); // keep one core busy
  const s = await sampler.sample();
  assert.ok(s.cpu_utilization_percentage > 100 / (os.cpus().length + 1) - 5, `${s.cpu_utilization_percentage}%`);
  assert.equal(aggregateSamples([{ a: 1, b: 2 }, { a: 2 }]), { a: 1.5, b: 2 });
  assert.equal(aggregateSamples([{ a: 1 }, { a: 1.04 }]), { a: 1 });
});

test("the sampler never keeps the process alive", async () => {
  const script = `
const { SystemMetricsMonitor } = require(${JSON.stringify(path.join(__dirname, "..", "src", "tracking", "system-metrics.ts"))});
new SystemMetricsMonitor(() => {}, { intervalMs: 60000 }).start();
console.log("started");`;
  const t0 = Date.now();
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, ["--require", "tsx/cjs", "-e", script], {
      cwd: path.join(__dirname, ".."),
      stdio: "ignore",
    });
    child.on("close", resolve);
  });
  assert.is(code, 0);
  assert.ok(Date.now() - t0 < 20_000, `exited after ${Date.now() - t0} ms`);
});

test.run();
