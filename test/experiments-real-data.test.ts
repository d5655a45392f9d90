// The ablations on the user's data: a small InsightFace .rec/.idx and two verification .bin files,
// written by the independent Python writers (scripts/fixtures) from RGB face images, run end to end
// (margins tracked on a real MLflow server, subcenter's label flips through the CLI); the per-set
// metrics against src/eval/verify.ts's verifySet; and the errors a user's files can cause, each
// naming the file and what is allowed, with exit code 2 before any run exists.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import sharp from "sharp";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { makeBackbone } from "../experiments/common";
import {
  checkExperimentData,
  evaluateVerification,
  experimentData,
  MEAN_ACC,
  verificationMetric,
} from "../experiments/data-source";
import { margins } from "../experiments/margins";
import { ABLATIONS } from "../experiments/registry";
import { planAblation, planTasks, runAblation, runPlannedTask } from "../experiments/runner";
import { resolveSettings } from "../experiments/settings";
import { run as ablateCli } from "../src/cli/ablate";
import { encodeImage } from "../src/data/decode";
import { syntheticFaces } from "../src/data/synthetic";
import { loadVerificationBin } from "../src/data/verification-bin";
import { verifySet } from "../src/eval/verify";
import { MlflowClient } from "../src/tracking/client";
import { removeTempDirs, startServer, tempDir } from "./tracking-helpers";

const root = path.join(__dirname, "..");
const python = path.join(root, ".venv/bin/python");
const py = (script: string, args: string[]) =>
  execFileSync(python, [path.join(root, "scripts/fixtures", script), ...args], { stdio: "pipe" });

const dir = tempDir("real-data");
const TRAIN_IDS = 6;
const PER_ID = 6;
const prefix = path.join(dir, "faces", "train");
const folder = path.join(dir, "folder");
const lfw = path.join(dir, "lfw.bin");
const cfp = path.join(dir, "cfp_fp.bin");
const small = path.join(dir, "small_crops.bin");
let server: Promise<Awaited<ReturnType<typeof startServer>>> | undefined;
/** The MLflow server of the tracked tests, started by the first (the others do not wait for it). */
const serverUrl = async () => {
  server ??= startServer({ startTimeoutMs: 300_000 });
  return (await server).url;
};

/** Writes a .bin of `pairs` pairs of held-out identities' images (even pairs the same identity). */
async function writeBin(out: string, files: string[][], pairs: number): Promise<void> {
  const list: string[] = [];
  const flags: string[] = [];
  const held = files.length;
  for (let k = 0; k < pairs; k++) {
    const id = k % held;
    const other = (id + 1 + (k % (held - 1))) % held;
    list.push(files[id][k % PER_ID], k % 2 === 0 ? files[id][(k + 1) % PER_ID] : files[other][(k + 2) % PER_ID]);
    flags.push(k % 2 === 0 ? "1" : "0");
  }
  py("write_verification_bin.py", [out, "bytes", "highest", ...list, "--", ...flags]);
}

test.before(async () => {
  // 10 RGB identities at 32x32: 6 train (the .rec), 4 held out (the .bin sets' pairs)
  const faces = await syntheticFaces({
    identities: TRAIN_IDS + 4,
    imagesPerIdentity: PER_ID,
    size: 32,
    channels: 3,
    seed: 5,
    degradedFraction: 0,
    cacheDir: false,
  });
  const files: string[][] = [];
  const smallFiles: string[][] = [];
  for (let id = 0; id < TRAIN_IDS + 4; id++) {
    files.push([]);
    smallFiles.push([]);
    for (let j = 0; j < PER_ID; j++) {
      const img = await faces.get(id * PER_ID + j);
      const f = path.join(dir, `id${id}-${j}.png`);
      writeFileSync(f, await encodeImage(img, "png"));
      files[id].push(f);
      if (id >= TRAIN_IDS) {
        const s = path.join(dir, `small${id}-${j}.png`);
        writeFileSync(s, await sharp(f).resize(24, 24).png().toBuffer());
        smallFiles[id].push(s);
      }
    }
  }
  // the same training images as an image folder (one sub-folder per identity)
  files.slice(0, TRAIN_IDS).forEach((fs, id) => {
    mkdirSync(path.join(folder, `person${id}`), { recursive: true });
    fs.forEach((f, j) => {
      copyFileSync(f, path.join(folder, `person${id}`, `${j}.png`));
    });
  });
  mkdirSync(path.dirname(prefix), { recursive: true });
  const items = files.slice(0, TRAIN_IDS).flatMap((fs, id) => fs.map((f) => `${id}:${f}`));
  py("write_recordio.py", [prefix, "insightface", ...items]);
  await writeBin(lfw, files.slice(TRAIN_IDS), 20);
  await writeBin(cfp, files.slice(TRAIN_IDS), 8);
  await writeBin(small, smallFiles.slice(TRAIN_IDS), 8);
});

test.after(async () => {
  await (await server?.catch(() => undefined))?.stop();
  removeTempDirs();
});

const realSet = { data: prefix, eval: [lfw, cfp], trainIds: TRAIN_IDS };

test("the paper presets are sized like the papers and plan only with --data and --eval", () => {
  for (const a of ABLATIONS) {
    const p = a.presets.paper;
    assert.equal(Object.keys(p).sort(), Object.keys(a.presets.smoke).sort(), `${a.name}: the paper preset's keys`);
    assert.is(p.trainIds, 10572, `${a.name}: CASIA-WebFace's identities`);
    assert.is(p.imageSize, 112, a.name);
    assert.is(p.backbone, "iresnet50", a.name);
    if (a.realDataUnsupported) {
      assert.throws(() => planTasks(a, "paper", {}), new RegExp(`"${a.name}" does not take it`));
      assert.throws(() => planTasks(a, "smoke", realSet), new RegExp(`"${a.name}" does not take --data`));
      continue;
    }
    assert.throws(() => planTasks(a, "paper", {}), /--preset paper is sized like the paper's training set.*--data/);
    const plan = planTasks(a, "paper", { data: "/sets/casia/train", eval: "/sets/lfw.bin,/sets/agedb_30.bin" });
    assert.equal(plan.settings.eval, ["/sets/lfw.bin", "/sets/agedb_30.bin"]);
    assert.ok(plan.seeds.length >= 3, `${a.name}: >= 3 seeds`);
  }
  assert.throws(() => resolveSettings(margins, "smoke", { data: prefix }), /--data needs --eval/);
  assert.throws(() => resolveSettings(margins, "smoke", { eval: lfw }), /--eval needs --data/);
  assert.throws(() => resolveSettings(margins, "smoke", { data: "a,b", eval: lfw }), /expected one path/);
  assert.is(verificationMetric(resolveSettings(margins, "smoke", realSet), "tar_far_1e-2"), MEAN_ACC);
  assert.is(verificationMetric(resolveSettings(margins, "smoke", {}), "tar_far_1e-2"), "tar_far_1e-2");
});

test("the data source: RGB at imageSize from the .rec, the .bin sets as test sets; per-set metrics equal verifySet", async () => {
  const s = resolveSettings(margins, "smoke", { ...realSet, imageSize: 24 });
  const info = await checkExperimentData(s);
  assert.equal(info, {
    images: TRAIN_IDS * PER_ID,
    identities: TRAIN_IDS,
    stored: [32, 32],
    sets: [
      { name: "lfw", file: lfw, pairs: 20 },
      { name: "cfp_fp", file: cfp, pairs: 8 },
    ],
  });
  const data = await experimentData(s, 7);
  assert.equal(data.inputShape, [24, 24, 3], "resized to imageSize, RGB");
  assert.equal(
    [...data.train.labels],
    Array.from({ length: 36 }, (_, i) => Math.floor(i / PER_ID)),
  );
  assert.is(data.test.kind, "bins");
  // an image folder of the same images gives the same labels and pixels
  const fromFolder = await experimentData({ ...s, data: folder }, 7);
  assert.equal([...fromFolder.train.labels], [...data.train.labels]);
  assert.equal(fromFolder.train.shape, [24, 24, 3]);
  for (const i of [0, 13, 35])
    assert.equal(Buffer.from((await fromFolder.train.get(i)).data), Buffer.from((await data.train.get(i)).data));
  const backbone = makeBackbone("mlp", 8, 3, data.inputShape);
  try {
    const v = await evaluateVerification(backbone, data.test, { losses: [1, 0.9] });
    for (const [name, file] of [
      ["lfw", lfw],
      ["cfp_fp", cfp],
    ]) {
      // the reference: InsightFace's protocol in src/eval/verify.ts on the .bin as stored, resized the same way
      const set = await loadVerificationBin(file, { channels: 3 });
      const ref = await verifySet(backbone, set, { size: [24, 24], folds: name === "lfw" ? 10 : 8 });
      assert.ok(Math.abs(v.metrics[`${name}/acc`] - ref.accuracy) < 1e-9, `${name}/acc ${v.metrics[`${name}/acc`]}`);
      assert.ok(Math.abs(v.metrics[`${name}/auc`] - ref.roc.auc) < 1e-9, `${name}/auc`);
      assert.is(v.metrics[`${name}/tar_far_1e-2`], undefined, "10 or 4 impostor pairs cannot give TAR at 1e-2");
    }
    assert.ok(Math.abs(v.metrics[MEAN_ACC] - (v.metrics["lfw/acc"] + v.metrics["cfp_fp/acc"]) / 2) < 1e-12);
    assert.ok(
      v.notes.some((n) => /^lfw: TAR@FAR=0\.01 not reported: 10 impostor pairs/.test(n)),
      `${v.notes}`,
    );
    assert.ok(v.notes.includes("cfp_fp: 8 pairs, so 8-fold accuracy (InsightFace uses 10 folds)."), `${v.notes}`);
    assert.ok(v.roc.far.length > 0 && v.roc.far.length === v.roc.tar.length);
  } finally {
    backbone.dispose();
  }
});

test("margins (smoke) on the .rec and two .bin sets, tracked: per-set metrics, verdicts on mean/acc", async () => {
  const result = await runAblation("margins", {
    preset: "smoke",
    trackingUri: await serverUrl(),
    experiment: "test-real-data",
    journalDir: path.join(dir, "journal"),
    set: { ...realSet, losses: ["softmax", "arcface"], pictureLosses: [], steps: 15, batchSize: 12 },
  });
  assert.is(result.results.length, 4, "2 losses x 2 seeds");
  assert.is(result.pending, 0);
  for (const r of result.results) {
    for (const k of ["lfw/acc", "lfw/auc", "cfp_fp/acc", MEAN_ACC, "mean/auc", "w_inter_deg"])
      assert.ok(Number.isFinite(r.result.metrics[k]), `${r.config.label} seed ${r.seed}: ${k}`);
    assert.is(r.result.metrics["tar_far_1e-2"], undefined, "no synthetic held-out metrics");
  }
  const [cmp] = result.analysis.comparisons;
  assert.is(cmp.name, "arcface-vs-softmax");
  assert.is(cmp.metric, MEAN_ACC);
  assert.is(cmp.verdict.n, 2, "paired over both seeds (or fewer where one collapsed)");
  assert.ok(result.summary.notes.some((n) => n.includes("lfw: TAR@FAR=0.01 not reported")));

  const client = new MlflowClient({ trackingUri: await serverUrl() });
  const parent = await client.getRun(result.parentRunId!);
  const params = Object.fromEntries((parent.data.params ?? []).map((p) => [p.key, p.value]));
  assert.is(params["setting.data"], prefix);
  assert.is(params["setting.eval"], `${lfw},${cfp}`);
  const child = await client.getRun(result.childRunIds[0]);
  const keys = new Set((child.data.metrics ?? []).map((m) => m.key));
  for (const k of ["lfw/acc", "cfp_fp/acc", "mean/acc", "mean/acc_ci95_low"])
    assert.ok(keys.has(k), `${k}: ${[...keys]}`);
});

test("a planned task (a cluster array task) reads --data and --eval from its parent run", async () => {
  const where = { trackingUri: await serverUrl(), experiment: "test-real-data", journalDir: path.join(dir, "journal") };
  const set = { ...realSet, losses: ["softmax"], pictureLosses: [], steps: 6, batchSize: 12, seeds: 1 };
  const planned = await planAblation("margins", { ...where, preset: "smoke", set });
  assert.is(planned.commands.length, 1);
  const r = await runPlannedTask(planned.parentRunId, 0, where);
  assert.is(r.skipped, false);
  for (const k of ["lfw/acc", "cfp_fp/acc", MEAN_ACC])
    assert.ok(Number.isFinite(r.result?.result.metrics[k] ?? Number.NaN), `task metric ${k}`);
});

/** Runs `marginlab ablate ARGS` in this process; its exit code and what it wrote to stderr and stdout. */
async function cli(args: string[]): Promise<{ code: number; err: string; out: string }> {
  const err: string[] = [];
  const out: string[] = [];
  const { error, log } = console;
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    err.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    const code = await ablateCli(args);
    return { code, err: err.join("\n"), out: out.join("\n") };
  } finally {
    console.error = error;
    console.log = log;
    process.stderr.write = write;
  }
}

test("marginlab ablate subcenter --data --eval: real labels flipped among the training identities", async () => {
  const r = await cli([
    "subcenter",
    "--no-track",
    "--data",
    path.relative(process.cwd(), prefix),
    "--eval",
    `${lfw},${cfp}`,
    ...["--set", `trainIds=${TRAIN_IDS}`, "--set", "noises=0,0.4", "--set", "noiseKinds=uniform"],
    ...["--set", "Ks=1,3", "--set", "steps=8", "--set", "batchSize=12", "--set", "seeds=2"],
    // few steps leave most angles near 90 degrees: a wide threshold keeps enough images for a batch
    ...["--set", "dropDegrees=120"],
  ]);
  assert.is(r.code, 0, r.err.slice(-2000));
  assert.match(r.out, "mean/acc");
  assert.match(r.out, `${TRAIN_IDS} training identities of ${prefix}, verified on the pairs of lfw, cfp_fp`);
  assert.match(r.out, /drop_precision/);
});

test("marginlab ablate partial-fc --data --eval: the user's labels flipped and split, filter diagnostics on them", async () => {
  const r = await cli([
    "partial-fc",
    "--no-track",
    "--data",
    prefix,
    "--eval",
    `${lfw},${cfp}`,
    ...[
      "--set",
      `trainIds=${TRAIN_IDS}`,
      "--set",
      "variants=clean,split",
      "--set",
      "split=0.5",
      "--set",
      "filters=0.3",
    ],
    ...["--set", "steps=8", "--set", "batchSize=12", "--set", "seeds=2"],
  ]);
  assert.is(r.code, 0, r.err.slice(-2000));
  assert.match(r.out, "mean/acc");
  assert.match(r.out, `Data: ${TRAIN_IDS} training identities of ${prefix}, verified on the pairs of lfw, cfp_fp`);
  assert.match(r.out, /On each model.s own training images/);
  assert.match(r.out, /noisy_caught_0p3/);
  assert.match(r.out, /split-r0\.3-filter0\.3-vs-nofilter/);
});

test("marginlab ablate quality-split --data --eval: the user's images degraded, the .bin pairs grouped by norm and quality", async () => {
  const r = await cli([
    "quality-split",
    "--no-track",
    "--data",
    prefix,
    "--eval",
    `${lfw},${cfp}`,
    ...["--set", `trainIds=${TRAIN_IDS}`, "--set", "steps=8", "--set", "batchSize=12", "--set", "seeds=2"],
    ...["--set", "groupFar=0.5"],
  ]);
  assert.is(r.code, 0, r.err.slice(-2000));
  assert.match(r.out, "mean/acc");
  assert.match(r.out, `Data: ${TRAIN_IDS} training identities of ${prefix}, verified on the pairs of lfw, cfp_fp`);
  assert.match(r.out, /on the .bin pairs in the group, their images degraded/);
  assert.match(r.out, /spearman_blur/);
  assert.match(r.out, /quality_tar_3_3/);
  assert.match(r.out, /l2-overall/);
  const occlusion = await cli([
    "quality-split",
    "--no-track",
    ...["--data", prefix, "--eval", lfw, "--set", `trainIds=${TRAIN_IDS}`, "--set", "degradations=blur,occlusion"],
  ]);
  assert.is(occlusion.code, 2, "refused before any run");
  assert.match(
    occlusion.err,
    /with --data allowed are blur, downsample, jpeg, noise \(occlusion is drawn into the synthetic faces only\)/,
  );
});

test("bad input: exit 2 before any run, naming the file, the offset or setting, and what is allowed", async () => {
  const eval2 = `${lfw},${cfp}`;
  const ids = ["--set", `trainIds=${TRAIN_IDS}`];
  const expectError = async (args: string[], pattern: RegExp | string) => {
    const r = await cli(["margins", "--no-track", ...args]);
    assert.is(r.code, 2, `${args.join(" ")}: exit ${r.code}\n${r.err}`);
    assert.match(r.err, pattern);
    assert.not.match(r.out, /configurations in/, "nothing ran");
  };
  await expectError(["--preset", "paper"], /--preset paper is sized like the paper's training set .*give --data/);
  await expectError(["--data", prefix, ...ids], /--data needs --eval/);
  await expectError(
    ["--data", path.join(dir, "nope"), "--eval", eval2],
    /--data .*nope: no such file, .rec or folder \(allowed: an InsightFace .rec\/.idx prefix/,
  );
  await expectError(["--data", `${prefix}.idx`, "--eval", eval2], /train.idx: a file that is not a .rec \(allowed:/);
  await expectError(["--data", prefix, "--eval", eval2], /holds 6 identities but trainIds = 20.*--set trainIds=6/);
  await expectError(
    ["--data", prefix, "--eval", `${lfw},${small}`, ...ids],
    /--eval .*small_crops.bin: its images are 24x24 \(height x width\), the training images of .* are 32x32/,
  );
  await expectError(["--data", prefix, "--eval", path.join(dir, "lfw.txt"), ...ids], /lfw.txt: not a .bin file/);
  await expectError(
    ["--data", prefix, "--eval", `${lfw},${path.join(dir, "other", "lfw.bin")}`, ...ids],
    /another set is also named "lfw"/,
  );
  await expectError(
    ["--data", prefix, "--eval", path.join(dir, "missing.bin"), ...ids],
    /verification.path.*missing.bin.*does not exist/,
  );
  // a .bin that is not a pickle; a .rec whose first record's magic is broken; a .rec without its .idx
  const junk = path.join(dir, "junk.bin");
  writeFileSync(junk, "not a pickle at all");
  await expectError(
    ["--data", prefix, "--eval", junk, ...ids],
    new RegExp(`${junk.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}`),
  );
  const bad = path.join(dir, "bad", "train");
  mkdirSync(path.dirname(bad), { recursive: true });
  const rec = Buffer.from(readFileSync(`${prefix}.rec`));
  rec.writeUInt32LE(0xdeadbeef, 0);
  writeFileSync(`${bad}.rec`, rec);
  copyFileSync(`${prefix}.idx`, `${bad}.idx`);
  await expectError(
    ["--data", bad, "--eval", eval2, ...ids],
    /bad\/train.rec: record key 0: bad magic 0xdeadbeef .* at byte offset 0/,
  );
  const noIdx = path.join(dir, "noidx", "train");
  mkdirSync(path.dirname(noIdx), { recursive: true });
  copyFileSync(`${prefix}.rec`, `${noIdx}.rec`);
  await expectError(["--data", noIdx, "--eval", eval2, ...ids], /recordio.idx.*noidx\/train.idx/);
  const task = await cli(["margins", "--index", "0", "--parent", "p", "--data", prefix]);
  assert.is(task.code, 2);
  assert.match(task.err, /a task \(--index\) takes its settings from the parent run/);
});

test.run();
