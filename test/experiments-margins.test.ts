// margins: the target-logit curves come from the heads and match the papers' formulas; the grid's
// 2-D margins fit 10 classes; the smoke preset runs within 30 s and gives held-out verification,
// paired verdicts and the 2-D picture.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { comparisonMetric, type HeadSpec, margins, targetLogitCurve } from "../experiments/margins";
import { planTasks, runAblation } from "../experiments/runner";
import { CAFFE_LAMBDA, lambdaAt } from "../src/losses/sphereface";

const base: HeadSpec = { type: "softmax", s: 1, m: 0, m1: 1, m2: 0, m3: 0, lambdaGamma: 0 };
const thetas = Array.from({ length: 31 }, (_, i) => (i * Math.PI) / 30);

function close(a: number[], b: number[], tol = 1e-4, what = "") {
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs(a[i] - b[i]) < tol, `${what} at theta=${thetas[i].toFixed(3)}: ${a[i]} vs ${b[i]}`);
}

test("target logit / s against theta: softmax and NormFace cos, CosFace cos - m, ArcFace cos(theta + m), combined", () => {
  close(targetLogitCurve(base, thetas), thetas.map(Math.cos), 1e-4, "softmax");
  close(targetLogitCurve({ ...base, type: "normface-s20", s: 20 }, thetas), thetas.map(Math.cos), 1e-4, "normface");
  close(
    targetLogitCurve({ ...base, type: "cosface", s: 16, m: 0.35 }, thetas),
    thetas.map((t) => Math.cos(t) - 0.35),
    1e-4,
    "cosface",
  );
  const inRange = thetas.filter((t) => t + 0.5 < Math.PI - 0.05);
  const arc = targetLogitCurve({ ...base, type: "arcface", s: 16, m: 0.5 }, thetas).slice(0, inRange.length);
  close(
    arc,
    inRange.map((t) => Math.cos(t + 0.5)),
    1e-3,
    "arcface",
  );
  const cmRange = thetas.filter((t) => t + 0.3 < Math.PI - 0.05);
  const cm = targetLogitCurve({ ...base, type: "combined", s: 16, m1: 1, m2: 0.3, m3: 0.2 }, thetas).slice(
    0,
    cmRange.length,
  );
  close(
    cm,
    cmRange.map((t) => Math.cos(t + 0.3) - 0.2),
    1e-3,
    "combined",
  );
  const sphere = targetLogitCurve({ ...base, type: "sphereface", m: 4 }, thetas);
  assert.ok(Math.abs(sphere[0] - 1) < 1e-4, `sphereface at 0: ${sphere[0]}`);
  assert.ok(sphere[15] < Math.cos(thetas[15]), "SphereFace's margin lowers the target logit below cos");
});

test("the full grid: verification at D >= 32 for every loss, 2-D margins that fit 10 classes 36 degrees apart", () => {
  const plan = planTasks(margins, "full");
  assert.ok(plan.seeds.length >= 3);
  const verify = plan.configs.filter((c) => c.kind === "verify");
  const picture = plan.configs.filter((c) => c.kind === "picture");
  assert.is(verify.length, 7);
  assert.ok(verify.every((c) => (c.embeddingDim as number) >= 32));
  const head = (label: string) => picture.find((c) => c.label === label)?.head as HeadSpec;
  assert.ok(head("2d cosface").m <= 1 - Math.cos((2 * Math.PI) / 10));
  assert.ok(head("2d arcface").m < Math.PI / 10, "ArcFace's margin below half the spacing");
  assert.is(comparisonMetric(plan.settings), "tar_far_1e-4", "800 held-out images give enough impostors for 1e-4");
  const sphere = verify.find((c) => c.label === "sphereface")?.head as HeadSpec;
  const steps = plan.settings.steps as number;
  assert.ok(
    Math.abs(lambdaAt({ ...CAFFE_LAMBDA, gamma: sphere.lambdaGamma }, steps / 2) - 5) < 1e-9,
    "lambda at its floor by half the run",
  );
  assert.ok(
    plan.tasks.every((t) => !("seed" in t.config)),
    "seeds come from the plan, not the configuration",
  );
});

// The 30 s budget is checked as this process's CPU time (TensorFlow's and sharp's threads included):
// on a quiet 2-core machine the wall time is at most that, while the wall time of a test run on the
// shared machine depends on everyone else's load.
test("the smoke preset runs within 30 s of CPU: held-out TAR, paired verdicts, the 2-D picture", async () => {
  const cpu0 = process.cpuUsage();
  const r = await runAblation(margins, { track: false });
  const cpu = process.cpuUsage(cpu0);
  const seconds = (cpu.user + cpu.system) / 1e6;
  assert.ok(seconds < 30, `smoke took ${seconds.toFixed(1)} s of CPU (${r.wallSeconds.toFixed(1)} s wall)`);
  assert.equal([...new Set(r.results.map((x) => x.config.label))], ["softmax", "arcface", "2d arcface"]);
  assert.is(r.results.length, 6);
  const metric = comparisonMetric(r.settings);
  for (const x of r.results.filter((x) => x.config.kind === "verify")) {
    const m = x.result.metrics;
    if (!x.result.collapse?.collapsed) assert.ok(m[metric] >= 0 && m[metric] <= 1, `${metric} ${m[metric]}`);
    assert.ok(m.auc >= 0 && m.auc <= 1 && m.w_inter_deg >= 0 && m.w_inter_deg <= 180);
    assert.ok((x.result.lossHistory?.length ?? 0) === 60);
  }
  const pic = r.results.find((x) => x.config.kind === "picture")!;
  assert.ok((pic.result.extra?.features as number[][]).every((p) => p.length === 3));
  const [c] = r.analysis.comparisons;
  assert.is(c.name, "arcface-vs-softmax");
  assert.ok(["held", "not shown", "contradicted"].includes(c.verdict.verdict));
  assert.match(c.paper ?? "", /99.53 \/ 95.56 \/ 95.15 vs softmax 99.08/);
  assert.is(r.summary.tables[0].name, "verdicts");
  assert.ok(r.summary.tables.some((t) => t.name === "paper-vs-ours"));
  assert.equal(
    r.summary.figures.map((f) => f.name),
    ["tar-held-out", "roc-held-out", "features-2d", "target-logit", "accuracy-2d"],
  );
  assert.is(r.parentRunId, undefined);
});

test.run();
