/**
 * `marginlab bench pfc`: Partial FC (src/losses/partial-fc.ts) wrapping ArcFace, B = 256, D = 512, SGD
 * momentum 0.9, weight decay 5e-4, a fresh random batch of labels each step:
 * - r = 0.1 at C = 1,000,000 with dense (V2) and frozen (V1) optimizer semantics,
 * - the same with the embedding gradient dL/dx (a training step continues into the backbone),
 * - RegularFace's stochastic exclusive term (batch classes vs the active set): its cost from steps
 *   alternating without and with it in one process, for both,
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
  median,
  parseArgs,
  peerArgs,
  printRows,
  type Result,
  runPeer,
  runWorker,
  stepOptions,
  timeSteps,
  workerArgs,
  writeResults,
} from "./common";

interface Params {
  classes: number;
  rate: number;
  semantics: "dense" | "frozen";
  exclusiveWeight: number;
  /** Also compute dLoss/d(embeddings), as a training step does to continue into the backbone. */
  embeddingGrad: boolean;
  /** Alternate steps without and with the exclusive term in one process (exclusiveWeight 0 / 1). */
  paired?: boolean;
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
    last = pfc.update(x, y, { embeddingGrad: p.embeddingGrad });
    tf.dispose([y, (last as { embeddingGrad?: Tensor2D }).embeddingGrad ?? []]);
  };
  if (p.paired) {
    // the same process and state, steps alternating without and with the exclusive term: the load and the
    // momentum pages mapped so far hit both alike (separate processes drift by +-20 % here)
    for (let i = 0; i < p.warmup; i++) step();
    const base: number[] = [];
    const withEx: number[] = [];
    for (let i = 0; i < 2 * p.repeats; i++) {
      pfc.exclusiveWeight = i % 2;
      const t0 = performance.now();
      step();
      (i % 2 ? withEx : base).push(performance.now() - t0);
    }
    const dx = p.embeddingGrad ? " + dx" : "";
    emit({ name: `r=${p.rate} C=${p.classes} exclusive on/off alternating${dx}`, stepsMs: withEx, baseMs: base });
    return;
  }
  // per-phase times of the timed steps (the warm-up ones first touch the momentum pages)
  const phases: Record<string, number> = {};
  let warm = 0;
  const timed = () => {
    pfc.phaseMs = warm++ < p.warmup ? null : phases;
    step();
  };
  const stepsMs = timeSteps(timed, p.warmup, p.repeats);
  for (const k of Object.keys(phases)) phases[k] = Math.round((10 * phases[k]) / p.repeats) / 10;
  const ex = p.exclusiveWeight > 0 ? " + stochastic exclusive" : "";
  const dx = p.embeddingGrad ? " + dx" : "";
  emit({
    name: `r=${p.rate} C=${p.classes} ${p.semantics}${ex}${dx}`,
    stepsMs,
    initMs,
    activeClasses: last.activeClasses,
    loss: last.loss,
    numTensors: tf.memory().numTensors,
    phasesMs: phases,
  });
}

export async function run(args: string[]): Promise<number> {
  const o = parseArgs(args);
  const quick = o.quick === true;
  const big = intOption(o, "classes", quick ? 20000 : 1000000);
  const full = intOption(o, "full-classes", quick ? 2000 : 100000);
  const rate = typeof o.rate === "string" ? Number(o.rate) : 0.1;
  // at r = 0.1 each step first touches ~100k momentum rows: steps settle after a few warm-up steps
  const base = stepOptions(o, { warmup: quick ? 1 : 5, repeats: quick ? 2 : 7 });
  console.log(`bench pfc: Partial FC + ArcFace, B=${base.batch}, D=${base.dim}, SGD momentum 0.9, weight decay 5e-4`);
  console.log(`machine: ${machineLine()}`);
  const peer = (c: number, r: number) => peerArgs({ classes: c, rate: r, ...base });
  const rows: Result[] = [];
  const pairs: [Result, Result][] = [];
  const ours = (classes: number, r: number, extra: Partial<Params> = {}) =>
    runWorker("pfc.ts", "pfc", {
      ...base,
      classes,
      rate: r,
      semantics: "dense",
      exclusiveWeight: 0,
      embeddingGrad: false,
      ...extra,
    });
  // the W step alone (what the peer's x without grad computes), then the training step: + dL/dx for the backbone
  const sampled = ours(big, rate);
  const sampledDx = o["no-dx"] ? null : ours(big, rate, { embeddingGrad: true });
  // the exclusive term's cost from steps alternating without / with it in one process (less noise than two runs)
  const paired = o["no-exclusive"]
    ? []
    : [false, true].map((embeddingGrad) => ours(big, rate, { paired: true, embeddingGrad }));
  rows.push(sampled, ...(sampledDx ? [sampledDx] : []), ...paired);
  if (!o["no-frozen"]) rows.push(ours(big, rate, { semantics: "frozen" }));
  const dense = ours(full, 1);
  rows.push(dense);
  if (!o["no-peer"]) {
    const peerSampled = runPeer("pfc.py", `pytorch PartialFC_V2 r=${rate} C=${big}`, peer(big, rate));
    const peerSampledDx = runPeer("pfc.py", `pytorch PartialFC_V2 r=${rate} C=${big} + dx`, [
      ...peer(big, rate),
      "--embedding-grad",
    ]);
    const peerFull = runPeer("pfc.py", `pytorch PartialFC_V2 r=1 C=${full}`, peer(full, 1));
    rows.push(peerSampled, peerSampledDx, peerFull);
    pairs.push([sampled, peerSampled], [dense, peerFull]);
    if (sampledDx) pairs.push([sampledDx, peerSampledDx]);
  }
  printRows("Partial FC steps", rows, pairs);
  console.log("  per phase, mean ms of the timed steps:");
  for (const r of rows) {
    const ph = (r as { phasesMs?: Record<string, number> }).phasesMs;
    if (ph)
      console.log(
        `    ${r.name}: ${Object.entries(ph)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ")}`,
      );
  }
  const ms = (r: Result) => (r as { medianMs?: number }).medianMs;
  paired.forEach((r, k) => {
    const base = (r as { baseMs?: number[] }).baseMs;
    const withMs = ms(r);
    if (!base || !withMs) return;
    const b = median(base);
    console.log(
      `  stochastic exclusive adds ${((100 * (withMs - b)) / b).toFixed(1)} % to the r=${rate} ${k ? "training step (with dL/dx)" : "W step"}: ${withMs.toFixed(0)} vs ${b.toFixed(0)} ms, alternating steps`,
    );
  });
  const [a, c] = [ms(sampled), ms(dense)];
  if (a && c) console.log(`  r=${rate} at C=${big}: ${(a / c).toFixed(2)}x the time of r=1 at C=${full}`);
  console.log(`\nresults: ${writeResults("pfc")}`);
  return 0;
}

const w = workerArgs();
if (w) worker(w.params as unknown as Params);
