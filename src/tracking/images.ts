/**
 * Step-indexed images in the layout MLflow's client writes (mlflow.tracking.client.log_image with a
 * key): `images/<key>+step+<N>+timestamp+<T>+<uuid>.png` plus a `+compressed.webp` thumbnail whose
 * long side is 256 px. The UI's image grid and cross-run image comparison read only this layout
 * (and the run's `mlflow.loggedImages` tag).
 */
import { randomUUID } from "node:crypto";
import sharp from "sharp";

export const LOGGED_IMAGES_TAG = "mlflow.loggedImages";
/** mlflow.tracking.multimedia.COMPRESSED_IMAGE_SIZE */
const THUMBNAIL_SIZE = 256;

/** Encoded image bytes (PNG, JPEG, WebP, ...), or raw pixels, row-major, channels last. */
export type ImageSource =
  | Uint8Array
  | {
      /** Integers 0..255 (Uint8Array, number[]), or a Float32Array/Float64Array in [0, 1] (scaled by 255, as MLflow does). */
      data: Uint8Array | Uint8ClampedArray | Float32Array | Float64Array | number[];
      width: number;
      height: number;
      channels: 1 | 2 | 3 | 4;
    };

export interface ImageFiles {
  png: { path: string; bytes: Buffer };
  webp: { path: string; bytes: Buffer };
}

/** The key's rule in MLflow's log_image. */
export function validateImageKey(key: string): string {
  if (typeof key !== "string" || !/^[a-zA-Z0-9_\-./ ]+$/.test(key)) {
    throw new Error(
      `logImage: key "${key}" may only contain letters, digits, "_", "-", ".", " " and "/" (MLflow's rule for image keys)`,
    );
  }
  return key;
}

/** Artifact paths for one logged image (MLflow replaces "/" in the key by "~"). */
export function imagePaths(key: string, step: number, timestamp: number, uuid: string = randomUUID()) {
  const base = `images/${validateImageKey(key).replace(/\//g, "~")}+step+${step}+timestamp+${timestamp}+${uuid}`;
  return { png: `${base}.png`, webp: `${base}+compressed.webp` };
}

function pixels(image: Exclude<ImageSource, Uint8Array>): sharp.Sharp {
  const { width, height, channels } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new Error(`logImage: width and height must be positive integers (got ${width} x ${height})`);
  if (![1, 2, 3, 4].includes(channels)) throw new Error(`logImage: channels must be 1, 2, 3 or 4 (got ${channels})`);
  const expected = width * height * channels;
  if (image.data.length !== expected)
    throw new Error(
      `logImage: ${image.data.length} pixel values for a ${width} x ${height} x ${channels} image (expected ${expected})`,
    );
  let bytes: Uint8Array;
  const data = image.data;
  if (data instanceof Float32Array || data instanceof Float64Array) {
    // As MLflow: floats are in [0, 1]; outside it they are min-max rescaled into it.
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) throw new Error(`logImage: pixel value ${i} is ${data[i]}; values must be finite`);
      min = Math.min(min, data[i]);
      max = Math.max(max, data[i]);
    }
    const rescale = min < 0 || max > 1;
    const span = max - min || 1;
    bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) bytes[i] = Math.floor((rescale ? (data[i] - min) / span : data[i]) * 255);
  } else {
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (!Number.isInteger(v) || v < 0 || v > 255)
        throw new Error(
          `logImage: pixel value ${i} is ${v}; integer pixels must be in [0, 255] (floats: a Float32Array in [0, 1])`,
        );
    }
    bytes = Uint8Array.from(data);
  }
  return sharp(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { raw: { width, height, channels } });
}

/** The PNG and its WebP thumbnail (long side 256 px, aspect kept, as MLflow's compress_image_size). */
export async function encodeImage(key: string, image: ImageSource, step: number, timestamp = Date.now()) {
  const paths = imagePaths(key, step, timestamp);
  const source = image instanceof Uint8Array ? sharp(image) : pixels(image);
  const png = await source.clone().png().toBuffer({ resolveWithObject: true });
  const { width, height } = png.info;
  const thumb =
    width > height
      ? { width: THUMBNAIL_SIZE, height: Math.max(1, Math.floor((height * THUMBNAIL_SIZE) / width)) }
      : { width: Math.max(1, Math.floor((width * THUMBNAIL_SIZE) / height)), height: THUMBNAIL_SIZE };
  const webp = await sharp(png.data).resize(thumb.width, thumb.height, { fit: "fill" }).webp().toBuffer();
  const files: ImageFiles = { png: { path: paths.png, bytes: png.data }, webp: { path: paths.webp, bytes: webp } };
  return files;
}
