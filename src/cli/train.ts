/**
 * `marginlab train`: train a backbone + head on synthetic identities, MNIST, an InsightFace RecordIO
 * set or an image folder, with checkpoints and resume, then report verification (held-out synthetic
 * identities and/or InsightFace .bin sets). Options are validated before anything is built.
 */
import { createBackbone } from "../backbones/index";
import { checkInt, type Dataset, indicesOfClasses, subset } from "../data/dataset";
import { type DataSpec, openDataset } from "../data/index";
import { loadVerificationBin } from "../data/verification-bin";
import { verifyDataset, verifySet } from "../eval/verify";
import { ArcFace } from "../losses/arcface";
import { CosFace } from "../losses/cosface";
import type { Head } from "../losses/head";
import { NormFace } from "../losses/normface";
import { Softmax } from "../losses/softmax";
import { progressBar } from "../train/callbacks";
import type { OptimizerConfig } from "../train/optimizers";
import type { Schedule } from "../train/schedules";
import { train } from "../train/trainer";

export const summary = "train a backbone + head (synthetic, MNIST, RecordIO or image folder) and report verification";

const HELP = `usage: marginlab train [options]
  data       --data synthetic|mnist|recordio:<path>|folder:<path>   (default synthetic)
             --identities 100 --images 20 --size 32 --channels 1 --holdout 20   (synthetic)
  model      --backbone iresnet-small|iresnet18|mobilefacenet-small|lenet++|...  --emb 64
             --head arcface|cosface|normface|softmax  --s 30 --m 0.5
  training   --steps 300 | --epochs N   --batch 64   --opt sgd|adamw   --lr 0.1   --wd 5e-4
             --schedule constant|cosine|polynomial|step  --warmup 0  --clip 5  --seed 0
             --checkpoint <dir> --every 100 --resume <dir>|<dir>/step-N|<dir>/latest (newest good one)
  evaluation --verify a.bin,b.bin   (InsightFace .bin sets; input size taken from --size)`;

const NUMERIC = [
  "identities",
  "images",
  "size",
  "channels",
  "holdout",
  "emb",
  "s",
  "m",
  "steps",
  "epochs",
  "batch",
  "lr",
  "wd",
  "warmup",
  "clip",
  "seed",
  "every",
];
const TEXT = ["data", "backbone", "head", "opt", "schedule", "checkpoint", "resume", "verify"];

function parse(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i += 2) {
    const a = args[i];
    const key = a.replace(/^--/, "");
    if (!a.startsWith("--") || (!NUMERIC.includes(key) && !TEXT.includes(key))) {
      throw new Error(`unknown option "${a}" (see marginlab train --help)`);
    }
    if (args[i + 1] === undefined) throw new Error(`option ${a} needs a value`);
    if (NUMERIC.includes(key) && !Number.isFinite(Number(args[i + 1])))
      throw new Error(`--${key} = ${args[i + 1]} is not a number`);
    out[key] = args[i + 1];
  }
  return out;
}

function makeHead(
  name: string,
  numClasses: number,
  embeddingDim: number,
  o: Record<string, string>,
  seed: number,
): Head {
  const s = o.s !== undefined ? Number(o.s) : undefined;
  const m = o.m !== undefined ? Number(o.m) : undefined;
  switch (name) {
    case "arcface":
      return new ArcFace({ numClasses, embeddingDim, s, m, seed });
    case "cosface":
      return new CosFace({ numClasses, embeddingDim, s, m, seed });
    case "normface":
      return new NormFace({ numClasses, embeddingDim, s, seed });
    case "softmax":
      return new Softmax({ numClasses, embeddingDim, seed });
    default:
      throw new Error(`--head = "${name}" is not valid: allowed are arcface, cosface, normface, softmax`);
  }
}

export async function run(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(HELP);
    return 0;
  }
  const o = parse(args);
  const num = (k: string, d: number) => (o[k] === undefined ? d : Number(o[k]));
  // the cheap checks first, before data is rendered or a backbone is built
  checkInt("batchSize", num("batch", 64), 1);
  for (const k of ["steps", "epochs", "identities", "images", "size", "emb", "every"])
    if (o[k] !== undefined) checkInt(`--${k}`, num(k, 1), 1);
  if (o.steps !== undefined && o.epochs !== undefined) throw new Error("give --steps or --epochs, not both");
  const seed = num("seed", 0);
  const size = num("size", 32);
  const channels = num("channels", 1) as 1 | 3;
  const dataArg = o.data ?? "synthetic";
  const holdout = dataArg === "synthetic" ? num("holdout", 20) : 0;
  let spec: DataSpec;
  if (dataArg === "synthetic") {
    spec = {
      type: "synthetic",
      identities: num("identities", 100) + holdout,
      imagesPerIdentity: num("images", 20),
      size,
      channels,
      seed,
    };
  } else if (dataArg === "mnist") spec = { type: "mnist" };
  else if (dataArg.startsWith("recordio:"))
    spec = { type: "recordio", path: dataArg.slice(9), size: [size, size], channels };
  else if (dataArg.startsWith("folder:"))
    spec = { type: "folder", root: dataArg.slice(7), size: [size, size], channels };
  else
    throw new Error(`--data = "${dataArg}" is not valid: allowed are synthetic, mnist, recordio:<path>, folder:<path>`);
  const inputShape: [number, number, number] = dataArg === "mnist" ? [28, 28, 1] : [size, size, channels];
  const emb = num("emb", 64);
  const backboneName = o.backbone ?? "iresnet-small";
  const backbone = createBackbone({ name: backboneName, inputShape, embeddingDim: emb, seed });
  let all: Dataset;
  try {
    all = await openDataset(spec);
  } catch (e) {
    backbone.dispose();
    throw e;
  }
  const trainClasses = all.numClasses - holdout;
  const trainSet = holdout
    ? subset(
        all,
        indicesOfClasses(all, (c) => c < trainClasses),
      )
    : all;
  const heldOut = holdout
    ? subset(
        all,
        indicesOfClasses(all, (c) => c >= trainClasses),
        true,
      )
    : undefined;
  const head = makeHead(o.head ?? "arcface", trainSet.numClasses, emb, o, seed);
  const opt = (o.opt ?? "sgd") as OptimizerConfig["type"];
  const optimizer = {
    type: opt,
    lr: num("lr", opt === "sgd" ? 0.1 : 0.001),
    weightDecay: num("wd", opt === "sgd" ? 5e-4 : 0.01),
  } as OptimizerConfig;
  const scheduleType = (o.schedule ?? "cosine") as Schedule["type"];
  const schedule = (
    scheduleType === "step" ? { type: "step", milestones: [] } : { type: scheduleType, warmupSteps: num("warmup", 0) }
  ) as Schedule;
  const steps = o.epochs === undefined ? num("steps", 300) : undefined;
  console.error(
    `data ${all.name}: ${trainSet.size} images, ${trainSet.numClasses} classes${heldOut ? `, ${heldOut.numClasses} held-out identities` : ""}`,
  );
  console.error(`backbone ${backbone.name}: ${backbone.parameterCount()} parameters; head ${o.head ?? "arcface"}`);
  const r = await train({
    backbone,
    head,
    data: trainSet,
    pipeline: { batchSize: num("batch", 64), augment: { flip: true } },
    steps,
    epochs: o.epochs === undefined ? undefined : num("epochs", 1),
    optimizer,
    schedule,
    clipGradNorm: o.clip === undefined ? undefined : num("clip", 5),
    seed,
    resume: o.resume,
    checkpoint: o.checkpoint ? { dir: o.checkpoint, every: num("every", 100) } : undefined,
    callbacks: [progressBar(process.stderr)],
  });
  const last = r.history.at(-1);
  console.log(
    `trained ${r.steps} steps${r.resumedFrom ? ` (resumed from ${r.resumedFrom})` : ""}; final loss ${last?.loss.toFixed(4) ?? "-"}${r.lastCheckpoint ? `; checkpoint ${r.lastCheckpoint}` : ""}`,
  );
  if (heldOut) {
    const v = await verifyDataset(backbone, heldOut, { pairs: 1000, seed });
    console.log(
      `held-out synthetic identities: accuracy ${(100 * v.accuracy).toFixed(2)}% +- ${(100 * v.std).toFixed(2)}, TAR@FAR=1e-2 ${v.tar[1].tar.toFixed(4)}`,
    );
  }
  for (const file of (o.verify ?? "").split(",").filter(Boolean)) {
    const set = await loadVerificationBin(file, {
      size: [inputShape[0], inputShape[1]],
      channels: inputShape[2] as 1 | 3,
    });
    const v = await verifySet(backbone, set);
    console.log(
      `${file}: accuracy ${(100 * v.accuracy).toFixed(2)}% +- ${(100 * v.std).toFixed(2)}, XNorm ${v.xnorm.toFixed(3)}`,
    );
  }
  backbone.dispose();
  head.dispose();
  return 0;
}
