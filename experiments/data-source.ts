/**
 * Where an ablation's training and verification data come from, in one place.
 *
 * - Default: synthetic identities (common.ts syntheticSplit): the first `trainIds` identities train,
 *   the next `testIds` are held out and verified on all their pairs.
 * - The settings `data` and `eval` (`marginlab ablate --data PATH --eval A.bin,B.bin`): the user's
 *   training set (an InsightFace .rec/.idx, or an image folder with one sub-folder per identity),
 *   decoded as RGB and resized to `imageSize`, and InsightFace verification sets (.bin: LFW, CFP-FP,
 *   AgeDB-30), each scored as the papers report it: 10-fold accuracy on its pairs (InsightFace's
 *   verification.py) as `<set>/acc`, plus AUC and TAR at the FARs its impostor pairs support, and
 *   `mean/acc` over the sets (the comparisons' metric, `verificationMetric`).
 *
 * `checkExperimentData` opens and checks everything (files, formats, the .bin images' size against
 * the training images', `trainIds` against the identities) before any run is created; the opened sets
 * are kept for the process, so the runs reuse them.
 */
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import type { Backbone } from "../src/backbones/backbone";
import { type Dataset, subset } from "../src/data/dataset";
import { imageFolder } from "../src/data/image-folder";
import { recordIODataset } from "../src/data/recordio";
import { permutation } from "../src/data/rng";
import type { LabelNoise } from "../src/data/synthetic";
import { loadVerificationBin, type VerificationSet } from "../src/data/verification-bin";
import { type CollapseCheck, detectCollapse } from "../src/eval/collapse";
import { embedDataset } from "../src/eval/embed";
import {
  aucFromScores,
  DEFAULT_FARS,
  evaluatePairs,
  meanPairwiseCosine,
  tarAtFarFromScores,
} from "../src/eval/verification";
import { evaluateHeldOut, syntheticSplitFromSettings, tarMetric } from "./common";
import { numberSetting } from "./settings";
import type { Settings } from "./types";

/** The comparisons' metric with verification sets: the mean of their 10-fold accuracies. */
export const MEAN_ACC = "mean/acc";

/** The user's data of the settings, or undefined (synthetic identities). */
export function realDataOf(s: Settings): { data: string; eval: string[] } | undefined {
  if (s.data === undefined) return undefined;
  return { data: String(s.data), eval: (Array.isArray(s.eval) ? s.eval : [String(s.eval)]).map(String) };
}

/** The user's data in words, for summaries' notes ("12 training identities of ..., verified on lfw, cfp_fp"); undefined when synthetic. */
export function describeRealData(s: Settings): string | undefined {
  const real = realDataOf(s);
  if (!real) return undefined;
  return `${s.trainIds} training identities of ${real.data}, verified on the pairs of ${real.eval.map(setName).join(", ")}`;
}

/** The metric comparisons use: `mean/acc` on the user's verification sets, else the synthetic one given. */
export function verificationMetric(s: Settings, synthetic: string): string {
  return realDataOf(s) ? MEAN_ACC : synthetic;
}

export interface NamedVerificationSet {
  /** The file's name without .bin (lfw, cfp_fp, agedb_30): the metrics' prefix. */
  name: string;
  file: string;
  set: VerificationSet;
}

/** What is verified: held-out identities (all pairs) or the user's .bin sets (their pairs). */
export type TestSet = { kind: "identities"; images: Dataset } | { kind: "bins"; sets: NamedVerificationSet[] };

export interface ExperimentData {
  train: Dataset;
  test: TestSet;
  /** What the backbone takes: [imageSize, imageSize, 1] synthetic, [imageSize, imageSize, 3] real. */
  inputShape: [number, number, 1 | 3];
  /**
   * Training images for statistics over the training set (angles, centres, target probability):
   * all of them for synthetic data, a seeded sample of at most TRAIN_SAMPLE for the user's (a
   * CASIA-sized set would need 490k x 10,572 class scores).
   */
  trainSample: Dataset;
}

/** Images of the user's training set that training-set statistics use. */
export const TRAIN_SAMPLE = 20_000;

/** The seeded sample of at most TRAIN_SAMPLE indices of a training set, in order; null when it is small enough to use whole. */
export function trainSampleIndices(size: number): number[] | null {
  if (size <= TRAIN_SAMPLE) return null;
  return Array.from(permutation(size, 0x5a4d).subarray(0, TRAIN_SAMPLE)).sort((a, b) => a - b);
}

interface OpenedRealData {
  train: Dataset;
  /** The stored [height, width] of the training images (the first image's). */
  stored: [number, number];
  sets: NamedVerificationSet[];
}

const opened = new Map<string, Promise<OpenedRealData>>();

const DATA_FORMATS =
  "allowed: an InsightFace .rec/.idx prefix (train -> train.rec + train.idx), a .rec file with its .idx beside it, a folder holding train.rec/train.idx, or an image folder with one sub-folder per identity";

/** Opens the training set at `p`: RecordIO (prefix, .rec, folder with train.rec) or an image folder. */
async function openTrainingSet(p: string): Promise<Dataset> {
  const isDir = existsSync(p) && statSync(p).isDirectory();
  if (p.endsWith(".rec") || (isDir && existsSync(path.join(p, "train.rec"))))
    return recordIODataset({ path: p, channels: 3 });
  if (!isDir && existsSync(`${p}.rec`)) return recordIODataset({ path: `${p}.rec`, channels: 3 });
  if (isDir) return imageFolder({ root: p, channels: 3 });
  if (existsSync(p)) throw new Error(`--data ${p}: a file that is not a .rec (${DATA_FORMATS}).`);
  throw new Error(`--data ${p}: no such file, .rec or folder (${DATA_FORMATS}).`);
}

function setName(file: string): string {
  return path.basename(file).replace(/\.bin$/i, "");
}

async function openEvalSets(files: string[]): Promise<NamedVerificationSet[]> {
  const sets: NamedVerificationSet[] = [];
  for (const file of files) {
    if (!file.toLowerCase().endsWith(".bin"))
      throw new Error(`--eval ${file}: not a .bin file (allowed: InsightFace verification sets such as lfw.bin).`);
    const name = setName(file);
    if (!/^[A-Za-z0-9_.-]+$/.test(name) || name === "mean")
      throw new Error(
        `--eval ${file}: the set name "${name}" (the metrics' prefix, ${name}/acc) may only hold letters, digits, _ . - and may not be "mean" (the mean over the sets).`,
      );
    const other = sets.find((s) => s.name === name);
    if (other) throw new Error(`--eval ${file}: another set is also named "${name}" (${other.file}); rename one.`);
    const set = await loadVerificationBin(file, { channels: 3 });
    if (set.issame.length < 2 || set.issame.every(Boolean) || !set.issame.some(Boolean))
      throw new Error(
        `--eval ${file}: ${set.issame.length} pairs; verification needs at least one same-identity and one different-identity pair.`,
      );
    sets.push({ name, file, set });
  }
  return sets;
}

async function openRealData(data: string, evalFiles: string[]): Promise<OpenedRealData> {
  const train = await openTrainingSet(data);
  if (train.size === 0) throw new Error(`--data ${data}: the training set has no images.`);
  const stored: [number, number] = [train.shape[0], train.shape[1]];
  const sets = await openEvalSets(evalFiles);
  for (const { file, set } of sets) {
    const [h, w] = set.images.shape;
    if (h !== stored[0] || w !== stored[1])
      throw new Error(
        `--eval ${file}: its images are ${h}x${w} (height x width), the training images of ${data} are ${stored[0]}x${stored[1]}: the verification images must be aligned and cropped like the training images (the same size; both are then resized to imageSize).`,
      );
  }
  return { train, stored, sets };
}

/** The user's sets of the settings, opened once per process. */
function realData(s: Settings): Promise<OpenedRealData> | undefined {
  const real = realDataOf(s);
  if (!real) return undefined;
  const key = JSON.stringify(real);
  let p = opened.get(key);
  if (!p) {
    p = openRealData(real.data, real.eval);
    opened.set(key, p);
    p.catch(() => opened.delete(key)); // a fixed file can be retried in the same process
  }
  return p;
}

/** What checkExperimentData found: undefined for synthetic data. */
export interface RealDataInfo {
  images: number;
  identities: number;
  stored: [number, number];
  sets: Array<{ name: string; file: string; pairs: number }>;
}

/**
 * Opens and checks the settings' data before any run: the files exist and parse, the .bin images
 * have the training images' size, and `trainIds` equals the training set's identities (it is C of
 * alpha_low and the summaries). Throws an Error naming the file, offset or setting and what is allowed.
 */
export async function checkExperimentData(s: Settings): Promise<RealDataInfo | undefined> {
  const p = realData(s);
  if (!p) return undefined;
  const { train, stored, sets } = await p;
  const real = realDataOf(s) as { data: string };
  if (typeof s.trainIds === "number" && s.trainIds !== train.numClasses)
    throw new Error(
      `--data ${real.data} holds ${train.numClasses} identities but trainIds = ${s.trainIds}: with --data, trainIds is the training set's identity count (C of alpha_low and the summaries); add --set trainIds=${train.numClasses}.`,
    );
  return {
    images: train.size,
    identities: train.numClasses,
    stored,
    sets: sets.map((x) => ({ name: x.name, file: x.file, pairs: x.set.issame.length })),
  };
}

/** `ds` as `imageSize` x `imageSize` (the batch pipeline resizes images of another size bilinearly). */
function atSize(ds: Dataset, size: number): Dataset {
  return { ...ds, shape: [size, size, ds.shape[2]] };
}

/**
 * The training data and the test set of the settings. Synthetic: `seed` renders the identities and
 * `extra` adds degradations or render-time label noise. The user's data: its images and labels as
 * they are (an ablation that manipulates them does so on `train`, e.g. subcenter's label flips).
 */
export async function experimentData(
  s: Settings,
  seed: number,
  extra: { degradedFraction?: number; labelNoise?: LabelNoise } = {},
): Promise<ExperimentData> {
  const size = numberSetting(s, "imageSize");
  const p = realData(s);
  if (!p) {
    const split = await syntheticSplitFromSettings(s, seed, extra);
    return {
      train: split.train,
      test: { kind: "identities", images: split.test },
      inputShape: [size, size, 1],
      trainSample: split.train,
    };
  }
  if (extra.labelNoise || (extra.degradedFraction ?? 0) > 0)
    throw new Error(
      "degradations and render-time label noise exist only for synthetic identities; with --data, apply them to the real images and labels.",
    );
  await checkExperimentData(s);
  const { train, sets } = await p;
  const resized = atSize(train, size);
  const picked = trainSampleIndices(train.size);
  const sampled = picked ? subset(resized, picked) : resized;
  return {
    train: resized,
    test: {
      kind: "bins",
      sets: sets.map((x) => ({ ...x, set: { ...x.set, images: atSize(x.set.images, size) } })),
    },
    inputShape: [size, size, 3],
    trainSample: sampled,
  };
}

/** What every ablation reads of a verification: metrics, the ROC for figures, the collapse check, notes. */
export interface Verification {
  metrics: Record<string, number>;
  /** TAR at log-spaced FARs (held-out identities: all pairs; .bin sets: the first set's pairs). */
  roc: { far: number[]; tar: number[] };
  collapse: CollapseCheck;
  /** FARs left out for too few impostors, fewer than 10 folds, in words. */
  notes: string[];
}

interface VerifyOptions {
  losses: readonly number[];
  normalize?: { mean: number; std: number };
  seed?: number;
}

/**
 * The protocol's verification of a trained backbone on the test set: all pairs of the held-out
 * identities (common.ts evaluateHeldOut), or each .bin set's pairs as InsightFace scores them.
 */
export async function evaluateVerification(backbone: Backbone, test: TestSet, o: VerifyOptions): Promise<Verification> {
  if (test.kind === "bins") return verifyBins(backbone, test.sets, o);
  const held = await evaluateHeldOut(backbone, test.images, o);
  return { metrics: held.metrics, roc: held.verification.roc, collapse: held.collapse, notes: held.notes };
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

/**
 * Per .bin set: emb(x) + emb(flip(x)) as InsightFace's verification.test(); `<set>/acc` (10-fold
 * accuracy, fewer folds where the set has fewer than 10 pairs, said in the notes), `<set>/acc_fold_std`,
 * `<set>/auc`, `<set>/tar_far_1e-2` ... where the impostor pairs are at least 10 / FAR (the notes name
 * those left out); `mean/acc` and `mean/auc` over the sets; the collapse check on the mean AUC and the
 * mean pairwise cosine.
 */
async function verifyBins(backbone: Backbone, sets: NamedVerificationSet[], o: VerifyOptions): Promise<Verification> {
  const metrics: Record<string, number> = {};
  const notes: string[] = [];
  const accs: number[] = [];
  const aucs: number[] = [];
  const cosines: number[] = [];
  let roc: Verification["roc"] = { far: [], tar: [] };
  for (const { name, set } of sets) {
    const emb = await embedDataset(backbone, set.images, { batchSize: 256, flip: true, normalize: o.normalize });
    const pairs = set.issame.length;
    const folds = Math.min(10, pairs);
    if (folds < 10) notes.push(`${name}: ${pairs} pairs, so ${folds}-fold accuracy (InsightFace uses 10 folds).`);
    const kfold = evaluatePairs(emb.embeddings, set.issame, { folds });
    // cosine of unit vectors from their squared L2 distance: cos = 1 - d / 2
    const genuine: number[] = [];
    const impostor: number[] = [];
    kfold.distances.forEach((d, k) => {
      (set.issame[k] ? genuine : impostor).push(1 - d / 2);
    });
    const g = Float64Array.from(genuine).sort().reverse();
    const im = Float64Array.from(impostor).sort().reverse();
    const auc = aucFromScores(g, im);
    metrics[`${name}/acc`] = kfold.accuracy;
    metrics[`${name}/acc_fold_std`] = kfold.std;
    metrics[`${name}/auc`] = auc;
    metrics[`${name}/pairs`] = pairs;
    for (const t of tarAtFarFromScores(g, im, DEFAULT_FARS, { sorted: true })) {
      if (t.reliable) metrics[`${name}/${tarMetric(t.far)}`] = t.tar;
      else notes.push(`${name}: TAR@FAR=${t.far} not reported: ${t.note}.`);
    }
    if (accs.length === 0) {
      const far: number[] = [];
      for (let e = -6; e <= 0; e += 0.25) if (10 ** e * im.length >= 1) far.push(10 ** e);
      roc = { far, tar: tarAtFarFromScores(g, im, far, { sorted: true }).map((t) => t.tar) };
    }
    accs.push(kfold.accuracy);
    aucs.push(auc);
    cosines.push(meanPairwiseCosine(emb.embeddings));
  }
  metrics[MEAN_ACC] = mean(accs);
  metrics["mean/auc"] = mean(aucs);
  if (sets.length > 0) notes.push(`ROC figures: the pairs of ${sets[0].name} (${sets[0].file}).`);
  const collapse = detectCollapse({ losses: o.losses, auc: mean(aucs), meanPairwiseCosine: mean(cosines) });
  return { metrics, roc, collapse, notes };
}
