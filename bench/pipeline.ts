/**
 * `node --require tsx/cjs bench/pipeline.ts [train|render|decode|all] [options]`: the training
 * pipeline's speed, each case in its own process.
 *
 * - train (`--backbones iresnet-small,lenet++,...` picks cases; PyTorch peers exist for the iResNets
 *   and LeNet++): images/s of one training step (forward, backward, gradient clipping, SGD momentum update)
 *   of an iResNet backbone + ArcFace head (s=64, m=0.5) through src/train's trainer, beside the same
 *   network in PyTorch (bench/peers/pipeline_resnet.py, .venv-peers). Default: the 2-core size
 *   (iResNet [1,1,1,1] x [16,32,64,128], 32x32x1, B=64, C=1000); `--full` adds iResNet-18 at 112x112x3, B=16.
 *   Each row also carries the TensorFlow ops of one step and the update + clip's ops and share of the
 *   step's CPU time (measured alone on the backbone's variables, flat and per variable).
 * - profile: one training step of each backbone case (`--backbones iresnet-small,lenet++,lenet-small,
 *   mobilefacenet-small`, the default), per TensorFlow op: calls and wall time, the tfjs kernels and
 *   their counts, and the host round trips (reads to JavaScript, tensors copied in) inside the step.
 * - render: synthetic identities rendered per second (SVG -> sharp raster + degradation), 32x32 and 112x112.
 * - decode: JPEG images decoded per second by sharp (112x112 RGB), and batches assembled per second
 *   by the pipeline (crop/flip/normalise) from in-memory images.
 */

import { createBackbone } from "../src/backbones";
import { tf } from "../src/backend";
import type { Dataset } from "../src/data/dataset";
import { decodeImage, encodeImage } from "../src/data/decode";
import { BatchStream } from "../src/data/pipeline";
import { syntheticFaces } from "../src/data/synthetic";
import { ArcFace } from "../src/losses/arcface";
import type { Variable } from "../src/losses/head";
import { clipScale, Optimizer } from "../src/train/optimizers";
import { train } from "../src/train/trainer";
import {
  emit,
  intOption,
  isFailure,
  type Measurement,
  machineLine,
  type OpProfile,
  opProbe,
  parseArgs,
  peerArgs,
  printProfile,
  printRows,
  type Result,
  runPeer,
  runWorker,
  workerArgs,
  writeResults,
} from "./common";

interface TrainParams {
  /** "iresnet" (with layers and widths) or a backbone name of src/backbones ("lenet++", "mobilefacenet-small", ...). */
  backbone: string;
  /** LeNet++'s widths as "8,16,32" for the ablations' lenet-small; "" for the default. */
  layers: string;
  widths: string;
  size: number;
  channels: number;
  emb: number;
  classes: number;
  batch: number;
  warmup: number;
  repeats: number;
  /** Emit the probe of the step after the timed ones (op counts and times, round trips) with the result. */
  profile?: boolean;
}

function benchBackbone(p: TrainParams) {
  const inputShape = [p.size, p.size, p.channels] as const;
  const list = (s: string) => (s ? s.split(",").map(Number) : undefined);
  if (p.backbone === "iresnet")
    return createBackbone({
      name: "iresnet",
      layers: list(p.layers),
      widths: list(p.widths),
      inputShape,
      embeddingDim: p.emb,
    });
  return createBackbone({ name: p.backbone, widths: list(p.widths), inputShape, embeddingDim: p.emb });
}

/** A dataset of one constant random image repeated (InsightFace's "synthetic" loader): compute only. */
function constantData(p: TrainParams): Dataset {
  const data = new Uint8Array(p.size * p.size * p.channels).map((_, i) => (i * 2654435761) % 251);
  const n = p.batch * (p.warmup + p.repeats + 1);
  return {
    name: "constant",
    size: n,
    numClasses: p.classes,
    labels: Int32Array.from({ length: n }, (_, i) => (i * 7919) % p.classes),
    shape: [p.size, p.size, p.channels as 1 | 3],
    async get(i) {
      return { data, width: p.size, height: p.size, channels: p.channels as 1 | 3, label: (i * 7919) % p.classes };
    },
  };
}

const OPTIMIZER = { type: "sgd", lr: 0.01, momentum: 0.9, weightDecay: 5e-4 } as const;
const CLIP = 5;

async function trainWorker(p: TrainParams): Promise<void> {
  const backbone = benchBackbone(p);
  const probe = opProbe(tf);
  let profile: Promise<OpProfile> | undefined;
  const head = new ArcFace({ numClasses: p.classes, embeddingDim: p.emb, s: 64, m: 0.5, validateLabels: false });
  const times: number[] = [];
  let last = 0;
  let cpu0: NodeJS.CpuUsage | undefined;
  let cpu: NodeJS.CpuUsage | undefined;
  const timed = p.warmup + p.repeats;
  await train({
    backbone,
    head,
    data: constantData(p),
    pipeline: { batchSize: p.batch, augment: false, prefetch: 2 },
    steps: timed + 1, // the last step is probed (op counts), after the timed ones
    optimizer: OPTIMIZER,
    clipGradNorm: CLIP,
    callbacks: [
      {
        onStart() {
          last = performance.now();
        },
        onStep(m) {
          const now = performance.now();
          if (m.step > p.warmup && m.step <= timed) times.push(now - last);
          if (m.step === p.warmup) cpu0 = process.cpuUsage();
          if (m.step === timed) cpu = process.cpuUsage(cpu0);
          if (m.step === timed + 1) profile = probe.stop();
          last = performance.now();
          if (m.step === timed) probe.start();
        },
      },
    ],
  });
  const med = [...times].sort((a, b) => a - b)[times.length >> 1];
  const cpuMsPerStep = (cpu!.user + cpu!.system) / 1000 / p.repeats;
  const stepProfile = await profile!;
  const variables = backbone.trainableVariables();
  const updates = p.size > 64 ? 5 : 20; // the 112x112 case's update alone takes about 0.2 s
  const update = await updateCost(variables, undefined, updates);
  const perVariable = await updateCost(variables, 0, updates);
  emit({
    name: "marginlab",
    stepsMs: times,
    imagesPerSecond: p.batch / (med / 1000),
    cpuMsPerStep,
    opsPerStep: stepProfile.nativeOps.reduce((a, o) => a + o.count, 0),
    updateOps: update.ops,
    updateCpuMs: update.cpuMs,
    updateShare: update.cpuMs / cpuMsPerStep,
    perVariableUpdateOps: perVariable.ops,
    perVariableUpdateCpuMs: perVariable.cpuMs,
    backboneParams: backbone.parameterCount(),
    batch: p.batch,
    tensorflow: tf.version.tfjs,
    ...(p.profile ? { profile: stepProfile } : {}),
  });
}

/**
 * The trainer's backbone update + clip alone (prepare, global norm, clip at CLIP, SGD), on the backbone's
 * variables with unit-normal gradients of their shapes (so clipping applies): native ops of one update and
 * CPU ms per update, with the small variables updated as one flat vector (the default) or each on its own
 * (fuseMaxSize 0, the path before the flat one).
 */
async function updateCost(variables: Variable[], fuseMaxSize: number | undefined, repeats: number) {
  const opt = new Optimizer(OPTIMIZER, [{ variables, weightDecay: OPTIMIZER.weightDecay }], { fuseMaxSize });
  const grads = variables.map((v) => tf.randomNormal(v.shape));
  const once = () => {
    const update = opt.prepare(grads);
    const sq = update.squaredNorm();
    const norm = Math.sqrt(sq.dataSync()[0]);
    sq.dispose();
    update.apply(OPTIMIZER.lr, clipScale(norm, CLIP));
  };
  once();
  const probe = opProbe(tf);
  probe.start();
  once();
  const ops = (await probe.stop()).nativeOps.reduce((a, o) => a + o.count, 0);
  const c0 = process.cpuUsage();
  for (let i = 0; i < repeats; i++) once();
  const c = process.cpuUsage(c0);
  opt.dispose();
  tf.dispose(grads);
  return { ops, cpuMs: (c.user + c.system) / 1000 / repeats };
}

async function renderWorker(p: { size: number; count: number }): Promise<void> {
  const ids = Math.max(1, Math.round(p.count / 10));
  const t0 = performance.now();
  const ds = await syntheticFaces({
    identities: ids,
    imagesPerIdentity: 10,
    size: p.size,
    channels: 3,
    seed: 1,
    cacheDir: false,
    degradedFraction: 0.5,
  });
  const ms = performance.now() - t0;
  emit({
    name: `render ${p.size}x${p.size} RGB`,
    stepsMs: [ms],
    imagesPerSecond: ds.size / (ms / 1000),
    images: ds.size,
  });
}

async function decodeWorker(p: { count: number }): Promise<void> {
  const ds = await syntheticFaces({
    identities: 20,
    imagesPerIdentity: 10,
    size: 112,
    channels: 3,
    seed: 2,
    cacheDir: false,
  });
  const jpegs: Buffer[] = [];
  for (let i = 0; i < ds.size; i++) jpegs.push(await encodeImage(await ds.get(i), "jpeg", 90));
  const t0 = performance.now();
  const n = p.count;
  const inflight = 8;
  let next = 0;
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (next < n) {
        const k = next++;
        await decodeImage(jpegs[k % jpegs.length]);
      }
    }),
  );
  const ms = performance.now() - t0;
  // pipeline: crop/flip/normalise batches of 64 from memory
  const stream = new BatchStream(ds, { batchSize: 64, seed: 1, augment: { flip: true, cropPad: 4 } });
  const t1 = performance.now();
  const batches = 20;
  for (let b = 0; b < batches; b++) await stream.next();
  const ms2 = performance.now() - t1;
  emit({
    name: "decode JPEG 112x112 RGB (sharp)",
    stepsMs: [ms],
    imagesPerSecond: n / (ms / 1000),
    pipelineImagesPerSecond: (batches * 64) / (ms2 / 1000),
  });
}

/** What the 2-core cases share: B=64, ArcFace over 1000 classes, 2 warm-up steps. */
const SMALL = { layers: "", widths: "", classes: 1000, batch: 64, warmup: 2, repeats: 7, quickRepeats: 3 };

/** The training-step cases: the bench's two iResNet sizes and the backbones the ablations train. */
const CASES: Record<string, Omit<TrainParams, "repeats"> & { repeats: number; quickRepeats: number }> = {
  "iresnet-small": {
    ...SMALL,
    backbone: "iresnet",
    layers: "1,1,1,1",
    widths: "16,32,64,128",
    size: 32,
    channels: 1,
    emb: 64,
  },
  iresnet18: {
    ...SMALL,
    backbone: "iresnet",
    layers: "2,2,2,2",
    widths: "64,128,256,512",
    size: 112,
    channels: 3,
    emb: 512,
    batch: 16,
    warmup: 1,
    repeats: 3,
    quickRepeats: 2,
  },
  // the ablations' LeNet++ at MNIST size, 2-D features over 10 classes
  "lenet++": { ...SMALL, backbone: "lenet++", size: 28, channels: 1, emb: 2, classes: 10 },
  "lenet-small": { ...SMALL, backbone: "lenet++", widths: "8,16,32", size: 28, channels: 1, emb: 2, classes: 10 },
  "mobilefacenet-small": { ...SMALL, backbone: "mobilefacenet-small", size: 32, channels: 1, emb: 64 },
};

/** The cases named by --backbones a,b,c, or the defaults. */
function caseNames(option: string | boolean | undefined, defaults: string[]): string[] {
  const names = typeof option === "string" ? option.split(",") : defaults;
  for (const name of names)
    if (!CASES[name])
      throw new Error(`--backbones: "${name}" is not a case; allowed are ${Object.keys(CASES).join(", ")}`);
  return names;
}

function trainCase(name: string, repeats: number): TrainParams {
  const { quickRepeats: _q, ...p } = CASES[name];
  return { ...p, repeats };
}

function caseTitle(p: TrainParams): string {
  const net =
    p.backbone === "iresnet"
      ? `iResNet [${p.layers}] x [${p.widths}]`
      : `${p.backbone}${p.widths ? ` [${p.widths}]` : ""}`;
  return `train step: ${net} at ${p.size}x${p.size}x${p.channels}, ArcFace C=${p.classes}, B=${p.batch}`;
}

function line(r: Result, what = "images/s"): void {
  if ("error" in r) return;
  const rate = r.imagesPerSecond as number;
  const cpu = typeof r.cpuMsPerStep === "number" ? `   CPU time ${r.cpuMsPerStep.toFixed(0)} ms / step` : "";
  console.log(`  ${r.impl.padEnd(9)} ${r.name.padEnd(40)} ${rate.toFixed(1).padStart(9)} ${what}${cpu}`);
  if (typeof r.updateOps === "number") console.log(`            ${updateLine(r)}`);
}

/** Ops per step, and the update + clip's ops and share of the step's CPU time (flat, and per variable). */
function updateLine(r: Measurement): string {
  const n = (k: string) => r[k] as number;
  return (
    `${n("opsPerStep")} TensorFlow ops / step; update + clip ${n("updateOps")} ops, ${n("updateCpuMs").toFixed(1)} ms CPU ` +
    `(${(100 * n("updateShare")).toFixed(1)} % of the step's CPU time); per variable ${n("perVariableUpdateOps")} ops, ${n("perVariableUpdateCpuMs").toFixed(1)} ms CPU`
  );
}

export async function run(args: string[]): Promise<number> {
  const which = args[0] && !args[0].startsWith("--") ? args[0] : "all";
  const o = parseArgs(args.filter((a, i) => !(i === 0 && a === which)));
  const quick = o.quick === true;
  console.log(`bench pipeline (${which}); machine: ${machineLine()}`);
  if (which === "train" || which === "all") {
    const names = caseNames(o.backbones, ["iresnet-small", ...(o.full ? ["iresnet18"] : [])]);
    for (const name of names) {
      const p = trainCase(name, intOption(o, "repeats", quick ? CASES[name].quickRepeats : CASES[name].repeats));
      const ours = runWorker("pipeline.ts", "train", p);
      const hasPeer = p.backbone === "iresnet" || p.backbone === "lenet++";
      const peer = o["no-peer"] || !hasPeer ? null : runPeer("pipeline_resnet.py", "pytorch", peerArgs(p));
      const rows = [ours, ...(peer ? [peer] : [])];
      printRows(caseTitle(p), rows, peer ? [[ours, peer]] : []);
      for (const r of rows) line(r);
    }
  }
  if (which === "profile") {
    const names = caseNames(o.backbones, ["iresnet-small", "lenet++", "lenet-small", "mobilefacenet-small"]);
    for (const name of names) {
      const p = { ...trainCase(name, intOption(o, "repeats", 3)), profile: true };
      const r = runWorker("pipeline.ts", "train", p);
      if (isFailure(r)) printRows(caseTitle(p), [r]);
      else {
        printProfile(`one training step, ${caseTitle(p)}`, r.profile as OpProfile, intOption(o, "top", 25));
        console.log(`  ${updateLine(r)}`);
      }
    }
  }
  if (which === "render" || which === "all") {
    const rows = [
      runWorker("pipeline.ts", "render", { size: 32, count: quick ? 200 : 2000 }),
      runWorker("pipeline.ts", "render", { size: 112, count: quick ? 100 : 500 }),
    ];
    printRows("synthetic rendering (sharp, 4 in flight)", rows, [], "ms per run");
    for (const r of rows) line(r);
  }
  if (which === "decode" || which === "all") {
    const r = runWorker("pipeline.ts", "decode", { count: quick ? 200 : 2000 });
    printRows("decoding", [r], [], "ms per run");
    line(r);
    if (!("error" in r))
      console.log(
        `  marginlab pipeline batches (flip, crop, normalise) from memory ${(r.pipelineImagesPerSecond as number).toFixed(1)} images/s`,
      );
  }
  if (which !== "profile") console.log(`\nresults: ${writeResults("pipeline")}`);
  return 0;
}

const w = workerArgs();
if (w) {
  const job =
    w.caseName === "train"
      ? trainWorker(w.params as unknown as TrainParams)
      : w.caseName === "render"
        ? renderWorker(w.params as unknown as { size: number; count: number })
        : decodeWorker(w.params as unknown as { count: number });
  job.catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else if (require.main === module) {
  run(process.argv.slice(2)).then((code) => process.exit(code));
}
