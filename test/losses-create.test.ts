// createHead(spec): every head of HEADS from plain data, with its options applied; configuration errors in the
// project's one format (src/validate.ts), from the loss heads and from data's configError/checkInt alike.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { tf } from "../src/backend";
import { checkInt, configError } from "../src/data/dataset";
import { ArcFace } from "../src/losses/arcface";
import { CenterLoss } from "../src/losses/center-loss";
import { CombinedMargin } from "../src/losses/combined-margin";
import { CosFace } from "../src/losses/cosface";
import { createHead, HEADS, type HeadSpec } from "../src/losses/create";
import { L2Softmax } from "../src/losses/l2-softmax";
import { NormFace } from "../src/losses/normface";
import { Softmax } from "../src/losses/softmax";
import { SphereFace } from "../src/losses/sphereface";
import { SubCenterArcFace } from "../src/losses/subcenter-arcface";
import { LossConfigError } from "../src/losses/validate";
import { ConfigError } from "../src/validate";

const base = { numClasses: 5, embeddingDim: 4, seed: 1 };

test("every type of HEADS builds its head, with the spec's options", () => {
  const expected: Record<(typeof HEADS)[number], [HeadSpec, new (...a: never[]) => unknown]> = {
    softmax: [{ type: "softmax", ...base, bias: true }, Softmax],
    "l2-softmax": [{ type: "l2-softmax", ...base, alpha: 20 }, L2Softmax],
    normface: [{ type: "normface", ...base, s: 12 }, NormFace],
    cosface: [{ type: "cosface", ...base, s: 30, m: 0.4 }, CosFace],
    arcface: [{ type: "arcface", ...base, s: 32, m: 0.3, fallback: "none" }, ArcFace],
    "combined-margin": [{ type: "combined-margin", ...base, m1: 1, m2: 0.2, m3: 0.1 }, CombinedMargin],
    "subcenter-arcface": [{ type: "subcenter-arcface", ...base, K: 2 }, SubCenterArcFace],
    sphereface: [{ type: "sphereface", ...base, m: 3, lambda: 0 }, SphereFace],
    "center-loss": [{ type: "center-loss", ...base, alpha: 0.3 }, CenterLoss],
  };
  assert.equal(Object.keys(expected).sort(), [...HEADS].sort());
  for (const [spec, cls] of Object.values(expected)) {
    const head = createHead(spec);
    assert.instance(head, cls, spec.type);
    assert.is(head.numClasses, 5);
    assert.is(head.embeddingDim, 4);
    head.dispose();
  }
  const arc = createHead({ type: "arcface", ...base, s: 32, m: 0.3, fallback: "none" }) as ArcFace;
  assert.equal([arc.s, arc.m, arc.fallback], [32, 0.3, "none"]);
  assert.equal([arc.margin.s, arc.margin.filter], [32, 0]);
  const sub = createHead({ type: "subcenter-arcface", ...base, K: 2 });
  assert.equal(sub.weight.shape, [10, 4]);
  // the same seed and options give the same W as the constructor
  const direct = new ArcFace({ ...base, s: 32, m: 0.3, fallback: "none" });
  assert.equal(Array.from(arc.weight.dataSync()), Array.from(direct.weight.dataSync()));
  for (const h of [arc, sub, direct]) h.dispose();
});

test("the weight init is the seed's: the same for the same seed, seed 0 included (tfjs reads 0 as no seed)", () => {
  const weights = (seed: number) => {
    const h = createHead({ type: "cosface", numClasses: 6, embeddingDim: 4, seed });
    const w = Array.from(h.weight.dataSync());
    h.dispose();
    return w;
  };
  for (const seed of [0, 1, 7]) assert.equal(weights(seed), weights(seed), `seed ${seed}`);
  assert.not.equal(weights(0), weights(1));
});

test("bad specs: one error format naming the field, the value and what is allowed", () => {
  const tensors = tf.memory().numTensors;
  const throwsWith = (f: () => unknown, message: string) =>
    assert.throws(
      f,
      (e: Error) => e instanceof LossConfigError && e instanceof ConfigError && e.message === message,
      message,
    );
  throwsWith(
    () => createHead({ type: "arcfce", ...base } as never),
    `createHead: type = "arcfce" is not valid: must be one of ${HEADS.map((h) => `"${h}"`).join(", ")}`,
  );
  throwsWith(
    () => createHead({ type: "arcface", ...base, margin: 0.5 } as never),
    "ArcFace: margin = 0.5 is not valid: unknown option; known: numClasses, embeddingDim, seed, initialWeight, onWarning, scaleBoundP, validateLabels, s, m, fallback, gradient",
  );
  throwsWith(
    () => createHead({ type: "cosface", ...base, numClasses: 1.5 }),
    "CosFace: numClasses = 1.5 is not valid: must be an integer >= 2",
  );
  throwsWith(
    () => createHead({ type: "arcface", ...base, m: 2 }),
    "ArcFace: m = 2 is not valid: must be a finite number in [0, 1.5707963267948966]",
  );
  throwsWith(
    () => createHead(null as never),
    "createHead: spec = null is not valid: expected an object { type, numClasses, embeddingDim, ... }",
  );
  assert.is(tf.memory().numTensors, tensors, "no head was half-built");
});

test("data's configError / checkInt delegate to the same format (no owner: the field path says where)", () => {
  const e = configError("pipeline.batchSize", 0, "expected an integer in [1, inf]");
  assert.instance(e, ConfigError);
  assert.is(e.message, "pipeline.batchSize = 0 is not valid: expected an integer in [1, inf]");
  assert.throws(
    () => checkInt("steps", 2.5, 1),
    (err: Error) =>
      err instanceof ConfigError && err.message === "steps = 2.5 is not valid: expected an integer in [1, inf]",
  );
});

test.run();
