/**
 * Class separability statistics (plain numbers, float64):
 * - RegularFace's `sep(W)` (zeakey/face2019 calculate_sep.py): mean over classes of the max cosine
 *   between a class centre and any other centre (lower = better separated).
 * - ArcFace (CVPR 2019) Table 3: W-EC (mean angle between W_j and class j's embedding-feature centre),
 *   W-Inter (mean over classes of the minimum angle to another W), Intra (mean angle between samples
 *   and their class's feature centre), Inter (mean minimum angle between feature centres); plus the
 *   overall minimum inter-centre angle. Angles in radians (degrees in the `*Deg` fields).
 */
type Rows = ArrayLike<number>[];

function unit(rows: Rows): Float64Array[] {
  return rows.map((r) => {
    let s = 0;
    for (let k = 0; k < r.length; k++) s += r[k] * r[k];
    const n = Math.max(Math.sqrt(s), 1e-12);
    return Float64Array.from(r as ArrayLike<number>, (v) => v / n);
  });
}

const dot = (a: Float64Array, b: Float64Array) => {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += a[k] * b[k];
  return s;
};
const angle = (c: number) => Math.acos(Math.max(-1, Math.min(1, c)));
const deg = (r: number) => (r * 180) / Math.PI;

/** Rows of a [C, D] matrix given as a flat array (e.g. from head.weight.dataSync()). */
export function toRows(flat: ArrayLike<number>, cols: number): Float64Array[] {
  const out: Float64Array[] = [];
  for (let i = 0; i + cols <= flat.length; i += cols)
    out.push(Float64Array.from({ length: cols }, (_, k) => flat[i + k]));
  return out;
}

export interface CentreStats {
  /** RegularFace sep: mean_i max_{j != i} cos(w_i, w_j). */
  meanMaxCosine: number;
  /** mean_i min_{j != i} angle(w_i, w_j) (ArcFace's W-Inter / Inter). */
  meanMinAngle: number;
  /** min_{i != j} angle(w_i, w_j). */
  minAngle: number;
  meanMinAngleDeg: number;
  minAngleDeg: number;
}

export function centreSeparation(centres: Rows): CentreStats {
  const w = unit(centres);
  const C = w.length;
  if (C < 2) throw new Error(`centreSeparation needs at least 2 centres, got ${C}`);
  let sumMax = 0;
  let global = -1;
  for (let i = 0; i < C; i++) {
    let best = -Infinity;
    for (let j = 0; j < C; j++) if (j !== i) best = Math.max(best, dot(w[i], w[j]));
    sumMax += best;
    global = Math.max(global, best);
  }
  // mean of min angles = mean of acos(max cos) (acos is decreasing)
  let sumMinAngle = 0;
  for (let i = 0; i < C; i++) {
    let best = -Infinity;
    for (let j = 0; j < C; j++) if (j !== i) best = Math.max(best, dot(w[i], w[j]));
    sumMinAngle += angle(best);
  }
  const meanMinAngle = sumMinAngle / C;
  return {
    meanMaxCosine: sumMax / C,
    meanMinAngle,
    minAngle: angle(global),
    meanMinAngleDeg: deg(meanMinAngle),
    minAngleDeg: deg(angle(global)),
  };
}

/** Per-class mean of the L2-normalised embeddings (classes without samples get a zero row). */
export function featureCentres(embeddings: Rows, labels: ArrayLike<number>, numClasses: number): Float64Array[] {
  const e = unit(embeddings);
  const D = e[0]?.length ?? 0;
  const sums = Array.from({ length: numClasses }, () => new Float64Array(D));
  const counts = new Int32Array(numClasses);
  e.forEach((v, i) => {
    const c = labels[i];
    counts[c]++;
    for (let k = 0; k < D; k++) sums[c][k] += v[k];
  });
  return sums.map((s, c) => (counts[c] ? s.map((x) => x / counts[c]) : s));
}

export interface AngleStats {
  /** ArcFace Table 3 "W-EC": mean angle between W_j and the feature centre of class j (radians). */
  wToCentre: number;
  /** "W-Inter": mean over classes of the minimum angle between W_j and another W. */
  wInter: number;
  /** "Intra": mean angle between samples and their class's feature centre. */
  intra: number;
  /** "Inter": mean over classes of the minimum angle between feature centres. */
  inter: number;
  /** RegularFace's sep of W. */
  sepW: number;
  /** The smallest angle between two W rows. */
  minWAngle: number;
  /** The same in degrees. */
  degrees: { wToCentre: number; wInter: number; intra: number; inter: number; minWAngle: number };
}

/**
 * ArcFace's angle statistics for embeddings with labels 0..C-1 and a head weight W [C, D]
 * (classes without samples are left out of the centre-based statistics).
 */
export function angleStatistics(embeddings: Rows, labels: ArrayLike<number>, weight: Rows): AngleStats {
  const C = weight.length;
  const centres = featureCentres(embeddings, labels, C);
  const present = centres.map((c) => c.some((x) => x !== 0));
  const w = unit(weight);
  const cu = unit(centres);
  let wec = 0;
  let nPresent = 0;
  for (let j = 0; j < C; j++) {
    if (!present[j]) continue;
    wec += angle(dot(w[j], cu[j]));
    nPresent++;
  }
  const e = unit(embeddings);
  let intra = 0;
  e.forEach((v, i) => {
    intra += angle(dot(v, cu[labels[i]]));
  });
  const wStats = centreSeparation(weight);
  const presentCentres = cu.filter((_, j) => present[j]);
  const inter = presentCentres.length >= 2 ? centreSeparation(presentCentres).meanMinAngle : Number.NaN;
  const r = {
    wToCentre: wec / Math.max(1, nPresent),
    wInter: wStats.meanMinAngle,
    intra: intra / Math.max(1, e.length),
    inter,
    sepW: wStats.meanMaxCosine,
    minWAngle: wStats.minAngle,
  };
  return {
    ...r,
    degrees: {
      wToCentre: deg(r.wToCentre),
      wInter: deg(r.wInter),
      intra: deg(r.intra),
      inter: deg(r.inter),
      minWAngle: deg(r.minWAngle),
    },
  };
}
