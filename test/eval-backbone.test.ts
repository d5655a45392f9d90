/**
 * End to end: a verification .bin written by Python's pickle from synthetic faces, evaluated with a
 * backbone as InsightFace's verification.test() does (emb(x) + emb(flip(x)), normalised, 10 folds);
 * checked against the same computation done by hand with tensors.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createBackbone } from "../src/backbones";
import { tf } from "../src/backend";
import { encodeImage } from "../src/data/decode";
import { syntheticFaces } from "../src/data/synthetic";
import { loadVerificationBin } from "../src/data/verification-bin";
import { embedDataset } from "../src/eval/embed";
import { evaluatePairs } from "../src/eval/verification";
import { verifyDataset, verifySet } from "../src/eval/verify";

const tmp = mkdtempSync(path.join(os.tmpdir(), "marginlab-evalbin-"));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

test("verifySet on a Python-written .bin equals the by-hand InsightFace computation", async () => {
  const ds = await syntheticFaces({
    identities: 10,
    imagesPerIdentity: 4,
    size: 16,
    channels: 3,
    seed: 9,
    cacheDir: false,
  });
  const files: string[] = [];
  const flags: string[] = [];
  // 20 pairs: even k same identity (images 0,1 of identity k/2), odd k different identities
  for (let k = 0; k < 20; k++) {
    const id = k >> 1;
    const a = id * 4;
    const b = k % 2 === 0 ? id * 4 + 1 : ((id + 3) % 10) * 4 + 2;
    for (const i of [a, b]) {
      const f = path.join(tmp, `p${files.length}.png`);
      writeFileSync(f, await encodeImage(await ds.get(i), "png"));
      files.push(f);
    }
    flags.push(k % 2 === 0 ? "1" : "0");
  }
  const bin = path.join(tmp, "set.bin");
  execFileSync(path.join(__dirname, "../.venv/bin/python"), [
    path.join(__dirname, "../scripts/fixtures/write_verification_bin.py"),
    bin,
    "bytes",
    "highest",
    ...files,
    "--",
    ...flags,
  ]);
  const set = await loadVerificationBin(bin);
  const backbone = createBackbone({
    name: "iresnet",
    inputShape: [16, 16, 3],
    layers: [1, 1],
    widths: [4, 8],
    embeddingDim: 8,
    seed: 2,
  });
  const r = await verifySet(backbone, set, { batchSize: 7 });
  assert.is(r.folds.length, 10);
  assert.is(r.issame.length, 20);
  // by hand: decode, normalise to [-1, 1], embed both views with tensors, sum, evaluate
  const imgs = await Promise.all(Array.from({ length: 40 }, (_, i) => set.images.get(i)));
  const x = tf.tensor4d(
    Float32Array.from(imgs.flatMap((s) => [...s.data].map((v) => (v / 255 - 0.5) / 0.5))),
    [40, 16, 16, 3],
  );
  const e = tf.tidy(() => tf.add(backbone.apply(x, false), backbone.apply(tf.reverse(x, 2), false)));
  const rows = e.arraySync() as number[][];
  const byHand = evaluatePairs(rows, set.issame);
  assert.ok(Math.abs(byHand.accuracy - r.accuracy) < 1e-9, `${byHand.accuracy} vs ${r.accuracy}`);
  byHand.distances.forEach((d, k) => {
    assert.ok(Math.abs(d - r.distances[k]) < 1e-4, `pair ${k}`);
  });
  assert.ok(r.xnorm > 0 && Number.isFinite(r.xnorm));
  assert.is(r.tar.length, 3);
  tf.dispose([x, e]);
  const emb = await embedDataset(backbone, set.images, { flip: false });
  assert.is(emb.embeddings.length, 40);
  const v = await verifyDataset(backbone, ds, { pairs: 40, seed: 1 });
  assert.is(v.issame.length, 40);
  backbone.dispose();
});

test.run();
