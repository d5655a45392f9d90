/**
 * Plain softmax cross-entropy: logits x W^T (+ b). W is free (not normalised), initialised N(0, 2/(C+D))
 * from `seed`; `bias` (default false, so that it differs from the normalised heads only by the
 * normalisation) adds a zero-initialised trainable bias [C].
 */
import type { Scalar, Tensor, Tensor1D, Tensor2D, Variable } from "@tensorflow/tfjs-node";
import { tf } from "../backend";
import { type CommonHeadOptions, checkCommon, checkInitialWeight, makeWeight } from "./cosine-head";
import type { Head } from "./head";
import { marginSoftmaxCrossEntropy, matMulWideT } from "./margin-softmax";
import { clippedCosine } from "./tensor-helpers";
import { checkHeadInput, fail, requireBoolean } from "./validate";
import type { LossWarning } from "./warnings";

export interface SoftmaxOptions extends CommonHeadOptions {
  /** Add a trainable bias (default false). */
  bias?: boolean;
  /** Initial bias values [numClasses] (default zeros). */
  initialBias?: number[];
}

/** Shared by Softmax and L2Softmax: validation and the weight/bias variables of an unnormalised FC layer. */
export abstract class LinearHeadBase implements Head {
  readonly numClasses: number;
  readonly embeddingDim: number;
  readonly weight: Variable;
  readonly bias?: Variable;
  readonly warnings: LossWarning[] = [];
  protected readonly headName: string;
  protected readonly validateLabels: boolean;

  protected constructor(name: string, options: SoftmaxOptions, extraKeys: string[]) {
    const common = checkCommon(name, options, ["bias", "initialBias", ...extraKeys]);
    const bias =
      options.bias === undefined ? options.initialBias !== undefined : requireBoolean(name, "bias", options.bias);
    if (options.initialBias !== undefined) {
      const ib = options.initialBias;
      if (!Array.isArray(ib) || ib.length !== common.numClasses || !ib.every(Number.isFinite)) {
        fail(
          name,
          "initialBias",
          Array.isArray(ib) ? `array of ${ib.length}` : ib,
          `must be ${common.numClasses} finite numbers`,
        );
      }
    }
    checkInitialWeight(name, options.initialWeight, common.numClasses, common.embeddingDim);
    this.headName = name;
    this.numClasses = common.numClasses;
    this.embeddingDim = common.embeddingDim;
    this.validateLabels = common.validateLabels;
    const std = Math.sqrt(2 / (common.numClasses + common.embeddingDim));
    this.weight = makeWeight(options.initialWeight, common.numClasses, common.embeddingDim, common.seed, std, name);
    if (bias) {
      const init = options.initialBias ?? new Array<number>(common.numClasses).fill(0);
      this.bias = tf.variable(tf.tensor1d(init, "float32"), true, `${this.weight.name}_bias`);
    }
  }

  protected check(embeddings: Tensor2D, labels: Tensor1D | null): void {
    checkHeadInput(this.headName, embeddings, labels, this.numClasses, this.embeddingDim, this.validateLabels);
  }

  /** The features the FC layer sees (x for Softmax, alpha x / |x| for L2Softmax). */
  protected abstract features(embeddings: Tensor2D): Tensor2D;

  /** The logits features . W^T (+ b). */
  protected linear(embeddings: Tensor2D): Tensor2D {
    const z = matMulWideT(this.features(embeddings), this.weight as Tensor as Tensor2D);
    return this.bias ? (tf.add(z, this.bias) as Tensor2D) : z;
  }

  loss(embeddings: Tensor2D, labels: Tensor1D): Scalar {
    this.check(embeddings, labels);
    return tf.tidy(() => marginSoftmaxCrossEntropy(this.linear(embeddings), labels, 1, null, { clipTarget: false }));
  }

  logits(embeddings: Tensor2D, labels: Tensor1D): Tensor2D {
    this.check(embeddings, labels);
    return tf.tidy(() => this.linear(embeddings));
  }

  /** Plain cosines between embeddings and the rows of W (evaluation). */
  cosine(embeddings: Tensor2D): Tensor2D {
    this.check(embeddings, null);
    return clippedCosine(embeddings, this.weight as Tensor as Tensor2D);
  }

  trainableVariables(): Variable[] {
    return this.bias ? [this.weight, this.bias] : [this.weight];
  }

  dispose(): void {
    this.weight.dispose();
    this.bias?.dispose();
  }
}

export class Softmax extends LinearHeadBase {
  constructor(options: SoftmaxOptions) {
    super("Softmax", options, []);
  }

  protected features(embeddings: Tensor2D): Tensor2D {
    return embeddings;
  }
}
