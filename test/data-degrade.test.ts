// Degradations of any data set's images (src/data/degrade.ts, the synthetic renderer's own): the seeded
// assignment per image index, sizes kept for non-square images, blur and down-sampling lowering the
// high-frequency energy more as the level rises, clean images passed through, bad options named.
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Dataset, ImageSample } from "../src/data/dataset";
import { degradedDataset, degradeRaw } from "../src/data/degrade";

const W = 40;
const H = 24;

/** A checkerboard of 2-pixel squares (all energy at high frequency), RGB, label = index. */
function checkers(size: number): Dataset {
  const data = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) data.fill(((x >> 1) + (y >> 1)) % 2 ? 230 : 20, (y * W + x) * 3, (y * W + x) * 3 + 3);
  return {
    name: "checkers",
    size,
    numClasses: size,
    labels: Int32Array.from({ length: size }, (_, i) => i),
    shape: [H, W, 3],
    async get(i: number): Promise<ImageSample> {
      return { data: data.slice(), width: W, height: H, channels: 3, label: i };
    },
  };
}

/** Mean absolute difference of horizontally adjacent pixels: the high-frequency energy. */
function edges(img: Uint8Array): number {
  let s = 0;
  for (let y = 0; y < H; y++)
    for (let x = 1; x < W; x++) s += Math.abs(img[(y * W + x) * 3] - img[(y * W + x - 1) * 3]);
  return s / (H * (W - 1));
}

test("degradeRaw keeps a non-square image's size; blur and down-sampling remove more detail at higher levels", async () => {
  const clean = await checkers(1).get(0);
  const base = edges(clean.data);
  for (const kind of ["blur", "downsample"] as const) {
    const levels = [0.2, 0.6, 1];
    const out = await Promise.all(levels.map((lv) => degradeRaw(clean.data, W, H, 3, kind, lv, 1)));
    for (const o of out) assert.is(o.length, W * H * 3, `${kind}: the size is kept`);
    const e = out.map(edges);
    assert.ok(e[0] < base && e[1] < e[0] && e[2] <= e[1], `${kind}: edges ${base} -> ${e.join(", ")}`);
  }
  const same = await degradeRaw(clean.data, W, H, 3, "none", 0.5, 1);
  assert.is(same, clean.data, "none passes the pixels through");
  try {
    await degradeRaw(clean.data, W + 1, H, 3, "blur", 0.5, 1);
    assert.unreachable("a size that does not match the bytes must throw");
  } catch (e) {
    assert.match((e as Error).message, /bytes are not 24x41x3 pixels/);
  }
});

test("degradedDataset: a seeded share degraded per image index, levels in [0.1, 1], clean images untouched", async () => {
  const ds = degradedDataset(checkers(400), { fraction: 0.25, types: ["blur", "downsample"], seed: 7 });
  const again = degradedDataset(checkers(400), { fraction: 0.25, types: ["blur", "downsample"], seed: 7 });
  const other = degradedDataset(checkers(400), { fraction: 0.25, types: ["blur", "downsample"], seed: 8 });
  assert.equal(ds.degradation, again.degradation, "the same seed gives the same assignment");
  assert.not.equal(ds.degradation, other.degradation, "another seed another");
  const degraded = ds.degradation.filter((d) => d !== "none").length;
  assert.ok(degraded > 70 && degraded < 130, `${degraded} of 400 degraded at fraction 0.25`);
  assert.ok(ds.degradation.includes("blur") && ds.degradation.includes("downsample"));
  for (let i = 0; i < ds.size; i++) {
    if (ds.degradation[i] === "none") assert.is(ds.level[i], 0);
    else assert.ok(ds.level[i] >= 0.1 && ds.level[i] <= 1, `level ${ds.level[i]}`);
    assert.ok(Math.abs(ds.quality[i] - (1 - ds.level[i])) < 1e-6);
  }
  const clean = ds.degradation.indexOf("none");
  const blurred = ds.degradation.indexOf("blur");
  const raw = (await checkers(1).get(0)).data;
  assert.equal((await ds.get(clean)).data, raw);
  const b = await ds.get(blurred);
  assert.equal(b.data, await degradeRaw(raw, W, H, 3, "blur", ds.level[blurred], 0), "blur ignores the noise seed");
  assert.is(b.label, blurred);
});

test("degradedDataset names a bad fraction or type and what is allowed", () => {
  assert.throws(
    () => degradedDataset(checkers(2), { fraction: 1.5, types: ["blur"], seed: 1 }),
    /fraction = 1.5 is not valid: allowed is a number in \[0, 1\]/,
  );
  assert.throws(
    // biome-ignore lint/suspicious/noExplicitAny: an invalid type on purpose
    () => degradedDataset(checkers(2), { fraction: 0.5, types: ["occlusion" as any], seed: 1 }),
    /type "occlusion" is not valid: allowed are blur, downsample, jpeg, noise/,
  );
});

test.run();
