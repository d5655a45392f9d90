/**
 * The heads against the vectors in test/fixtures/vectors/, produced by running the unmodified
 * upstream code (pytorch-metric-learning v2.8.1, InsightFace arcface_torch, sphereface_pytorch, the Caffe
 * lambda formula) in float64.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Tensor, Tensor1D, Tensor2D } from "@tensorflow/tfjs-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { tf } from "../src/backend";
import type { CosineHead } from "../src/losses/head";
import { CAFFE_LAMBDA, lambdaAt, SphereFace } from "../src/losses/sphereface";
import { flat, lossAndGrads, makeHead, quiet, relError } from "./losses-helpers";

// Copied unmodified from the project's research folder (see fixtures/vectors/README.md for their provenance).
const dir = path.join(__dirname, "fixtures", "vectors");
// biome-ignore lint/suspicious/noExplicitAny: JSON vectors
const load = (name: string): any => JSON.parse(readFileSync(path.join(dir, name), "utf8"));

const TOL = 2e-5;
const transpose = (m: number[][]): number[][] => m[0].map((_, j) => m.map((r) => r[j]));
const deg = (d: number): number => (d * Math.PI) / 180;

const pml = load("pml_losses.json");
const pmlCases: [string, Parameters<typeof makeHead>[0], Record<string, unknown>][] = [
  ["ArcFaceLoss_margin28_6deg_scale64", "ArcFace", { s: 64, m: deg(28.6) }],
  ["CosFaceLoss_margin0_35_scale64", "CosFace", { s: 64, m: 0.35 }],
  ["SphereFaceLoss_margin4_scale1", "SphereFace", { m: 4, lambda: 0 }],
  ["NormalizedSoftmaxLoss_temperature0_05", "NormFace", { s: 20 }],
  ["SubCenterArcFaceLoss_K3", "SubCenterArcFace", { K: 3, s: 64, m: deg(28.6) }],
];
for (const [key, name, opts] of pmlCases) {
  test(`PML ${key} (W [D, C] transposed; margin degrees -> radians)`, () => {
    const ref = pml[key];
    const weight = transpose(ref.W);
    const K = (opts.K as number | undefined) ?? 1;
    const head = makeHead(name, {
      numClasses: weight.length / K,
      embeddingDim: weight[0].length,
      initialWeight: weight,
      ...opts,
    });
    const x = tf.tensor2d(pml.embeddings) as Tensor2D;
    const y = tf.tensor1d(pml.labels, "int32") as Tensor1D;
    const g = lossAndGrads(head, x, y);
    assert.ok(relError([g.loss], [ref.loss]) < TOL, `loss ${g.loss} vs ${ref.loss}`);
    assert.ok(relError(g.gradEmbeddings, flat(ref.grad_embeddings)) < TOL, "grad wrt embeddings");
    assert.ok(relError(g.gradWeight, flat(transpose(ref.grad_W))) < TOL, "grad wrt W");
    head.dispose();
    tf.dispose([x, y]);
  });
}

const ins = load("insightface_combined_margin.json");
const insCases: [string, Parameters<typeof makeHead>[0], Record<string, unknown>][] = [
  ["arcface_m2_0_5", "ArcFace", { m: 0.5, fallback: "none", gradient: "straight-through" }],
  ["cosface_m3_0_4", "CosFace", { m: 0.4 }],
  ["combined_1_0_3_0_2_behaves_as_cosface_0_2", "CombinedMargin", { m1: 1, m2: 0, m3: 0.2 }],
  [
    "pre_dec2022_arcface_m2_0_5_true_gradient_with_th_mm_fallback",
    "ArcFace",
    { m: 0.5, fallback: "fallback", gradient: "exact" },
  ],
];
for (const [key, name, opts] of insCases) {
  test(`InsightFace ${key}: logitsFromCosine, lossFromCosine, d loss / d cos`, () => {
    const ref = ins[key];
    const head = makeHead(name, { numClasses: 6, embeddingDim: 3, s: ins.s, ...opts }) as CosineHead;
    const cos = tf.tensor2d(ins.cos) as Tensor2D;
    const y = tf.tensor1d(ins.labels, "int32") as Tensor1D;
    const logits = head.logitsFromCosine(cos, y);
    assert.ok(relError(logits.dataSync(), flat(ref.logits)) < TOL, "logits");
    const { value, grads } = tf.valueAndGrads((c: Tensor) => head.lossFromCosine(c as Tensor2D, y))([cos]);
    assert.ok(relError([value.dataSync()[0]], [ref.loss_ce]) < TOL, `loss ${value.dataSync()[0]} vs ${ref.loss_ce}`);
    assert.ok(relError(grads[0].dataSync(), flat(ref.grad_cos)) < TOL, "grad wrt cos");
    tf.dispose([logits, value, grads, cos, y]);
    head.dispose();
  });
}

test("CombinedMargin(1, 0.3, 0.2) is the real combined formula, not arcface_torch's CosFace(0.2)", () => {
  const ref = ins.combined_1_0_3_0_2_behaves_as_cosface_0_2;
  const head = makeHead("CombinedMargin", {
    numClasses: 6,
    embeddingDim: 3,
    s: 64,
    m1: 1,
    m2: 0.3,
    m3: 0.2,
  }) as CosineHead;
  const cos = tf.tensor2d(ins.cos) as Tensor2D;
  const y = tf.tensor1d(ins.labels, "int32") as Tensor1D;
  const logits = head.logitsFromCosine(cos, y).dataSync();
  // target logit = 64 (cos(acos(c) + 0.3) - 0.2), which arcface_torch replaces by 64 (c - 0.2)
  for (let i = 0; i < 4; i++) {
    const c = ins.cos[i][ins.labels[i]];
    const want = 64 * (Math.cos(Math.acos(c) + 0.3) - 0.2);
    assert.ok(Math.abs(logits[i * 6 + ins.labels[i]] - want) < 1e-3, `row ${i}`);
    assert.ok(
      Math.abs(logits[i * 6 + ins.labels[i]] - ref.logits[i][ins.labels[i]]) > 1,
      `row ${i} differs from arcface_torch`,
    );
  }
  tf.dispose([cos, y]);
  head.dispose();
});

const caffe = load("sphereface_caffe_lambda.json");
test("SphereFace lambda schedule = official Caffe (base 1000, gamma 0.12, power 1, min 5; iter from 1)", () => {
  const head = new SphereFace({ numClasses: 3, embeddingDim: 2, onWarning: quiet });
  assert.is(head.currentIteration, 1);
  for (const [iter, lam] of Object.entries(caffe.lambda_by_iter) as [string, number][]) {
    assert.ok(Math.abs(lambdaAt(CAFFE_LAMBDA, Number(iter)) - lam) <= 1e-12 * lam, `iter ${iter}`);
    head.setStep(Number(iter) - 1);
    assert.ok(Math.abs(head.currentLambda() - lam) <= 1e-12 * lam, `head at iter ${iter}`);
  }
  head.dispose();
});

const sph = load("sphereface_pytorch_angleloss.json");
for (const iter of [1, 2, 3000]) {
  test(`sphereface_pytorch AngleLinear(m=4) + AngleLoss at iteration ${iter}`, () => {
    const ref = sph[`iteration_${iter}`];
    const weight = transpose(sph.weight);
    const head = new SphereFace({
      numClasses: weight.length,
      embeddingDim: weight[0].length,
      initialWeight: weight,
      m: 4,
      lambda: { base: 1500, gamma: 0.1, power: 1, lambdaMin: 5 },
    });
    head.setStep(iter - 1);
    assert.ok(Math.abs(head.currentLambda() - ref.lamb) < 1e-9 * ref.lamb, "lambda");
    const x = tf.tensor2d(sph.embeddings) as Tensor2D;
    const y = tf.tensor1d(sph.labels, "int32") as Tensor1D;
    const logits = head.logits(x, y).dataSync();
    const lam = ref.lamb;
    const want: number[] = [];
    ref.cos_theta_times_xnorm.forEach((row: number[], i: number) => {
      row.forEach((v, j) => {
        want.push(j === sph.labels[i] ? (lam * v + ref.phi_theta_times_xnorm[i][j]) / (1 + lam) : v);
      });
    });
    assert.ok(relError(logits, want) < TOL, "logits");
    head.setStep(iter - 1);
    const g = lossAndGrads(head, x, y);
    assert.is(head.currentIteration, iter + 1, "loss() advanced the iteration");
    assert.ok(relError([g.loss], [ref.loss]) < TOL, `loss ${g.loss} vs ${ref.loss}`);
    assert.ok(relError(g.gradEmbeddings, flat(ref.grad_x)) < TOL, "grad wrt x");
    head.dispose();
    tf.dispose([x, y]);
  });
}

test.run();
