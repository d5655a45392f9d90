/**
 * `marginlab bench exclusive`: RegularFace's exclusive regularization (value + gradient wrt W, D = 512).
 * marginlab's exact tiled form (src/losses/exclusive.ts; memory O(C D + tile^2)) at C up to 100,000,
 * its dense reference form where it fits, and pytorch-metric-learning's dense RegularFaceRegularizer
 * (bench/peers/exclusive.py) at the C values it can hold (its C x C matrices grow as 4 C^2 bytes each).
 */
import { tf } from "../src/backend";
import { exclusiveDense, exclusiveTiled } from "../src/losses/exclusive";
import type { Tensor2D } from "../src/losses/head";
import {
  emit,
  intListOption,
  intOption,
  machineLine,
  parseArgs,
  peerArgs,
  printRows,
  type Result,
  runPeer,
  runWorker,
  timeSteps,
  workerArgs,
  writeResults,
} from "./common";

interface Params {
  classes: number;
  dim: number;
  tile: number;
  warmup: number;
  repeats: number;
}

function worker(caseName: string, p: Params): void {
  const w = tf.variable(tf.randomNormal([p.classes, p.dim], 0, 1, "float32", 2)) as unknown as Tensor2D;
  let value = 0;
  const f = caseName === "dense" ? (x: Tensor2D) => exclusiveDense(x) : (x: Tensor2D) => exclusiveTiled(x, p.tile);
  const step = () => {
    const { value: v, grads } = tf.valueAndGrads((x) => f(x as Tensor2D))([w]);
    grads[0].dataSync();
    value = v.dataSync()[0];
    tf.dispose([v, grads[0]]);
  };
  const stepsMs = timeSteps(step, p.warmup, p.repeats);
  const name = caseName === "dense" ? `dense C=${p.classes}` : `tiled C=${p.classes} tile=${p.tile}`;
  emit({ name, stepsMs, classes: p.classes, value });
}

export async function run(args: string[]): Promise<number> {
  const o = parseArgs(args);
  const quick = o.quick === true;
  const dim = intOption(o, "dim", 512);
  const tile = intOption(o, "tile", 4096);
  const tiled = intListOption(o, "classes", quick ? [2000] : [10000, 20000, 100000]);
  const dense = intListOption(o, "dense", quick ? [2000] : [10000, 20000]);
  // marginlab's own dense reference form (tfjs keeps several C x C temporaries): only up to this C
  const oursDenseMax = intOption(o, "ours-dense-max", 10000);
  console.log(`bench exclusive: RegularFace exclusive regularization, value + gradient, D=${dim}`);
  console.log(`machine: ${machineLine()}`);
  const rows: Result[] = [];
  const pairs: [Result, Result][] = [];
  const ours = new Map<number, Result>();
  for (const c of tiled) {
    const big = c >= 50000;
    const r = runWorker(
      "exclusive.ts",
      "tiled",
      { classes: c, dim, tile, warmup: big ? 0 : 1, repeats: big ? 1 : 3 },
      3600,
    );
    rows.push(r);
    ours.set(c, r);
  }
  for (const c of dense) {
    if (c <= oursDenseMax)
      rows.push(runWorker("exclusive.ts", "dense", { classes: c, dim, tile, warmup: 1, repeats: 3 }));
    if (o["no-peer"]) continue;
    const peer = runPeer("exclusive.py", `PML dense C=${c}`, peerArgs({ classes: c, dim }));
    rows.push(peer);
    const mine = ours.get(c);
    if (mine) pairs.push([mine, peer]);
  }
  printRows("exclusive regularization (one evaluation = value + gradient)", rows, pairs);
  console.log(`\nresults: ${writeResults("exclusive")}`);
  return 0;
}

const w = workerArgs();
if (w) worker(w.caseName, w.params as unknown as Params);
