/**
 * Pair verification as InsightFace's eval/verification.py (shared/research/losses.md 1.6):
 * squared L2 distance of L2-normalised embeddings; thresholds 0, 0.01, ..., 3.99; unshuffled k-fold
 * (the first n % k folds one pair larger); per fold the threshold with the best train accuracy (first
 * maximum), test accuracy with `dist < threshold`; mean and population std of the fold accuracies.
 * Plus TAR at given FARs and ROC data, which verification.py does not log reliably (insightface#2152),
 * and verification on all pairs of a labelled set (`verifyAllPairs`: exact TAR at FAR from sorted
 * genuine and impostor scores, no pair list, with a flag where the impostors are too few for a FAR).
 */
import { checkInt } from "../data/dataset";
import { hashInts, Rng } from "../data/rng";

export type Matrix = ArrayLike<number>[];

/** v / max(|v|, 1e-12) per row (sklearn/torch normalize). */
export function l2normalize(rows: Matrix): Float64Array[] {
  return rows.map((r) => {
    let s = 0;
    for (let k = 0; k < r.length; k++) s += r[k] * r[k];
    const n = Math.max(Math.sqrt(s), 1e-12);
    return Float64Array.from(r as ArrayLike<number>, (v) => v / n);
  });
}

export function squaredL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let k = 0; k < a.length; k++) {
    const d = a[k] - b[k];
    s += d * d;
  }
  return s;
}

/** Contiguous folds as sklearn's KFold(shuffle=False): test index ranges. */
export function kfoldRanges(n: number, folds: number): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  for (let f = 0; f < folds; f++) {
    const size = Math.floor(n / folds) + (f < n % folds ? 1 : 0);
    out.push([start, start + size]);
    start += size;
  }
  return out;
}

/** InsightFace's thresholds np.arange(0, 4, 0.01). */
export function defaultThresholds(): number[] {
  return Array.from({ length: 400 }, (_, i) => i * 0.01);
}

export interface FoldResult {
  testIndices: [number, number];
  bestThreshold: number;
  trainAccuracy: number;
  accuracy: number;
}

export interface VerificationResult {
  accuracy: number;
  std: number;
  folds: FoldResult[];
  distances: Float64Array;
  issame: boolean[];
}

function accuracyAt(threshold: number, dist: ArrayLike<number>, issame: readonly boolean[], idx: number[]): number {
  let correct = 0;
  for (const i of idx) if (dist[i] < threshold === issame[i]) correct++;
  return idx.length ? correct / idx.length : 0;
}

/** k-fold verification accuracy from pair distances (calculate_roc's accuracy part). */
export function kfoldAccuracy(
  distances: ArrayLike<number>,
  issame: readonly boolean[],
  options: { folds?: number; thresholds?: number[] } = {},
): VerificationResult {
  const n = issame.length;
  if (distances.length !== n) throw new Error(`kfoldAccuracy: ${distances.length} distances for ${n} issame flags`);
  const folds = checkInt("folds", options.folds ?? 10, 2, Math.max(2, n));
  const thresholds = options.thresholds ?? defaultThresholds();
  const all = Array.from({ length: n }, (_, i) => i);
  const results = kfoldRanges(n, folds).map(([a, b]) => {
    const test = all.slice(a, b);
    const train = all.filter((i) => i < a || i >= b);
    let best = -1;
    let bestT = thresholds[0];
    for (const t of thresholds) {
      const acc = accuracyAt(t, distances, issame, train);
      if (acc > best) {
        best = acc;
        bestT = t;
      }
    }
    return {
      testIndices: [a, b] as [number, number],
      bestThreshold: bestT,
      trainAccuracy: best,
      accuracy: accuracyAt(bestT, distances, issame, test),
    };
  });
  const accs = results.map((r) => r.accuracy);
  const mean = accs.reduce((s, v) => s + v, 0) / accs.length;
  const std = Math.sqrt(accs.reduce((s, v) => s + (v - mean) ** 2, 0) / accs.length);
  return { accuracy: mean, std, folds: results, distances: Float64Array.from(distances), issame: [...issame] };
}

/**
 * verification.py's evaluate(): embeddings are rows [a0, b0, a1, b1, ...] (pair k = rows 2k, 2k+1),
 * normalised here (pass already-normalised rows unchanged: normalising twice is a no-op).
 */
export function evaluatePairs(
  embeddings: Matrix,
  issame: readonly boolean[],
  options: { folds?: number } = {},
): VerificationResult {
  if (embeddings.length !== 2 * issame.length)
    throw new Error(
      `evaluatePairs: ${embeddings.length} embeddings for ${issame.length} pairs (expected ${2 * issame.length})`,
    );
  const e = l2normalize(embeddings);
  const dist = Float64Array.from(issame, (_, k) => squaredL2(e[2 * k], e[2 * k + 1]));
  return kfoldAccuracy(dist, issame, options);
}

export interface RocCurve {
  /** Distance thresholds (predict same when dist <= threshold), increasing. */
  thresholds: number[];
  far: number[];
  tar: number[];
  auc: number;
}

/** ROC over every distinct distance (plus the all-different point). */
export function rocCurve(distances: ArrayLike<number>, issame: readonly boolean[]): RocCurve {
  const order = Array.from({ length: issame.length }, (_, i) => i).sort((a, b) => distances[a] - distances[b]);
  const P = issame.filter(Boolean).length;
  const N = issame.length - P;
  const thresholds: number[] = [Number.NEGATIVE_INFINITY];
  const far = [0];
  const tar = [0];
  let tp = 0;
  let fp = 0;
  for (let k = 0; k < order.length; k++) {
    const i = order[k];
    if (issame[i]) tp++;
    else fp++;
    if (k + 1 < order.length && distances[order[k + 1]] === distances[i]) continue;
    thresholds.push(distances[i]);
    far.push(N ? fp / N : 0);
    tar.push(P ? tp / P : 0);
  }
  let auc = 0;
  for (let k = 1; k < far.length; k++) auc += ((far[k] - far[k - 1]) * (tar[k] + tar[k - 1])) / 2;
  return { thresholds, far, tar, auc };
}

/**
 * TAR at each FAR: the largest threshold whose false accept rate is <= FAR (ties at a distance are
 * accepted together or not at all). NaN when there are no same or no different pairs.
 */
export function tarAtFar(
  distances: ArrayLike<number>,
  issame: readonly boolean[],
  fars: readonly number[],
): { far: number; tar: number; threshold: number }[] {
  const roc = rocCurve(distances, issame);
  const P = issame.filter(Boolean).length;
  const N = issame.length - P;
  return fars.map((target) => {
    if (!P || !N) return { far: target, tar: Number.NaN, threshold: Number.NaN };
    let k = 0;
    while (k + 1 < roc.far.length && roc.far[k + 1] <= target + 1e-12) k++;
    return { far: target, tar: roc.tar[k], threshold: roc.thresholds[k] };
  });
}

/** Seeded balanced pairs over labelled images: half same-identity, half different. */
export function makePairs(
  labels: ArrayLike<number>,
  count: number,
  seed = 0,
): { pairs: [number, number][]; issame: boolean[] } {
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (!byClass.has(l)) byClass.set(l, []);
    byClass.get(l)!.push(i);
  }
  const multi = [...byClass.values()].filter((v) => v.length >= 2);
  const classes = [...byClass.keys()];
  if (multi.length === 0 || classes.length < 2)
    throw new Error("makePairs: needs at least two classes and one class with two images");
  let s = (seed ^ 0x9e3779b9) >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(a: T[]) => a[Math.floor(rand() * a.length)];
  const pairs: [number, number][] = [];
  const issame: boolean[] = [];
  for (let k = 0; k < count; k++) {
    if (k % 2 === 0) {
      const members = pick(multi);
      const a = Math.floor(rand() * members.length);
      let b = Math.floor(rand() * (members.length - 1));
      if (b >= a) b++;
      pairs.push([members[a], members[b]]);
      issame.push(true);
    } else {
      const ca = pick(classes);
      let cb = pick(classes);
      while (cb === ca) cb = pick(classes);
      pairs.push([pick(byClass.get(ca)!), pick(byClass.get(cb)!)]);
      issame.push(false);
    }
  }
  return { pairs, issame };
}

/** Verification of arbitrary pairs of rows of an embedding matrix. */
export function verifyPairs(
  embeddings: Matrix,
  pairs: readonly [number, number][],
  issame: readonly boolean[],
  options: { folds?: number; fars?: number[] } = {},
) {
  const e = l2normalize(embeddings);
  const dist = Float64Array.from(pairs, ([a, b]) => squaredL2(e[a], e[b]));
  const kfold = kfoldAccuracy(dist, issame, options);
  return { ...kfold, tar: tarAtFar(dist, issame, options.fars ?? [1e-3, 1e-2, 1e-1]), roc: rocCurve(dist, issame) };
}

// --- all pairs of a labelled set (held-out identities) ---

/** Cosine scores of every pair i < j of the rows, split into same-identity and different-identity. */
export function allPairsScores(
  embeddings: Matrix,
  labels: ArrayLike<number>,
): { genuine: Float64Array; impostor: Float64Array } {
  const n = embeddings.length;
  if (labels.length !== n) throw new Error(`allPairsScores: ${n} embeddings for ${labels.length} labels.`);
  const e = l2normalize(embeddings);
  let nGenuine = 0;
  const counts = new Map<number, number>();
  for (let i = 0; i < n; i++) counts.set(labels[i], (counts.get(labels[i]) ?? 0) + 1);
  for (const c of counts.values()) nGenuine += (c * (c - 1)) / 2;
  const genuine = new Float64Array(nGenuine);
  const impostor = new Float64Array((n * (n - 1)) / 2 - nGenuine);
  let g = 0;
  let m = 0;
  for (let i = 0; i < n; i++) {
    const a = e[i];
    for (let j = i + 1; j < n; j++) {
      const b = e[j];
      let s = 0;
      for (let k = 0; k < a.length; k++) s += a[k] * b[k];
      if (labels[i] === labels[j]) genuine[g++] = s;
      else impostor[m++] = s;
    }
  }
  return { genuine, impostor };
}

const descending = (x: Float64Array) => Float64Array.from(x).sort().reverse();

/**
 * The exact ROC of scores (accept when score >= threshold) at every distinct score, as
 * sklearn.metrics.roc_curve(drop_intermediate=False): the first point is (0, 0) at +Infinity.
 */
export function rocFromScores(
  genuine: Float64Array,
  impostor: Float64Array,
): { thresholds: number[]; far: number[]; tar: number[] } {
  const g = descending(genuine);
  const im = descending(impostor);
  const thresholds = [Number.POSITIVE_INFINITY];
  const far = [0];
  const tar = [0];
  let a = 0;
  let b = 0;
  while (a < g.length || b < im.length) {
    const t = Math.max(
      a < g.length ? g[a] : Number.NEGATIVE_INFINITY,
      b < im.length ? im[b] : Number.NEGATIVE_INFINITY,
    );
    while (a < g.length && g[a] === t) a++;
    while (b < im.length && im[b] === t) b++;
    thresholds.push(t);
    far.push(im.length ? b / im.length : 0);
    tar.push(g.length ? a / g.length : 0);
  }
  return { thresholds, far, tar };
}

export interface TarAtFar {
  far: number;
  /** The largest true accept rate whose false accept rate is <= far (ties accepted together). */
  tar: number;
  /** Accept when score > threshold. */
  threshold: number;
  falseAccepts: number;
  /** False when the impostor count is below minImpostorsPerFar / far: the TAR rests on too few false accepts. */
  reliable: boolean;
  note?: string;
}

/** TAR at each FAR from genuine and impostor scores, exactly (sorting, no pair list). */
export function tarAtFarFromScores(
  genuine: Float64Array,
  impostor: Float64Array,
  fars: readonly number[],
  options: { minImpostorsPerFar?: number; sorted?: boolean } = {},
): TarAtFar[] {
  const perFar = options.minImpostorsPerFar ?? 10;
  const g = options.sorted ? genuine : descending(genuine);
  const im = options.sorted ? impostor : descending(impostor);
  return fars.map((far) => {
    if (!(far > 0 && far <= 1)) throw new Error(`FAR = ${far} is not valid: expected 0 < FAR <= 1.`);
    const needed = Math.ceil(perFar / far);
    const reliable = im.length >= needed;
    const note = reliable
      ? undefined
      : `${im.length} impostor pairs: FAR = ${far} needs at least ${needed} (${perFar} false accepts)`;
    if (g.length === 0 || im.length === 0)
      return {
        far,
        tar: Number.NaN,
        threshold: Number.NaN,
        falseAccepts: 0,
        reliable: false,
        note: "no genuine or no impostor pairs",
      };
    const k = Math.floor(far * im.length + 1e-9); // false accepts allowed
    if (k >= im.length)
      return { far, tar: 1, threshold: Number.NEGATIVE_INFINITY, falseAccepts: im.length, reliable, note };
    const threshold = im[k];
    let fa = k;
    while (fa > 0 && im[fa - 1] === threshold) fa--; // impostors tied with im[k] are rejected with it
    const tp = countAbove(g, threshold);
    return { far, tar: tp / g.length, threshold, falseAccepts: fa, reliable, note };
  });
}

/** Number of values > t in a descending array (binary search). */
function countAbove(desc: Float64Array, t: number): number {
  let lo = 0;
  let hi = desc.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (desc[mid] > t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Area under the ROC: P(genuine > impostor) + P(tie) / 2 (equal to the trapezoid over the exact ROC). */
export function aucFromScores(genuine: Float64Array, impostor: Float64Array): number {
  const g = Float64Array.from(genuine).sort();
  const im = Float64Array.from(impostor).sort();
  let below = 0; // impostors < current genuine
  let ties = 0;
  let sum = 0;
  let j = 0;
  for (let i = 0; i < g.length; i++) {
    while (j < im.length && im[j] < g[i]) j++;
    below = j;
    let k = j;
    while (k < im.length && im[k] === g[i]) k++;
    ties = k - j;
    sum += below + ties / 2;
  }
  return g.length && im.length ? sum / (g.length * im.length) : Number.NaN;
}

/** Mean cosine between distinct rows, from the mean unit vector (near 1: all embeddings in one direction). */
export function meanPairwiseCosine(embeddings: Matrix): number {
  const e = l2normalize(embeddings);
  const n = e.length;
  if (n < 2) return Number.NaN;
  const d = e[0].length;
  const sum = new Float64Array(d);
  for (const v of e) for (let k = 0; k < d; k++) sum[k] += v[k];
  let sq = 0;
  for (let k = 0; k < d; k++) sq += sum[k] * sum[k];
  let self = 0;
  for (const v of e) for (let k = 0; k < d; k++) self += v[k] * v[k];
  return (sq - self) / (n * (n - 1));
}

export interface AllPairsVerification {
  images: number;
  genuinePairs: number;
  impostorPairs: number;
  auc: number;
  tar: TarAtFar[];
  /** TAR at log-spaced FARs (1e-6 .. 1, where the impostors reach), for plotting the ROC. */
  roc: { far: number[]; tar: number[] };
  /** 10-fold accuracy as InsightFace's verification.py on a balanced pair list: every genuine pair and as many seeded impostor pairs, interleaved. */
  accuracy: number;
  accuracyStd: number;
  meanPairwiseCosine: number;
}

export const DEFAULT_FARS = [1e-2, 1e-3, 1e-4] as const;

/**
 * Verification on all pairs of a labelled set: exact TAR at each FAR and AUC over every
 * genuine/impostor pair, the ROC for plots, and InsightFace's 10-fold accuracy on a balanced subset.
 */
export function verifyAllPairs(
  embeddings: Matrix,
  labels: ArrayLike<number>,
  options: { fars?: readonly number[]; folds?: number; seed?: number; minImpostorsPerFar?: number } = {},
): AllPairsVerification {
  const { genuine, impostor } = allPairsScores(embeddings, labels);
  if (genuine.length === 0 || impostor.length === 0)
    throw new Error(
      `verifyAllPairs: ${genuine.length} genuine and ${impostor.length} impostor pairs: needs identities with two or more images and at least two identities.`,
    );
  const g = descending(genuine);
  const im = descending(impostor);
  const tar = tarAtFarFromScores(g, im, options.fars ?? DEFAULT_FARS, {
    minImpostorsPerFar: options.minImpostorsPerFar,
    sorted: true,
  });
  const rocFars: number[] = [];
  for (let e = -6; e <= 0; e += 0.25) if (10 ** e * im.length >= 1) rocFars.push(10 ** e);
  const roc = { far: rocFars, tar: tarAtFarFromScores(g, im, rocFars, { sorted: true }).map((t) => t.tar) };
  // balanced list for k-fold: genuine pairs with seeded impostors, alternating (squared L2 = 2 - 2 cos)
  const rng = new Rng(hashInts(options.seed ?? 0, 0x7a11));
  const dist: number[] = [];
  const issame: boolean[] = [];
  const count = Math.min(genuine.length, impostor.length);
  for (let k = 0; k < count; k++) {
    dist.push(2 - 2 * genuine[k], 2 - 2 * impostor[rng.int(impostor.length)]);
    issame.push(true, false);
  }
  const kfold = kfoldAccuracy(dist, issame, { folds: Math.min(options.folds ?? 10, dist.length) });
  return {
    images: embeddings.length,
    genuinePairs: genuine.length,
    impostorPairs: impostor.length,
    auc: aucFromScores(genuine, impostor),
    tar,
    roc,
    accuracy: kfold.accuracy,
    accuracyStd: kfold.std,
    meanPairwiseCosine: meanPairwiseCosine(embeddings),
  };
}
