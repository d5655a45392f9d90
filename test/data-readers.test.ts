/**
 * Readers against files written independently by Python (scripts/fixtures/*.py): the verification
 * .bin pickle in every protocol and image container InsightFace uses, RecordIO in InsightFace's and
 * im2rec's layouts (with a record split around the magic word), corrupt and truncated records, and an
 * image folder.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { decodeImage } from "../src/data/decode";
import { imageFolder } from "../src/data/image-folder";
import { unpickle } from "../src/data/pickle";
import { IndexedRecordIO, RECORDIO_MAGIC, recordIODataset } from "../src/data/recordio";
import { loadVerificationBin } from "../src/data/verification-bin";

const root = path.join(__dirname, "..");
const python = path.join(root, ".venv/bin/python");
const tmp = mkdtempSync(path.join(os.tmpdir(), "marginlab-readers-"));
const py = (script: string, args: string[]) =>
  execFileSync(python, [path.join(root, "scripts/fixtures", script), ...args], { stdio: "pipe" });

/** Six 12x10 images with distinct content: label k // 2; even ones PNG, odd ones JPEG. */
const images: { file: string; label: number; bytes: Buffer }[] = [];

test.before(async () => {
  for (let k = 0; k < 6; k++) {
    const w = 12;
    const h = 10;
    const raw = Buffer.alloc(w * h * 3);
    for (let i = 0; i < w * h; i++) {
      raw[3 * i] = (k * 40 + i * 3) % 256;
      raw[3 * i + 1] = (255 - k * 30 + (i % w) * 9) % 256;
      raw[3 * i + 2] = (Math.floor(i / w) * 20 + k * 7) % 256;
    }
    const img = sharp(raw, { raw: { width: w, height: h, channels: 3 } });
    const bytes = k % 2 === 0 ? await img.png().toBuffer() : await img.jpeg({ quality: 90 }).toBuffer();
    const file = path.join(tmp, `img${k}.${k % 2 === 0 ? "png" : "jpg"}`);
    writeFileSync(file, bytes);
    images.push({ file, label: Math.floor(k / 2), bytes });
  }
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));

const issame = ["1", "0", "1"];

for (const [kind, proto] of [
  ["bytes", "highest"],
  ["bytes", "2"],
  ["bytes", "0"],
  ["numpy", "2"],
  ["numpy", "highest"],
  ["bytearray", "4"],
] as const) {
  test(`verification .bin: ${kind} images, pickle protocol ${proto}`, async () => {
    const out = path.join(tmp, `v-${kind}-${proto}.bin`);
    py("write_verification_bin.py", [out, kind, proto, ...images.map((i) => i.file), "--", ...issame]);
    const set = await loadVerificationBin(out);
    assert.equal(set.issame, [true, false, true]);
    assert.is(set.images.size, 6);
    assert.equal(set.images.shape, [10, 12, 3]);
    for (let k = 0; k < 6; k++) {
      const got = await set.images.get(k);
      const want = await decodeImage(images[k].bytes);
      assert.equal(Buffer.from(got.data), Buffer.from(want.data), `image ${k}`);
    }
  });
}

test("verification .bin: truncated and wrong-shaped pickles are clear errors", async () => {
  const out = path.join(tmp, "v-trunc.bin");
  py("write_verification_bin.py", [out, "bytes", "highest", ...images.map((i) => i.file), "--", ...issame]);
  const full = readFileSync(out);
  writeFileSync(out, full.subarray(0, Math.floor(full.length / 2)));
  await loadVerificationBin(out).then(
    () => assert.unreachable("should throw"),
    (e: Error) =>
      assert.match(
        e.message,
        new RegExp(`${out.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: truncated pickle.*byte offset \\d+`),
      ),
  );
  const odd = path.join(tmp, "v-odd.bin");
  py("write_verification_bin.py", [odd, "bytes", "highest", ...images.slice(0, 5).map((i) => i.file), "--", ...issame]);
  await loadVerificationBin(odd).then(
    () => assert.unreachable("should throw"),
    (e: Error) => assert.match(e.message, "5 images for 3 pairs"),
  );
  await loadVerificationBin(path.join(tmp, "missing.bin")).then(
    () => assert.unreachable("should throw"),
    (e: Error) => assert.match(e.message, "verification.path"),
  );
});

test("pickle: py2-style str (SHORT_BINSTRING) images and protocol-1 bools", () => {
  // (['\xff\x00ab'], [True]) as Python 2's cPickle protocol 2 writes it: str -> 'U' opcode; bool -> NEWTRUE
  const bytes = Uint8Array.from([
    0x80, 0x02, 0x5d, 0x71, 0x00, 0x55, 0x04, 0xff, 0x00, 0x61, 0x62, 0x61, 0x5d, 0x88, 0x61, 0x86, 0x2e,
  ]);
  const v = unpickle(bytes) as [Uint8Array[], boolean[]];
  assert.equal([...v[0][0]], [0xff, 0x00, 0x61, 0x62]);
  assert.equal(v[1], [true]);
});

const items = () => images.map((i) => `${i.label}:${i.file}`);

test("RecordIO (InsightFace layout): labels, image bytes, header record", async () => {
  const prefix = path.join(tmp, "train");
  py("write_recordio.py", [prefix, "insightface", ...items()]);
  const ds = await recordIODataset({ path: tmp });
  assert.is(ds.size, 6);
  assert.is(ds.numClasses, 3);
  assert.equal([...ds.labels], [0, 0, 1, 1, 2, 2]);
  assert.equal(ds.skipped, []);
  for (let k = 0; k < 6; k++) {
    const got = await ds.get(k);
    const want = await decodeImage(images[k].bytes);
    assert.equal(Buffer.from(got.data), Buffer.from(want.data), `record ${k + 1}`);
  }
  const io = new IndexedRecordIO(`${prefix}.rec`, `${prefix}.idx`);
  const h0 = io.read(0).header;
  assert.is(h0.flag, 2);
  assert.equal([...h0.labels], [7, 10]);
  assert.equal([...io.read(8).header.labels], [3, 5]); // identity 1: image keys 3..4
  assert.equal(Buffer.from(io.read(2).image), images[1].bytes);
  io.close();
  ds.close();
});

test("RecordIO: a record split around the magic word is joined with the magic re-inserted", async () => {
  const prefix = path.join(tmp, "split");
  py("write_recordio.py", [prefix, "plain", "--split-magic", ...items()]);
  const io = new IndexedRecordIO(`${prefix}.rec`, `${prefix}.idx`);
  const rec = readFileSync(`${prefix}.rec`);
  // the writer did split: the first record's length word carries cflag 1
  assert.is(rec.readUInt32LE(4) >>> 29, 1);
  const img = io.read(0).image;
  const orig = images[0].bytes;
  assert.equal(Buffer.from(img.subarray(0, orig.length)), orig);
  const magicAt = img.length - 8;
  assert.is(Buffer.from(img).readUInt32LE(magicAt), RECORDIO_MAGIC);
  assert.is(Buffer.from(img.subarray(magicAt + 4)).toString(), "tail");
  assert.is(io.read(0).header.label, 0);
  io.close();
  const ds = await recordIODataset({ path: `${prefix}.rec`, channels: 1, size: [8, 8] });
  assert.equal([...ds.labels], [0, 0, 1, 1, 2, 2]);
  assert.equal(ds.shape, [8, 8, 1]);
  assert.is((await ds.get(3)).data.length, 64);
  ds.close();
});

test("RecordIO: corrupt magic and truncation name the file and offset; skip mode counts them", async () => {
  const dir = path.join(tmp, "corrupt");
  mkdirSync(dir);
  const prefix = path.join(dir, "train");
  py("write_recordio.py", [prefix, "plain", ...items()]);
  const idx = readFileSync(`${prefix}.idx`, "utf8")
    .trim()
    .split("\n")
    .map((l) => Number(l.split("\t")[1]));
  const rec = readFileSync(`${prefix}.rec`);
  const bad = Buffer.from(rec);
  bad.writeUInt32LE(0xdeadbeef, idx[2]);
  writeFileSync(`${prefix}.rec`, bad);
  await recordIODataset({ path: dir }).then(
    () => assert.unreachable("should throw"),
    (e: Error) => {
      assert.match(e.message, `${prefix}.rec: record key 2: bad magic 0xdeadbeef`);
      assert.match(e.message, `at byte offset ${idx[2]}`);
    },
  );
  const ds = await recordIODataset({ path: dir, onCorrupt: "skip" });
  assert.is(ds.size, 5);
  assert.is(ds.skipped.length, 1);
  assert.is(ds.skipped[0].key, 2);
  assert.is(ds.skipped[0].offset, idx[2]);
  assert.equal([...ds.labels], [0, 0, 1, 2, 2]);
  ds.close();
  // truncated inside the last record's payload
  writeFileSync(`${prefix}.rec`, rec.subarray(0, idx[5] + 20));
  await recordIODataset({ path: dir }).then(
    () => assert.unreachable("should throw"),
    (e: Error) =>
      assert.match(e.message, new RegExp(`train\\.rec: record key 5: truncated record .* at byte offset ${idx[5]}`)),
  );
  const ds2 = await recordIODataset({ path: dir, onCorrupt: "skip" });
  assert.is(ds2.size, 5);
  assert.match(ds2.skipped[0].reason, "truncated");
  ds2.close();
  await recordIODataset({ path: path.join(tmp, "nowhere") }).then(
    () => assert.unreachable("should throw"),
    (e: Error) => assert.match(e.message, "recordio.path"),
  );
});

test("image folder: one sub-folder per identity, sorted names, decoded pixels", async () => {
  const dir = path.join(tmp, "folder");
  for (const [k, im] of images.entries()) {
    const sub = path.join(dir, ["bob", "alice", "carol"][im.label]);
    mkdirSync(sub, { recursive: true });
    copyFileSync(im.file, path.join(sub, `${k}${path.extname(im.file)}`));
  }
  writeFileSync(path.join(dir, "alice", "notes.txt"), "not an image");
  const ds = await imageFolder({ root: dir });
  assert.equal(ds.classNames, ["alice", "bob", "carol"]);
  assert.is(ds.size, 6);
  assert.equal([...ds.labels], [0, 0, 1, 1, 2, 2]);
  const s = await ds.get(0); // alice/2.png = images[2]
  assert.equal(Buffer.from(s.data), Buffer.from((await decodeImage(images[2].bytes)).data));
  await imageFolder({ root: path.join(tmp, "nope") }).then(
    () => assert.unreachable("should throw"),
    (e: Error) => assert.match(e.message, "imageFolder.root"),
  );
});

test.run();
