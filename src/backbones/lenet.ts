/**
 * LeNet++ (Wen et al., center loss, ECCV 2016; used for SphereFace's and L2-softmax's MNIST feature
 * plots): three stages of two 5x5 conv + PReLU, each followed by 2x2 max-pooling (32, 64, 128
 * filters), then a linear layer to a 2- or 3-D embedding (the plotted feature).
 */
import { tf } from "../backend";
import { Init, LayersBackbone } from "./backbone";
import { conv, dense, prelu, type SymbolicTensor } from "./layers";

export interface LeNetOptions {
  inputShape?: readonly [number, number, number];
  /** 2 or 3 for the feature plots; any size is allowed. Default 2. */
  embeddingDim?: number;
  /** Filters of the stages (two convs + pooling each). Default [32, 64, 128]. */
  widths?: readonly number[];
  seed?: number;
}

export function lenetPP(o: LeNetOptions = {}): LayersBackbone {
  const inputShape = o.inputShape ?? ([28, 28, 1] as const);
  const emb = o.embeddingDim ?? 2;
  const widths = o.widths ?? [32, 64, 128];
  const init = new Init(o.seed ?? 0);
  const input = tf.input({ shape: [...inputShape] });
  let x: SymbolicTensor = input;
  for (const w of widths) {
    x = prelu(conv(x, init, w, 5));
    x = prelu(conv(x, init, w, 5));
    x = tf.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: "same" }).apply(x) as SymbolicTensor;
  }
  x = tf.layers.flatten().apply(x) as SymbolicTensor;
  const out = dense(x, init, emb);
  return new LayersBackbone("lenet++", tf.model({ inputs: input, outputs: out }), inputShape, emb);
}
