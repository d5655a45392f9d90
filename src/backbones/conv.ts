/**
 * 2-D convolution without bias (every backbone here follows its convolutions with BatchNorm or
 * PReLU). tfjs' Conv2D layer runs tf.fused.conv2d, whose custom gradient computes dL/dx for every
 * convolution, the stem's too, where x is the data; tf.conv2d's gradient is lazy per input, so the
 * tape skips Conv2DBackpropInput where nothing needs it. Same weight ("kernel", [k, k, in, out]) as
 * tfjs' layer, so checkpoints are unchanged.
 */
import { tf } from "../backend";

type Tensor = import("@tensorflow/tfjs-node").Tensor;
type Tensor4D = import("@tensorflow/tfjs-node").Tensor4D;
type Initializer = import("@tensorflow/tfjs-layers/dist/initializers").Initializer;
type LayerVariable = import("@tensorflow/tfjs-layers/dist/variables").LayerVariable;
type Shape = (number | null)[];

export interface ConvOptions {
  filters: number;
  kernelSize: number;
  strides: number;
  padding: "same" | "valid";
  kernelInitializer: Initializer;
}

export class Conv2D extends tf.layers.Layer {
  static readonly className = "MarginlabConv2D";
  private kernel!: LayerVariable;

  constructor(private readonly o: ConvOptions) {
    super({});
  }

  override build(inputShape: Shape | Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    const k = this.o.kernelSize;
    const shapeK = [k, k, shape[shape.length - 1] as number, this.o.filters];
    this.kernel = this.addWeight("kernel", shapeK, "float32", this.o.kernelInitializer, undefined, true);
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const [b, h, w] = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    const { kernelSize: k, strides: s, padding } = this.o;
    const out = (n: number | null) =>
      n === null ? null : padding === "same" ? Math.ceil(n / s) : Math.floor((n - k) / s) + 1;
    return [b, out(h), out(w), this.o.filters];
  }

  override call(inputs: Tensor | Tensor[]): Tensor {
    const x = (Array.isArray(inputs) ? inputs[0] : inputs) as Tensor4D;
    return tf.conv2d(x, this.kernel.read() as Tensor4D, this.o.strides, this.o.padding);
  }

  override getConfig() {
    const { kernelInitializer: _init, ...rest } = this.o;
    return { ...super.getConfig(), ...rest };
  }
}
