// exclusive: the full grid (SphereFace's lambda at its floor by half the run, the weight sweep, the
// paper's with/without comparisons); SphereFace's regulariser weighted 5 / lambda as the official code;
// the smoke preset within 30 s of CPU, giving held-out TAR beside sep(W) and verdicts computed from them.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { comparisonMetric, type ExclusiveConfig, exclusive, exclusiveRegularizer } from "../experiments/exclusive";
import { planTasks, runAblation } from "../experiments/runner";
import { tf } from "../src/backend";
import { verdictOf } from "../src/eval/stats";
import { exclusiveDense } from "../src/losses/exclusive";
import type { Tensor2D } from "../src/losses/head";
import { CAFFE_LAMBDA, lambdaAt } from "../src/losses/sphereface";

test("the full grid: 4 losses x with/without, the sweep, SphereFace's lambda at its floor by half the run", () => {
  const plan = planTasks(exclusive, "full");
  assert.ok(plan.seeds.length >= 3);
  const labels = plan.configs.map((c) => c.label);
  for (const l of ["sphereface", "center", "cosface", "arcface", "sphereface+excl15", "center+excl6", "arcface+excl6"])
    assert.ok(labels.includes(l), `${l} in ${labels.join(", ")}`);
  const sweep = plan.configs.filter((c) => c.loss === "center").map((c) => c.exclusive);
  assert.ok(sweep.length >= 4, `sweep weights ${sweep.join(", ")}`);
  assert.is(new Set(labels).size, labels.length, "labels unique");
  assert.is(plan.settings.backbone, "iresnet-small");
  const sphere = plan.configs.find((c) => c.label === "sphereface") as ExclusiveConfig;
  const steps = plan.settings.steps as number;
  assert.ok(Math.abs(lambdaAt({ ...CAFFE_LAMBDA, gamma: sphere.lambdaGamma }, steps / 2) - 5) < 1e-9);
  assert.ok(lambdaAt(CAFFE_LAMBDA, steps) > 9, "Caffe's own rate would still be far from the floor");
  assert.is(comparisonMetric(plan.settings), "tar_far_1e-4");
  const names = exclusive.comparisons!(plan.settings, plan.configs as ExclusiveConfig[]).map((c) => c.name);
  for (const l of ["sphereface", "center", "cosface", "arcface"])
    assert.ok(names.includes(`${l}-exclusive-verification`) && names.includes(`${l}-exclusive-sep`), l);
  assert.ok(
    plan.tasks.every((t) => !("seed" in t.config)),
    "seeds come from the plan",
  );
  assert.throws(() => planTasks(exclusive, "smoke", { losses: ["softmax"] }), /losses contains "softmax"/);
  const alone = planTasks(exclusive, "smoke", { losses: ["arcface"], sweepLoss: "cosface" }).configs.map(
    (c) => c.label,
  );
  assert.equal(alone, ["arcface", "arcface+excl6", "cosface", "cosface+excl20"], "the sweep brings its own baseline");
});

test("SphereFace's exclusive term is L_r(W) x 5 / lambda(step + 1); the others' is L_r(W)", () => {
  const w = tf.randomNormal([6, 4], 0, 1, "float32", 3) as Tensor2D;
  const plain = exclusiveDense(w).dataSync()[0];
  const gamma = 0.5;
  const sphere = exclusiveRegularizer({ label: "s", loss: "sphereface", exclusive: 15, lambdaGamma: gamma })[0];
  const arc = exclusiveRegularizer({ label: "a", loss: "arcface", exclusive: 6, lambdaGamma: 0 })[0];
  assert.is(sphere.weight, 15);
  const labels = tf.zeros([1], "int32") as import("@tensorflow/tfjs-node").Tensor1D;
  for (const step of [0, 10, 1000]) {
    const v = sphere.fn(w, { labels, step });
    const want = (plain * 5) / lambdaAt({ ...CAFFE_LAMBDA, gamma }, step + 1);
    assert.ok(Math.abs(v.dataSync()[0] - want) < 1e-5, `step ${step}: ${v.dataSync()[0]} vs ${want}`);
    v.dispose();
  }
  const a = arc.fn(w, { labels, step: 5 });
  assert.ok(Math.abs(a.dataSync()[0] - plain) < 1e-6);
  assert.equal(exclusiveRegularizer({ label: "n", loss: "center", exclusive: 0, lambdaGamma: 0 }), []);
  tf.dispose([w, labels, a]);
});

// The 30 s budget is this process's CPU time (see test/experiments-margins.test.ts).
test("the smoke preset runs within 30 s of CPU: held-out TAR beside sep(W), verdicts computed from the seeds", async () => {
  const cpu0 = process.cpuUsage();
  const r = await runAblation(exclusive, { track: false });
  const cpu = process.cpuUsage(cpu0);
  const seconds = (cpu.user + cpu.system) / 1e6;
  assert.ok(seconds < 30, `smoke took ${seconds.toFixed(1)} s of CPU (${r.wallSeconds.toFixed(1)} s wall)`);
  assert.ok((r.settings.seeds as number) >= 2);
  assert.is(r.results.length, 9 * 2);
  const metric = comparisonMetric(r.settings);
  for (const x of r.results) {
    const m = x.result.metrics;
    assert.ok(m.sep_w >= -1 && m.sep_w <= 1 && m.sep_w_deg >= 0 && m.sep_w_deg <= 180, `sep ${m.sep_w}`);
    if (!x.result.collapse?.collapsed) assert.ok(m[metric] >= 0 && m[metric] <= 1);
    assert.is(x.result.lossHistory?.length, 30);
  }
  // the regulariser does what it is built for: lower sep(W) on every seed of every loss
  for (const x of r.results.filter((x) => (x.config.exclusive as number) > 0)) {
    const base = r.results.find((y) => y.config.label === x.config.loss && y.seed === x.seed)!;
    assert.ok(x.result.metrics.sep_w < base.result.metrics.sep_w - 0.05, `${x.config.label} seed ${x.seed}`);
  }
  // every verdict is the paired test of the runs' own numbers
  for (const c of r.analysis.comparisons) {
    const arm = (label: string) =>
      c.seeds.map((s) => r.results.find((x) => x.config.label === label && x.seed === s)!.result.metrics[c.metric]);
    const again = verdictOf(arm(c.treatment), arm(c.baseline), c.expected);
    assert.is(c.verdict.verdict, again.verdict, c.name);
    assert.ok(Math.abs(c.verdict.meanDiff - again.meanDiff) < 1e-12);
    assert.ok(["held", "not shown", "contradicted"].includes(c.verdict.verdict));
  }
  const sep = r.analysis.comparisons.find((c) => c.name === "center-exclusive-sep")!;
  assert.ok(sep.verdict.meanDiff < 0, "center's sep(W) falls with the regulariser");
  assert.match(r.analysis.comparisons[0].paper ?? "", /70.23 \/ 84.07.*NOT FOUND/);
  assert.is(r.summary.tables[0].name, "verdicts");
  assert.ok(r.summary.tables.some((t) => t.name === "paper-vs-ours"));
  assert.equal(
    r.summary.figures.map((f) => f.name),
    ["verification", "sep-w", "sep-centres", "weight-sweep", "roc-held-out", "acc-10fold"],
  );
  assert.ok(r.summary.notes.some((n) => /lambda reaches its floor of 5 at step 15/.test(n)));
});

test.run();
