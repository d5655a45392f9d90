/**
 * The synthetic identities are learnable: a small iResNet trained for 40 steps (AdamW, ArcFace head)
 * on 60 identities verifies pairs of 20 held-out identities at >= 80% (10-fold accuracy, InsightFace
 * protocol with flipped views), clearly above the untrained network.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createBackbone } from "../src/backbones";
import { tf } from "../src/backend";
import { indicesOfClasses, subset } from "../src/data/dataset";
import { syntheticFaces } from "../src/data/synthetic";
import { embedDataset } from "../src/eval/embed";
import { makePairs, verifyPairs } from "../src/eval/verification";
import { ArcFace } from "../src/losses/arcface";
import { train } from "../src/train/trainer";

test("a small backbone learns synthetic identities that generalise to held-out identities", async () => {
  const trainIds = 60;
  const all = await syntheticFaces({
    identities: trainIds + 20,
    imagesPerIdentity: 16,
    size: 24,
    channels: 1,
    seed: 7,
    degradedFraction: 0,
    nuisance: 0.5,
  });
  const trainSet = subset(
    all,
    indicesOfClasses(all, (c) => c < trainIds),
  );
  const heldOut = subset(
    all,
    indicesOfClasses(all, (c) => c >= trainIds),
  );
  const backbone = createBackbone({
    name: "iresnet",
    layers: [1, 1, 1],
    widths: [8, 16, 32],
    inputShape: [24, 24, 1],
    embeddingDim: 32,
    seed: 1,
  });
  const head = new ArcFace({ numClasses: trainIds, embeddingDim: 32, s: 16, m: 0.1, seed: 1 });
  const { pairs, issame } = makePairs(heldOut.labels, 600, 1);
  const accuracy = async () =>
    verifyPairs((await embedDataset(backbone, heldOut, { batchSize: 160, flip: true })).embeddings, pairs, issame)
      .accuracy;
  const before = await accuracy();
  const r = await train({
    backbone,
    head,
    data: trainSet,
    pipeline: { batchSize: 40, augment: { flip: true } },
    steps: 40,
    optimizer: { type: "adamw", lr: 0.004, weightDecay: 5e-4 },
    schedule: { type: "cosine" },
    seed: 3,
  });
  const after = await accuracy();
  assert.ok(r.history[39].loss < r.history[0].loss / 3, `loss ${r.history[0].loss} -> ${r.history[39].loss}`);
  assert.ok(after >= 0.8, `held-out verification accuracy ${after} (before training ${before})`);
  assert.ok(after - before >= 0.08, `held-out accuracy only moved ${before} -> ${after}`);
  backbone.dispose();
  head.dispose();
  assert.is(tf.memory().numTensors, 0);
});

test.run();
