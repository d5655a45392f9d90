/**
 * The synthetic-image cache shared between processes: several processes asking for the same set at
 * once render it once (the others wait and load that copy), every process sees identical pixels, a
 * run with label noise or another process later renders nothing, a lock left by a dead process is
 * taken over (its half-written folder removed), and nothing temporary is left behind.
 */
import { execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { syntheticHash } from "../src/data/synthetic";

const root = path.join(__dirname, "..");
const run = promisify(execFile);
const cacheDir = mkdtempSync(path.join(os.tmpdir(), "marginlab-synth-shared-"));
test.after(() => rmSync(cacheDir, { recursive: true, force: true }));

const opts = { identities: 12, imagesPerIdentity: 8, size: 32, channels: 1 as const, seed: 5, degradedFraction: 0.5 };

/** A separate Node process that loads the set and prints whether it rendered and a digest of the pixels. */
function load(extra: object = {}): Promise<{ rendered: boolean; digest: string; size: number }> {
  const script = `
    const { createHash } = require("node:crypto");
    const { syntheticFaces } = require(${JSON.stringify(path.join(root, "src/data/synthetic.ts"))});
    (async () => {
      const ds = await syntheticFaces(${JSON.stringify({ ...opts, cacheDir, ...extra })});
      const h = createHash("sha256");
      for (let i = 0; i < ds.size; i++) h.update((await ds.get(i)).data);
      process.stdout.write(JSON.stringify({ rendered: ds.rendered, digest: h.digest("hex"), size: ds.size }));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  return run(process.execPath, ["--require", "tsx/cjs", "-e", script], { cwd: root }).then(({ stdout }) =>
    JSON.parse(stdout),
  );
}

const leftovers = () => readdirSync(cacheDir).filter((f) => f.includes(".tmp-") || f.endsWith(".lock"));

test("three processes at once: one renders, the others wait and load its copy; same pixels everywhere", async () => {
  const runs = await Promise.all([load(), load(), load()]);
  assert.is(runs.filter((r) => r.rendered).length, 1, `exactly one process rendered: ${JSON.stringify(runs)}`);
  assert.ok(
    runs.every((r) => r.digest === runs[0].digest && r.size === 96),
    "identical pixels",
  );
  assert.equal(leftovers(), [], "no lock or temporary folder left");
  // a later process, and one asking for label noise (applied on load), render nothing
  const later = await load();
  const noisy = await load({ labelNoise: { flip: 0.2 } });
  assert.not.ok(later.rendered);
  assert.not.ok(noisy.rendered);
  assert.is(later.digest, runs[0].digest);
  // other rendering parameters are another entry
  const other = await load({ seed: 6 });
  assert.ok(other.rendered);
  assert.is.not(other.digest, runs[0].digest);
});

test("a lock left by a dead process is taken over and its half-written folder removed", async () => {
  const stale = { ...opts, seed: 9 };
  const dir = path.join(cacheDir, syntheticHash(stale));
  // a pid that is not running: a short-lived child's, after it exited
  const dead = await new Promise<number>((resolve) => {
    const c = spawn(process.execPath, ["-e", ""]);
    c.on("close", () => resolve(c.pid!));
  });
  writeFileSync(`${dir}.lock`, String(dead));
  mkdirSync(`${dir}.tmp-${dead}-1`);
  writeFileSync(path.join(`${dir}.tmp-${dead}-1`, "images.u8"), "partial");
  const r = await load({ seed: 9 });
  assert.ok(r.rendered);
  assert.equal(leftovers(), []);
  assert.not.ok((await load({ seed: 9 })).rendered);
});

test.run();
