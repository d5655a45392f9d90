/**
 * `marginlab bench heads`: one ArcFace training step (forward, backward, SGD momentum 0.9 update of W),
 * B = 256, D = 512, at C = 10,000 and 100,000, against the same step in PyTorch on the same CPU.
 *
 * marginlab cases:
 * - "fused": the loss-heads' ArcFace (src/losses/arcface.ts) stepped by FusedHeadStep
 *   (src/losses/fused-step.ts): the fused margin kernel (src/losses/margin-kernel.ts), W and the momentum
 *   buffer kept in TensorFlow, the normalisation's projection folded into the SGD rule.
 * - "pfc": the same kernel driven by PartialFC with r = 1 (W on the host, moved to TensorFlow each step).
 * - "head": the same ArcFace through its own `loss` and tf.train.momentum (autodiff, a new W per step).
 * PyTorch peers (bench/peers/heads.py): arcface_torch's current margin code, and a lean variant.
 */
import { tf } from "../src/backend";
import { ArcFace } from "../src/losses/arcface";
import { FusedHeadStep } from "../src/losses/fused-step";
import type { Tensor1D, Tensor2D } from "../src/losses/head";
import { PartialFC } from "../src/losses/partial-fc";
import {
  emit,
  intListOption,
  machineLine,
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
  dim: number;
  batch: number;
  warmup: number;
  repeats: number;
}

function batch(p: Params): { x: Tensor2D; y: Tensor1D } {
  const x = tf.randomNormal([p.batch, p.dim], 0, 1, "float32", 1) as Tensor2D;
  const labels = Array.from({ length: p.batch }, (_, i) => (i * 7919 + 13) % p.classes);
  return { x, y: tf.tensor1d(labels, "int32") };
}

function worker(caseName: string, p: Params): void {
  const head = new ArcFace({ numClasses: p.classes, embeddingDim: p.dim, seed: 1, validateLabels: false });
  const { x, y } = batch(p);
  let step: () => void;
  if (caseName === "fused") {
    const fused = new FusedHeadStep(head, { learningRate: 0.1, momentum: 0.9, weightDecay: 0 });
    step = () => {
      fused.update(x, y);
    };
  } else if (caseName === "pfc") {
    const pfc = new PartialFC({ head, sampleRate: 1, optimizer: { learningRate: 0.1, momentum: 0.9, weightDecay: 0 } });
    head.weight.dispose(); // PartialFC keeps its own copy of W on the host
    step = () => {
      pfc.update(x, y);
    };
  } else {
    const opt = tf.train.momentum(0.1, 0.9);
    step = () => {
      const loss = opt.minimize(() => head.loss(x, y), true, [head.weight]);
      loss?.dataSync();
      loss?.dispose();
    };
  }
  const stepsMs = timeSteps(step, p.warmup, p.repeats);
  emit({ name: `${caseName} C=${p.classes}`, stepsMs, classes: p.classes, numTensors: tf.memory().numTensors });
}

export async function run(args: string[]): Promise<number> {
  const o = parseArgs(args);
  const quick = o.quick === true;
  const classes = intListOption(o, "classes", quick ? [2000] : [10000, 100000]);
  const base = stepOptions(o, { warmup: quick ? 1 : 2, repeats: quick ? 2 : 7 });
  console.log(`bench heads: ArcFace step (forward, backward, SGD momentum), B=${base.batch}, D=${base.dim}`);
  console.log(`machine: ${machineLine()}`);
  for (const c of classes) {
    const p: Params = { classes: c, ...base };
    const rows: Result[] = [];
    const args = peerArgs({ classes: c, ...base });
    // interleave ours and the peer's so that a load change on a shared machine hits both
    const fused = runWorker("heads.ts", "fused", p);
    const peer = o["no-peer"]
      ? null
      : runPeer("heads.py", `pytorch insightface C=${c}`, [...args, "--variant", "insightface"]);
    const head = o["no-head"] ? null : runWorker("heads.ts", "head", p);
    const lean = o["no-peer"] ? null : runPeer("heads.py", `pytorch lean C=${c}`, [...args, "--variant", "lean"]);
    const pfc = o["no-pfc"] ? null : runWorker("heads.ts", "pfc", p);
    for (const r of [fused, pfc, head, peer, lean]) if (r) rows.push(r);
    const pairs: [Result, Result][] = [];
    for (const ours of [fused, pfc, head])
      for (const theirs of [peer, lean]) if (ours && theirs) pairs.push([ours, theirs]);
    printRows(`C = ${c}`, rows, pairs);
  }
  console.log(`\nresults: ${writeResults("heads")}`);
  return 0;
}

const w = workerArgs();
if (w) worker(w.caseName, w.params as unknown as Params);
