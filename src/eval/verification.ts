/**
 * Pair verification as InsightFace's eval/verification.py (shared/research/losses.md 1.6):
 * squared L2 distance of L2-normalised embeddings; thresholds 0, 0.01, ..., 3.99; unshuffled k-fold
 * (the first n % k folds one pair larger); per fold the threshold with the best train accuracy (first
 * maximum), test accuracy with `dist < threshold`; mean and population std of the fold accuracies.
 * Plus TAR at given FARs and ROC data, which verification.py does not log reliably (insightface#2152).
 */
import { checkInt } from "../data/dataset";

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
