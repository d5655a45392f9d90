/**
 * `marginlab bench pfc`: Partial FC (src/losses/partial-fc.ts) wrapping ArcFace, B = 256, D = 512, SGD
 * momentum 0.9, weight decay 5e-4, a fresh random batch of labels each step:
 * - r = 0.1 at C = 1,000,000 with dense (V2) and frozen (V1) optimizer semantics,
 * - the same with RegularFace's stochastic exclusive term (batch classes vs the active set),
 * - r = 1.0 at C = 100,000 (the full softmax, for comparison),
 * each beside PyTorch running InsightFace's PartialFC_V2 logic on one device (bench/peers/pfc.py).
 * Peak RSS is the worker process's VmHWM: W, momentum, logits, transients all included.
 */
import { tf } from "../src/backend";
import { ArcFace } from "../src/losses/arcface";
import type { Tensor2D } from "../src/losses/head";
import { PartialFC } from "../src/losses/partial-fc";
import { seededUniform } from "../src/losses/partial-fc-sampling";
import {
  emit,
  intOption,
  machineLine,
  parseArgs,
  printRows,
  type Result,
  runPeer,
  runWorker,
  timeSteps,
  workerArgs,
} from "./common";

interface Params {
  classes: number;
  rate: number;
  semantics: "dense" | "frozen";
  exclusiveWeight: number;
  dim: number;
  batch: number;
  warmup: number;
  repeats: number;
}

function worker(p: Params): void {
  // the head only lends its margin (logitsFromCosine); PartialFC owns W [C, D], N(0, 0.01^2) as PartialFC_V2
  const head = new ArcFace({ numClasses: 2, embeddingDim: p.dim, validateLabels: false });
  const t0 = performance.now();
  const pfc = new PartialFC({
    head,
    numClasses: p.classes,
    sampleRate: p.rate,
    seed: 1,
    exclusiveWeight: p.exclusiveWeight,
    optimizer: { learningRate: 0.1, momentum: 0.9, weightDecay: 5e-4, semantics: p.semantics },
  });
  const initMs = performance.now() - t0;
  const x = tf.randomNormal([p.batch, p.dim], 0, 1, "float32", 1) as Tensor2D;
  const rand = seededUniform(3);
  let last = { loss: 0, activeClasses: 0, exclusive: null as number | null };
  const step = () => {
    const y = tf.tensor1d(
      Array.from({ length: p.batch }, () => Math.floor(rand() * p.classes)),
      "int32",
    );
    last = pfc.step(x, y);
    y.dispose();
  };
  const stepsMs = timeSteps(step, p.warmup, p.repeats);
  const ex = p.exclusiveWeight > 0 ? " + stochastic exclusive" : "";
  emit({
    name: `r=${p.rate} C=${p.classes} ${p.semantics}${ex}`,
    stepsMs,
    initMs,
    activeClasses: last.activeClasses,
    loss: last.loss,
    numTensors: tf.memory().numTensors,
  });
}

export async function run(args: string[]): Promise<number> {
  const o = parseArgs(args);
  const quick = o.quick === true;
  const big = intOption(o, "classes", quick ? 20000 : 1000000);
  const full = intOption(o, "full-classes", quick ? 2000 : 100000);
  const rate = typeof o.rate === "string" ? Number(o.rate) : 0.1;
  const base = {
    dim: intOption(o, "dim", 512),
    batch: intOption(o, "batch", 256),
    warmup: intOption(o, "warmup", quick ? 1 : 2),
    repeats: intOption(o, "repeats", quick ? 2 : 5),
  };
  console.log(`bench pfc: Partial FC + ArcFace, B=${base.batch}, D=${base.dim}, SGD momentum 0.9, weight decay 5e-4`);
  console.log(`machine: ${machineLine()}`);
  const peerArgs = (c: number, r: number) => [
    ...["--classes", String(c), "--rate", String(r), "--dim", String(base.dim), "--batch", String(base.batch)],
    ...["--warmup", String(base.warmup), "--repeats", String(base.repeats)],
  ];
  const rows: Result[] = [];
  const pairs: [Result, Result][] = [];
  const sampled = runWorker("pfc.ts", "pfc", { ...base, classes: big, rate, semantics: "dense", exclusiveWeight: 0 });
  rows.push(sampled);
  const withEx = runWorker("pfc.ts", "pfc", { ...base, classes: big, rate, semantics: "dense", exclusiveWeight: 1 });
  rows.push(withEx);
  if (!o["no-frozen"])
    rows.push(runWorker("pfc.ts", "pfc", { ...base, classes: big, rate, semantics: "frozen", exclusiveWeight: 0 }));
  const dense = runWorker("pfc.ts", "pfc", { ...base, classes: full, rate: 1, semantics: "dense", exclusiveWeight: 0 });
  rows.push(dense);
  if (!o["no-peer"]) {
    const peerSampled = runPeer("pfc.py", `pytorch PartialFC_V2 r=${rate} C=${big}`, peerArgs(big, rate));
    const peerFull = runPeer("pfc.py", `pytorch PartialFC_V2 r=1 C=${full}`, peerArgs(full, 1));
    rows.push(peerSampled, peerFull);
    pairs.push([sampled, peerSampled], [dense, peerFull]);
  }
  printRows("Partial FC steps", rows, pairs);
  const a = sampled as { medianMs?: number };
  const b = withEx as { medianMs?: number };
  const c = dense as { medianMs?: number };
  if (a.medianMs && b.medianMs)
    console.log(
      `  stochastic exclusive adds ${((100 * (b.medianMs - a.medianMs)) / a.medianMs).toFixed(1)} % to the r=${rate} step`,
    );
  if (a.medianMs && c.medianMs)
    console.log(`  r=${rate} at C=${big}: ${(a.medianMs / c.medianMs).toFixed(2)}x the time of r=1 at C=${full}`);
  return 0;
}

const w = workerArgs();
if (w) worker(w.params as unknown as Params);
