/**
 * InsightFace / MXNet RecordIO reader (.rec + .idx), without MXNet. Format (dmlc-core recordio.h,
 * mxnet/recordio.py, shared/research/losses.md 1.5):
 * - .idx: text lines "<key>\t<byte offset>".
 * - .rec: records of uint32 magic 0xced7230a, uint32 lrec (cflag = lrec >>> 29, length = lrec & (2^29-1)),
 *   payload, zero padding to 4 bytes. cflag 1/2/3 = start/middle/end of a record split where its payload
 *   held the magic word; the parts are joined with the magic re-inserted between them.
 * - payload: IRHeader (uint32 flag, float32 label, uint64 id, uint64 id2), then `flag` float32 labels
 *   when flag > 0, then the encoded image.
 * - InsightFace's own sets: record 0 has flag > 0 and label = (first identity key, end key); images are
 *   keys 1..label[0]-1. Plain im2rec output: every key is an image.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import path from "node:path";
import { configError, type Dataset, type ImageSample } from "./dataset";
import { decodeImage, undecodableReason } from "./decode";

export const RECORDIO_MAGIC = 0xced7230a;

export class RecordIOError extends Error {
  override name = "RecordIOError";
  constructor(
    /** What is wrong, without the file and offset. */
    readonly detail: string,
    readonly file: string,
    readonly offset: number,
  ) {
    super(`${file}: ${detail} at byte offset ${offset}`);
  }
}

/** The error of reading record `key` with the key (and image index) named; other errors pass unchanged. */
function naming(e: unknown, key: number, index?: number): unknown {
  if (!(e instanceof RecordIOError)) return e;
  const which = index === undefined ? `record key ${key}` : `record key ${key} (image index ${index})`;
  return new RecordIOError(`${which}: ${e.detail}`, e.file, e.offset);
}

export interface IRHeader {
  flag: number;
  label: number;
  labels: Float32Array;
  id: number;
  id2: number;
}

export interface UnpackedRecord {
  header: IRHeader;
  /** The encoded image (may be empty: InsightFace's identity records). */
  image: Uint8Array;
}

/** Parses an .idx file into key -> byte offset (in file order). */
export function readIndex(idxPath: string): Map<number, number> {
  const out = new Map<number, number>();
  const lines = readFileSync(idxPath, "utf8").split("\n");
  lines.forEach((l, n) => {
    if (l.trim() === "") return;
    const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(l);
    if (!m) throw new Error(`${idxPath}: line ${n + 1} is not "<key>\\t<offset>": ${JSON.stringify(l.slice(0, 60))}`);
    out.set(Number(m[1]), Number(m[2]));
  });
  return out;
}

/** Reads the raw (joined) payload of the record starting at `offset`. */
export function readRecordAt(fd: number, file: string, fileSize: number, offset: number): Uint8Array {
  const parts: Uint8Array[] = [];
  let pos = offset;
  const head = new Uint8Array(8);
  const dv = new DataView(head.buffer);
  for (;;) {
    if (pos + 8 > fileSize) throw new RecordIOError(`truncated record header (file ends at ${fileSize})`, file, pos);
    readSync(fd, head, 0, 8, pos);
    const magic = dv.getUint32(0, true);
    if (magic !== RECORDIO_MAGIC) {
      throw new RecordIOError(
        `bad magic 0x${magic.toString(16).padStart(8, "0")} (expected 0x${RECORDIO_MAGIC.toString(16)})`,
        file,
        pos,
      );
    }
    const lrec = dv.getUint32(4, true);
    const cflag = lrec >>> 29;
    const length = lrec & ((1 << 29) - 1);
    if (pos + 8 + length > fileSize) {
      throw new RecordIOError(`truncated record (payload of ${length} bytes, file ends at ${fileSize})`, file, pos);
    }
    if (parts.length === 0 && (cflag === 2 || cflag === 3)) {
      throw new RecordIOError(`record continuation (cflag ${cflag}) without a start`, file, pos);
    }
    const payload = new Uint8Array(length);
    readSync(fd, payload, 0, length, pos + 8);
    if (parts.length > 0) parts.push(Uint8Array.of(0x0a, 0x23, 0xd7, 0xce)); // the magic, little-endian
    parts.push(payload);
    pos += 8 + length + ((4 - (length % 4)) % 4);
    if (cflag === 0 || cflag === 3) break;
  }
  if (parts.length === 1) return parts[0];
  const total = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Reads only the IRHeader of the record at `offset` (the scan at open must not read every image).
 * Checks the magic and that the first part of the record lies inside the file.
 */
export function readHeaderAt(fd: number, file: string, fileSize: number, offset: number): IRHeader {
  if (offset + 8 > fileSize)
    throw new RecordIOError(`truncated record header (file ends at ${fileSize})`, file, offset);
  const head = new Uint8Array(8);
  readSync(fd, head, 0, 8, offset);
  const dv = new DataView(head.buffer);
  const magic = dv.getUint32(0, true);
  if (magic !== RECORDIO_MAGIC) {
    throw new RecordIOError(
      `bad magic 0x${magic.toString(16).padStart(8, "0")} (expected 0x${RECORDIO_MAGIC.toString(16)})`,
      file,
      offset,
    );
  }
  const lrec = dv.getUint32(4, true);
  const cflag = lrec >>> 29;
  const length = lrec & ((1 << 29) - 1);
  if (offset + 8 + length > fileSize) {
    throw new RecordIOError(`truncated record (payload of ${length} bytes, file ends at ${fileSize})`, file, offset);
  }
  if (cflag === 2 || cflag === 3)
    throw new RecordIOError(`record continuation (cflag ${cflag}) without a start`, file, offset);
  if (cflag === 1) return unpackRecord(readRecordAt(fd, file, fileSize, offset), file, offset).header; // rare: split record
  const n = Math.min(length, 24 + 4 * 16);
  const payload = new Uint8Array(n);
  readSync(fd, payload, 0, n, offset + 8);
  const flag = n >= 4 ? new DataView(payload.buffer).getUint32(0, true) : 0;
  if (flag > 16 && 24 + 4 * flag <= length) {
    const full = new Uint8Array(24 + 4 * flag);
    readSync(fd, full, 0, full.length, offset + 8);
    return unpackRecord(full, file, offset).header;
  }
  return unpackRecord(payload, file, offset).header;
}

/** mxnet.recordio.unpack. */
export function unpackRecord(payload: Uint8Array, file = "<record>", offset = 0): UnpackedRecord {
  if (payload.length < 24)
    throw new RecordIOError(
      `record payload of ${payload.length} bytes is shorter than the 24-byte header`,
      file,
      offset,
    );
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const flag = dv.getUint32(0, true);
  const label = dv.getFloat32(4, true);
  const id = Number(dv.getBigUint64(8, true));
  const id2 = Number(dv.getBigUint64(16, true));
  let labels = new Float32Array(0);
  let start = 24;
  if (flag > 0) {
    if (24 + 4 * flag > payload.length)
      throw new RecordIOError(
        `record header announces ${flag} labels but the payload is ${payload.length} bytes`,
        file,
        offset,
      );
    labels = new Float32Array(flag);
    for (let k = 0; k < flag; k++) labels[k] = dv.getFloat32(24 + 4 * k, true);
    start += 4 * flag;
  }
  return { header: { flag, label, labels, id, id2 }, image: payload.subarray(start) };
}

/** Random access to a .rec through its .idx (records are read with positioned reads, no memory map). */
export class IndexedRecordIO {
  readonly keys: number[];
  private readonly fd: number;
  private readonly fileSize: number;

  constructor(
    readonly recPath: string,
    readonly idxPath: string,
  ) {
    if (!existsSync(recPath)) throw configError("recordio.rec", recPath, "the file does not exist");
    if (!existsSync(idxPath)) throw configError("recordio.idx", idxPath, "the file does not exist");
    this.index = readIndex(idxPath);
    this.keys = [...this.index.keys()];
    this.fd = openSync(recPath, "r");
    this.fileSize = fstatSync(this.fd).size;
  }

  private readonly index: Map<number, number>;

  offsetOf(key: number): number {
    const off = this.index.get(key);
    if (off === undefined) throw new Error(`${this.idxPath}: no record with key ${key}`);
    return off;
  }

  read(key: number): UnpackedRecord {
    const off = this.offsetOf(key);
    return unpackRecord(readRecordAt(this.fd, this.recPath, this.fileSize, off), this.recPath, off);
  }

  /** The header alone (no image bytes read). */
  readHeader(key: number): IRHeader {
    return readHeaderAt(this.fd, this.recPath, this.fileSize, this.offsetOf(key));
  }

  close(): void {
    closeSync(this.fd);
  }
}

export interface RecordIOOptions {
  /** Folder holding train.rec/train.idx, or the path of the .rec (its .idx beside it). */
  path: string;
  /** Output [height, width] (images of another size are resized). Default: as stored. */
  size?: readonly [number, number];
  channels?: 1 | 3;
  /** "throw" (default): a corrupt record is an error naming file and offset. "skip": it is left out and counted. */
  onCorrupt?: "throw" | "skip";
}

export interface RecordIODataset extends Dataset {
  /** Corrupt records left out (onCorrupt: "skip"), with the reason. */
  readonly skipped: { key: number; offset: number; reason: string }[];
  close(): void;
}

/**
 * Opens an InsightFace RecordIO set as MXFaceDataset does. Record headers are scanned once (labels, and
 * bad magic or truncation found up front); image bytes are read and decoded on `get`.
 */
export async function recordIODataset(options: RecordIOOptions): Promise<RecordIODataset> {
  if (!options || typeof options.path !== "string")
    throw configError("recordio.path", options?.path, "expected a folder with train.rec/train.idx or a .rec file");
  if (options.onCorrupt !== undefined && options.onCorrupt !== "throw" && options.onCorrupt !== "skip") {
    throw configError("recordio.onCorrupt", options.onCorrupt, 'allowed are "throw" and "skip"');
  }
  let rec = options.path;
  if (existsSync(rec) && !rec.endsWith(".rec")) rec = path.join(rec, "train.rec");
  if (!existsSync(rec)) throw configError("recordio.path", options.path, "no such .rec file or folder with train.rec");
  const idx = rec.replace(/\.rec$/, ".idx");
  const io = new IndexedRecordIO(rec, idx);
  const skip = options.onCorrupt === "skip";
  const skipped: { key: number; offset: number; reason: string }[] = [];
  let imgKeys = io.keys;
  try {
    const first = io.readHeader(io.keys[0] ?? 0);
    if (first.flag > 0) {
      const end = Math.trunc(first.labels[0]);
      imgKeys = [];
      for (let k = 1; k < end; k++) imgKeys.push(k);
    }
  } catch (e) {
    if (!skip) throw naming(e, io.keys[0] ?? 0);
    skipped.push({ key: io.keys[0], offset: io.offsetOf(io.keys[0]), reason: (e as Error).message });
    imgKeys = io.keys.slice(1);
  }
  const keys: number[] = [];
  const labels: number[] = [];
  for (const key of imgKeys) {
    try {
      const h = io.readHeader(key);
      keys.push(key);
      labels.push(Math.trunc(h.flag > 0 ? h.labels[0] : h.label));
    } catch (e) {
      if (!skip) throw naming(e, key);
      skipped.push({ key, offset: io.offsetOf(key), reason: (e as Error).message });
    }
  }
  const labelArr = Int32Array.from(labels);
  const numClasses = labelArr.reduce((m, l) => Math.max(m, l + 1), 0);
  /** Reads and decodes image i; every failure names the .rec, the record key, the image index and the byte offset. */
  const decodeRecord = async (i: number, size?: readonly [number, number]): Promise<ImageSample> => {
    const key = keys[i];
    let image: Uint8Array;
    try {
      image = io.read(key).image;
    } catch (e) {
      throw naming(e, key, i);
    }
    try {
      return await decodeImage(image, { size, channels: options.channels }, labelArr[i]);
    } catch (e) {
      throw new RecordIOError(
        `the image of record key ${key} (image index ${i}) does not decode: ${undecodableReason(image, e)}`,
        rec,
        io.offsetOf(key),
      );
    }
  };
  const firstImg = keys.length ? await decodeRecord(0, options.size) : undefined;
  const shape = [firstImg?.height ?? 0, firstImg?.width ?? 0, options.channels ?? 3] as const;
  const fixedSize = options.size ?? ([shape[0], shape[1]] as const);
  return {
    name: `recordio:${rec}`,
    size: keys.length,
    numClasses,
    labels: labelArr,
    shape,
    skipped,
    async get(i: number): Promise<ImageSample> {
      if (!(i >= 0 && i < keys.length)) throw new RangeError(`record index ${i} is out of range [0, ${keys.length})`);
      return decodeRecord(i, fixedSize);
    },
    close: () => io.close(),
  };
}
