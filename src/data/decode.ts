/** Image decoding with sharp: encoded bytes (JPEG, PNG, ...) -> raw HWC uint8 at a given size. */
import sharp from "sharp";
import type { ImageSample } from "./dataset";

export interface DecodeOptions {
  /** Output [height, width]; images of another size are resized (InsightFace resizes when width != 112). */
  size?: readonly [number, number];
  /** 1 = grayscale, 3 = RGB (default 3, as InsightFace decodes RGB). */
  channels?: 1 | 3;
}

/** Why bytes did not decode, in words (sharp's own messages, e.g. "Input Buffer is empty", say less). */
export function undecodableReason(bytes: Uint8Array, e: unknown): string {
  if (bytes.length === 0) return "it is empty (0 bytes)";
  const msg = (e as Error)?.message ?? String(e);
  if (/unsupported image format/i.test(msg))
    return `its ${bytes.length} bytes are not an image in a format sharp reads (JPEG, PNG, WebP, GIF, TIFF, AVIF, SVG); they start with ${hexStart(bytes)}`;
  return `it is a damaged image (${bytes.length} bytes; the decoder says: ${msg})`;
}

function hexStart(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/**
 * Decodes one image; where it does not decode, throws an Error "<where> does not decode: <reason>"
 * (every reader names its file and record through `where`).
 */
export async function decodeImageAt(
  bytes: Uint8Array,
  where: string,
  options: DecodeOptions = {},
  label = 0,
): Promise<ImageSample> {
  try {
    return await decodeImage(bytes, options, label);
  } catch (e) {
    throw new Error(`${where} does not decode: ${undecodableReason(bytes, e)}`);
  }
}

export async function decodeImage(bytes: Uint8Array, options: DecodeOptions = {}, label = 0): Promise<ImageSample> {
  const channels = options.channels ?? 3;
  let img = sharp(bytes).removeAlpha();
  if (channels === 1) img = img.grayscale();
  else img = img.toColourspace("srgb");
  if (options.size) img = img.resize(options.size[1], options.size[0], { fit: "fill" });
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== channels) {
    // grayscale JPEGs stay 1-channel under toColourspace on some inputs: expand
    const out = new Uint8Array(info.width * info.height * channels);
    for (let p = 0; p < info.width * info.height; p++) {
      for (let c = 0; c < channels; c++)
        out[p * channels + c] = data[p * info.channels + Math.min(c, info.channels - 1)];
    }
    return { data: out, width: info.width, height: info.height, channels, label };
  }
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    width: info.width,
    height: info.height,
    channels,
    label,
  };
}

/** Encodes raw pixels (for writers and tests). */
export async function encodeImage(
  s: Pick<ImageSample, "data" | "width" | "height" | "channels">,
  format: "png" | "jpeg" = "png",
  quality = 95,
): Promise<Buffer> {
  const img = sharp(Buffer.from(s.data.buffer, s.data.byteOffset, s.data.length), {
    raw: { width: s.width, height: s.height, channels: s.channels },
  });
  return format === "png" ? img.png().toBuffer() : img.jpeg({ quality }).toBuffer();
}
