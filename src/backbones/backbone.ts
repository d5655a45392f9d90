/**
 * The backbone contract the trainer and evaluation use, and a wrapper around a tfjs LayersModel.
 * Backbones are tfjs functional models (layers give BatchNorm, PReLU, depthwise conv and
 * per-layer seeded initialisers); the trainer reads their variables directly so its own optimizers
 * and checkpoints cover them.
 */
import { tf, tfjsSeed } from "../backend";
import type { Tensor2D, Variable } from "../losses/head";

type Tensor4D = import("@tensorflow/tfjs-node").Tensor4D;
type LayersModel = import("@tensorflow/tfjs-node").LayersModel;

export interface Backbone {
  readonly name: string;
  /** [height, width, channels] of the input images. */
  readonly inputShape: readonly [number, number, number];
  readonly embeddingDim: number;
  /** Embeddings [B, embeddingDim]; `training` switches BatchNorm to batch statistics (and updates them) and dropout on. */
  apply(x: Tensor4D, training: boolean): Tensor2D;
  /** Variables the optimizer updates. */
  trainableVariables(): Variable[];
  /** Every variable, in a fixed order (trainable and BatchNorm statistics): what a checkpoint stores. */
  variables(): { name: string; variable: Variable; trainable: boolean }[];
  /** Number of trainable scalars. */
  parameterCount(): number;
  dispose(): void;
}

export class LayersBackbone implements Backbone {
  constructor(
    readonly name: string,
    readonly model: LayersModel,
    readonly inputShape: readonly [number, number, number],
    readonly embeddingDim: number,
  ) {}

  apply(x: Tensor4D, training: boolean): Tensor2D {
    return this.model.apply(x, { training }) as Tensor2D;
  }

  trainableVariables(): Variable[] {
    return this.model.trainableWeights.map((w) => w.read() as Variable);
  }

  variables(): { name: string; variable: Variable; trainable: boolean }[] {
    return this.model.weights.map((w) => ({
      name: w.originalName,
      variable: w.read() as Variable,
      trainable: w.trainable,
    }));
  }

  parameterCount(): number {
    return this.model.trainableWeights.reduce((a, w) => a + w.shape.reduce((p: number, d) => p * (d ?? 1), 1), 0);
  }

  dispose(): void {
    this.model.dispose();
  }
}

/** Seeded initialisers: each layer gets its own seed from a counter, so a backbone is reproducible from one seed. */
export class Init {
  private n = 0;
  constructor(private readonly seed: number) {}
  private next(): number {
    return tfjsSeed((this.seed * 1000003 + ++this.n * 7919) % 2147483647);
  }
  heNormal() {
    return tf.initializers.heNormal({ seed: this.next() });
  }
  glorotUniform() {
    return tf.initializers.glorotUniform({ seed: this.next() });
  }
  normal(stddev: number) {
    return tf.initializers.randomNormal({ mean: 0, stddev, seed: this.next() });
  }
}
