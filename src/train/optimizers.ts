/**
 * Optimizers with PyTorch semantics and inspectable state (tfjs' own optimizers have no AdamW and
 * their state is awkward to checkpoint). The learning rate is passed per step (schedules.ts).
 * - SGD (`sgdUpdate`, the one rule every head step uses too): g += wd * p; buf = momentum * buf + g;
 *   p -= lr * (nesterov ? g + momentum * buf : buf).
 * - AdamW (Loshchilov & Hutter; torch.optim.AdamW): p *= 1 - lr * wd; Adam update with bias correction.
 * Weight decay is per variable group (backbone / head), as InsightFace's two parameter groups.
 */
import { tf } from "../backend";
import { checkNumber, configError } from "../data/dataset";
import type { Variable } from "../losses/head";

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
 * p -= lr (nesterov ? d + momentum buf : buf). Used by Optimizer.apply, FusedHeadStep and PartialFC.
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

export interface ParamGroup {
  variables: Variable[];
  weightDecay: number;
}

export class Optimizer {
  /** Completed updates (AdamW's bias correction uses it). */
  step = 0;
  /** Slot variables per parameter: SGD [momentum buffer]; AdamW [m, v]. */
  private readonly slots: Variable[][];
  private readonly groups: ParamGroup[];

  constructor(
    readonly config: OptimizerConfig,
    groups: ParamGroup[],
  ) {
    validateOptimizer(config);
    this.groups = groups;
    const nSlots = config.type === "sgd" ? ((config.momentum ?? 0.9) > 0 ? 1 : 0) : 2;
    this.slots = groups.flatMap((g) =>
      g.variables.map((v) => Array.from({ length: nSlots }, () => tf.tidy(() => tf.variable(tf.zerosLike(v), false)))),
    );
  }

  /** Applies one update with gradients in the same order as the groups' variables. */
  apply(grads: Tensor[], lr: number): void {
    const c = this.config;
    this.step++;
    const t = this.step;
    tf.tidy(() => {
      let k = 0;
      for (const g of this.groups) {
        for (const p of g.variables) {
          const grad = grads[k];
          const slots = this.slots[k];
          k++;
          if (c.type === "sgd") {
            const rule = { lr, momentum: c.momentum ?? 0.9, weightDecay: g.weightDecay, nesterov: c.nesterov };
            const next = sgdUpdate(p, grad, slots[0] ?? null, rule);
            if (next.buffer) slots[0].assign(next.buffer);
            p.assign(next.param);
          } else {
            const b1 = c.beta1 ?? 0.9;
            const b2 = c.beta2 ?? 0.999;
            const eps = c.epsilon ?? 1e-8;
            const [m, v] = slots;
            const nm = tf.add(tf.mul(m, b1), tf.mul(grad, 1 - b1));
            const nv = tf.add(tf.mul(v, b2), tf.mul(tf.square(grad), 1 - b2));
            m.assign(nm);
            v.assign(nv);
            const mhat = tf.div(nm, 1 - b1 ** t);
            const vhat = tf.div(nv, 1 - b2 ** t);
            const decayed = g.weightDecay ? tf.mul(p, 1 - lr * g.weightDecay) : p;
            p.assign(tf.sub(decayed, tf.mul(tf.div(mhat, tf.add(tf.sqrt(vhat), eps)), lr)));
          }
        }
      }
    });
  }

  /** State for checkpoints: slot variables in a fixed order. */
  stateVariables(): Variable[] {
    return this.slots.flat();
  }

  dispose(): void {
    for (const v of this.slots.flat()) v.dispose();
  }
}
