/**
 * Optimizers with PyTorch semantics and inspectable state (tfjs' own optimizers have no AdamW and
 * their state is awkward to checkpoint). The learning rate is passed per step (schedules.ts).
 * - SGD (`sgdUpdate`, the one rule every head step uses too): g += wd * p; buf = momentum * buf + g;
 *   p -= lr * (nesterov ? g + momentum * buf : buf).
 * - AdamW (Loshchilov & Hutter; torch.optim.AdamW): p *= 1 - lr * wd; Adam update with bias correction.
 * Weight decay is per variable group (backbone / head), as InsightFace's two parameter groups.
 *
 * Speed: a backbone has dozens of small variables (BatchNorm, PReLU, biases), and a few TensorFlow ops
 * per variable and step cost more than their arithmetic. So the small variables of a group are updated
 * as one flat vector (gathered by one DynamicStitch, scattered back by one GatherV2 per variable, their
 * optimizer state kept flat), and the large ones each by their own ops, which costs less than copying
 * them. Both paths apply the same rule elementwise, so they give the same values.
 */
import { floatAttr, type NativeBackend, nativeBackend } from "../backbones/native";
import { tf } from "../backend";
import { checkNumber, configError } from "../data/dataset";
import type { Scalar, Variable } from "../losses/head";
import type { StateArray } from "./head-step";

type Tensor = import("@tensorflow/tfjs-node").Tensor;

export type OptimizerConfig =
  | { type: "sgd"; lr: number; momentum?: number; nesterov?: boolean; weightDecay?: number; headWeightDecay?: number }
  | {
      type: "adamw";
      lr: number;
      beta1?: number;
      beta2?: number;
      epsilon?: number;
      weightDecay?: number;
      headWeightDecay?: number;
    };

export const OPTIMIZERS = ["sgd", "adamw"] as const;

export function validateOptimizer(o: OptimizerConfig): void {
  if (!o || !OPTIMIZERS.includes(o.type))
    throw configError("optimizer.type", o?.type, `allowed are ${OPTIMIZERS.join(", ")}`);
  checkNumber("optimizer.lr", o.lr, 0, 1e6);
  if (o.weightDecay !== undefined) checkNumber("optimizer.weightDecay", o.weightDecay, 0, 1e3);
  if (o.headWeightDecay !== undefined) checkNumber("optimizer.headWeightDecay", o.headWeightDecay, 0, 1e3);
  if (o.type === "sgd" && o.momentum !== undefined) checkNumber("optimizer.momentum", o.momentum, 0, 1);
  if (o.type === "adamw") {
    if (o.beta1 !== undefined) checkNumber("optimizer.beta1", o.beta1, 0, 0.999999);
    if (o.beta2 !== undefined) checkNumber("optimizer.beta2", o.beta2, 0, 0.999999999);
    if (o.epsilon !== undefined) checkNumber("optimizer.epsilon", o.epsilon, 0, 1);
  }
}

/** PyTorch's torch.optim.SGD hyper-parameters (dampening 0). */
export interface SgdRule {
  lr: number;
  momentum: number;
  weightDecay: number;
  nesterov?: boolean;
}

/**
 * The one SGD rule of marginlab (torch.optim.SGD, dampening 0): d = g + wd p; buf = momentum buf + d;
 * p -= lr (nesterov ? d + momentum buf : buf). Used by Optimizer.apply and FusedHeadStep in TensorFlow,
 * and by PartialFC on its host rows through `sgdUpdateRows` (the same rule, the same test fixture).
 * `rowDecay` ([rows, 1], optional) adds a per-row multiple of p to the gradient: d = g + (wd + rowDecay) p.
 * The head steps pass -k, the normalisation's projection dW = A - k W, so that the projected gradient is
 * never formed as its own [C, D] pass. `buffer` null: no momentum. Returns new tensors (caller assigns).
 */
export function sgdUpdate(
  param: Tensor,
  grad: Tensor,
  buffer: Tensor | null,
  rule: SgdRule,
  rowDecay?: Tensor,
): { param: Tensor; buffer: Tensor | null } {
  const out = tf.tidy(() => {
    const decay = rowDecay ? tf.add(rowDecay, rule.weightDecay) : rule.weightDecay;
    const d = decay === 0 ? grad : tf.add(grad, tf.mul(param, decay));
    if (rule.momentum === 0 || buffer === null) return [tf.sub(param, tf.mul(d, rule.lr))];
    const nb = tf.add(tf.mul(buffer, rule.momentum), d);
    const step = rule.nesterov ? tf.add(d, tf.mul(nb, rule.momentum)) : nb;
    return [tf.sub(param, tf.mul(step, rule.lr)), nb];
  });
  return { param: out[0], buffer: out[1] ?? null };
}

/**
 * The same rule on rows of a host-side store, in place (PartialFC's sparse rows: moving the active rows'
 * momentum into TensorFlow and both arrays back out costs more than the arithmetic, measured in
 * bench/pfc.ts). Row j of `grad` [K * D] (and `rowDecay[j]`, optional) belongs to row `index[j]` of
 * `param` and `buffer` [N * D]; `buffer` null (or momentum 0): no momentum. Same order of operations
 * as `sgdUpdate`, so both give the same float32 values up to rounding.
 */
export function sgdUpdateRows(
  param: Float32Array,
  buffer: Float32Array | null,
  index: ArrayLike<number>,
  grad: Float32Array,
  dim: number,
  rule: SgdRule,
  rowDecay?: ArrayLike<number>,
): void {
  const { lr, momentum: mu, weightDecay: wd } = rule;
  const nesterov = rule.nesterov === true;
  // one loop per variant, no branch per element (V8 does not unswitch loops): 51M elements per step at 1M
  for (let j = 0; j < index.length; j++) {
    const o = index[j] * dim;
    const g = j * dim - o;
    const end = o + dim;
    const decay = wd + (rowDecay ? rowDecay[j] : 0);
    if (buffer === null || mu === 0) {
      for (let i = o; i < end; i++) param[i] -= lr * (grad[g + i] + decay * param[i]);
    } else if (!nesterov) {
      for (let i = o; i < end; i++) {
        const b = mu * buffer[i] + (grad[g + i] + decay * param[i]);
        buffer[i] = b;
        param[i] -= lr * b;
      }
    } else {
      for (let i = o; i < end; i++) {
        const d = grad[g + i] + decay * param[i];
        const b = mu * buffer[i] + d;
        buffer[i] = b;
        param[i] -= lr * (d + mu * b);
      }
    }
  }
}

/** torch.optim.AdamW's hyper-parameters. */
export interface AdamWRule {
  lr: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
}

/**
 * AdamW (torch.optim.AdamW, amsgrad off) at step t (1-based): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p = p (1 - lr wd) - lr m^ / (sqrt(v^) + eps) with the bias-corrected m^, v^. Returns new tensors.
 */
export function adamwUpdate(
  param: Tensor,
  grad: Tensor,
  m: Tensor,
  v: Tensor,
  rule: AdamWRule,
  t: number,
): { param: Tensor; m: Tensor; v: Tensor } {
  const [p, nm, nv] = tf.tidy(() => {
    const { lr, beta1: b1, beta2: b2, epsilon: eps, weightDecay: wd } = rule;
    const nm = tf.add(tf.mul(m, b1), tf.mul(grad, 1 - b1));
    const nv = tf.add(tf.mul(v, b2), tf.mul(tf.square(grad), 1 - b2));
    const mhat = tf.div(nm, 1 - b1 ** t);
    const vhat = tf.div(nv, 1 - b2 ** t);
    const decayed = wd ? tf.mul(param, 1 - lr * wd) : param;
    return [tf.sub(decayed, tf.mul(tf.div(mhat, tf.add(tf.sqrt(vhat), eps)), lr)), nm, nv];
  });
  return { param: p, m: nm, v: nv };
}

type Native = NativeBackend & { binding: NativeBackend["binding"] & { TF_ATTR_INT: number; TF_INT32: number } };

function native(): Native | undefined {
  return nativeBackend() as Native | undefined;
}

/**
 * Sum of squares of all `tensors` (a new scalar): one L2Loss op per tensor on the native backend (TensorFlow's
 * sum(x^2) / 2; the doubling is exact), against two for square and sum.
 */
export function sumOfSquares(tensors: readonly Tensor[]): Scalar {
  return tf.tidy(() => {
    const be = native();
    const parts = tensors.map((t) =>
      be ? be.executeSingleOutput("L2Loss", [floatAttr(be)], [t]) : tf.sum(tf.square(t)),
    );
    const sum = parts.length === 0 ? tf.scalar(0) : parts.length === 1 ? parts[0] : tf.addN(parts);
    return (be ? tf.mul(sum, 2) : sum) as Scalar;
  });
}

/**
 * Variables of at most this many elements are updated in the group's flat vector. Measured on iResNet
 * backbones (tfjs-node, 2 cores): each op on a variable costs about 15-25 us whatever its size, each copy
 * in or out of the flat vector about 2.5 ns per element, so below about 16k elements the copies win.
 */
export const FUSE_MAX_SIZE = 16384;

export interface OptimizerOptions {
  /** Variables of at most this many elements share one flat update (default FUSE_MAX_SIZE; 0: none do). */
  fuseMaxSize?: number;
}

/**
 * Variables updated by one set of ops: one variable with slots of its shape, or a group's small variables as
 * one flat vector (`flat`) with flat slots.
 */
interface Bucket {
  variables: Variable[];
  /** Where each variable's gradient sits in the caller's list. */
  positions: number[];
  /** Where each variable starts in the bucket's vector (0 for a single variable). */
  offsets: number[];
  flat: FlatVector | null;
  slots: Variable[];
  weightDecay: number;
}

/**
 * Small variables as one flat vector: joined by one DynamicStitch (each variable's elements placed at its
 * positions, int32 tensors of its shape), written back by one SplitV for the 1-D variables (BatchNorm's,
 * placed first; SplitV's pieces have their shape) and one GatherV2 for each other variable.
 */
class FlatVector {
  readonly variables: Variable[];
  readonly offsets: number[] = [];
  readonly size: number;
  private readonly indices: Tensor[] = [];
  private readonly vectors: number;
  /** SplitV's sizes: each 1-D variable's, then the rest; made once, as GatherV2's axis. */
  private readonly splitSizes: Tensor;
  private readonly axis: Tensor;

  constructor(variables: Variable[]) {
    this.variables = [...variables.filter((v) => v.rank === 1), ...variables.filter((v) => v.rank !== 1)];
    this.vectors = variables.filter((v) => v.rank === 1).length;
    let size = 0;
    for (const v of this.variables) {
      this.offsets.push(size);
      this.indices.push(tf.keep(tf.tidy(() => tf.reshape(tf.range(size, size + v.size, 1, "int32"), v.shape))));
      size += v.size;
    }
    this.size = size;
    const sizes = this.variables.slice(0, this.vectors).map((v) => v.size);
    this.splitSizes = tf.keep(tf.tensor1d(size > this.offsets[this.vectors] ? [...sizes, -1] : sizes, "int32"));
    this.axis = tf.keep(tf.scalar(0, "int32"));
  }

  /** One tensor per variable (of its shape) as one flat vector. */
  join(tensors: Tensor[]): Tensor {
    const be = native()!;
    const n = { name: "N", type: be.binding.TF_ATTR_INT, value: tensors.length };
    return be.executeSingleOutput("DynamicStitch", [n, floatAttr(be)], [...this.indices, ...tensors]);
  }

  /** Assigns each variable its part of `flat`. */
  write(flat: Tensor): void {
    const be = native()!;
    const int = (name: string, value: number) => ({ name, type: be.binding.TF_ATTR_INT, value });
    const type = (name: string, value: number) => ({ name, type: be.binding.TF_ATTR_TYPE, value });
    const i32 = be.binding.TF_INT32;
    if (this.vectors > 0) {
      const n = this.splitSizes.size;
      const parts = be.executeMultipleOutputs(
        "SplitV",
        [int("num_split", n), floatAttr(be), type("Tlen", i32)],
        [flat, this.splitSizes, this.axis],
        n,
      );
      for (let k = 0; k < this.vectors; k++) this.variables[k].assign(parts[k]);
    }
    const gather = [int("batch_dims", 0), floatAttr(be, "Tparams"), type("Tindices", i32), type("Taxis", i32)];
    for (let k = this.vectors; k < this.variables.length; k++)
      this.variables[k].assign(be.executeSingleOutput("GatherV2", gather, [flat, this.indices[k], this.axis]));
  }

  dispose(): void {
    tf.dispose([...this.indices, this.splitSizes, this.axis]);
  }
}

/** torch.nn.utils.clip_grad_norm_'s factor for the gradients: max / (norm + 1e-6) when norm > max, else 1. */
export function clipScale(norm: number, max: number | undefined): number {
  return max !== undefined && norm > max ? max / (norm + 1e-6) : 1;
}

/** Gradients taken for one update (Optimizer.prepare): their norm can be read before they are applied. */
export interface PendingUpdate {
  /** The sum of squares of all the gradients (a new scalar; the caller disposes it). */
  squaredNorm(): Scalar;
  /** Applies the update with the gradients multiplied by `scale` (1: as they are) and frees them. */
  apply(lr: number, scale?: number): void;
  /** Frees the gradients without an update. */
  discard(): void;
}

export interface ParamGroup {
  variables: Variable[];
  weightDecay: number;
}

export class Optimizer {
  /** Completed updates (AdamW's bias correction uses it). */
  step = 0;
  private readonly buckets: Bucket[] = [];
  private readonly nSlots: number;
  private readonly count: number;

  constructor(
    readonly config: OptimizerConfig,
    groups: ParamGroup[],
    options: OptimizerOptions = {},
  ) {
    validateOptimizer(config);
    const fuseMax = options.fuseMaxSize ?? FUSE_MAX_SIZE;
    checkNumber("fuseMaxSize", fuseMax, 0, Number.MAX_SAFE_INTEGER);
    this.nSlots = config.type === "sgd" ? ((config.momentum ?? 0.9) > 0 ? 1 : 0) : 2;
    const canFuse = native() !== undefined;
    let position = 0;
    for (const { variables, weightDecay } of groups) {
      const small = variables.filter((v) => canFuse && v.dtype === "float32" && v.size <= fuseMax);
      const positions = new Map(variables.map((v, k) => [v, position + k]));
      for (const v of variables)
        if (small.length < 2 || !small.includes(v)) {
          // a large variable (or the one small one of its group): its own ops
          const slots = this.makeSlots(v.shape);
          this.buckets.push({
            variables: [v],
            positions: [positions.get(v)!],
            offsets: [0],
            flat: null,
            slots,
            weightDecay,
          });
        }
      if (small.length > 1) {
        const flat = new FlatVector(small);
        const slots = this.makeSlots([flat.size]);
        const order = flat.variables.map((v) => positions.get(v)!);
        this.buckets.push({
          variables: flat.variables,
          positions: order,
          offsets: flat.offsets,
          flat,
          slots,
          weightDecay,
        });
      }
      position += variables.length;
    }
    this.count = position;
  }

  private makeSlots(shape: number[]): Variable[] {
    return Array.from({ length: this.nSlots }, () => tf.tidy(() => tf.variable(tf.zeros(shape), false)));
  }

  /**
   * Takes the gradients (in the groups' variables' order; the caller keeps and disposes its own) for one
   * update: each flat bucket's are copied into its vector once, and the norm and the update share that.
   */
  prepare(grads: Tensor[]): PendingUpdate {
    if (grads.length !== this.count)
      throw new Error(`Optimizer: got ${grads.length} gradients for ${this.count} variables`);
    const taken = tf.tidy(() =>
      this.buckets.map((b) => {
        const g = b.positions.map((p) => grads[p]);
        return tf.keep(b.flat ? b.flat.join(g) : tf.clone(g[0]));
      }),
    );
    let pending = true;
    const free = () => {
      if (pending) tf.dispose(taken);
      pending = false;
    };
    return {
      squaredNorm: () => sumOfSquares(taken),
      apply: (lr: number, scale = 1) => {
        if (!pending) throw new Error("Optimizer: this update was already applied or discarded");
        this.step++;
        tf.tidy(() => {
          for (const [k, b] of this.buckets.entries())
            this.update(b, scale === 1 ? taken[k] : tf.mul(taken[k], scale), lr);
        });
        free();
      },
      discard: free,
    };
  }

  /** Applies one update with gradients in the groups' variables' order, multiplied by `scale`. */
  apply(grads: Tensor[], lr: number, scale = 1): void {
    this.prepare(grads).apply(lr, scale);
  }

  /** One bucket's update (inside the caller's tidy): the rule on its parameters, then written back. */
  private update(b: Bucket, grad: Tensor, lr: number): void {
    const c = this.config;
    const param = b.flat ? b.flat.join(b.variables) : b.variables[0];
    let next: Tensor;
    let slots: Tensor[];
    if (c.type === "sgd") {
      const rule = { lr, momentum: c.momentum ?? 0.9, weightDecay: b.weightDecay, nesterov: c.nesterov };
      const r = sgdUpdate(param, grad, b.slots[0] ?? null, rule);
      next = r.param;
      slots = r.buffer ? [r.buffer] : [];
    } else {
      const { beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8 } = c;
      const r = adamwUpdate(
        param,
        grad,
        b.slots[0],
        b.slots[1],
        { lr, beta1, beta2, epsilon, weightDecay: b.weightDecay },
        this.step,
      );
      next = r.param;
      slots = [r.m, r.v];
    }
    for (const [k, s] of slots.entries()) b.slots[k].assign(s);
    if (b.flat) b.flat.write(next);
    else b.variables[0].assign(next);
  }

  /** What the state arrays are: per variable (in the groups' order), its slots (SGD: momentum; AdamW: m, v). */
  stateShapes(): { shape: number[]; dtype: "float32" }[] {
    return this.layout().map(({ variable }) => ({ shape: [...variable.shape], dtype: "float32" as const }));
  }

  /** Copies of the state arrays, in stateShapes' order (checkpoints hold these). */
  saveState(): StateArray[] {
    const values = this.buckets.map((b) => b.slots.map((s) => s.dataSync() as Float32Array));
    return this.layout().map(({ bucket, index, slot, variable }) => {
      const from = this.buckets[bucket].offsets[index];
      return {
        dtype: "float32",
        shape: [...variable.shape],
        data: values[bucket][slot].slice(from, from + variable.size),
      };
    });
  }

  /** Restores arrays in stateShapes' order and sizes (the caller has checked their shapes). */
  loadState(arrays: ArrayLike<number>[]): void {
    const layout = this.layout();
    if (arrays.length !== layout.length)
      throw new Error(`Optimizer: got ${arrays.length} state arrays for ${layout.length}`);
    const values = this.buckets.map((b) => b.slots.map((s) => new Float32Array(s.size)));
    for (const [k, { bucket, index, slot }] of layout.entries())
      values[bucket][slot].set(arrays[k], this.buckets[bucket].offsets[index]);
    for (const [i, b] of this.buckets.entries())
      for (const [j, s] of b.slots.entries()) tf.tidy(() => s.assign(tf.tensor(values[i][j], s.shape)));
  }

  /** The state arrays' order (the checkpoint layout): by variable as the groups list them, then by slot. */
  private layout(): { bucket: number; index: number; slot: number; variable: Variable }[] {
    const entries = this.buckets.flatMap((b, bucket) =>
      b.variables.map((variable, index) => ({ bucket, index, variable, position: b.positions[index] })),
    );
    entries.sort((a, b) => a.position - b.position);
    return entries.flatMap((e) => Array.from({ length: this.nSlots }, (_, slot) => ({ ...e, slot })));
  }

  dispose(): void {
    for (const b of this.buckets) {
      tf.dispose(b.slots);
      b.flat?.dispose();
    }
  }
}
