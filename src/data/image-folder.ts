/**
 * An image folder: root/<identity>/<image>, one sub-folder per identity (torchvision ImageFolder, which
 * InsightFace falls back to without train.rec). Classes are the sorted folder names.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { configError, type Dataset, type ImageSample } from "./dataset";
import { decodeImage } from "./decode";

const EXTENSIONS = new Set([".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"]);

export interface ImageFolderOptions {
  root: string;
  /** Output [height, width]; default the first image's size (others are resized to it). */
  size?: readonly [number, number];
  channels?: 1 | 3;
}

export interface ImageFolderDataset extends Dataset {
  readonly classNames: string[];
  readonly files: string[];
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
  const files: string[] = [];
  const labels: number[] = [];
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
  const first = await decodeImage(readFileSync(files[0]), { channels, size: options.size });
  const size = options.size ?? ([first.height, first.width] as const);
  const labelArr = Int32Array.from(labels);
  return {
    name: `folder:${root}`,
    size: files.length,
    numClasses: classNames.length,
    labels: labelArr,
    shape: [size[0], size[1], channels],
    classNames,
    files,
    async get(i: number): Promise<ImageSample> {
      if (!(i >= 0 && i < files.length)) throw new RangeError(`image index ${i} is out of range [0, ${files.length})`);
      try {
        return await decodeImage(readFileSync(files[i]), { size, channels }, labelArr[i]);
      } catch (e) {
        throw new Error(`${files[i]}: does not decode (${(e as Error).message})`);
      }
    },
  };
}
