/**
 * The shape every data source has: indexed, labelled images decoded to raw HWC uint8 pixels.
 * Sources (synthetic identities, MNIST, image folders, RecordIO) implement it; the batch pipeline
 * (pipeline.ts) consumes it.
 */
import { ConfigError, isIntIn, isNumberIn } from "../validate";

export interface ImageSample {
  /** Raw pixels, height x width x channels, row-major, uint8. */
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
  label: number;
}

export interface Dataset {
  readonly name: string;
  /** Number of images. */
  readonly size: number;
  /** Labels are 0..numClasses-1. */
  readonly numClasses: number;
  /** Label of each image (what training sees; may include injected label noise). */
  readonly labels: Int32Array;
  /** Height, width, channels every `get` returns. */
  readonly shape: readonly [number, number, 1 | 3];
  get(index: number): Promise<ImageSample>;
  /** Ground-truth quality per image in [0, 1] (1 = clean) when the source knows it (synthetic data). */
  readonly quality?: Float32Array;
}

/** Error for a bad option: names the field, the value and what is allowed (DESIGN.md). */
/** A configuration error in the project's one format (src/validate.ts), without an owner: the field path says where. */
export function configError(field: string, value: unknown, allowed: string): Error {
  return new ConfigError("", field, value, allowed);
}

export function checkInt(field: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (isIntIn(value, min, max)) return value;
  throw configError(field, value, `expected an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? "inf" : max}]`);
}

export function checkNumber(field: string, value: unknown, min: number, max: number): number {
  if (isNumberIn(value, min, max)) return value;
  throw configError(field, value, `expected a number in [${min}, ${max}]`);
}

/** A view of some images of a dataset (e.g. the identities held out for verification). */
export function subset(ds: Dataset, indices: ArrayLike<number>, relabel = false): Dataset {
  const idx = Int32Array.from(indices as ArrayLike<number>);
  let labels = Int32Array.from(idx, (i) => ds.labels[i]);
  // without relabelling, labels keep their values: classes are 0..max label
  let numClasses = labels.reduce((m, l) => Math.max(m, l + 1), 0);
  if (relabel) {
    const map = new Map<number, number>();
    labels = labels.map((l) => {
      if (!map.has(l)) map.set(l, map.size);
      return map.get(l)!;
    });
    numClasses = map.size;
  }
  const quality = ds.quality ? Float32Array.from(idx, (i) => ds.quality![i]) : undefined;
  return {
    name: `${ds.name}[subset]`,
    size: idx.length,
    numClasses,
    labels,
    shape: ds.shape,
    quality,
    async get(i: number) {
      const s = await ds.get(idx[i]);
      return { ...s, label: labels[i] };
    },
  };
}

/** Indices of images whose label is in `classes`. */
export function indicesOfClasses(ds: Dataset, classes: (c: number) => boolean): number[] {
  const out: number[] = [];
  for (let i = 0; i < ds.size; i++) if (classes(ds.labels[i])) out.push(i);
  return out;
}
