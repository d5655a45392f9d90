/**
 * Batches for training and evaluation: seeded shuffling, crop/resize, flip and photometric
 * augmentation, normalisation, and prefetching (the next batches are decoded while the current
 * training step runs; sharp decodes on libuv threads, so decoding overlaps TensorFlow's work).
 *
 * Every batch is a pure function of (dataset, options, epoch, batch index): the permutation of an
 * epoch comes from hash(seed, epoch) and each sample's augmentation from hash(seed, epoch, position).
 * So a checkpoint stores only {epoch, batch} and a resumed run sees the same batches.
 * Batches are plain Float32Arrays (NHWC); the trainer makes tensors of them.
 */
import { checkInt, checkNumber, configError, type Dataset, type ImageSample } from "./dataset";
import { hashInts, permutation, Rng } from "./rng";

export interface AugmentOptions {
  /** Random horizontal flip with probability 0.5 (InsightFace's only augmentation). Default true. */
  flip?: boolean;
  /** Pad by this many pixels (edge-replicated) and crop back at a random offset. Default 0. */
  cropPad?: number;
  /** Brightness jitter: multiply by 1 + U(-b, b). Default 0. */
  brightness?: number;
  /** Contrast jitter: scale around the mean by 1 + U(-c, c). Default 0. */
  contrast?: number;
}

export interface PipelineOptions {
  batchSize: number;
  seed?: number;
  /** Shuffle each epoch (default true for training). */
  shuffle?: boolean;
  /** Drop the last incomplete batch (default true, as InsightFace's loader). */
  dropLast?: boolean;
  /** Output [height, width]; default the dataset's shape (others are resized bilinearly). */
  size?: readonly [number, number];
  augment?: AugmentOptions | false;
  /** x -> (x / 255 - mean) / std. Default mean 0.5, std 0.5 (InsightFace: [-1, 1]). */
  normalize?: { mean: number; std: number };
  /** Batches prepared ahead of the consumer. Default 2. */
  prefetch?: number;
}

export interface Batch {
  /** [batchSize, height, width, channels], normalised. */
  x: Float32Array;
  labels: Int32Array;
  /** Dataset indices of the images. */
  indices: Int32Array;
  shape: [number, number, number, number];
  epoch: number;
  batch: number;
}

export interface DataPosition {
  epoch: number;
  batch: number;
}

export function validatePipeline(ds: Dataset, o: PipelineOptions): void {
  if (!o || typeof o !== "object") throw configError("pipeline", o, "expected an options object");
  checkInt("batchSize", o.batchSize, 1);
  if (o.seed !== undefined) checkInt("seed", o.seed, 0, 2 ** 32 - 1);
  if (o.prefetch !== undefined) checkInt("prefetch", o.prefetch, 0, 64);
  if (o.size !== undefined) {
    checkInt("size[0]", o.size[0], 1, 4096);
    checkInt("size[1]", o.size[1], 1, 4096);
  }
  if (o.augment) {
    if (o.augment.cropPad !== undefined) checkInt("augment.cropPad", o.augment.cropPad, 0, 256);
    if (o.augment.brightness !== undefined) checkNumber("augment.brightness", o.augment.brightness, 0, 1);
    if (o.augment.contrast !== undefined) checkNumber("augment.contrast", o.augment.contrast, 0, 1);
  }
  if (o.normalize) checkNumber("normalize.std", o.normalize.std, 1e-9, 1e9);
  const dropLast = o.dropLast ?? true;
  if (ds.size === 0) throw configError("dataset.size", 0, "the data set has no images");
  if (dropLast && o.batchSize > ds.size) {
    throw configError("batchSize", o.batchSize, `at most the data set size (${ds.size}) when dropLast is true`);
  }
}

/** Bilinear resize of HWC uint8 to Float32 (align-corners false, as TF's resize_bilinear). */
function resizeBilinear(s: ImageSample, h: number, w: number): Float32Array {
  const { data, width: W, height: H, channels: C } = s;
  const out = new Float32Array(h * w * C);
  const sy = H / h;
  const sx = W / w;
  for (let y = 0; y < h; y++) {
    const fy = Math.max(0, Math.min(H - 1, (y + 0.5) * sy - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(H - 1, y0 + 1);
    const wy = fy - y0;
    for (let x = 0; x < w; x++) {
      const fx = Math.max(0, Math.min(W - 1, (x + 0.5) * sx - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(W - 1, x0 + 1);
      const wx = fx - x0;
      for (let c = 0; c < C; c++) {
        const a = data[(y0 * W + x0) * C + c];
        const b = data[(y0 * W + x1) * C + c];
        const d = data[(y1 * W + x0) * C + c];
        const e = data[(y1 * W + x1) * C + c];
        out[(y * w + x) * C + c] = (1 - wy) * ((1 - wx) * a + wx * b) + wy * ((1 - wx) * d + wx * e);
      }
    }
  }
  return out;
}

/**
 * Writes one preprocessed image into `out` at `offset`: resize, augmentation drawn from `rng`
 * (none when rng is undefined), normalisation. `flip` forces a horizontal flip (evaluation's 2nd view).
 */
export function preprocess(
  s: ImageSample,
  h: number,
  w: number,
  channels: number,
  out: Float32Array,
  offset: number,
  aug: AugmentOptions | false,
  rng: Rng | undefined,
  norm: { mean: number; std: number },
  forceFlip = false,
): void {
  if (s.channels !== channels) throw new Error(`image has ${s.channels} channels, the pipeline expects ${channels}`);
  const img: ArrayLike<number> = s.height === h && s.width === w ? s.data : resizeBilinear(s, h, w);
  const a = rng && aug ? aug : {};
  const flip = forceFlip || (rng !== undefined && (a.flip ?? true) && rng.next() < 0.5);
  const pad = a.cropPad ?? 0;
  const oy = pad && rng ? rng.int(2 * pad + 1) - pad : 0;
  const ox = pad && rng ? rng.int(2 * pad + 1) - pad : 0;
  const bright = a.brightness && rng ? 1 + rng.uniform(-a.brightness, a.brightness) : 1;
  const contrast = a.contrast && rng ? 1 + rng.uniform(-a.contrast, a.contrast) : 1;
  const photometric = bright !== 1 || contrast !== 1;
  let mean = 0;
  if (contrast !== 1) {
    for (let i = 0; i < img.length; i++) mean += img[i];
    mean /= img.length;
  }
  const scale = 1 / (255 * norm.std);
  const shift = -norm.mean / norm.std;
  // source column of each output column (flip, then crop offset, clamped = edge replication)
  const xmap = new Int32Array(w);
  for (let x = 0; x < w; x++) xmap[x] = Math.max(0, Math.min(w - 1, (flip ? w - 1 - x : x) + ox)) * channels;
  let o = offset;
  for (let y = 0; y < h; y++) {
    const row = Math.max(0, Math.min(h - 1, y + oy)) * w * channels;
    for (let x = 0; x < w; x++) {
      const src = row + xmap[x];
      for (let c = 0; c < channels; c++) {
        let v = img[src + c];
        if (photometric) v = Math.max(0, Math.min(255, (v * bright - mean) * contrast + mean));
        out[o++] = v * scale + shift;
      }
    }
  }
}

/** A seeded, resumable, prefetching stream of batches over a dataset. */
export class BatchStream {
  readonly batchesPerEpoch: number;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  private position: DataPosition;
  private readonly queue: { pos: DataPosition; promise: Promise<Batch> }[] = [];
  private permCache: { epoch: number; perm: Int32Array } | undefined;

  constructor(
    readonly dataset: Dataset,
    readonly options: PipelineOptions,
    start: DataPosition = { epoch: 0, batch: 0 },
  ) {
    validatePipeline(dataset, options);
    const n = dataset.size;
    this.batchesPerEpoch =
      (options.dropLast ?? true) ? Math.floor(n / options.batchSize) : Math.ceil(n / options.batchSize);
    [this.height, this.width] = options.size ?? [dataset.shape[0], dataset.shape[1]];
    this.channels = dataset.shape[2];
    this.position = { ...start };
  }

  /** Position of the next batch `next()` returns (what a checkpoint stores). */
  get nextPosition(): DataPosition {
    return { ...this.position };
  }

  private order(epoch: number): Int32Array {
    if (this.permCache?.epoch !== epoch) {
      const n = this.dataset.size;
      const perm =
        (this.options.shuffle ?? true)
          ? permutation(n, hashInts(this.options.seed ?? 0, epoch, 0x5eed))
          : Int32Array.from({ length: n }, (_, i) => i);
      this.permCache = { epoch, perm };
    }
    return this.permCache.perm;
  }

  /** The batch at a position (pure; used by prefetching). */
  async batchAt(pos: DataPosition): Promise<Batch> {
    const { batchSize } = this.options;
    const perm = this.order(pos.epoch);
    const start = pos.batch * batchSize;
    const count = Math.min(batchSize, this.dataset.size - start);
    const indices = perm.slice(start, start + count);
    const samples = await Promise.all(Array.from(indices, (i) => this.dataset.get(i)));
    const { height: h, width: w, channels: c } = this;
    const x = new Float32Array(count * h * w * c);
    const norm = this.options.normalize ?? { mean: 0.5, std: 0.5 };
    const aug = this.options.augment ?? {};
    const labels = new Int32Array(count);
    samples.forEach((s, k) => {
      const rng = aug === false ? undefined : new Rng(hashInts(this.options.seed ?? 0, pos.epoch, start + k, 0xa06));
      preprocess(s, h, w, c, x, k * h * w * c, aug, rng, norm);
      labels[k] = s.label;
    });
    return { x, labels, indices, shape: [count, h, w, c], epoch: pos.epoch, batch: pos.batch };
  }

  private advance(p: DataPosition): DataPosition {
    return p.batch + 1 >= this.batchesPerEpoch
      ? { epoch: p.epoch + 1, batch: 0 }
      : { epoch: p.epoch, batch: p.batch + 1 };
  }

  /** The next batch; keeps `prefetch` more in flight. */
  async next(): Promise<Batch> {
    const ahead = this.options.prefetch ?? 2;
    let p = this.queue.length ? this.advance(this.queue[this.queue.length - 1].pos) : this.position;
    while (this.queue.length < ahead + 1) {
      const pos = p;
      const promise = this.batchAt(pos);
      promise.catch(() => {}); // surfaced when awaited below
      this.queue.push({ pos, promise });
      p = this.advance(p);
    }
    const head = this.queue.shift()!;
    this.position = this.advance(head.pos);
    return head.promise;
  }
}

/**
 * Evaluation batches in dataset order, without augmentation; `flip` gives the horizontally flipped
 * view (InsightFace's second embedding).
 */
export async function* evalBatches(
  ds: Dataset,
  batchSize: number,
  opts: { size?: readonly [number, number]; flip?: boolean; normalize?: { mean: number; std: number } } = {},
): AsyncGenerator<Batch> {
  checkInt("batchSize", batchSize, 1);
  const [h, w] = opts.size ?? [ds.shape[0], ds.shape[1]];
  const c = ds.shape[2];
  const norm = opts.normalize ?? { mean: 0.5, std: 0.5 };
  let next: Promise<ImageSample[]> | undefined;
  const load = (start: number) =>
    Promise.all(Array.from({ length: Math.min(batchSize, ds.size - start) }, (_, k) => ds.get(start + k)));
  for (let start = 0, b = 0; start < ds.size; start += batchSize, b++) {
    const samples = await (next ?? load(start));
    next = start + batchSize < ds.size ? load(start + batchSize) : undefined;
    const x = new Float32Array(samples.length * h * w * c);
    samples.forEach((s, k) => {
      preprocess(s, h, w, c, x, k * h * w * c, false, undefined, norm, opts.flip ?? false);
    });
    yield {
      x,
      labels: Int32Array.from(samples, (s) => s.label),
      indices: Int32Array.from(samples, (_, k) => start + k),
      shape: [samples.length, h, w, c],
      epoch: 0,
      batch: b,
    };
  }
}
