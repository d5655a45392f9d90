/**
 * MobileFaceNet as InsightFace's arcface_torch `mbf` (backbones/mobilefacenet.py, adapted from cavaface):
 * ConvBlock(3x3, stride 2) -> depthwise ConvBlock -> [DepthWise(stride 2) + Residual] x3 ->
 * conv_sep 1x1 -> GDC (global depthwise conv over the final map + BN -> linear without bias -> BN1d).
 * blocks=(1,4,6,2), scale=2 is `mbf`; (2,8,12,4), scale=4 is `mbf_large`. The grouped (not depthwise)
 * convolution of the first stage is a depthwise one here (tfjs has no grouped convolution).
 */
import { tf } from "../backend";
import { Init, LayersBackbone } from "./backbone";
import { bn, conv, dense, depthwise, prelu, type SymbolicTensor } from "./layers";

export interface MobileFaceNetOptions {
  inputShape?: readonly [number, number, number];
  embeddingDim?: number;
  /** Blocks of the four stages. Default [1, 4, 6, 2]. */
  blocks?: readonly [number, number, number, number];
  /** Width multiplier. Default 2. */
  scale?: number;
  /** Base width (64 in InsightFace); stage widths are base*scale and 2*base*scale. */
  base?: number;
  /** Channels of conv_sep and the GDC. Default 512. */
  sepDim?: number;
  seed?: number;
}

const convBlock = (x: SymbolicTensor, init: Init, filters: number, k: number, s = 1) =>
  prelu(bn(conv(x, init, filters, k, s)));
const dwBlock = (x: SymbolicTensor, init: Init, k: number, s = 1) => prelu(bn(depthwise(x, init, k, s)));
const linearBlock = (x: SymbolicTensor, init: Init, filters: number) => bn(conv(x, init, filters, 1));

/** DepthWise: 1x1 expand (ConvBlock) -> depthwise kxk (ConvBlock) -> 1x1 project (LinearBlock). */
function depthWise(
  x: SymbolicTensor,
  init: Init,
  out: number,
  groups: number,
  stride: number,
  residual: boolean,
): SymbolicTensor {
  let y = convBlock(x, init, groups, 1);
  y = dwBlock(y, init, 3, stride);
  y = linearBlock(y, init, out);
  return residual ? (tf.layers.add().apply([x, y]) as SymbolicTensor) : y;
}

export function mobileFaceNet(o: MobileFaceNetOptions = {}): LayersBackbone {
  const inputShape = o.inputShape ?? ([112, 112, 3] as const);
  const blocks = o.blocks ?? [1, 4, 6, 2];
  const scale = o.scale ?? 2;
  const base = o.base ?? 64;
  const sepDim = o.sepDim ?? 512;
  const emb = o.embeddingDim ?? 512;
  const c1 = base * scale;
  const c2 = 2 * base * scale;
  const init = new Init(o.seed ?? 0);
  const input = tf.input({ shape: [...inputShape] });
  let x = convBlock(input, init, c1, 3, 2);
  if (blocks[0] === 1) x = dwBlock(x, init, 3, 1);
  else for (let b = 0; b < blocks[0]; b++) x = depthWise(x, init, c1, 2 * base, 1, true);
  x = depthWise(x, init, c1, 2 * base, 2, false);
  for (let b = 0; b < blocks[1]; b++) x = depthWise(x, init, c1, 2 * base, 1, true);
  x = depthWise(x, init, c2, 4 * base, 2, false);
  for (let b = 0; b < blocks[2]; b++) x = depthWise(x, init, c2, 4 * base, 1, true);
  x = depthWise(x, init, c2, 8 * base, 2, false);
  for (let b = 0; b < blocks[3]; b++) x = depthWise(x, init, c2, 4 * base, 1, true);
  x = convBlock(x, init, sepDim, 1);
  // GDC: a depthwise conv covering the whole remaining map, then linear -> BN1d
  const [h, w] = [x.shape[1] as number, x.shape[2] as number];
  x = bn(depthwise(x, init, [h, w], 1, "valid"));
  x = tf.layers.flatten().apply(x) as SymbolicTensor;
  x = dense(x, init, emb, false);
  x = bn(x);
  const name = `mobilefacenet[${blocks.join(",")}]x${scale}`;
  return new LayersBackbone(name, tf.model({ inputs: input, outputs: x }), inputShape, emb);
}

/** A small MobileFaceNet for 2-core CPU training at 32x32..64x64 inputs. */
export function mobileFaceNetSmall(o: MobileFaceNetOptions = {}): LayersBackbone {
  return mobileFaceNet({
    inputShape: [32, 32, 1],
    embeddingDim: 64,
    blocks: [1, 1, 1, 1],
    scale: 1,
    base: 16,
    sepDim: 128,
    ...o,
  });
}
