/**
 * Every head against the committed PyTorch / pytorch-metric-learning / InsightFace reference fixtures
 * (test/fixtures/reference/heads.json, made by scripts/reference/heads.py). Prints the largest relative
 * error per head (the figures in docs/losses.md).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Tensor1D, Tensor2D } from "@tensorflow/tfjs-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { tf } from "../src/backend";
import type { CenterLoss } from "../src/losses/center-loss";
import type { SubCenterArcFace } from "../src/losses/subcenter-arcface";
import { flat, type HeadName, lossAndGrads, makeHead, relError } from "./losses-helpers";

interface Fixture {
  inputs: Record<string, { embeddings: number[][]; weight: number[][]; labels: number[] }>;
  cases: {
    case: string;
    head: HeadName;
    options: Record<string, unknown>;
    source: string;
    loss: number;
    grad_embeddings: number[][];
    grad_weight: number[][];
    grad_extra?: unknown[];
    logits?: number[][];
    weight?: number[][];
    outliers?: number[];
    dominant?: number[];
    updated_alpha_0_5?: number[][];
    /** PyTorch's own float32 error on the same case (the conditioning floor of any float32 implementation). */
    torch_f32_rel_error: Record<string, number>;
  }[];
}

const fixture: Fixture = JSON.parse(readFileSync(path.join(__dirname, "fixtures", "reference", "heads.json"), "utf8"));

/**
 * float32 tolerance on the normwise relative error: 2e-5, or 4x what PyTorch itself gets in float32 on
 * the same case where that is larger (edge rows near theta = pi, where the exact angular-margin slope is
 * ill-conditioned in float32 whatever computes it).
 */
const TOL = 2e-5;
const tolFor = (ref: Fixture["cases"][number], what: string): number =>
  Math.max(TOL, 4 * (ref.torch_f32_rel_error[what] ?? 0));
const worst = new Map<string, { err: number; torch: number; where: string }>();

/** The same, over the arrays where PyTorch's own float32 error is <= 1e-5 (well-conditioned). */
const worstWell = new Map<string, number>();

function record(head: string, err: number, where: string, torch = Number.NaN): void {
  const w = worst.get(head);
  if (!w || err > w.err) worst.set(head, { err, torch, where });
  if (!(torch > 1e-5)) worstWell.set(head, Math.max(worstWell.get(head) ?? 0, err));
}

test("fixture covers every head and the three input sets", () => {
  const heads = new Set(fixture.cases.map((c) => c.head));
  for (const h of [
    "Softmax",
    "L2Softmax",
    "NormFace",
    "SphereFace",
    "CosFace",
    "ArcFace",
    "CombinedMargin",
    "SubCenterArcFace",
    "CenterLoss",
  ]) {
    assert.ok(heads.has(h as HeadName), h);
  }
  assert.equal([...new Set(fixture.cases.map((c) => c.case))].sort(), ["edge", "one_class", "random"]);
});

for (const [i, ref] of fixture.cases.entries()) {
  const label = `${ref.head} ${JSON.stringify(ref.options)} on ${ref.case} (${ref.source})`;
  test(`#${i} ${label}`, () => {
    const input = fixture.inputs[ref.case];
    const weight = ref.weight ?? input.weight;
    const d = input.embeddings[0].length;
    const K = (ref.options.K as number | undefined) ?? 1;
    const numClasses = weight.length / K;
    const options: Record<string, unknown> = { ...ref.options, numClasses, embeddingDim: d, initialWeight: weight };
    if (ref.head === "CenterLoss") options.update = "gradient";
    const head = makeHead(ref.head, options);
    const x = tf.tensor2d(input.embeddings) as Tensor2D;
    const y = tf.tensor1d(input.labels, "int32") as Tensor1D;
    const before = tf.memory().numTensors;
    const g = lossAndGrads(head, x, y);
    assert.is(tf.memory().numTensors, before, "no tensor leak");
    const errs: [string, number][] = [
      ["loss", relError([g.loss], [ref.loss])],
      ["grad_embeddings", relError(g.gradEmbeddings, flat(ref.grad_embeddings))],
      ["grad_weight", relError(g.gradWeight, flat(ref.grad_weight))],
    ];
    if (ref.grad_extra) {
      assert.is(g.gradExtra.length, ref.grad_extra.length, "extra variables");
      for (const [j, e] of ref.grad_extra.entries()) errs.push([`grad_extra[${j}]`, relError(g.gradExtra[j], flat(e))]);
    }
    if (ref.logits) {
      const lg = head.logits(x, y);
      errs.push(["logits", relError(lg.dataSync(), flat(ref.logits))]);
      lg.dispose();
    }
    for (const [what, err] of errs) {
      record(ref.head, err, `${what}, ${ref.case}, ${JSON.stringify(ref.options)}`, ref.torch_f32_rel_error[what]);
      const tol = tolFor(ref, what);
      assert.ok(err <= tol, `${what}: relative error ${err.toExponential(2)} > ${tol}`);
    }
    if (ref.outliers && ref.dominant) {
      const r = (head as SubCenterArcFace).clean(x, y, 75);
      const outliers = r.outlier.flatMap((o, k) => (o ? [k] : []));
      assert.equal(outliers, ref.outliers, "outliers as PML get_outliers");
      assert.equal(Array.from(r.dominant), ref.dominant, "dominant sub-centres as PML get_outliers");
    }
    if (ref.updated_alpha_0_5) {
      const alphaHead = makeHead("CenterLoss", { ...options, update: "alpha", alpha: 0.5 }) as CenterLoss;
      alphaHead.updateCenters(x, y);
      const err = relError(alphaHead.weight.dataSync(), flat(ref.updated_alpha_0_5));
      record(ref.head, err, `alpha update, ${ref.case}`);
      assert.ok(err <= TOL, `alpha update: ${err}`);
      alphaHead.dispose();
    }
    head.dispose();
    tf.dispose([x, y]);
  });
}

test.after(() => {
  const rows = [...worst.entries()].map(
    ([h, w]) =>
      `  ${h.padEnd(17)} ${w.err.toExponential(2)}  well-conditioned ${(worstWell.get(h) ?? 0).toExponential(2)}  ` +
      `(worst: PyTorch float32 on the same array ${w.torch.toExponential(2)}; ${w.where})`,
  );
  console.log(`largest normwise relative error against the float64 references, per head:\n${rows.join("\n")}`);
});

test.run();
