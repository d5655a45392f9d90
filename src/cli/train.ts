/**
 * `marginlab train`: train a backbone + head on synthetic identities, MNIST, an InsightFace RecordIO
 * set or an image folder, with checkpoints and resume, then report verification (held-out synthetic
 * identities and/or InsightFace .bin sets). Options are validated before anything is built (exit 2).
 * The run is tracked in MLflow like an ablation's: params, metrics per step, final metrics,
 * provenance, system metrics (`--no-track` switches it off).
 */
import path from "node:path";
import { createBackbone } from "../backbones/index";
import { checkInt, type Dataset, indicesOfClasses, subset } from "../data/dataset";
import { imageFolder, type SkippedImage } from "../data/image-folder";
import { type DataSpec, openDataset } from "../data/index";
import { loadVerificationBin } from "../data/verification-bin";
import { verifyDataset, verifySet } from "../eval/verify";
import { createHead, type HeadSpec } from "../losses/create";
import type { CosineHead, Head } from "../losses/head";
import { PartialFC } from "../losses/partial-fc";
import { type Run, type RunEndResult, startRun } from "../tracking/run";
import { progressBar, trackerCallback } from "../train/callbacks";
import type { OptimizerConfig } from "../train/optimizers";
import type { Schedule } from "../train/schedules";
import { train } from "../train/trainer";
import { ConfigError } from "../validate";
import { interruptNotes } from "./interrupt";

export const summary = "train a backbone + head (synthetic, MNIST, RecordIO or image folder) and report verification";

const HELP = `usage: marginlab train [options]
  data       --data synthetic|mnist|recordio:<path>|folder:<path>   (default synthetic)
             --identities 100 --images 20 --size 32 --channels 1 --holdout 20   (synthetic)
  model      --backbone iresnet-small|iresnet18|mobilefacenet-small|lenet++|...  --emb 64
             --head arcface|cosface|normface|softmax  --s 30 --m 0.5
  training   --steps 300 | --epochs N   --batch 64   --opt sgd|adamw   --lr 0.1   --wd 5e-4
             --schedule constant|cosine|polynomial|step  --warmup 0  --clip 5  --seed 0
             --checkpoint <dir> --every 100 --resume <dir>|<dir>/step-N|<dir>/latest (newest good one)
             --sample-rate r   (Partial FC: each step trains trunc(r C) class centres, r in (0, 1]; cosine heads)
  evaluation --verify a.bin,b.bin   (InsightFace .bin sets; input size taken from --size)
  data       --skip-bad-images   (folder: skip images that do not decode; counted and logged)
  tracking   --experiment marginlab-train   --name <run name>   --no-track   (MLflow: MLFLOW_TRACKING_URI,
             else the project's embedded server)`;

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
  "sample-rate",
];
const TEXT = ["data", "backbone", "head", "opt", "schedule", "checkpoint", "resume", "verify", "experiment", "name"];
/** Flags without a value. */
const SWITCHES = ["no-track", "skip-bad-images"];

function parse(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const key = a.replace(/^--/, "");
    if (a.startsWith("--") && SWITCHES.includes(key)) {
      out[key] = "true";
      continue;
    }
    if (!a.startsWith("--") || (!NUMERIC.includes(key) && !TEXT.includes(key))) {
      throw new Error(`unknown option "${a}" (see marginlab train --help)`);
    }
    const value = args[++i];
    if (value === undefined) throw new Error(`option ${a} needs a value`);
    if (NUMERIC.includes(key) && !Number.isFinite(Number(value)))
      throw new Error(`--${key} = ${value} is not a number`);
    out[key] = value;
  }
  return out;
}

/** --lr and --wd, with each optimizer's default. */
const optimizerLr = (o: Record<string, string>, num: (k: string, d: number) => number) =>
  num("lr", (o.opt ?? "sgd") === "sgd" ? 0.1 : 0.001);
const optimizerWd = (o: Record<string, string>, num: (k: string, d: number) => number) =>
  num("wd", (o.opt ?? "sgd") === "sgd" ? 5e-4 : 0.01);

/** The --head choices; the head itself comes from createHead, the one place heads are built from data. */
const CLI_HEADS = ["arcface", "cosface", "normface", "softmax"] as const;

function makeHead(
  name: string,
  numClasses: number,
  embeddingDim: number,
  o: Record<string, string>,
  seed: number,
): Head {
  if (!(CLI_HEADS as readonly string[]).includes(name))
    throw new ConfigError("marginlab train", "--head", name, `allowed are ${CLI_HEADS.join(", ")}`);
  const margin: Record<string, number> = {};
  if (o.s !== undefined && name !== "softmax") margin.s = Number(o.s);
  if (o.m !== undefined && (name === "arcface" || name === "cosface")) margin.m = Number(o.m);
  return createHead({ type: name, numClasses, embeddingDim, seed, ...margin } as HeadSpec);
}

export async function run(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(HELP);
    return 0;
  }
  let prepared: Prepared;
  try {
    prepared = prepare(parse(args));
  } catch (error) {
    console.error(`marginlab train: ${(error as Error).message}`);
    return 2;
  }
  return trainAndReport(prepared);
}

interface Prepared {
  o: Record<string, string>;
  num: (k: string, d: number) => number;
  spec: DataSpec;
  dataArg: string;
  holdout: number;
  seed: number;
  inputShape: [number, number, number];
}

/** The cheap checks, before data is rendered, a backbone is built or a run is created. */
function prepare(o: Record<string, string>): Prepared {
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
  if (o["skip-bad-images"] && spec.type !== "folder")
    throw new Error(`--skip-bad-images applies to --data folder:<path> only (got --data ${dataArg})`);
  const head = o.head ?? "arcface";
  if (!(CLI_HEADS as readonly string[]).includes(head))
    throw new ConfigError("marginlab train", "--head", head, `allowed are ${CLI_HEADS.join(", ")}`);
  if (o["sample-rate"] !== undefined) {
    const r = num("sample-rate", 1);
    if (!(r > 0 && r <= 1)) throw new ConfigError("marginlab train", "--sample-rate", r, "allowed is r in (0, 1]");
    if (head === "softmax")
      throw new ConfigError(
        "marginlab train",
        "--sample-rate",
        r,
        "Partial FC needs a cosine head (arcface, cosface, normface)",
      );
  }
  const inputShape: [number, number, number] = dataArg === "mnist" ? [28, 28, 1] : [size, size, channels];
  return { o, num, spec, dataArg, holdout, seed, inputShape };
}

/** Params for MLflow, grouped so that none shares a name with a metric (lr, loss, ...). */
function trainParams(p: Prepared, steps: number | undefined): Record<string, unknown> {
  const { o, num } = p;
  const opt = o.opt ?? "sgd";
  return {
    data: {
      source: p.dataArg,
      ...(p.spec.type === "synthetic"
        ? { identities: num("identities", 100), images: num("images", 20), holdout: p.holdout }
        : {}),
      input_shape: p.inputShape.join("x"),
    },
    model: {
      backbone: o.backbone ?? "iresnet-small",
      head: o.head ?? "arcface",
      embedding_dim: num("emb", 64),
      s: o.s,
      m: o.m,
    },
    optimizer: {
      type: opt,
      lr: optimizerLr(o, num),
      weight_decay: optimizerWd(o, num),
      schedule: o.schedule ?? "cosine",
      warmup_steps: num("warmup", 0),
      clip_grad_norm: o.clip,
    },
    training: {
      steps,
      epochs: o.epochs,
      batch_size: num("batch", 64),
      seed: p.seed,
      resume: o.resume,
      sample_rate: o["sample-rate"],
    },
  };
}

async function trainAndReport(p: Prepared): Promise<number> {
  const { o, num, spec, holdout, seed, inputShape } = p;
  const emb = num("emb", 64);
  const backbone = createBackbone({ name: o.backbone ?? "iresnet-small", inputShape, embeddingDim: emb, seed });
  let all: Dataset;
  const skipped: SkippedImage[] = [];
  try {
    all =
      spec.type === "folder" && o["skip-bad-images"]
        ? await imageFolder({ ...spec, skipBadImages: true, onSkip: (bad) => skipped.push(bad) })
        : await openDataset(spec);
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
  // Partial FC keeps W and its momentum on the host and updates them itself, with the trainer's SGD settings.
  const headStep =
    o["sample-rate"] === undefined
      ? undefined
      : new PartialFC({
          head: head as CosineHead,
          sampleRate: num("sample-rate", 1),
          seed,
          optimizer: { learningRate: optimizerLr(o, num), weightDecay: optimizerWd(o, num) },
        });
  const opt = (o.opt ?? "sgd") as OptimizerConfig["type"];
  const optimizer = { type: opt, lr: optimizerLr(o, num), weightDecay: optimizerWd(o, num) } as OptimizerConfig;
  const scheduleType = (o.schedule ?? "cosine") as Schedule["type"];
  const schedule = (
    scheduleType === "step" ? { type: "step", milestones: [] } : { type: scheduleType, warmupSteps: num("warmup", 0) }
  ) as Schedule;
  const steps = o.epochs === undefined ? num("steps", 300) : undefined;
  let tracked: Run | undefined;
  try {
    if (!o["no-track"]) {
      tracked = await startRun({
        experiment: o.experiment ?? "marginlab-train",
        name: o.name ?? `train-${o.head ?? "arcface"}-${backbone.name}`,
        params: trainParams(p, steps),
        tags: { "marginlab.command": "train" },
        systemMetrics: true,
      });
      console.error(
        tracked.url
          ? `MLflow run: ${tracked.url}`
          : "MLflow: not reached; the run is kept in the journal for `npx marginlab sync`",
      );
    }
    if (o.checkpoint) {
      const dir = path.resolve(o.checkpoint);
      interruptNotes.push(() => `checkpoints: ${dir} (continue with --resume ${dir})`);
    }
    console.error(
      `data ${all.name}: ${trainSet.size} images, ${trainSet.numClasses} classes${heldOut ? `, ${heldOut.numClasses} held-out identities` : ""}`,
    );
    if (skipped.length > 0) {
      console.error(`skipped ${skipped.length} images that do not decode (--skip-bad-images):`);
      for (const bad of skipped.slice(0, 10)) console.error(`  ${bad.file}: ${bad.reason}`);
      if (skipped.length > 10)
        console.error(`  ... and ${skipped.length - 10} more (listed in the run's data/skipped_images.json)`);
    }
    if (tracked && o["skip-bad-images"]) {
      tracked.logMetrics({ "data/skipped_images": skipped.length }, 0);
      if (skipped.length > 0)
        tracked.logTable(
          skipped.map((bad) => ({ file: bad.file, identity: bad.className, reason: bad.reason })),
          "data/skipped_images.json",
        );
    }
    console.error(`backbone ${backbone.name}: ${backbone.parameterCount()} parameters; head ${o.head ?? "arcface"}`);
    const r = await train({
      backbone,
      head,
      headStep,
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
      callbacks: [progressBar(process.stderr), ...(tracked ? [trackerCallback(tracked)] : [])],
    });
    const last = r.history.at(-1);
    // Final metrics at step 0 under final/, as the ablations' children report theirs.
    const final: Record<string, number> = { "final/steps": r.steps };
    if (last) Object.assign(final, { "final/loss": last.loss, "final/seconds": last.elapsedSeconds });
    console.log(
      `trained ${r.steps} steps${r.resumedFrom ? ` (resumed from ${r.resumedFrom})` : ""}; final loss ${last?.loss.toFixed(4) ?? "-"}${r.lastCheckpoint ? `; checkpoint ${r.lastCheckpoint}` : ""}`,
    );
    if (heldOut) {
      const v = await verifyDataset(backbone, heldOut, { pairs: 1000, seed });
      Object.assign(final, {
        "verify/heldout/accuracy": v.accuracy,
        "verify/heldout/accuracy_std": v.std,
        "verify/heldout/tar_at_far_1e-2": v.tar[1].tar,
      });
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
      const key = `verify/${path.basename(file, ".bin").replace(/[^A-Za-z0-9_.-]/g, "_")}`;
      Object.assign(final, { [`${key}/accuracy`]: v.accuracy, [`${key}/xnorm`]: v.xnorm });
      console.log(
        `${file}: accuracy ${(100 * v.accuracy).toFixed(2)}% +- ${(100 * v.std).toFixed(2)}, XNorm ${v.xnorm.toFixed(3)}`,
      );
    }
    if (tracked) {
      tracked.logMetrics(final, 0);
      reportEnd(await tracked.end("FINISHED"));
    }
    return 0;
  } catch (error) {
    if (tracked && !tracked.ended) {
      tracked.setTag("marginlab.error", (error as Error).message.slice(0, 4000));
      reportEnd(await tracked.end("FAILED"));
    }
    throw error;
  } finally {
    backbone.dispose();
    head.dispose();
  }
}

/** Where the run's data is: on the server, or (partly) in the journal for `marginlab sync`. */
function reportEnd(end: RunEndResult): void {
  for (const e of end.errors) console.error(`note: ${e.message}`);
  if (end.pending > 0)
    console.error(
      `MLflow: ${end.pending} items wait in the journal ${end.journal ?? ""} (\`npx marginlab sync\` sends them)`,
    );
}
