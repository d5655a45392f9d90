/**
 * iResNet / Face-ResNet as InsightFace's arcface_torch (backbones/iresnet.py):
 * stem conv3x3(stride 1) + BN + PReLU; stages of IBasicBlocks (BN -> conv3x3 -> BN -> PReLU ->
 * conv3x3(stride) -> BN, + conv1x1/BN shortcut when the shape changes), each stage starting at stride 2;
 * embedding head BN -> flatten -> dropout -> linear -> BN1d with its scale fixed to 1.
 * r18/r34/r50/r100 are the published depths at width 64; `iresnetSmall` trains on 2 CPU cores.
 * Convolutions use TF "same" padding (at stride 2 it pads bottom/right, PyTorch pads both sides).
 */
import { tf } from "../backend";
import { Init, LayersBackbone } from "./backbone";
import { bn, conv, dense, prelu, type SymbolicTensor } from "./layers";

export const IRESNET_LAYERS = {
  r18: [2, 2, 2, 2],
  r34: [3, 4, 6, 3],
  r50: [3, 4, 14, 3],
  r100: [3, 13, 30, 3],
  r200: [6, 26, 60, 6],
} as const;

export interface IResNetOptions {
  inputShape?: readonly [number, number, number];
  embeddingDim?: number;
  /** Blocks per stage. Default r18 = [2, 2, 2, 2]. */
  layers?: readonly number[];
  /** Channels per stage. Default [64, 128, 256, 512]. */
  widths?: readonly number[];
  /** Dropout before the embedding layer (InsightFace default 0). */
  dropout?: number;
  /** The final BN1d on the embedding (InsightFace: yes). Off gives raw FC features, e.g. for feature-norm studies. Default true. */
  embeddingBN?: boolean;
  seed?: number;
}

function block(x: SymbolicTensor, init: Init, filters: number, stride: number, downsample: boolean): SymbolicTensor {
  let y = bn(x);
  y = conv(y, init, filters, 3, 1);
  y = bn(y);
  y = prelu(y);
  y = conv(y, init, filters, 3, stride);
  y = bn(y);
  const shortcut = downsample ? bn(conv(x, init, filters, 1, stride)) : x;
  return tf.layers.add().apply([y, shortcut]) as SymbolicTensor;
}

export function iresnet(o: IResNetOptions = {}): LayersBackbone {
  const inputShape = o.inputShape ?? ([112, 112, 3] as const);
  const layers = o.layers ?? IRESNET_LAYERS.r18;
  const widths = o.widths ?? [64, 128, 256, 512];
  if (layers.length !== widths.length)
    throw new Error(`iresnet: layers has ${layers.length} stages but widths has ${widths.length}; they must match`);
  const emb = o.embeddingDim ?? 512;
  const init = new Init(o.seed ?? 0);
  const input = tf.input({ shape: [...inputShape] });
  let x = prelu(bn(conv(input, init, widths[0], 3, 1)));
  let channels = widths[0];
  layers.forEach((n, s) => {
    for (let b = 0; b < n; b++) {
      const stride = b === 0 ? 2 : 1;
      const down = b === 0 && (stride !== 1 || channels !== widths[s]);
      x = block(x, init, widths[s], stride, down);
      channels = widths[s];
    }
  });
  x = bn(x);
  x = tf.layers.flatten().apply(x) as SymbolicTensor;
  if (o.dropout) x = tf.layers.dropout({ rate: o.dropout }).apply(x) as SymbolicTensor;
  x = dense(x, init, emb);
  if (o.embeddingBN ?? true) x = bn(x, { scale: false }); // features BN1d with weight fixed to 1
  const name = `iresnet[${layers.join(",")}]x[${widths.join(",")}]`;
  return new LayersBackbone(name, tf.model({ inputs: input, outputs: x }), inputShape, emb);
}

/** A small iResNet for 2-core CPU training at 32x32..64x64 inputs: one block per stage, widths 16..128. */
export function iresnetSmall(o: IResNetOptions = {}): LayersBackbone {
  return iresnet({ inputShape: [32, 32, 1], embeddingDim: 64, layers: [1, 1, 1, 1], widths: [16, 32, 64, 128], ...o });
}
