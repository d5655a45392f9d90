/**
 * Image degradations with a known level in [0, 1] (0 = clean): the one implementation that the synthetic
 * renderer (./synthetic.ts) applies to its renders and `degradedDataset` applies to any data set's images
 * (the quality-split ablation degrades the user's own images this way). Occlusion is drawn into the
 * synthetic faces' SVG, so it exists only there.
 */
import sharp from "sharp";
import type { Dataset, ImageSample } from "./dataset";
import { hashInts, Rng } from "./rng";

export const DEGRADATIONS = ["none", "blur", "downsample", "jpeg", "noise", "occlusion"] as const;
export type Degradation = (typeof DEGRADATIONS)[number];

/** The degradations `degradeRaw` applies to raw pixels (occlusion is the synthetic renderer's). */
export const RAW_DEGRADATIONS = ["blur", "downsample", "jpeg", "noise"] as const;
export type RawDegradation = (typeof RAW_DEGRADATIONS)[number];

/**
 * `raw` (height x width x channels, uint8) with `degradation` at `level` applied, a new array (or `raw`
 * itself for "none" and "occlusion"): Gaussian blur of sigma 0.3 + 2.2 level; down-sampling to
 * (1 - 0.8 level) of each side and back (bilinear); JPEG at quality 90 - 88 level; additive Gaussian noise of
 * sd 70 level from `noiseSeed`.
 */
export async function degradeRaw(
  raw: Uint8Array,
  width: number,
  height: number,
  channels: 1 | 3,
  degradation: Degradation,
  level: number,
  noiseSeed: number,
): Promise<Uint8Array> {
  if (raw.length !== width * height * channels)
    throw new Error(`degradeRaw: ${raw.length} bytes are not ${height}x${width}x${channels} pixels.`);
  const rawInfo = { raw: { width, height, channels } } as const;
  // sharp turns 1-channel raw input into sRGB on output unless told to stay grayscale
  const out = async (img: sharp.Sharp) => {
    const b = await (channels === 1 ? img.grayscale() : img).raw().toBuffer();
    return new Uint8Array(b.buffer, b.byteOffset, b.length);
  };
  const lv = level;
  let result = raw;
  if (degradation === "blur") {
    result = await out(sharp(raw, rawInfo).blur(0.3 + 2.2 * lv));
  } else if (degradation === "downsample") {
    const w = Math.max(4, Math.round(width * (1 - 0.8 * lv)));
    const h = Math.max(4, Math.round(height * (1 - 0.8 * lv)));
    const down = await out(sharp(raw, rawInfo).resize(w, h, { kernel: "linear", fit: "fill" }));
    result = await out(
      sharp(down, { raw: { width: w, height: h, channels } }).resize(width, height, { kernel: "linear", fit: "fill" }),
    );
  } else if (degradation === "jpeg") {
    const jpg = await sharp(raw, rawInfo)
      .jpeg({ quality: Math.max(1, Math.round(90 - 88 * lv)) })
      .toBuffer();
    result = await out(sharp(jpg));
  } else if (degradation === "noise") {
    const r = new Rng(noiseSeed);
    const sd = 70 * lv;
    result = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) result[i] = Math.max(0, Math.min(255, Math.round(raw[i] + sd * r.normal())));
  }
  if (result.length !== width * height * channels)
    throw new Error(
      `degradeRaw produced ${result.length} bytes, expected ${width * height * channels} (${degradation})`,
    );
  return result;
}

export interface DegradedOptions {
  /** Fraction of the images degraded, in [0, 1]. */
  fraction: number;
  /** The types the degraded images draw from, uniformly. */
  types: readonly RawDegradation[];
  /** Seeds which images are degraded, their type and level (uniform in [0.1, 1]): per image index. */
  seed: number;
}

/** A data set whose images carry a known degradation each: the ground truth quality-split groups by. */
export interface DegradedDataset extends Dataset {
  readonly degradation: readonly Degradation[];
  readonly level: Float32Array;
  /** 1 - level (1 = clean), as the synthetic renders'. */
  readonly quality: Float32Array;
}

/**
 * `ds` with a seeded `fraction` of its images degraded (the draw depends on the image index and `seed`
 * alone, so two data sets of the same size get the same assignment), applied when an image is read.
 */
export function degradedDataset(ds: Dataset, o: DegradedOptions): DegradedDataset {
  if (!(o.fraction >= 0 && o.fraction <= 1))
    throw new Error(`degradedDataset: fraction = ${o.fraction} is not valid: allowed is a number in [0, 1].`);
  if (o.fraction > 0 && o.types.length === 0)
    throw new Error(`degradedDataset: no degradation types given (allowed: ${RAW_DEGRADATIONS.join(", ")}).`);
  for (const t of o.types)
    if (!(RAW_DEGRADATIONS as readonly string[]).includes(t))
      throw new Error(`degradedDataset: type "${t}" is not valid: allowed are ${RAW_DEGRADATIONS.join(", ")}.`);
  const degradation: Degradation[] = [];
  const level = new Float32Array(ds.size);
  for (let i = 0; i < ds.size; i++) {
    const r = new Rng(hashInts(o.seed, i, 0x2d));
    const degraded = r.next() < o.fraction;
    degradation.push(degraded ? r.pick(o.types) : "none");
    level[i] = degraded ? r.uniform(0.1, 1) : 0;
  }
  return {
    name: `${ds.name}-degraded`,
    size: ds.size,
    numClasses: ds.numClasses,
    labels: ds.labels,
    shape: ds.shape,
    degradation,
    level,
    quality: Float32Array.from(level, (v) => 1 - v),
    async get(i: number): Promise<ImageSample> {
      const img = await ds.get(i);
      if (degradation[i] === "none") return img;
      const data = await degradeRaw(
        img.data,
        img.width,
        img.height,
        img.channels,
        degradation[i],
        level[i],
        hashInts(o.seed, i, 0x4e),
      );
      return { ...img, data };
    },
  };
}
