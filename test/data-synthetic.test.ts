/**
 * Synthetic identities: deterministic from the seed (and across the disk cache), identities differ in
 * structure not only in colour, degradations recorded with their level, long tails and label noise,
 * bad options are clear errors. MNIST loads.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mnistDigits } from "../src/data/mnist-digits";
import {
  applyLabelNoise,
  DEGRADATIONS,
  identityCounts,
  identityParams,
  syntheticFaces,
  syntheticHash,
} from "../src/data/synthetic";

const cacheDir = mkdtempSync(path.join(os.tmpdir(), "marginlab-synth-"));
test.after(() => rmSync(cacheDir, { recursive: true, force: true }));

const opts = { identities: 6, imagesPerIdentity: 6, size: 24, channels: 1 as const, seed: 42, degradedFraction: 0.6 };

const bytes = async (ds: Awaited<ReturnType<typeof syntheticFaces>>) => {
  const parts: number[] = [];
  for (let i = 0; i < ds.size; i++) parts.push(...(await ds.get(i)).data);
  return parts;
};

test("deterministic from the seed; the disk cache returns the same images", async () => {
  const a = await syntheticFaces({ ...opts, cacheDir: false });
  const b = await syntheticFaces({ ...opts, cacheDir });
  assert.ok(b.rendered);
  assert.ok(existsSync(path.join(b.cachePath!, "images.u8")));
  const c = await syntheticFaces({ ...opts, cacheDir });
  assert.not.ok(c.rendered);
  const ba = await bytes(a);
  assert.equal(await bytes(b), ba);
  assert.equal(await bytes(c), ba);
  assert.equal([...a.quality], [...c.quality]);
  assert.equal(a.degradation, c.degradation);
  const d = await syntheticFaces({ ...opts, seed: 43, cacheDir: false });
  assert.not.equal(await bytes(d), ba);
  assert.is.not(syntheticHash(opts), syntheticHash({ ...opts, seed: 43 }));
  // label noise is applied on load: same cache key
  assert.is(syntheticHash(opts), syntheticHash({ ...opts, labelNoise: { flip: 0.3 } }));
  // adding identities leaves the earlier ones unchanged
  assert.equal(identityParams(42, 3), identityParams(42, 3));
  const more = await syntheticFaces({ ...opts, identities: 7, cacheDir: false });
  assert.equal([...(await more.get(10)).data], [...(await a.get(10)).data]);
});

test("large sets stay on disk: rendered to and read from the cache file, identical pixels", async () => {
  const mem = await syntheticFaces({ ...opts, seed: 77, cacheDir: false });
  const dir = path.join(cacheDir, "disk");
  const rendered = await syntheticFaces({ ...opts, seed: 77, cacheDir: dir, inMemoryLimitBytes: 1 });
  assert.ok(rendered.rendered);
  const loaded = await syntheticFaces({ ...opts, seed: 77, cacheDir: dir, inMemoryLimitBytes: 1 });
  assert.not.ok(loaded.rendered);
  const want = await bytes(mem);
  assert.equal(await bytes(rendered), want);
  assert.equal(await bytes(loaded), want);
});

test("degradations are recorded per image with their level and quality = 1 - level", async () => {
  const ds = await syntheticFaces({
    identities: 4,
    imagesPerIdentity: 25,
    size: 24,
    channels: 3,
    seed: 1,
    degradedFraction: 0.8,
    cacheDir: false,
  });
  assert.equal(ds.shape, [24, 24, 3]);
  assert.is((await ds.get(0)).data.length, 24 * 24 * 3);
  const kinds = new Set(ds.degradation);
  for (const k of DEGRADATIONS) assert.ok(kinds.has(k), `missing ${k}`);
  for (let i = 0; i < ds.size; i++) {
    assert.is(ds.degradation[i] === "none", ds.level[i] === 0);
    assert.ok(ds.level[i] >= 0 && ds.level[i] <= 1);
    assert.ok(Math.abs(ds.quality[i] - (1 - ds.level[i])) < 1e-6);
  }
  // blur lowers local contrast: heavily blurred images have smaller pixel gradients than clean ones
  const grad = async (i: number) => {
    const s = await ds.get(i);
    let g = 0;
    for (let y = 0; y < 24; y++)
      for (let x = 1; x < 24; x++) g += Math.abs(s.data[(y * 24 + x) * 3] - s.data[(y * 24 + x - 1) * 3]);
    return g;
  };
  const mean = async (idx: number[]) => (await Promise.all(idx.map(grad))).reduce((a, b) => a + b, 0) / idx.length;
  const clean = ds.degradation.map((d, i) => (d === "none" ? i : -1)).filter((i) => i >= 0);
  const blurred = ds.degradation.map((d, i) => (d === "blur" && ds.level[i] > 0.5 ? i : -1)).filter((i) => i >= 0);
  assert.ok(blurred.length > 0 && clean.length > 0);
  assert.ok((await mean(blurred)) < (await mean(clean)), "blur should reduce gradients");
});

test("identities differ in structure: same-identity images are closer than different-identity ones (no nuisance)", async () => {
  const ds = await syntheticFaces({
    identities: 8,
    imagesPerIdentity: 3,
    size: 32,
    channels: 1,
    seed: 5,
    degradedFraction: 0,
    nuisance: 0,
    cacheDir: false,
  });
  // with no nuisance, the only within-identity variation is the background shade: compare face regions after centring
  const imgs = await Promise.all(Array.from({ length: ds.size }, (_, i) => ds.get(i)));
  const centred = imgs.map((s) => {
    const m = s.data.reduce((a, b) => a + b, 0) / s.data.length;
    return Array.from(s.data, (v) => v - m);
  });
  const dist = (a: number[], b: number[]) => Math.sqrt(a.reduce((s, v, k) => s + (v - b[k]) ** 2, 0));
  let within = 0;
  let nw = 0;
  let between = 0;
  let nb = 0;
  for (let i = 0; i < ds.size; i++) {
    for (let j = i + 1; j < ds.size; j++) {
      if (ds.labels[i] === ds.labels[j]) {
        within += dist(centred[i], centred[j]);
        nw++;
      } else {
        between += dist(centred[i], centred[j]);
        nb++;
      }
    }
  }
  assert.ok(within / nw < (between / nb) * 0.8, `within ${within / nw} between ${between / nb}`);
  const p0 = identityParams(5, 0);
  const p1 = identityParams(5, 1);
  assert.is.not(p0.eyeSpacing, p1.eyeSpacing);
  assert.is.not(p0.mouthW, p1.mouthW);
});

test("long-tailed counts and label noise (flip, split, merge)", () => {
  const counts = identityCounts({ identities: 100, longTail: { max: 50, min: 2, exponent: 1 }, seed: 1 });
  assert.is(counts.length, 100);
  assert.is(Math.max(...counts), 50);
  assert.is(Math.min(...counts), 2);
  assert.equal(identityCounts({ identities: 100, longTail: { max: 50, min: 2, exponent: 1 }, seed: 1 }), counts);
  const identity = Int32Array.from({ length: 2000 }, (_, i) => Math.floor(i / 20));
  const flip = applyLabelNoise(identity, 100, { flip: 0.2 }, 1);
  const flipped = flip.labels.filter((l, i) => l !== identity[i]).length / 2000;
  assert.ok(flipped > 0.15 && flipped < 0.25, `flipped ${flipped}`);
  assert.is(flip.numClasses, 100);
  const split = applyLabelNoise(identity, 100, { split: 0.3 }, 1);
  assert.ok(split.numClasses > 115 && split.numClasses < 145, `classes ${split.numClasses}`);
  assert.ok(split.labels.every((l) => l < split.numClasses));
  const merge = applyLabelNoise(identity, 100, { merge: 0.3 }, 1);
  const used = new Set(merge.labels).size;
  assert.ok(used < 85 && used > 55, `labels used ${used}`);
});

test("bad options are clear errors", async () => {
  await syntheticFaces({ identities: 0 }).then(
    () => assert.unreachable(),
    (e: Error) => assert.match(e.message, "synthetic.identities = 0 is not valid"),
  );
  await syntheticFaces({ identities: 2, channels: 2 as 1 }).then(
    () => assert.unreachable(),
    (e: Error) => assert.match(e.message, "synthetic.channels = 2 is not valid: allowed are 1 (grayscale) and 3 (RGB)"),
  );
  await syntheticFaces({ identities: 2, degradations: ["smudge" as "blur"] }).then(
    () => assert.unreachable(),
    (e: Error) => assert.match(e.message, 'synthetic.degradations = "smudge"'),
  );
});

test("MNIST digits: 10 classes, 28x28 grayscale, interleaved labels", async () => {
  const m = mnistDigits({ perClass: 20 });
  assert.is(m.size, 200);
  assert.equal([...m.labels.slice(0, 10)], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const s = await m.get(3);
  assert.is(s.data.length, 784);
  assert.is(s.label, 3);
  assert.ok(Math.max(...s.data) > 200);
  const held = mnistDigits({ perClass: 20, offset: 20 });
  assert.not.equal([...(await held.get(0)).data], [...(await m.get(0)).data]);
});

test.run();
