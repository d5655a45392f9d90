/** Batches: seeded shuffling, resumable positions, augmentation, normalisation, prefetching. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Dataset } from "../src/data/dataset";
import { BatchStream, evalBatches } from "../src/data/pipeline";

/** 20 images 4x4x1; image i has every pixel = 10 * i except pixel (0,0) = 255 (to see flips). */
function toy(started?: number[]): Dataset {
  return {
    name: "toy",
    size: 20,
    numClasses: 5,
    labels: Int32Array.from({ length: 20 }, (_, i) => i % 5),
    shape: [4, 4, 1],
    async get(i) {
      started?.push(i);
      const data = new Uint8Array(16).fill(10 * i);
      data[0] = 255;
      return { data, width: 4, height: 4, channels: 1, label: i % 5 };
    },
  };
}

test("each epoch is a seeded permutation; the same seed gives the same order", async () => {
  const a = new BatchStream(toy(), { batchSize: 5, seed: 1, augment: false });
  const b = new BatchStream(toy(), { batchSize: 5, seed: 1, augment: false });
  const c = new BatchStream(toy(), { batchSize: 5, seed: 2, augment: false });
  const seen: number[] = [];
  const other: number[] = [];
  for (let k = 0; k < 8; k++) {
    const [x, y, z] = [await a.next(), await b.next(), await c.next()];
    assert.equal(x.indices, y.indices);
    if (k < 4) seen.push(...x.indices);
    if (k < 4) other.push(...z.indices);
    assert.is(x.epoch, k < 4 ? 0 : 1);
    x.indices.forEach((i, n) => {
      assert.is(x.labels[n], i % 5);
    });
  }
  assert.equal(
    [...seen].sort((p, q) => p - q),
    Array.from({ length: 20 }, (_, i) => i),
  );
  assert.not.equal(seen, other);
});

test("a stream started at a saved position continues identically (augmentation included)", async () => {
  const opts = { batchSize: 6, seed: 9, augment: { flip: true, cropPad: 1, brightness: 0.2 } };
  const a = new BatchStream(toy(), opts);
  const batches = [];
  for (let k = 0; k < 7; k++) batches.push(await a.next());
  const pos = { epoch: batches[4].epoch, batch: batches[4].batch };
  assert.equal(pos, { epoch: 1, batch: 1 }); // 3 batches per epoch (dropLast)
  const b = new BatchStream(toy(), opts, pos);
  for (let k = 4; k < 7; k++) {
    const x = await b.next();
    assert.equal(x.indices, batches[k].indices);
    assert.equal(x.x, batches[k].x);
  }
  assert.equal(b.nextPosition, { epoch: 2, batch: 1 });
});

test("normalisation (x/255 - 0.5)/0.5 and horizontal flips", async () => {
  const s = new BatchStream(toy(), { batchSize: 20, seed: 3, augment: { flip: true }, dropLast: false });
  const b = await s.next();
  let flipped = 0;
  for (let n = 0; n < 20; n++) {
    const img = b.x.subarray(n * 16, (n + 1) * 16);
    const i = b.indices[n];
    const v = (10 * i) / 127.5 - 1;
    assert.ok(Math.abs(img[5] - v) < 1e-6);
    if (Math.abs(img[3] - 1) < 1e-6) flipped++;
    else assert.ok(Math.abs(img[0] - 1) < 1e-6);
  }
  assert.ok(flipped > 3 && flipped < 17, `flipped ${flipped} of 20`);
  const ev = [];
  for await (const e of evalBatches(toy(), 8, { flip: true })) ev.push(e);
  assert.equal(
    ev.map((e) => e.shape[0]),
    [8, 8, 4],
  );
  assert.ok(Math.abs(ev[0].x[3] - 1) < 1e-6, "forced flip puts pixel (0,0) at (0,3)");
  const resized = new BatchStream(toy(), { batchSize: 2, size: [8, 6], augment: false });
  assert.equal((await resized.next()).shape, [2, 8, 6, 1]);
});

test("batches are prefetched: the next batches' images are requested before they are consumed", async () => {
  const started: number[] = [];
  const s = new BatchStream(toy(started), { batchSize: 4, seed: 1, prefetch: 2 });
  await s.next();
  assert.is(started.length, 12, "the current batch and two more are in flight");
  await s.next();
  assert.is(started.length, 16);
});

test("bad options are clear errors", () => {
  assert.throws(() => new BatchStream(toy(), { batchSize: 0 }), /batchSize = 0 is not valid/);
  assert.throws(
    () => new BatchStream(toy(), { batchSize: 21 }),
    /batchSize = 21 is not valid: at most the data set size \(20\)/,
  );
  assert.throws(() => new BatchStream(toy(), { batchSize: 2, augment: { cropPad: -1 } }), /augment\.cropPad = -1/);
});

test.run();
