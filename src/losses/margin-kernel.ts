/**
 * The one fused "cosine -> margin -> softmax cross-entropy" kernel of the cosine heads, from raw x and
 * W. It serves the heads' own `loss` (wrapped in tf.customGrad by `cosineMarginLoss`), FusedHeadStep
 * (the full softmax with W in TensorFlow) and PartialFC (the same on the active rows).
 *
 * The margin is data (`CosineMargin`, as InsightFace's arcface_torch hands a margin callable to Partial FC):
 * logits are s cos_j off the target and s T(cos_y) on it, T given with its slope on the B target cosines.
 *
 * Forward: `xs` = s x_hat ([B, D]: the caller folds the scale into the small matrix), W [C, D] raw and
 * never normalised as a matrix: z = (xs W^T) * n, n_j = 1 / max(|w_j|, 1e-12) (one matmul, one scaling
 * pass); c = clip(z_y / s) read back from z; the B target entries replaced by s T(c) (one scatter); with
 * the inter-class filter, non-target entries above s filter set to 0 (one mask); then TensorFlow's native
 * SparseSoftmaxCrossEntropyWithLogits (loss rows and p - onehot in one call).
 * Backward, for dLoss/d(mean of the rows) = g: H = dLoss/dz * n = (g / B)(p - onehot) n (masked), its target
 * entries times T' (one scatter); dxs = H W, A = H^T xs (two matmuls). The gradient wrt the raw rows is the
 * projection through the normalisation, dW_j = A_j - n_j^2 (A_j . w_j) w_j (only where |w_j| > 1e-12, as
 * torch's F.normalize): `projectionCoefficients` gives the per-row factor, so that a step can fold it
 * into its SGD update instead of spending a [C, D] pass on dW. With a tensor scale (learnable, SphereFace's
 * |x|), ds = the explicit part (T - c T') dLoss/dz_y of the target entries.
 */
import type { GradSaveFunc, Scalar, Tensor, Tensor1D, Tensor2D } from "@tensorflow/tfjs-node";
import { tf } from "../backend";
import { matMulWideT, softmaxCrossEntropyRows, type TargetTransform, targetIndices } from "./margin-softmax";
import { l2NormalizeRows, NORM_EPS2, rowDots } from "./tensor-helpers";
import { checkFiniteLoss } from "./validate";

/** A cosine head's margin as data: logits s cos_j off the target, s T(cos_y) on it. */
export interface CosineMargin {
  /** The scale s of every logit. */
  readonly s: number;
  /** T on the B target cosines (clipped to [-1, 1]), with its slope; null: none (NormFace). */
  readonly target: TargetTransform | null;
  /**
   * InsightFace's inter-class filter (`interclass_filtering_threshold`, An et al., CVPR 2022), in [0, 1):
   * non-target cosines above it count as 0 and pass no gradient; 0 = off.
   */
  readonly filter: number;
}

/** InsightFace reports -log(max(p_y, 1e-30)): each sample's loss is capped at -log(1e-30) = 69.0776. */
export const LOSS_CAP = -Math.log(1e-30);

/** Mean of the per-row losses, each capped at LOSS_CAP when `cap` (reporting only; gradients are uncapped). */
export function meanLoss(rows: ArrayLike<number>, cap: boolean): number {
  let sum = 0;
  for (let i = 0; i < rows.length; i++) sum += cap ? Math.min(rows[i], LOSS_CAP) : rows[i];
  return sum / rows.length;
}

/** The tensors of a forward pass that the backward reads. */
export interface MarginForward {
  /** Per-row softmax cross-entropy [B] (uncapped). */
  rows: Tensor1D;
  /** p - onehot [B, C]. */
  backprop: Tensor2D;
  /** (row, label) pairs [B, 2]. */
  idx: Tensor2D;
  /** 1 / max(|w_j|, 1e-12) [C] and |w_j|^2 [C]. */
  n: Tensor1D;
  sq: Tensor1D;
  /** T' at the target cosines [B]; null: 1 (no margin, or straight-through). */
  slope: Tensor1D | null;
  /** T(c) and c [B] (read by the scale's gradient). */
  t: Tensor1D;
  c: Tensor1D;
  /** 1 where an entry keeps its value and gradient (the filter), else null. */
  keep: Tensor2D | null;
}

/**
 * The forward pass. `xs` = s x_hat [B, D], `w` [C, D] raw, `labels` int32 [B] into the rows of w,
 * `scale` the s folded into xs (a number, a scalar or a [B] tensor). Create inside the caller's tidy.
 */
export function marginForward(
  xs: Tensor2D,
  w: Tensor2D,
  labels: Tensor1D,
  scale: number | Tensor,
  target: TargetTransform | null,
  filter = 0,
): MarginForward {
  const b = xs.shape[0];
  const sq = rowDots(w, w); // |w_j|^2
  const n = tf.rsqrt(tf.maximum(sq, NORM_EPS2)) as Tensor1D;
  let z = matMulWideT(xs, w, n); // s cos [B, C]
  const idx = targetIndices(labels);
  const row = typeof scale === "number" || scale.rank === 0 ? scale : tf.reshape(scale, [b]);
  const zy = tf.gatherND(z, idx) as Tensor1D;
  // c = z_y / s (s = 0 only for SphereFace's zero embeddings, where z_y = 0 too)
  const c = tf.clipByValue(tf.div(zy, typeof row === "number" ? row : tf.maximum(row, 1e-30)), -1, 1) as Tensor1D;
  const { value: t, slope } = target ? target(c) : { value: c, slope: null };
  let keep: Tensor2D | null = null;
  if (filter > 0) {
    if (typeof scale !== "number") throw new Error("marginForward: the inter-class filter needs a constant scale");
    keep = tf.tensorScatterUpdate(tf.cast(tf.lessEqual(z, scale * filter), "float32"), idx, tf.ones([b])) as Tensor2D;
    z = tf.mul(z, keep) as Tensor2D;
  }
  const zMod = target ? (tf.tensorScatterUpdate(z, idx, tf.mul(t, row)) as Tensor2D) : z;
  const [rows, backprop] = softmaxCrossEntropyRows(zMod, labels);
  return { rows, backprop, idx, n, sq, slope, t, c, keep };
}

export interface MarginBackward {
  /** dLoss/dxs [B, D] (null when not asked for). */
  dXs: Tensor2D | null;
  /** A = H^T xs [C, D]: dLoss/dW before the normalisation's projection. */
  a: Tensor2D;
  /** H at the targets before their slopes, [B] (the scale's gradient reads it). */
  hTarget: Tensor1D;
}

/** The backward pass for dLoss/d(mean of the rows) = `g` (a number or a scalar tensor). */
export function marginBackward(
  xs: Tensor2D,
  w: Tensor2D,
  f: MarginForward,
  g: number | Tensor,
  wantDXs: boolean,
): MarginBackward {
  const b = xs.shape[0];
  let h = tf.mul(f.backprop, tf.mul(f.n, tf.div(g, b))) as Tensor2D;
  if (f.keep) h = tf.mul(h, f.keep) as Tensor2D;
  const hTarget = tf.gatherND(h, f.idx) as Tensor1D;
  if (f.slope) h = tf.tensorScatterUpdate(h, f.idx, tf.mul(hTarget, f.slope)) as Tensor2D;
  const dXs = wantDXs ? (tf.matMul(h, w) as Tensor2D) : null;
  const a = tf.matMul(h, xs, true, false) as Tensor2D; // [C, D]
  return { dXs, a, hTarget };
}

/**
 * k_j = n_j^2 (A_j . w_j) per row, [C, 1], 0 where the 1e-12 floor is active (the normalisation is linear
 * there): dLoss/dW = A - k w.
 */
export function projectionCoefficients(w: Tensor2D, a: Tensor2D, f: MarginForward): Tensor2D {
  const k = tf.where(tf.greater(f.sq, NORM_EPS2), tf.mul(rowDots(a, w), tf.square(f.n)), tf.zerosLike(f.sq));
  return tf.reshape(k, [-1, 1]) as Tensor2D;
}

/** The explicit d(s T(z_y / s))/ds = T - c T', times dLoss/dz_y = H_y / n_y, per row [B]. */
function scaleGradientRows(f: MarginForward, hTarget: Tensor1D, labels: Tensor1D): Tensor {
  const nY = tf.gather(f.n, tf.cast(labels, "int32"));
  return tf.mul(tf.div(hTarget, nY), tf.sub(f.t, f.slope ? tf.mul(f.c, f.slope) : f.c));
}

/**
 * The heads' training loss: mean softmax-CE of the margin logits, differentiable wrt xs, W and a tensor
 * scale (its gradient reaches s and x by ordinary autograd through xs = s x_hat). Large temporaries:
 * [C, D] only the gradient itself.
 */
export function cosineMarginLoss(
  xs: Tensor2D,
  weight: Tensor2D,
  labels: Tensor1D,
  scale: number | Tensor,
  target: TargetTransform | null,
  filter = 0,
): Scalar {
  const scaleIsTensor = typeof scale !== "number";
  const fn = tf.customGrad((...args: (Tensor | GradSaveFunc)[]) => {
    const xIn = args[0] as Tensor2D;
    const wIn = args[1] as Tensor2D;
    const sIn = scaleIsTensor ? (args[2] as Tensor) : (scale as number);
    const save = args[args.length - 1] as GradSaveFunc;
    const f = marginForward(xIn, wIn, labels, sIn, target, filter);
    const value = tf.mean(f.rows) as Scalar;
    const ones = tf.ones([1]);
    // customGrad saves tensors only: absent ones are saved as a placeholder and restored as null
    save([
      xIn,
      wIn,
      f.backprop,
      f.idx,
      f.n,
      f.sq,
      f.slope ?? ones,
      f.t,
      f.c,
      f.keep ?? ones,
      ...(scaleIsTensor ? [sIn as Tensor] : []),
    ]);
    return {
      value,
      gradFunc: (dy: Scalar, saved: Tensor[]) => {
        const [xS, wS, backprop, idx, n, sq, slope, t, c, keep] = saved;
        const fs: MarginForward = {
          rows: f.rows,
          backprop: backprop as Tensor2D,
          idx: idx as Tensor2D,
          n: n as Tensor1D,
          sq: sq as Tensor1D,
          slope: f.slope ? (slope as Tensor1D) : null,
          t: t as Tensor1D,
          c: c as Tensor1D,
          keep: f.keep ? (keep as Tensor2D) : null,
        };
        const bw = marginBackward(xS as Tensor2D, wS as Tensor2D, fs, dy, true);
        const k = projectionCoefficients(wS as Tensor2D, bw.a, fs);
        const dW = tf.sub(bw.a, tf.mul(wS, k));
        if (!scaleIsTensor) return [bw.dXs as Tensor2D, dW];
        const sVal = saved[10];
        const dsRows = scaleGradientRows(fs, bw.hTarget, labels);
        const dS = sVal.rank === 0 ? tf.sum(dsRows) : tf.reshape(dsRows, sVal.shape);
        return [bw.dXs as Tensor2D, dW, dS];
      },
    };
  });
  return (scaleIsTensor ? fn(xs, weight, scale as Tensor) : fn(xs, weight)) as Scalar;
}

/** What a head step (FusedHeadStep, PartialFC) needs of the kernel for one batch. */
export interface StepGradients {
  /** Per-row loss [B] (read back: the one host sync of the kernel). */
  lossRows: Float32Array;
  /** A = dLoss/dW before the projection [C, D], and the projection's k [C, 1]: dLoss/dW = A - k W. */
  a: Tensor2D;
  k: Tensor2D;
  /** dLoss/d(embeddings) [B, D] when asked for. */
  embeddingGrad: Tensor2D | null;
}

/**
 * The kernel for a head step, from raw embeddings (xs = s normalize(x), as the heads' own loss) and the
 * rows `w` [C, D] with `labels` into them. The loss rows are read back and checked before anything is
 * returned: a non-finite loss throws a NonFiniteLossError naming the rows (`owner`, `consequence` in its
 * message), with nothing of this call left allocated.
 */
export function stepGradients(
  owner: string,
  embeddings: Tensor2D,
  w: Tensor2D,
  labels: Tensor1D,
  margin: CosineMargin,
  wantEmbeddingGrad: boolean,
  consequence: string,
): StepGradients {
  const { s, target, filter } = margin;
  const scaled = (e: Tensor2D) => tf.mul(l2NormalizeRows(e, true), s) as Tensor2D;
  const [rows, a, k, dx] = tf.tidy(() => {
    const y = labels.dtype === "int32" ? labels : (tf.cast(labels, "int32") as Tensor1D);
    const xs = scaled(embeddings);
    const f = marginForward(xs, w, y, s, target, filter);
    const bw = marginBackward(xs, w, f, 1, wantEmbeddingGrad);
    const k = projectionCoefficients(w, bw.a, f);
    const dx = bw.dXs ? (tf.grad((e) => scaled(e as Tensor2D))(embeddings, bw.dXs) as Tensor2D) : null;
    return dx ? [f.rows, bw.a, k, dx] : [f.rows, bw.a, k];
  }) as [Tensor1D, Tensor2D, Tensor2D, Tensor2D?];
  const lossRows = rows.dataSync() as Float32Array;
  rows.dispose();
  try {
    checkFiniteLoss(owner, lossRows, consequence);
  } catch (e) {
    tf.dispose([a, k, dx ?? []]);
    throw e;
  }
  return { lossRows, a, k, embeddingGrad: dx ?? null };
}
