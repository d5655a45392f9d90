/**
 * RegularFace's exclusive regularization (Zhao, Xu, Cheng, CVPR 2019; official code zeakey/face2019
 * `ExclusiveLinear`, and pytorch-metric-learning's `RegularFaceRegularizer`):
 *
 *   L_r(W) = (1/C) sum_i max_{j != i} cos(w_i, w_j)
 *
 * The partner j*(i) is chosen without gradient (argmax on a detached copy, as the official code does);
 * the gradient flows through cos(w_i, w_j*) into both rows. Three forms:
 *
 * - `dense`: the reference. Builds the C x C cosine matrix (4 C^2 bytes: 40 GB at C = 100,000).
 * - `tiled`: the same value and gradient, computed over tiles of the cosine matrix that are never
 *   assembled: memory O(C D + tile^2). Still C^2 D multiply-adds (half of them, by symmetry).
 * - `stochastic`: only the given classes (those present in the batch), each against its nearest centre
 *   among a candidate set (the Partial FC active set, or all centres). Cost P x K x D.
 *
 * Rows are normalised as v / max(|v|, 1e-12) (F.normalize), so zero rows give cosine 0, not NaN.
 */
import { tf } from "../backend";

import type { Scalar, Tensor1D, Tensor2D } from "./head";
import { type CustomGradFn, clipStraightThrough, NORM_EPS2, normalizeRows } from "./tensor-helpers";

type Tensor = import("@tensorflow/tfjs-node").Tensor;
type GradSaveFunc = import("@tensorflow/tfjs-node").GradSaveFunc;

import { fail, requireInteger, requireOneOf, requireShape } from "./validate";

const OWNER = "exclusiveRegularization";

export type ExclusiveForm = "dense" | "tiled" | "stochastic";

export interface ExclusiveOptions {
  /** Which computation (default "tiled": exact, never materialises more than tileSize^2 cosines). */
  form?: ExclusiveForm;
  /** Side of the square cosine tiles of the tiled and stochastic forms (default 2048). */
  tileSize?: number;
  /** Stochastic form: the classes to regularise (row indices of `weight`, e.g. the batch's labels). */
  classes?: Tensor1D | ArrayLike<number>;
  /** Stochastic form: the rows each class may pick its nearest centre from (default: all rows). */
  candidates?: Tensor1D | ArrayLike<number>;
}

const FORMS: readonly ExclusiveForm[] = ["dense", "tiled", "stochastic"];

/** RegularFace exclusive regularization of `weight` [C, D]; see the module comment for the forms. */
export function exclusiveRegularization(weight: Tensor2D, options: ExclusiveOptions = {}): Scalar {
  const form = requireOneOf(OWNER, "form", options.form ?? "tiled", FORMS);
  const tileSize = requireInteger(OWNER, "tileSize", options.tileSize ?? 2048, 1);
  checkWeight(weight);
  if (form === "dense") return exclusiveDense(weight);
  if (form === "tiled") return exclusiveTiled(weight, tileSize);
  if (options.classes === undefined) fail(OWNER, "classes", undefined, 'is required by form "stochastic"');
  return exclusiveStochastic(weight, options.classes, options.candidates, tileSize);
}

function checkWeight(weight: Tensor2D): void {
  requireShape(OWNER, "weight", weight, [null, null]);
  if (weight.shape[0] < 2) fail(OWNER, "weight.shape", weight.shape, "needs at least 2 classes (rows)");
}

/** The reference: full C x C cosine matrix, partner by argmax of a detached copy with -inf diagonal. */
export function exclusiveDense(weight: Tensor2D): Scalar {
  checkWeight(weight);
  return tf.tidy(() => {
    const c = weight.shape[0];
    const wn = normalizeRows(weight);
    const cos = tf.matMul(wn, wn, false, true);
    const eye = tf.cast(tf.eye(c), "bool");
    // the partner choice is detached (read back, a fresh tensor off the tape), as in the official code
    const masked = tf.where(eye, tf.fill([c, c], -Infinity), cos);
    const partner = tf.tensor1d(tf.argMax(masked, 1).dataSync() as Int32Array, "int32");
    const flat = tf.add(tf.mul(tf.range(0, c, 1, "int32"), tf.scalar(c, "int32")), partner);
    const picked = tf.gather(tf.reshape(cos, [-1]), flat) as Tensor1D;
    return tf.mean(clipStraightThrough(picked)) as Scalar;
  });
}

export interface NearestResult {
  /** Largest cosine to any other row (float32 rounding of the tile products). */
  value: Float32Array;
  /** Index of that row (the first one on ties, like argmax). */
  index: Int32Array;
}

/**
 * For every row of `wn` (already normalised, [C, D]), its nearest other row, tile by tile over the
 * upper triangle of the cosine matrix (each tile serves its rows and, transposed, its columns).
 * Never holds more than one tileSize x tileSize block of cosines. No gradient.
 */
export function nearestOtherRows(wn: Tensor2D, tileSize: number): NearestResult {
  const c = wn.shape[0];
  const value = new Float32Array(c).fill(-Infinity);
  const index = new Int32Array(c).fill(-1);
  const starts: number[] = [];
  for (let s = 0; s < c; s += tileSize) starts.push(s);
  const size = (b: number) => Math.min(tileSize, c - starts[b]);
  // row blocks are sliced per tile (a T x D copy) rather than kept: W_hat is not duplicated
  const block = (b: number) => tf.slice(wn, [starts[b], 0], [size(b), -1]);
  // Self-cosines are pushed to <= -2 (below any true cosine) by subtracting 3 I: one pass, no mask.
  const penalties = new Map<number, Tensor2D>();
  const penalty = (n: number) => {
    let p = penalties.get(n);
    if (!p) {
      p = tf.tidy(() => tf.mul(tf.eye(n), 3) as Tensor2D);
      penalties.set(n, p);
    }
    return p;
  };
  const merge = (
    vals: Float32Array | Int32Array,
    args: Float32Array | Int32Array,
    rowStart: number,
    colStart: number,
  ) => {
    for (let r = 0; r < vals.length; r++) {
      const v = vals[r];
      // strict >: earlier column blocks come first, so ties keep the lowest index, as argmax does
      if (v > value[rowStart + r]) {
        value[rowStart + r] = v;
        index[rowStart + r] = colStart + args[r];
      }
    }
  };
  try {
    for (let bi = 0; bi < starts.length; bi++) {
      for (let bj = bi; bj < starts.length; bj++) {
        const pen = bi === bj ? penalty(size(bi)) : null;
        const out = tf.tidy(() => {
          let s = tf.matMul(block(bi), block(bj), false, true) as Tensor2D;
          if (pen) s = tf.sub(s, pen);
          // argmax, then the B maxima gathered from it (two reductions per side instead of four)
          const rowArg = tf.cast(tf.argMax(s, 1), "int32");
          const rowVal = tf.gatherND(s, tf.stack([tf.range(0, s.shape[0], 1, "int32"), rowArg], 1));
          if (bi === bj) return [rowVal, rowArg];
          const colArg = tf.cast(tf.argMax(s, 0), "int32");
          const colVal = tf.gatherND(s, tf.stack([colArg, tf.range(0, s.shape[1], 1, "int32")], 1));
          return [rowVal, rowArg, colVal, colArg];
        });
        const [rowVal, rowArg, colVal, colArg] = out;
        merge(rowVal.dataSync() as Float32Array, rowArg.dataSync() as Int32Array, starts[bi], starts[bj]);
        if (colVal) merge(colVal.dataSync() as Float32Array, colArg.dataSync() as Int32Array, starts[bj], starts[bi]);
        tf.dispose(out);
      }
    }
  } finally {
    for (const p of penalties.values()) p.dispose();
  }
  return { value, index };
}

/**
 * Gradient of mean_i cos(w_i, w_p(i)) wrt W, for fixed partners p: with G = dL/dW_hat
 * = (dy / C)(W_hat[p] + segment_sum(W_hat rows i into p(i))), dW = n (G - w_hat (w_hat . G)),
 * where n = 1/|w| (rows with |w| < eps: W_hat = w / eps is linear, dW = G / eps).
 */
function exclusiveGradient(
  weight: Tensor2D,
  wn: Tensor2D,
  partner: Tensor1D,
  dy: Scalar,
  rowsPerChunk: number,
): Tensor2D {
  const c = weight.shape[0];
  // Row chunks keep the transients at chunk size: the peak is W, W_hat, the segment sum and the result.
  const seg = tf.unsortedSegmentSum(wn, partner, c) as Tensor2D;
  const scale = tf.div(dy, c);
  const parts: Tensor2D[] = [];
  try {
    for (let start = 0; start < c; start += rowsPerChunk) {
      const n = Math.min(rowsPerChunk, c - start);
      parts.push(
        tf.tidy(() => {
          const w = tf.slice(weight, [start, 0], [n, -1]);
          const wnb = tf.slice(wn, [start, 0], [n, -1]);
          const g = tf.mul(
            tf.add(tf.gather(wn, tf.slice(partner, [start], [n])), tf.slice(seg, [start, 0], [n, -1])),
            scale,
          );
          const ss = tf.sum(tf.square(w), 1, true);
          const inv = tf.rsqrt(tf.maximum(ss, NORM_EPS2));
          const projected = tf.sub(g, tf.mul(wnb, tf.sum(tf.mul(wnb, g), 1, true)));
          return tf.mul(tf.where(tf.greaterEqual(ss, NORM_EPS2), projected, g), inv) as Tensor2D;
        }),
      );
    }
    seg.dispose();
    return parts.length === 1 ? parts[0] : (tf.concat(parts, 0) as Tensor2D);
  } finally {
    if (!seg.isDisposed) seg.dispose();
    scale.dispose();
    if (parts.length > 1) tf.dispose(parts);
  }
}

/** Exact tiled form: the dense form's value and gradient in O(C D + tile^2) memory. */
export function exclusiveTiled(weight: Tensor2D, tileSize = 2048): Scalar {
  checkWeight(weight);
  requireInteger(OWNER, "tileSize", tileSize, 1);
  const op = tf.customGrad(((w: Tensor, save: GradSaveFunc) => {
    const w2 = w as Tensor2D;
    const wn = normalizeRows(w2);
    const near = nearestOtherRows(wn, tileSize);
    const partner = tf.tensor1d(near.index, "int32");
    let sum = 0;
    for (const v of near.value) sum += Math.min(1, Math.max(-1, v));
    const value = tf.scalar(sum / near.value.length);
    save([w2, wn, partner]);
    return {
      value,
      gradFunc: (dy: Tensor, saved: Tensor[]) => [
        exclusiveGradient(saved[0] as Tensor2D, saved[1] as Tensor2D, saved[2] as Tensor1D, dy as Scalar, tileSize),
      ],
    };
  }) as unknown as CustomGradFn);
  return op(weight) as Scalar;
}

function toIndexArray(field: string, x: Tensor1D | ArrayLike<number>, limit: number): Int32Array {
  let arr: ArrayLike<number>;
  if (x instanceof tf.Tensor) {
    requireShape(OWNER, field, x, [null]);
    arr = x.dataSync();
  } else {
    arr = x;
  }
  const out = new Int32Array(arr.length);
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    if (!Number.isInteger(v) || v < 0 || v >= limit) {
      fail(OWNER, `${field}[${i}]`, v, `must be an integer row index in [0, ${limit})`);
    }
    out[i] = v;
  }
  return out;
}

/**
 * For each class index in `classes`, the candidate row (index into `weight`) with the largest cosine,
 * excluding the class itself, scanned tileSize candidates at a time; -1 when it has no other candidate.
 * No gradient. `classes` and `candidates` index rows of `weight`.
 */
export function nearestCandidates(
  weight: Tensor2D,
  classes: Int32Array,
  candidates: Int32Array | null,
  tileSize = 2048,
): Int32Array {
  const c = weight.shape[0];
  const total = candidates ? candidates.length : c;
  const best = new Float32Array(classes.length).fill(-Infinity);
  const partner = new Int32Array(classes.length).fill(-1);
  const q = tf.tidy(() => normalizeRows(tf.gather(weight, tf.tensor1d(classes, "int32")) as Tensor2D));
  const selfCol = tf.tensor1d(classes, "int32");
  try {
    for (let start = 0; start < total; start += tileSize) {
      const n = Math.min(tileSize, total - start);
      const [mx, am] = tf.tidy(() => {
        const rows = candidates
          ? (tf.gather(weight, tf.tensor1d(candidates.subarray(start, start + n), "int32")) as Tensor2D)
          : (tf.slice(weight, [start, 0], [n, -1]) as Tensor2D);
        const ids = candidates
          ? tf.tensor1d(candidates.subarray(start, start + n), "int32")
          : tf.range(start, start + n, 1, "int32");
        const s = tf.matMul(q, normalizeRows(rows), false, true);
        const self = tf.equal(tf.expandDims(selfCol, 1), tf.expandDims(ids, 0));
        const masked = tf.where(self, tf.fill(s.shape, -Infinity), s);
        return [tf.max(masked, 1), tf.argMax(masked, 1)];
      });
      const mv = mx.dataSync();
      const av = am.dataSync();
      mx.dispose();
      am.dispose();
      for (let i = 0; i < classes.length; i++) {
        if (mv[i] > best[i]) {
          best[i] = mv[i];
          partner[i] = candidates ? candidates[start + av[i]] : start + av[i];
        }
      }
    }
  } finally {
    q.dispose();
    selfCol.dispose();
  }
  return partner;
}

/** mean_k cos(w_a[k], w_b[k]) over row pairs, clipped in value; differentiable (autodiff). */
export function meanPairCosine(a: Tensor2D, b: Tensor2D): Scalar {
  return tf.tidy(() => tf.mean(clipStraightThrough(tf.sum(tf.mul(normalizeRows(a), normalizeRows(b)), 1))) as Scalar);
}

/**
 * Stochastic form: mean over the distinct `classes` of cos(w_c, nearest candidate other than c), the
 * gradient flowing through those pairs only. Classes with no other candidate are left out; if none
 * remains the value is 0.
 */
export function exclusiveStochastic(
  weight: Tensor2D,
  classes: Tensor1D | ArrayLike<number>,
  candidates?: Tensor1D | ArrayLike<number>,
  tileSize = 2048,
): Scalar {
  checkWeight(weight);
  requireInteger(OWNER, "tileSize", tileSize, 1);
  const c = weight.shape[0];
  const cls = Int32Array.from(new Set(toIndexArray("classes", classes, c)));
  const cand = candidates === undefined ? null : toIndexArray("candidates", candidates, c);
  const partner = nearestCandidates(weight, cls, cand, tileSize);
  const keep: number[] = [];
  for (let i = 0; i < cls.length; i++) if (partner[i] >= 0) keep.push(i);
  if (keep.length === 0) return tf.tidy(() => tf.mul(tf.sum(weight), 0) as Scalar);
  const rows = (ids: number[]) => tf.gather(weight, tf.tensor1d(ids, "int32")) as Tensor2D;
  return tf.tidy(() => meanPairCosine(rows(keep.map((i) => cls[i])), rows(keep.map((i) => partner[i]))));
}
