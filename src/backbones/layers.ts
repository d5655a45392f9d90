/** Building blocks shared by the backbones (functional tfjs layers). */
import { tf } from "../backend";
import type { Init } from "./backbone";
import { BatchNorm } from "./batchnorm";
import { Conv2D } from "./conv";
import { PReLU } from "./prelu";

export type SymbolicTensor = import("@tensorflow/tfjs-node").SymbolicTensor;

/** BatchNorm with PyTorch defaults (eps 1e-5, momentum 0.1) and a closed-form gradient (batchnorm.ts). */
export function bn(x: SymbolicTensor, opts: { scale?: boolean; epsilon?: number } = {}): SymbolicTensor {
  return new BatchNorm({ epsilon: opts.epsilon, scale: opts.scale }).apply(x) as SymbolicTensor;
}

/** PReLU with one slope per channel (PyTorch nn.PReLU(channels)), initialised at 0.25, with a short gradient (prelu.ts). */
export function prelu(x: SymbolicTensor): SymbolicTensor {
  return new PReLU(0.25).apply(x) as SymbolicTensor;
}

/** Convolution without bias, He-normal initialised, with a lazy input gradient (conv.ts). */
export function conv(
  x: SymbolicTensor,
  init: Init,
  filters: number,
  kernel: number,
  stride = 1,
  padding: "same" | "valid" = "same",
): SymbolicTensor {
  return new Conv2D({
    filters,
    kernelSize: kernel,
    strides: stride,
    padding,
    kernelInitializer: init.heNormal(),
  }).apply(x) as SymbolicTensor;
}

export function depthwise(
  x: SymbolicTensor,
  init: Init,
  kernel: number | [number, number],
  stride = 1,
  padding: "same" | "valid" = "same",
): SymbolicTensor {
  return tf.layers
    .depthwiseConv2d({
      kernelSize: kernel,
      strides: stride,
      padding,
      useBias: false,
      depthwiseInitializer: init.heNormal(),
    })
    .apply(x) as SymbolicTensor;
}

export function dense(x: SymbolicTensor, init: Init, units: number, useBias = true): SymbolicTensor {
  return tf.layers.dense({ units, useBias, kernelInitializer: init.glorotUniform() }).apply(x) as SymbolicTensor;
}
