/**
 * Batch normalisation over the last axis with its own gradient. tfjs' BatchNormalization layer
 * differentiates its formula op by op (about 20 full-size elementwise kernels per layer in the
 * backward pass; it dominated the training step of the small backbones). Here training mode runs
 * TensorFlow's fused kernels FusedBatchNormV3 / FusedBatchNormGradV3 through the native backend's
 * generic op call (about 10x faster per layer); the forward kernel also updates the running
 * statistics, and inference runs FusedBatchNormV3 too (one op instead of six). Where that call is not
 * available (or with `fused: false`, the reference the tests check the kernels against) it falls back
 * to the closed form dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
 * PyTorch's conventions: eps 1e-5, momentum 0.1 on the running statistics, unbiased running variance.
 */
import { tf } from "../backend";
import { floatAttr, type NativeBackend, nativeBackend } from "./native";

let fusedWorks: boolean | undefined;

/**
 * FusedBatchNormV3 / FusedBatchNormGradV3 attributes. In training mode with `averageFactor` < 1 the
 * forward kernel also returns the updated running statistics, (1 - f) * running + f * batch (the
 * variance with Bessel's correction), so the running averages cost no extra ops.
 */
function fusedAttrs(be: NativeBackend, epsilon: number, training: boolean, averageFactor?: number) {
  const b = be.binding;
  const attrs: { name: string; type: number; value: unknown }[] = [
    floatAttr(be, "T"),
    floatAttr(be, "U"),
    { name: "epsilon", type: b.TF_ATTR_FLOAT, value: epsilon },
    { name: "data_format", type: b.TF_ATTR_STRING, value: "NHWC" },
    { name: "is_training", type: b.TF_ATTR_BOOL, value: training },
  ];
  if (averageFactor !== undefined)
    attrs.push({ name: "exponential_avg_factor", type: b.TF_ATTR_FLOAT, value: averageFactor });
  return attrs;
}

type Tensor = import("@tensorflow/tfjs-node").Tensor;
type LayerVariable = import("@tensorflow/tfjs-layers/dist/variables").LayerVariable;
type Shape = (number | null)[];

export interface BatchNormOptions {
  epsilon?: number;
  /** Weight of the new batch statistics in the running averages (PyTorch's momentum). Default 0.1. */
  momentum?: number;
  /** Train gamma (false: fixed at 1, InsightFace's features BN1d). Default true. */
  scale?: boolean;
  /** Use TensorFlow's fused kernels in training mode when the backend can run them. Default true. */
  fused?: boolean;
}

/** Whether the fused kernels were used (true), found unavailable (false) or not tried yet (undefined). */
export function fusedBatchNormStatus(): boolean | undefined {
  return fusedWorks;
}

export class BatchNorm extends tf.layers.Layer {
  static readonly className = "MarginlabBatchNorm";
  private readonly epsilon: number;
  private readonly momentum: number;
  private readonly scale: boolean;
  private readonly useFused: boolean;
  private gamma!: LayerVariable;
  private beta!: LayerVariable;
  private movingMean!: LayerVariable;
  private movingVariance!: LayerVariable;

  constructor(o: BatchNormOptions = {}) {
    super({});
    this.epsilon = o.epsilon ?? 1e-5;
    this.momentum = o.momentum ?? 0.1;
    this.scale = o.scale ?? true;
    this.useFused = o.fused ?? true;
  }

  override build(inputShape: Shape | Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    const c = shape[shape.length - 1] as number;
    this.gamma = this.addWeight("gamma", [c], "float32", tf.initializers.ones(), undefined, this.scale);
    this.beta = this.addWeight("beta", [c], "float32", tf.initializers.zeros(), undefined, true);
    this.movingMean = this.addWeight("moving_mean", [c], "float32", tf.initializers.zeros(), undefined, false);
    this.movingVariance = this.addWeight("moving_variance", [c], "float32", tf.initializers.ones(), undefined, false);
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape | Shape[] {
    return inputShape;
  }

  // biome-ignore lint/suspicious/noExplicitAny: tfjs' Layer.call signature uses Kwargs = {[key: string]: any}.
  override call(inputs: Tensor | Tensor[], kwargs: any): Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const training = !!kwargs?.training;
    const be = !this.useFused || fusedWorks === false || x.dtype !== "float32" ? undefined : nativeBackend();
    if (be) {
      try {
        const y = this.fused(be, x, training);
        fusedWorks = true;
        return y;
      } catch (e) {
        if (fusedWorks) throw e;
        fusedWorks = false; // the op call is not available here: use the closed form from now on
      }
    }
    return training ? this.closedFormTraining(x) : this.closedFormInference(x);
  }

  /** Inference with the running statistics, op by op. */
  private closedFormInference(x: Tensor): Tensor {
    return tf.tidy(() =>
      tf.add(
        tf.mul(
          tf.sub(x, this.movingMean.read()),
          tf.mul(tf.rsqrt(tf.add(this.movingVariance.read(), this.epsilon)), this.gamma.read()),
        ),
        this.beta.read(),
      ),
    );
  }

  /** Training mode in closed form (the reference the fused kernels are tested against). */
  private closedFormTraining(x: Tensor): Tensor {
    const axes = Array.from({ length: x.rank - 1 }, (_, i) => i);
    const n = x.size / x.shape[x.rank - 1];
    const eps = this.epsilon;
    let batchMean: Tensor | undefined;
    let batchVar: Tensor | undefined;
    const f = tf.customGrad(((xi: Tensor, g: Tensor, b: Tensor, save: (t: Tensor[]) => void) => {
      const mean = tf.mean(xi, axes);
      const xc = tf.sub(xi, mean);
      const variance = tf.mean(tf.square(xc), axes);
      const rstd = tf.rsqrt(tf.add(variance, eps));
      const xhat = tf.mul(xc, rstd);
      batchMean = tf.keep(mean.clone());
      batchVar = tf.keep(variance.clone());
      save([xhat, rstd, g]);
      return {
        value: tf.add(tf.mul(xhat, g), b),
        gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
          const d = Array.isArray(dy) ? dy[0] : dy;
          const [xh, rs, gm] = saved;
          const dbeta = tf.sum(d, axes);
          const dgamma = tf.sum(tf.mul(d, xh), axes);
          const dx = tf.mul(tf.mul(gm, rs), tf.sub(tf.sub(d, tf.div(dbeta, n)), tf.mul(xh, tf.div(dgamma, n))));
          return [dx, dgamma, dbeta];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    const y = f(x, this.gamma.read(), this.beta.read());
    const m = this.momentum;
    tf.tidy(() => {
      this.movingMean.write(tf.add(tf.mul(this.movingMean.read(), 1 - m), tf.mul(batchMean!, m)));
      const v = tf.mul(batchVar!, n / Math.max(1, n - 1));
      this.movingVariance.write(tf.add(tf.mul(this.movingVariance.read(), 1 - m), tf.mul(v, m)));
    });
    batchMean!.dispose();
    batchVar!.dispose();
    return y;
  }

  /**
   * Forward and backward as one TensorFlow kernel each (inputs of rank 2 are viewed as [B, 1, 1, C]).
   * Training mode: batch statistics, and the kernel returns the updated running averages, which
   * replace the layer's. Inference: the running statistics, and FusedBatchNormGradV3 with
   * is_training = false differentiates it.
   */
  private fused(be: NativeBackend, x: Tensor, training: boolean): Tensor {
    const eps = this.epsilon;
    const shape = x.shape;
    const c = shape[shape.length - 1];
    const mean = this.movingMean.read();
    const variance = this.movingVariance.read();
    let running: Tensor[] | undefined;
    const f = tf.customGrad(((xi: Tensor, g: Tensor, b: Tensor, save: (t: Tensor[]) => void) => {
      const x4 = xi.rank === 4 ? xi : tf.reshape(xi, [-1, 1, 1, c]);
      const [y, newMean, newVariance, r1, r2, r3] = be.executeMultipleOutputs(
        "FusedBatchNormV3",
        fusedAttrs(be, eps, training, training ? this.momentum : undefined),
        [x4, g, b, mean, variance],
        6,
      );
      if (training) running = [tf.keep(newMean), tf.keep(newVariance)];
      save([x4, g, r1, r2, r3]);
      return {
        value: xi.rank === 4 ? y : tf.reshape(y, shape),
        gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
          const d = Array.isArray(dy) ? dy[0] : dy;
          const [xs, gs, s1, s2, s3] = saved;
          const d4 = d.rank === 4 ? d : tf.reshape(d, xs.shape);
          const [dx, dg, db] = be.executeMultipleOutputs(
            "FusedBatchNormGradV3",
            fusedAttrs(be, eps, training),
            [d4, xs, gs, s1, s2, s3],
            5,
          );
          return [d.rank === 4 ? dx : tf.reshape(dx, shape), dg, db];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    const y = f(x, this.gamma.read(), this.beta.read());
    if (running) {
      this.movingMean.write(running[0]);
      this.movingVariance.write(running[1]);
      tf.dispose(running); // the variables now hold the data
    }
    return y;
  }

  override getConfig() {
    return {
      ...super.getConfig(),
      epsilon: this.epsilon,
      momentum: this.momentum,
      scale: this.scale,
      fused: this.useFused,
    };
  }
}
