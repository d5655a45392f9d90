// margins: the target-logit curves come from the heads and match the papers' formulas; a tiny run
// (untracked) returns accuracy, angle statistics and 2-D features for the summary's figures.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { type MarginsConfig, margins, targetLogitCurve } from "../experiments/margins";
import { runAblation } from "../experiments/runner";

const base: MarginsConfig = { label: "x", loss: "softmax", s: 1, m: 0, m1: 1, m2: 0, m3: 0, embeddingDim: 2, seed: 1 };
const thetas = Array.from({ length: 31 }, (_, i) => (i * Math.PI) / 30);

function close(a: number[], b: number[], tol = 1e-4, what = "") {
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs(a[i] - b[i]) < tol, `${what} at theta=${thetas[i].toFixed(3)}: ${a[i]} vs ${b[i]}`);
}

test("target logit / s against theta: softmax and NormFace cos, CosFace cos - m, ArcFace cos(theta + m), combined", () => {
  close(targetLogitCurve(base, thetas), thetas.map(Math.cos), 1e-4, "softmax");
  close(targetLogitCurve({ ...base, loss: "normface-s20", s: 20 }, thetas), thetas.map(Math.cos), 1e-4, "normface");
  close(
    targetLogitCurve({ ...base, loss: "cosface", s: 16, m: 0.35 }, thetas),
    thetas.map((t) => Math.cos(t) - 0.35),
    1e-4,
    "cosface",
  );
  const inRange = thetas.filter((t) => t + 0.5 < Math.PI - 0.05);
  const arc = targetLogitCurve({ ...base, loss: "arcface", s: 16, m: 0.5 }, thetas).slice(0, inRange.length);
  close(
    arc,
    inRange.map((t) => Math.cos(t + 0.5)),
    1e-3,
    "arcface",
  );
  const cmRange = thetas.filter((t) => t + 0.3 < Math.PI - 0.05);
  const cm = targetLogitCurve({ ...base, loss: "combined", s: 16, m1: 1, m2: 0.3, m3: 0.2 }, thetas).slice(
    0,
    cmRange.length,
  );
  close(
    cm,
    cmRange.map((t) => Math.cos(t + 0.3) - 0.2),
    1e-3,
    "combined",
  );
  const sphere = targetLogitCurve({ ...base, loss: "sphereface", m: 4 }, thetas);
  assert.ok(Math.abs(sphere[0] - 1) < 1e-4, `sphereface at 0: ${sphere[0]}`);
  assert.ok(sphere[15] < Math.cos(thetas[15]), "SphereFace's margin lowers the target logit below cos");
});

test("a tiny untracked margins run gives accuracy, angle statistics and 2-D features per loss", async () => {
  const r = await runAblation(margins, {
    track: false,
    set: { losses: ["softmax", "arcface"], steps: 8, trainPerClass: 20, testPerClass: 6, plotPoints: 30 },
  });
  assert.equal(
    r.results.map((x) => x.config.loss),
    ["softmax", "arcface"],
  );
  for (const x of r.results) {
    const m = x.result.metrics;
    assert.ok(m.test_accuracy >= 0 && m.test_accuracy <= 1);
    assert.ok(m.inter_angle_deg >= 0 && m.inter_angle_deg <= 180);
    const pts = x.result.extra?.features as number[][];
    assert.is(pts.length, 30);
    assert.ok(pts.every((p) => p.length === 3 && Number.isFinite(p[0]) && p[2] >= 0 && p[2] <= 9));
  }
  assert.equal(
    r.summary.figures.map((f) => f.name),
    ["features-2d", "target-logit", "accuracy"],
  );
  assert.is(r.summary.tables[0].rows.length, 2);
  assert.is(r.parentRunId, undefined);
});

test.run();
