/**
 * Feature-norm analysis (L2-softmax, Ranjan et al. 2017, Fig. 1): with plain softmax the L2 norm of a
 * face's feature tracks its quality. Per-image norms, their correlation with the ground-truth quality
 * (synthetic data records it), and the split of the test images into three sets by norm (low, middle,
 * high thirds) with verification of the six pair groups (1-1, 1-2, 1-3, 2-2, 2-3, 3-3).
 */
import { kfoldAccuracy, l2normalize, squaredL2, tarAtFar } from "./verification";

export function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i];
    mb += b[i];
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : Number.NaN;
}

/** Average ranks (ties share their mean rank), 1-based. */
export function ranks(a: ArrayLike<number>): Float64Array {
  const idx = Array.from({ length: a.length }, (_, i) => i).sort((x, y) => a[x] - a[y]);
  const r = new Float64Array(a.length);
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && a[idx[j + 1]] === a[idx[i]]) j++;
    for (let k = i; k <= j; k++) r[idx[k]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

export function spearman(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return pearson(ranks(a), ranks(b));
}

export function l2norms(rows: ArrayLike<number>[]): Float64Array {
  return Float64Array.from(rows, (r) => {
    let s = 0;
    for (let k = 0; k < r.length; k++) s += r[k] * r[k];
    return Math.sqrt(s);
  });
}

/** Set 1/2/3 per image: the low, middle and high thirds of the norms (ties broken by index). */
export function normTertiles(norms: ArrayLike<number>): Int8Array {
  const order = Array.from({ length: norms.length }, (_, i) => i).sort((a, b) => norms[a] - norms[b] || a - b);
  const out = new Int8Array(norms.length);
  order.forEach((i, rank) => {
    out[i] = (1 + Math.min(2, Math.floor((3 * rank) / norms.length))) as 1 | 2 | 3;
  });
  return out;
}

export interface PairGroupResult {
  group: string;
  pairs: number;
  same: number;
  different: number;
  /** 10-fold accuracy within the group (NaN with fewer than 10 pairs). */
  accuracy: number;
  tar: { far: number; tar: number }[];
}

export interface NormQualityReport {
  norms: Float64Array;
  /** Pearson and Spearman correlation of norm with ground-truth quality (when given). */
  pearson?: number;
  spearman?: number;
  /** Mean norm per set (1 = lowest third). */
  setMeanNorm: [number, number, number];
  /** Mean quality per set, when quality is given. */
  setMeanQuality?: [number, number, number];
  groups: PairGroupResult[];
}

/**
 * The L2-softmax norm split. `norms` are the per-image feature norms (of the unnormalised single-view
 * embeddings); `embeddings` are what pairs are compared with (normalised here).
 */
export function normQualityAnalysis(
  embeddings: ArrayLike<number>[],
  norms: ArrayLike<number>,
  pairs: readonly [number, number][],
  issame: readonly boolean[],
  options: { quality?: ArrayLike<number>; fars?: number[] } = {},
): NormQualityReport {
  const sets = normTertiles(norms);
  const e = l2normalize(embeddings);
  const fars = options.fars ?? [1e-2, 1e-1];
  const groups: PairGroupResult[] = [];
  for (const [a, b] of [
    [1, 1],
    [1, 2],
    [1, 3],
    [2, 2],
    [2, 3],
    [3, 3],
  ]) {
    const idx: number[] = [];
    pairs.forEach(([i, j], k) => {
      const lo = Math.min(sets[i], sets[j]);
      const hi = Math.max(sets[i], sets[j]);
      if (lo === a && hi === b) idx.push(k);
    });
    const dist = idx.map((k) => squaredL2(e[pairs[k][0]], e[pairs[k][1]]));
    const same = idx.map((k) => issame[k]);
    const nSame = same.filter(Boolean).length;
    groups.push({
      group: `${a}-${b}`,
      pairs: idx.length,
      same: nSame,
      different: idx.length - nSame,
      accuracy: idx.length >= 10 ? kfoldAccuracy(dist, same).accuracy : Number.NaN,
      tar: tarAtFar(dist, same, fars).map(({ far, tar }) => ({ far, tar })),
    });
  }
  const meanBy = (values: ArrayLike<number>): [number, number, number] => {
    const s = [0, 0, 0];
    const c = [0, 0, 0];
    for (let i = 0; i < sets.length; i++) {
      s[sets[i] - 1] += values[i];
      c[sets[i] - 1]++;
    }
    return [s[0] / c[0], s[1] / c[1], s[2] / c[2]];
  };
  const normsArr = Float64Array.from(norms as ArrayLike<number>);
  const q = options.quality;
  return {
    norms: normsArr,
    pearson: q ? pearson(normsArr, q) : undefined,
    spearman: q ? spearman(normsArr, q) : undefined,
    setMeanNorm: meanBy(normsArr),
    setMeanQuality: q ? meanBy(q) : undefined,
    groups,
  };
}
