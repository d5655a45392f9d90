/**
 * The shared core of every softmax-type head: a fused "margin on the target column + softmax
 * cross-entropy" with a hand-written gradient (tf.customGrad).
 *
 * Logits z = s * X', where X' is X (cosines, or raw logits for Softmax) with each row's target entry
 * replaced by t_i = T(clip(X[i, y_i], -1, 1)). Only the B target values go through the margin function
 * T; the [B, C] work is one scatter and TensorFlow's fused SparseSoftmaxCrossEntropyWithLogits kernel
 * (loss rows and p - onehot in one native call) forward, one scaling pass and one scatter backward. No
 * one-hot [B, C] matrix is built.
 *
 * Backward, with p = softmax(z) and g = dLoss / B:
 *   dz[i, j]   = g (p_ij - [j = y_i])              (then dX = s dz off the target column)
 *   dX[i, y_i] = g s_i (p_iy - 1) T'(X[i, y_i])    (T' = the margin's slope; 1 for straight-through)
 *   ds_i       = g (sum_j p_ij X'_ij - t_i)        (when s is a tensor: learnable scale, |x| in SphereFace)
 * The clip of the target cosine passes its gradient straight through (it only removes rounding
 * overshoot past +-1; the true cosine never leaves [-1, 1]).
 *
 * These take X given. Heads whose cosines come straight from x and W use ./margin-kernel instead, which
 * never builds the normalised copy of W.
 */
import type { GradSaveFunc, Scalar, Tensor, Tensor1D, Tensor2D } from "@tensorflow/tfjs-node";
import { backendInfo, tf } from "../backend";

/** A margin on the target values: t = T(c) and its slope dT/dc (null: slope 1, i.e. identity or straight-through). */
export interface TargetResult {
  value: Tensor1D;
  slope: Tensor1D | null;
}
/** Receives the B target cosines already clipped to [-1, 1]. */
export type TargetTransform = (cosY: Tensor1D) => TargetResult;

/** [B, 2] int32 (row, label) pairs addressing each row's target entry. */
export function targetIndices(labels: Tensor1D): Tensor2D {
  return tf.tidy(() => {
    const b = labels.shape[0];
    const lab = labels.dtype === "int32" ? labels : tf.cast(labels, "int32");
    return tf.stack([tf.range(0, b, 1, "int32"), lab], 1) as Tensor2D;
  });
}

/** X with the B target entries replaced by T(clip(x_iy)); the target indices and T's slope (null: identity). */
function withTarget(x: Tensor2D, labels: Tensor1D, target: TargetTransform | null, clipTarget: boolean) {
  const idx = targetIndices(labels);
  const raw = tf.gatherND(x, idx) as Tensor1D;
  const c = clipTarget ? (tf.clipByValue(raw, -1, 1) as Tensor1D) : raw;
  const { value, slope } = target ? target(c) : { value: c, slope: null };
  const modified = target || clipTarget ? (tf.tensorScatterUpdate(x, idx, value) as Tensor2D) : x;
  return { idx, slope, modified };
}

/** Row scale as something that broadcasts against [B, C], and as a [B] / scalar for per-row terms. */
function scaleShapes(s: number | Tensor, b: number): { col: number | Tensor; row: number | Tensor } {
  if (typeof s === "number") return { col: s, row: s };
  if (s.rank === 0) return { col: s, row: s };
  return { col: tf.reshape(s, [b, 1]), row: tf.reshape(s, [b]) };
}

let nativeCE: boolean | undefined;

/**
 * Per-row softmax cross-entropy [B] and its gradient wrt the logits, p - onehot [B, C]. On the native
 * backend one call of TensorFlow's SparseSoftmaxCrossEntropyWithLogits kernel (tfjs exposes no binding
 * for it; the node backend runs any TF op by name); elsewhere the same from tfjs ops.
 */
export function softmaxCrossEntropyRows(z: Tensor2D, labels: Tensor1D): [Tensor1D, Tensor2D] {
  // biome-ignore lint/suspicious/noExplicitAny: the native backend's op runner is not in tfjs' public types
  const backend = tf.backend() as any;
  if (nativeCE === undefined) nativeCE = typeof backend?.executeMultipleOutputs === "function" && !!backend.binding;
  const lab = labels.dtype === "int32" ? labels : tf.cast(labels, "int32");
  if (nativeCE) {
    const b = backend.binding;
    const out = backend.executeMultipleOutputs(
      "SparseSoftmaxCrossEntropyWithLogits",
      [
        { name: "T", type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
        { name: "Tlabels", type: b.TF_ATTR_TYPE, value: b.TF_INT32 },
      ],
      [z, lab],
      2,
    ) as Tensor[];
    return [out[0] as Tensor1D, out[1] as Tensor2D];
  }
  const mx = tf.max(z, 1, true);
  const e = tf.exp(tf.sub(z, mx));
  const sum = tf.sum(e, 1, true);
  const idx = targetIndices(lab as Tensor1D);
  const zy = tf.gatherND(z, idx);
  const rows = tf.sub(tf.add(tf.log(tf.reshape(sum, [-1])), tf.reshape(mx, [-1])), zy) as Tensor1D;
  const p = tf.div(e, sum) as Tensor2D;
  const pY = tf.gatherND(p, idx);
  return [rows, tf.tensorScatterUpdate(p, idx, tf.sub(pY, 1)) as Tensor2D];
}

export interface MarginSoftmaxOptions {
  /** Clip the gathered target values to [-1, 1] before T (true for cosines; false for raw logits). */
  clipTarget?: boolean;
}

/**
 * Mean over the batch of -log softmax(s * X')[i, y_i], X given ([B, C], cosines or raw logits).
 * `scale` >= 0: a number, a scalar tensor or a [B] tensor (its gradient is returned).
 */
export function marginSoftmaxCrossEntropy(
  x: Tensor2D,
  labels: Tensor1D,
  scale: number | Tensor,
  target: TargetTransform | null,
  options: MarginSoftmaxOptions = {},
): Scalar {
  const identity = target === null && options.clipTarget === false && scale === 1; // raw logits (softmax)
  return meanCrossEntropy(identity ? x : marginLogits(x, labels, scale, target, options), labels);
}

/** Mean of softmaxCrossEntropyRows, differentiable: dZ = (p - onehot) / B, from the kernel's own backprop. */
function meanCrossEntropy(z: Tensor2D, labels: Tensor1D): Scalar {
  const b = z.shape[0];
  const fn = tf.customGrad((...args: (Tensor | GradSaveFunc)[]) => {
    const [rows, backprop] = softmaxCrossEntropyRows(args[0] as Tensor2D, labels);
    (args[1] as GradSaveFunc)([backprop]);
    return { value: tf.mean(rows) as Scalar, gradFunc: (dy: Scalar, [bp]: Tensor[]) => [tf.mul(bp, tf.div(dy, b))] };
  });
  return fn(z) as Scalar;
}

/**
 * a W^T for a small a [B, D] and a large W [C, D]. On the CPU, libtensorflow's (Batch)MatMul with a
 * transposed large operand ran 2-3x slower here than W a^T followed by one transpose of the [C, B]
 * result (measured at B = 256, D = 512, C = 100,000), so that is the CPU path. `colScale` [C]
 * multiplies column j (applied before the transpose, on the [C, B] layout).
 */
export function matMulWideT(a: Tensor2D, w: Tensor2D, colScale?: Tensor): Tensor2D {
  if (backendInfo.device !== "CPU" || w.shape[0] <= a.shape[0]) {
    const z = tf.matMul(a, w, false, true);
    return (colScale ? tf.mul(z, colScale) : z) as Tensor2D;
  }
  const zt = tf.matMul(w, a, false, true);
  return tf.transpose(colScale ? tf.mul(zt, tf.reshape(colScale, [-1, 1])) : zt) as Tensor2D;
}

/**
 * The logits s * X' themselves ([B, C]), differentiable (customGrad: gather/scatter have no autograd
 * gradient in tfjs): dX = s dZ, with the target column's entry multiplied by T'.
 */
export function marginLogits(
  x: Tensor2D,
  labels: Tensor1D,
  scale: number | Tensor,
  target: TargetTransform | null,
  options: MarginSoftmaxOptions = {},
): Tensor2D {
  const clipTarget = options.clipTarget ?? true;
  const b = x.shape[0];
  const scaleIsTensor = typeof scale !== "number";
  const fn = tf.customGrad((...args: (Tensor | GradSaveFunc)[]) => {
    const xIn = args[0] as Tensor2D;
    const sIn = scaleIsTensor ? (args[1] as Tensor) : (scale as number);
    const save = args[args.length - 1] as GradSaveFunc;
    const { idx, slope, modified } = withTarget(xIn, labels, target, clipTarget);
    const { col } = scaleShapes(sIn, b);
    const value = tf.mul(modified, col) as Tensor2D;
    const toSave: Tensor[] = [idx, slope ?? tf.ones([b])];
    if (scaleIsTensor) toSave.push(modified, sIn as Tensor);
    save(toSave);
    return {
      value,
      gradFunc: (dy: Tensor2D, saved: Tensor[]) => {
        const [idxS, slopeS] = saved as [Tensor2D, Tensor1D];
        const sS = scaleIsTensor ? saved[3] : (scale as number);
        const sh = scaleShapes(sS, b);
        const dense = tf.mul(dy, sh.col);
        const dT = tf.mul(tf.mul(tf.gatherND(dy, idxS), sh.row), slopeS);
        const dX = tf.tensorScatterUpdate(dense, idxS, dT) as Tensor2D;
        if (!scaleIsTensor) return [dX];
        const modS = saved[2];
        const sVal = saved[3];
        const dsRows = tf.sum(tf.mul(dy, modS), 1);
        const dS = sVal.rank === 0 ? tf.sum(dsRows) : tf.reshape(dsRows, sVal.shape);
        return [dX, dS];
      },
    };
  });
  return (scaleIsTensor ? fn(x, scale as Tensor) : fn(x)) as Tensor2D;
}

/**
 * max over the last axis of [B, C, K] with the gradient routed to the first maximal entry only (as
 * torch.max(dim)); tf.max's own gradient would go to every tied entry (e.g. all K at a zero embedding).
 */
export function maxLastAxis(x: Tensor): Tensor2D {
  const k = x.shape[x.rank - 1];
  const fn = tf.customGrad((...args: (Tensor | GradSaveFunc)[]) => {
    const xIn = args[0] as Tensor;
    const save = args[1] as GradSaveFunc;
    const arg = tf.argMax(xIn, -1);
    save([arg]);
    return {
      value: tf.max(xIn, -1) as Tensor2D,
      gradFunc: (dy: Tensor2D, saved: Tensor[]) => [tf.mul(tf.oneHot(saved[0] as Tensor2D, k), tf.expandDims(dy, -1))],
    };
  });
  return fn(x) as Tensor2D;
}
