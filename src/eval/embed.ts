/**
 * Embeddings of a dataset with a trained backbone (inference mode: BatchNorm uses its moving
 * statistics). With `flip`, each image's embedding is emb(image) + emb(flipped image), unnormalised,
 * as InsightFace's verification.py; `single` keeps emb(image) alone (feature-norm analysis).
 */

import type { Backbone } from "../backbones/backbone";
import { tf } from "../backend";
import { checkInt, type Dataset } from "../data/dataset";
import { evalBatches } from "../data/pipeline";

type Tensor4D = import("@tensorflow/tfjs-node").Tensor4D;

export interface Embeddings {
  /** Per image: emb(x) + emb(flip(x)) with `flip`, else emb(x). Not normalised. */
  embeddings: Float32Array[];
  /** Per image: emb(x) of the unflipped image. */
  single: Float32Array[];
  /** L2 norm of each image's unflipped embedding. */
  norms: Float64Array;
  /** InsightFace's XNorm: mean L2 norm of the raw embeddings over both views. */
  xnorm: number;
  labels: Int32Array;
}

export interface EmbedOptions {
  batchSize?: number;
  flip?: boolean;
  size?: readonly [number, number];
  normalize?: { mean: number; std: number };
}

export async function embedDataset(backbone: Backbone, ds: Dataset, o: EmbedOptions = {}): Promise<Embeddings> {
  checkInt("batchSize", o.batchSize ?? 64, 1);
  const single = await embedViewDisposing(backbone, ds, o, false);
  const flipped = o.flip ? await embedViewDisposing(backbone, ds, o, true) : undefined;
  const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const norms = Float64Array.from(single, norm);
  let xs = 0;
  for (const v of single) xs += norm(v);
  if (flipped) for (const v of flipped) xs += norm(v);
  const embeddings = flipped ? single.map((v, i) => v.map((x, k) => x + flipped[i][k])) : single;
  return {
    embeddings,
    single,
    norms,
    xnorm: xs / (single.length * (flipped ? 2 : 1)),
    labels: Int32Array.from(ds.labels),
  };
}

async function embedViewDisposing(
  backbone: Backbone,
  ds: Dataset,
  o: EmbedOptions,
  flip: boolean,
): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  const d = backbone.embeddingDim;
  for await (const b of evalBatches(ds, o.batchSize ?? 64, { size: o.size, flip, normalize: o.normalize })) {
    const t = tf.tidy(() => backbone.apply(tf.tensor4d(b.x, b.shape) as Tensor4D, false));
    const data = t.dataSync() as Float32Array;
    t.dispose();
    for (let k = 0; k < b.shape[0]; k++) out.push(data.slice(k * d, (k + 1) * d));
  }
  return out;
}
