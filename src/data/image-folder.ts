/**
 * An image folder: root/<identity>/<image>, one sub-folder per identity (torchvision ImageFolder, which
 * InsightFace falls back to without train.rec). Classes are the sorted folder names.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { configError, type Dataset, type ImageSample } from "./dataset";
import { decodeImage, decodeImageAt, undecodableReason } from "./decode";

const EXTENSIONS = new Set([".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"]);

export interface ImageFolderOptions {
  root: string;
  /** Output [height, width]; default the first image's size (others are resized to it). */
  size?: readonly [number, number];
  channels?: 1 | 3;
  /**
   * Leave out images that do not decode (0-byte, truncated or corrupt files, files of another format):
   * every image is decoded once when the folder is opened, and those that fail are listed in
   * `skipped` and passed to `onSkip`. Default false: the first bad image is an error naming the file.
   */
  skipBadImages?: boolean;
  /** Called once per image left out (skipBadImages), in file order. */
  onSkip?: (bad: SkippedImage) => void;
}

export interface SkippedImage {
  file: string;
  /** The image's identity (sub-folder name). */
  className: string;
  reason: string;
}

export interface ImageFolderDataset extends Dataset {
  readonly classNames: string[];
  readonly files: string[];
  /** Images left out because they do not decode (skipBadImages); empty otherwise. */
  readonly skipped: SkippedImage[];
}

/** Decodes every file once, a few at a time; resolves with the index of each that failed and why. */
async function findUndecodable(files: string[], channels: 1 | 3): Promise<Map<number, string>> {
  const bad = new Map<number, string>();
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      const bytes = readFileSync(files[i]);
      try {
        await decodeImage(bytes, { channels });
      } catch (e) {
        bad.set(i, undecodableReason(bytes, e));
      }
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return bad;
}

export async function imageFolder(options: ImageFolderOptions): Promise<ImageFolderDataset> {
  const root = options?.root;
  if (typeof root !== "string" || !existsSync(root) || !statSync(root).isDirectory()) {
    throw configError("imageFolder.root", root, "expected an existing folder with one sub-folder per identity");
  }
  const classNames = readdirSync(root)
    .filter((d) => statSync(path.join(root, d)).isDirectory())
    .sort();
  if (classNames.length === 0) throw configError("imageFolder.root", root, "the folder has no identity sub-folders");
  if (options.skipBadImages !== undefined && typeof options.skipBadImages !== "boolean")
    throw configError("imageFolder.skipBadImages", options.skipBadImages, "expected true or false");
  let files: string[] = [];
  let labels: number[] = [];
  classNames.forEach((c, label) => {
    for (const f of readdirSync(path.join(root, c)).sort()) {
      if (EXTENSIONS.has(path.extname(f).toLowerCase())) {
        files.push(path.join(root, c, f));
        labels.push(label);
      }
    }
  });
  if (files.length === 0)
    throw configError("imageFolder.root", root, `no images (${[...EXTENSIONS].join(", ")}) in its sub-folders`);
  const channels = options.channels ?? 3;
  const skipped: SkippedImage[] = [];
  if (options.skipBadImages) {
    const bad = await findUndecodable(files, channels);
    for (const [i, reason] of [...bad].sort((a, b) => a[0] - b[0])) {
      const s = { file: files[i], className: classNames[labels[i]], reason };
      skipped.push(s);
      options.onSkip?.(s);
    }
    files = files.filter((_, i) => !bad.has(i));
    labels = labels.filter((_, i) => !bad.has(i));
    if (files.length === 0)
      throw configError(
        "imageFolder.root",
        root,
        `none of its ${bad.size} images decodes (first: ${skipped[0].file}: ${skipped[0].reason})`,
      );
  }
  const decodeAt = (i: number, size?: readonly [number, number]) =>
    decodeImageAt(readFileSync(files[i]), files[i], { size, channels }, labels[i]);
  const first = options.size ? undefined : await decodeAt(0);
  const size: readonly [number, number] = options.size ?? [first!.height, first!.width];
  const labelArr = Int32Array.from(labels);
  return {
    name: `folder:${root}`,
    size: files.length,
    numClasses: classNames.length,
    labels: labelArr,
    shape: [size[0], size[1], channels],
    classNames,
    files,
    skipped,
    async get(i: number): Promise<ImageSample> {
      if (!(i >= 0 && i < files.length)) throw new RangeError(`image index ${i} is out of range [0, ${files.length})`);
      return decodeAt(i, size);
    },
  };
}
