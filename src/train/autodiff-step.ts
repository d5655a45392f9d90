/**
 * The autodiff head step: any Head (+ weighted regularizers of its weight W), gradients through tf
 * autodiff, the head's variables updated by the optimizer of ./optimizers (PyTorch's SGD rule, or AdamW).
 * It offers `prepare` (the update left pending), so the loop clips head and backbone together when asked
 * and never applies the update of a non-finite step.
 */
import { tf } from "../backend";
import type { Head, Scalar, Tensor1D, Tensor2D, Variable } from "../losses/head";
import { floatArray, intArray, metaCount, readArray } from "../losses/step-state";
import { fail } from "../losses/validate";
import type { HeadStep, HeadStepResult, HeadStepState, PreparedHeadStep, StateArray } from "./head-step";
import { Optimizer, type OptimizerConfig } from "./optimizers";

type Tensor = import("@tensorflow/tfjs-node").Tensor;

/** A regularizer: a scalar function of the head's weight W [C, D], added to the loss times `weight`. */
export interface Regularizer {
  name: string;
  weight: number;
  fn: (w: Tensor2D, context: { labels: Tensor1D; step: number }) => Scalar;
}

export interface AutodiffHeadStepOptions {
  head: Head;
  regularizers?: Regularizer[];
  /** The head's optimizer (type, lr, momentum, ...); `learningRate` starts at its lr. */
  optimizer: OptimizerConfig;
  /** Weight decay of the head's variables (the trainer passes optimizer.headWeightDecay ?? weightDecay). */
  weightDecay: number;
}

/** The head's variables in a fixed order: the weight first, then any others (a trainable scale, a bias). */
function headVariables(head: Head): Variable[] {
  const vars = head.trainableVariables();
  return vars.includes(head.weight) ? vars : [head.weight, ...vars];
}

/** A copy of a tensor's values as a state array (checkpoints hold these). */
export function tensorState(t: Tensor): StateArray {
  return t.dtype === "int32" ? intArray(t.dataSync(), t.shape) : floatArray(t.dataSync(), t.shape);
}

const OWNER = "AutodiffHeadStep";

export class AutodiffHeadStep implements HeadStep {
  readonly kind = "autodiff" as const;
  readonly head: Head;
  learningRate: number;
  private readonly regularizers: Regularizer[];
  /** What the optimizer updates (trainableVariables(); the weight is saved even when it is frozen). */
  private readonly trainable: Variable[];
  private readonly optimizer: Optimizer;

  constructor(o: AutodiffHeadStepOptions) {
    this.head = o.head;
    this.regularizers = o.regularizers ?? [];
    this.trainable = o.head.trainableVariables();
    this.optimizer = new Optimizer(o.optimizer, [{ variables: this.trainable, weightDecay: o.weightDecay }]);
    this.learningRate = o.optimizer.lr;
  }

  get numClasses(): number {
    return this.head.numClasses;
  }

  get embeddingDim(): number {
    return this.head.embeddingDim;
  }

  prepare(embeddings: Tensor2D, labels: Tensor1D, step: number): PreparedHeadStep {
    const { head, regularizers, trainable } = this;
    head.setStep?.(step);
    const regValues: Scalar[] = [];
    let headLossT: Scalar | undefined;
    const { value, grads } = tf.tidy(() => {
      // gradients w.r.t. the embeddings and the head's variables in one backward pass
      const { value, grads } = tf.engine().gradients(
        () => {
          const hl = head.loss(embeddings, labels);
          headLossT = tf.keep(hl);
          let total: Scalar = hl;
          for (const r of regularizers) {
            const rv = r.fn(head.weight as unknown as Tensor2D, { labels, step });
            regValues.push(tf.keep(rv));
            if (r.weight !== 0) total = tf.add(total, tf.mul(rv, r.weight));
          }
          return total;
        },
        [embeddings, ...trainable],
        undefined,
        true,
      );
      const filled = grads.map((g, k) => g ?? tf.zerosLike(k === 0 ? embeddings : trainable[k - 1]));
      // kept: the pending update outlives the caller's tidy scopes (the loop's forward pass runs in one)
      return { value: value as Scalar, grads: [filled[0], ...filled.slice(1).map((g) => tf.keep(g))] };
    });
    const [embeddingGrad, ...headGrads] = grads as [Tensor2D, ...Tensor[]];
    const loss = value.dataSync()[0];
    const headLoss = headLossT ? headLossT.dataSync()[0] : loss;
    const terms: Record<string, number> = {};
    regularizers.forEach((r, k) => {
      terms[r.name] = regValues[k].dataSync()[0];
    });
    tf.dispose([value, ...regValues]);
    headLossT?.dispose();
    let pending = true;
    const free = () => {
      if (pending) tf.dispose(headGrads);
      pending = false;
    };
    return {
      loss,
      headLoss,
      terms,
      embeddingGrad,
      activeClasses: head.numClasses,
      pendingGrads: headGrads,
      apply: (scale: number) => {
        if (!pending) throw new Error("AutodiffHeadStep: this prepared update was already applied or discarded");
        this.optimizer.apply(headGrads, this.learningRate, scale);
        free();
      },
      discard: free,
    };
  }

  step(embeddings: Tensor2D, labels: Tensor1D, step: number): HeadStepResult {
    const p = this.prepare(embeddings, labels, step);
    p.apply(1);
    const { loss, headLoss, terms, embeddingGrad, activeClasses } = p;
    return { loss, headLoss, terms, embeddingGrad, activeClasses };
  }

  /** The head's variables by name (the optimizer's slots follow them as slot/<k>). */
  private namedVariables(): Array<[string, Variable]> {
    return headVariables(this.head).map((v, k): [string, Variable] => [`variable/${k}`, v]);
  }

  saveState(): HeadStepState {
    const arrays: Record<string, StateArray> = {};
    for (const [name, v] of this.namedVariables()) arrays[name] = tensorState(v);
    for (const [k, a] of this.optimizer.saveState().entries()) arrays[`slot/${k}`] = a;
    return { arrays, meta: { optimizerStep: this.optimizer.step } };
  }

  loadState(state: HeadStepState): void {
    const variables = this.namedVariables();
    const slots = this.optimizer.stateShapes().map((s, k) => ({ name: `slot/${k}`, ...s }));
    const names = new Set([...variables.map(([name]) => name), ...slots.map((s) => s.name)]);
    const extra = Object.keys(state?.arrays ?? {}).filter((name) => !names.has(name));
    if (extra.length > 0)
      fail(OWNER, "state.arrays", extra, `has arrays this head and optimizer do not (a different head or optimizer?)`);
    // every array checked before anything is assigned
    const values = variables.map(([name, v]) => readArray(OWNER, state, name, v.dtype as StateArray["dtype"], v.shape));
    const slotValues = slots.map((s) => readArray(OWNER, state, s.name, s.dtype, s.shape));
    const step = metaCount(OWNER, state, "optimizerStep");
    variables.forEach(([, v], k) => {
      tf.tidy(() => v.assign(tf.tensor(values[k], v.shape, v.dtype)));
    });
    this.optimizer.loadState(slotValues);
    this.optimizer.step = step;
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}
