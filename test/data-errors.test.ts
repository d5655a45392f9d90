/**
 * Data that does not decode, as users meet it: a 0-byte or truncated JPEG in an image folder, a file
 * that is not an image, a .rec record whose payload is not an image, a verification .bin with a bad
 * image. Every error names the file and the record (key, index, byte offset); skipBadImages leaves
 * undecodable images of a folder out and reports each one. Files are written here (RecordIO and .bin by
 * the independent Python writers of scripts/fixtures).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { decodeImage } from "../src/data/decode";
import { imageFolder, type SkippedImage } from "../src/data/image-folder";
import { recordIODataset } from "../src/data/recordio";
import { loadVerificationBin } from "../src/data/verification-bin";

const root = path.join(__dirname, "..");
const python = path.join(root, ".venv/bin/python");
const tmp = mkdtempSync(path.join(os.tmpdir(), "marginlab-data-errors-"));
const py = (script: string, args: string[]) =>
  execFileSync(python, [path.join(root, "scripts/fixtures", script), ...args], { stdio: "pipe" });

let jpeg: Buffer;
test.before(async () => {
  const raw = Buffer.alloc(16 * 16 * 3, 0).map((_, i) => (i * 37) % 251);
  jpeg = await sharp(raw, { raw: { width: 16, height: 16, channels: 3 } })
    .jpeg()
    .toBuffer();
});
test.after(() => rmSync(tmp, { recursive: true, force: true }));

/** root/<class>/<name> with the given bytes. */
function folder(name: string, files: Record<string, Buffer | string>): string {
  const dir = path.join(tmp, name);
  for (const [rel, bytes] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), bytes);
  }
  return dir;
}

const rejects = async (p: Promise<unknown>): Promise<Error> =>
  p.then(
    () => assert.unreachable("should throw") as never,
    (e: Error) => e,
  );

test("image folder: a 0-byte JPEG as the first file is an error naming the file", async () => {
  const dir = folder("empty-first", { "a/0.jpg": Buffer.alloc(0), "a/1.jpg": jpeg, "b/0.jpg": jpeg });
  const e = await rejects(imageFolder({ root: dir }));
  assert.match(e.message, path.join(dir, "a", "0.jpg"));
  assert.match(e.message, "does not decode: it is empty (0 bytes)");
});

test("image folder: a truncated JPEG and a text file named .jpg are errors naming the file when read", async () => {
  const dir = folder("bad-later", {
    "a/0.jpg": jpeg,
    "a/1.jpg": jpeg.subarray(0, 40),
    "b/0.jpg": "hello, not an image",
    "b/1.jpg": jpeg,
  });
  const ds = await imageFolder({ root: dir });
  assert.is(ds.size, 4);
  const truncated = await rejects(ds.get(1));
  assert.match(truncated.message, `${path.join(dir, "a", "1.jpg")} does not decode: it is a damaged image (40 bytes`);
  const text = await rejects(ds.get(2));
  assert.match(text.message, `${path.join(dir, "b", "0.jpg")} does not decode: its 19 bytes are not an image`);
  assert.match(text.message, "start with 68 65 6c 6c 6f");
  assert.is((await ds.get(3)).label, 1);
});

test("image folder, skipBadImages: undecodable images are left out, listed and reported in file order", async () => {
  const dir = folder("skip", {
    "a/0.jpg": Buffer.alloc(0),
    "a/1.jpg": jpeg,
    "a/2.jpg": jpeg.subarray(0, 40),
    "b/0.png": "not a png",
    "b/1.jpg": jpeg,
    "c/0.jpg": jpeg,
  });
  const reported: SkippedImage[] = [];
  const ds = await imageFolder({ root: dir, skipBadImages: true, onSkip: (s) => reported.push(s) });
  assert.is(ds.size, 3);
  assert.equal(ds.files, [path.join(dir, "a/1.jpg"), path.join(dir, "b/1.jpg"), path.join(dir, "c/0.jpg")]);
  assert.equal([...ds.labels], [0, 1, 2], "labels follow their files");
  assert.is(ds.numClasses, 3);
  assert.equal(
    ds.skipped.map((s) => [path.relative(dir, s.file), s.className]),
    [
      ["a/0.jpg", "a"],
      ["a/2.jpg", "a"],
      ["b/0.png", "b"],
    ],
  );
  assert.match(ds.skipped[0].reason, "empty (0 bytes)");
  assert.match(ds.skipped[1].reason, "damaged image");
  assert.match(ds.skipped[2].reason, "not an image");
  assert.equal(reported, ds.skipped, "onSkip saw each skipped image once");
  const want = await decodeImage(jpeg);
  for (let i = 0; i < ds.size; i++) assert.equal(Buffer.from((await ds.get(i)).data), Buffer.from(want.data));
  assert.equal(ds.shape, [16, 16, 3]);
  // without the policy the same folder fails at its first file
  assert.match((await rejects(imageFolder({ root: dir }))).message, "a/0.jpg does not decode");
});

test("image folder, skipBadImages: a folder with no decodable image, and a non-boolean policy, are errors", async () => {
  const dir = folder("all-bad", { "a/0.jpg": Buffer.alloc(0), "b/0.jpg": "x" });
  const e = await rejects(imageFolder({ root: dir, skipBadImages: true }));
  assert.match(e.message, "imageFolder.root");
  assert.match(e.message, "none of its 2 images decodes");
  const p = await rejects(imageFolder({ root: dir, skipBadImages: "yes" as unknown as boolean }));
  assert.match(p.message, 'imageFolder.skipBadImages = "yes" is not valid: expected true or false');
});

test("RecordIO: a record that is not an image names the file, the key, the image index and the byte offset", async () => {
  const good = path.join(tmp, "good.jpg");
  const text = path.join(tmp, "notes.txt");
  writeFileSync(good, jpeg);
  writeFileSync(text, "a caption, not an image");
  const offsets = (prefix: string) =>
    readFileSync(`${prefix}.idx`, "utf8")
      .trim()
      .split("\n")
      .map((l) => l.split("\t").map(Number));
  // plain layout: key k = image k; the text is record 2
  const prefix = path.join(tmp, "rec-text", "train");
  mkdirSync(path.dirname(prefix));
  py("write_recordio.py", [prefix, "plain", `0:${good}`, `0:${good}`, `1:${text}`, `1:${good}`]);
  const ds = await recordIODataset({ path: `${prefix}.rec` });
  const [key, offset] = offsets(prefix)[2];
  const e = await rejects(ds.get(2));
  assert.match(e.message, `${prefix}.rec: the image of record key ${key} (image index 2) does not decode`);
  assert.match(e.message, "are not an image");
  assert.match(e.message, `at byte offset ${offset}`);
  ds.close();
  // the first image record not an image: opening fails the same way (it reads the first image's size)
  const prefix2 = path.join(tmp, "rec-text-first", "train");
  mkdirSync(path.dirname(prefix2));
  py("write_recordio.py", [prefix2, "insightface", `0:${text}`, `1:${good}`]);
  const e2 = await rejects(recordIODataset({ path: path.dirname(prefix2) }));
  const first = offsets(prefix2).find(([k]) => k === 1)!;
  assert.match(e2.message, `train.rec: the image of record key 1 (image index 0) does not decode`);
  assert.match(e2.message, `at byte offset ${first[1]}`);
});

test("verification .bin: an image that does not decode names the file, the image and its pair", async () => {
  const good = path.join(tmp, "v-good.jpg");
  const empty = path.join(tmp, "v-empty.jpg");
  writeFileSync(good, jpeg);
  writeFileSync(empty, Buffer.alloc(0));
  const out = path.join(tmp, "bad.bin");
  py("write_verification_bin.py", [out, "bytes", "highest", good, good, good, empty, "--", "1", "0"]);
  const set = await loadVerificationBin(out);
  const e = await rejects(set.images.get(3));
  assert.match(e.message, `${out}: image 3 (pair 1) does not decode: it is empty (0 bytes)`);
});

test.run();
