/** Shared helpers of the losses-*.test.ts files (not a test file itself). */
import type { Tensor, Tensor1D, Tensor2D, Variable } from "@tensorflow/tfjs-node";
import { tf } from "../src/backend";
import { ArcFace } from "../src/losses/arcface";
import { CenterLoss } from "../src/losses/center-loss";
import { CombinedMargin } from "../src/losses/combined-margin";
import { CosFace } from "../src/losses/cosface";
import type { Head } from "../src/losses/head";
import { L2Softmax } from "../src/losses/l2-softmax";
import { NormFace } from "../src/losses/normface";
import { Softmax } from "../src/losses/softmax";
import { SphereFace } from "../src/losses/sphereface";
import { SubCenterArcFace } from "../src/losses/subcenter-arcface";

export const HEADS = {
  Softmax,
  L2Softmax,
  NormFace,
  SphereFace,
  CosFace,
  ArcFace,
  CombinedMargin,
  SubCenterArcFace,
  CenterLoss,
} as const;
export type HeadName = keyof typeof HEADS;

export const quiet = () => {};

// biome-ignore lint/suspicious/noExplicitAny: options differ per head; the tests pass fixture JSON through
export function makeHead(name: HeadName, options: any): Head {
  const Ctor = HEADS[name] as unknown as new (o: unknown) => Head;
  return new Ctor({ onWarning: quiet, ...options });
}

/** Variables of a head besides `weight` whose gradient a test compares (bias, learnable scale / alpha). */
export function extraVariables(head: Head): Variable[] {
  return head.trainableVariables().filter((v) => v !== head.weight);
}

export interface Grads {
  loss: number;
  gradEmbeddings: Float32Array;
  gradWeight: Float32Array;
  gradExtra: Float32Array[];
}

/** Loss and its gradients wrt the embeddings, the weight and the head's other trainable variables. */
export function lossAndGrads(head: Head, x: Tensor2D, labels: Tensor1D): Grads {
  const xv = tf.variable(x, true);
  const extra = extraVariables(head);
  const vars = [xv, head.weight, ...extra];
  const { value, grads } = tf.variableGrads(() => head.loss(xv as Tensor as Tensor2D, labels), vars);
  const out: Grads = {
    loss: value.dataSync()[0],
    gradEmbeddings: grads[xv.name].dataSync() as Float32Array,
    gradWeight: grads[head.weight.name].dataSync() as Float32Array,
    gradExtra: extra.map((v) => grads[v.name].dataSync() as Float32Array),
  };
  tf.dispose([value, ...Object.values(grads), xv]);
  return out;
}

/** Normwise relative error max|a - b| / max|b| (max|b| floored at 1e-30). */
export function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    num = Math.max(num, Math.abs(actual[i] - expected[i]));
    den = Math.max(den, Math.abs(expected[i]));
  }
  return num / Math.max(den, 1e-30);
}

export function flat(a: unknown): number[] {
  return (Array.isArray(a) ? a.flat(Infinity) : [a]) as number[];
}

export function allFinite(values: ArrayLike<number>): boolean {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return false;
  return true;
}
