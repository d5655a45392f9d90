/**
 * InsightFace verification sets (lfw.bin, cfp_fp.bin, agedb_30.bin): a pickle of (bins, issame_list),
 * read without Python (pickle.ts). bins holds 2N encoded images (bytes, py2 str or uint8 numpy arrays);
 * pair k is images 2k and 2k+1; issame_list has N bools.
 */
import { existsSync, readFileSync } from "node:fs";
import { configError, type Dataset, type ImageSample } from "./dataset";
import { decodeImageAt } from "./decode";
import { asBytes, unpickle } from "./pickle";

export interface VerificationSet {
  name: string;
  /** issame[k]: whether images 2k and 2k+1 show the same identity. */
  issame: boolean[];
  /** The 2N images in pair order (labels are the pair index). */
  images: Dataset;
}

export interface VerificationBinOptions {
  /** Output [height, width]; default as stored. */
  size?: readonly [number, number];
  channels?: 1 | 3;
}

export function parseVerificationPickle(buf: Uint8Array, file: string): { bins: Uint8Array[]; issame: boolean[] } {
  const root = unpickle(buf, file);
  if (!Array.isArray(root) || root.length !== 2)
    throw new Error(`${file}: expected a pickled (bins, issame_list) pair, got ${describe(root)}`);
  const [binsRaw, issameRaw] = root as [unknown, unknown];
  if (!Array.isArray(binsRaw))
    throw new Error(`${file}: bins is ${describe(binsRaw)}, expected a list of encoded images`);
  if (!Array.isArray(issameRaw) && !(issameRaw && typeof issameRaw === "object"))
    throw new Error(`${file}: issame_list is ${describe(issameRaw)}`);
  const bins = binsRaw.map((b, k) => {
    const bytes = asBytes(b);
    if (!bytes) throw new Error(`${file}: image ${k} is ${describe(b)}, expected bytes or a uint8 numpy array`);
    return bytes;
  });
  let issame: boolean[];
  const numpyBools = asBytes(issameRaw);
  if (numpyBools) issame = [...numpyBools].map((v) => v !== 0);
  else issame = (issameRaw as unknown[]).map((v) => v === true || v === 1);
  if (bins.length !== 2 * issame.length) {
    throw new Error(`${file}: ${bins.length} images for ${issame.length} pairs (expected ${2 * issame.length})`);
  }
  return { bins, issame };
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return `a sequence of ${v.length}`;
  if (v === null) return "None";
  return typeof v;
}

export async function loadVerificationBin(
  file: string,
  options: VerificationBinOptions = {},
): Promise<VerificationSet> {
  if (typeof file !== "string" || !existsSync(file))
    throw configError("verification.path", file, "the .bin file does not exist");
  const { bins, issame } = parseVerificationPickle(readFileSync(file), file);
  const decodeAt = (i: number, o: VerificationBinOptions) =>
    decodeImageAt(bins[i], `${file}: image ${i} (pair ${i >> 1})`, o, i >> 1);
  const first = bins.length ? await decodeAt(0, options) : undefined;
  const size = options.size ?? ([first?.height ?? 0, first?.width ?? 0] as const);
  const channels = options.channels ?? 3;
  const labels = Int32Array.from(bins, (_, k) => k >> 1);
  return {
    name: file,
    issame,
    images: {
      name: `verification:${file}`,
      size: bins.length,
      numClasses: issame.length,
      labels,
      shape: [size[0], size[1], channels],
      async get(i: number): Promise<ImageSample> {
        if (!(i >= 0 && i < bins.length)) throw new RangeError(`image index ${i} is out of range [0, ${bins.length})`);
        return decodeAt(i, { size, channels });
      },
    },
  };
}
