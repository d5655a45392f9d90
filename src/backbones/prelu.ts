/**
 * PReLU with one slope per channel (PyTorch's nn.PReLU(channels)) and its own gradient. tfjs' prelu
 * runs six elementwise kernels forward (relu, abs, sub, two muls, add) and eight backward; here the
 * forward is x > 0 ? x : alpha * x (greater, mul, select) and the backward dx = x > 0 ? dy : alpha * dy,
 * dalpha = sum(dy * min(x, 0)) over all but the channel axis (five ops). Same weight ("alpha",
 * [1, 1, C] for images, [C] for vectors) as tfjs' PReLU layer, so checkpoints are unchanged.
 */
import { tf } from "../backend";
import { select } from "./native";

type Tensor = import("@tensorflow/tfjs-node").Tensor;
type LayerVariable = import("@tensorflow/tfjs-layers/dist/variables").LayerVariable;
type Shape = (number | null)[];

let zero: Tensor | undefined;
/** One scalar 0 for the comparisons (not copied into TensorFlow again on every call). */
function scalarZero(): Tensor {
  if (!zero || zero.isDisposed) zero = tf.keep(tf.scalar(0));
  return zero;
}

/** The PReLU function of x (rank >= 2, channels last) and alpha (broadcastable to x), differentiable in both. */
export function prelu(x: Tensor, alpha: Tensor): Tensor {
  const axes = Array.from({ length: x.rank - 1 }, (_, i) => i);
  const f = tf.customGrad(((xi: Tensor, a: Tensor, save: (t: Tensor[]) => void) => {
    const positive = tf.greater(xi, scalarZero());
    save([xi, a, positive]);
    return {
      value: select(positive, xi, tf.mul(xi, a)),
      gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
        const d = Array.isArray(dy) ? dy[0] : dy;
        const [xs, as, pos] = saved;
        const dx = select(pos, d, tf.mul(d, as));
        const da = tf.reshape(tf.sum(tf.mul(d, tf.minimum(xs, scalarZero())), axes), as.shape);
        return [dx, da];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x, alpha);
}

export class PReLU extends tf.layers.Layer {
  static readonly className = "MarginlabPReLU";
  private alpha!: LayerVariable;

  constructor(private readonly initialSlope = 0.25) {
    super({});
  }

  override build(inputShape: Shape | Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    const c = shape[shape.length - 1] as number;
    const alphaShape = shape.length === 4 ? [1, 1, c] : [c];
    this.alpha = this.addWeight(
      "alpha",
      alphaShape,
      "float32",
      tf.initializers.constant({ value: this.initialSlope }),
      undefined,
      true,
    );
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape | Shape[] {
    return inputShape;
  }

  override call(inputs: Tensor | Tensor[]): Tensor {
    return prelu(Array.isArray(inputs) ? inputs[0] : inputs, this.alpha.read());
  }

  override getConfig() {
    return { ...super.getConfig(), initialSlope: this.initialSlope };
  }
}
