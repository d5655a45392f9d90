// The ablation registry, settings resolution, the `ablate`/`list` CLI's errors, and the summary helpers.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { boundProbability, simplexProbability } from "../experiments/alpha-bound";
import { ABLATIONS, ablationNames, getAblation } from "../experiments/registry";
import { formatNumber, textTable } from "../experiments/runner";
import { parseAssignments, parseSetting, resolveSettings } from "../experiments/settings";
import { PRESETS } from "../experiments/types";
import { run as ablate, parseAblateArgs, progressLine } from "../src/cli/ablate";
import { run as list } from "../src/cli/list";
import { alphaLow } from "../src/losses/scale";

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const [log, error] = [console.log, console.error];
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    return { code: await fn(), out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test("the registry has alpha-bound first, unique names, both presets with the same keys, and described settings", () => {
  assert.is(ablationNames()[0], "alpha-bound");
  assert.is(new Set(ablationNames()).size, ABLATIONS.length);
  for (const a of ABLATIONS) {
    for (const p of PRESETS) assert.ok(a.presets[p], `${a.name} has preset ${p}`);
    assert.equal(
      Object.keys(a.presets.full).sort(),
      Object.keys(a.presets.smoke).sort(),
      `${a.name}: smoke and full have the same keys`,
    );
    for (const key of Object.keys(a.presets.smoke)) assert.ok(a.describe[key], `${a.name}.${key} is described`);
    const grid = a.grid(a.presets.smoke);
    assert.ok(grid.length > 0);
    assert.is(
      new Set(grid.map((c: { label: string }) => c.label)).size,
      grid.length,
      `${a.name}: configuration labels are unique`,
    );
    assert.ok(
      a.grid(a.presets.full).length >= grid.length,
      `${a.name}: full has at least as many configurations as smoke`,
    );
  }
});

test("an unknown ablation name throws, listing the ablations", () => {
  assert.throws(
    () => getAblation("alpha-bond"),
    (e: Error) => e.message.includes('"alpha-bond"') && e.message.includes("alpha-bound"),
  );
});

test("settings: overrides are parsed to the preset value's type; unknown keys and bad values name what exists", () => {
  const ab = getAblation("alpha-bound");
  const s = resolveSettings(ab, "smoke", {
    steps: "7",
    trainAlphas: "1, 2.5,8",
    backbone: "lenet-small",
  });
  assert.is(s.steps, 7);
  assert.equal(s.trainAlphas, [1, 2.5, 8]);
  assert.is(parseSetting("flag", "false", true), false);
  assert.is(s.backbone, "lenet-small");
  assert.is(s.freeDim, ab.presets.smoke.freeDim, "untouched keys keep the preset value");
  assert.throws(
    () => resolveSettings(ab, "smoke", { stepz: "1" }),
    (e: Error) => e.message.includes('"stepz"') && e.message.includes("steps") && e.message.includes("freeAlphas"),
  );
  assert.throws(() => resolveSettings(ab, "smoke", { steps: "many" }), /"many" is not a finite number/);
  assert.throws(() => parseSetting("flag", "maybe", true), /true or false/);
  assert.throws(() => parseSetting("x", "1,,b", [1]), /"b" is not a finite number/);
  assert.throws(() => parseAssignments(["steps"]), /expected key=value/);
  assert.equal(parseAssignments(["a=b=c"]), [["a", "b=c"]]);
});

test("ablate CLI: bad name, preset, --set key and option are errors (exit 2) naming what exists", async () => {
  let r = await capture(() => ablate(["nope"]));
  assert.is(r.code, 2);
  assert.match(r.err, /allowed are alpha-bound/);
  r = await capture(() => ablate(["alpha-bound", "--preset", "huge"]));
  assert.is(r.code, 2);
  assert.match(r.err, /preset = "huge".*allowed are smoke, full/);
  r = await capture(() => ablate(["alpha-bound", "--set", "nope=1"]));
  assert.is(r.code, 2);
  assert.match(r.err, /"nope" is not a setting of ablation "alpha-bound"; allowed are seed, /);
  r = await capture(() => ablate(["alpha-bound", "--bogus"]));
  assert.is(r.code, 2);
  assert.match(r.err, /unknown option "--bogus"/);
  r = await capture(() => ablate([]));
  assert.is(r.code, 2);
  assert.match(r.err, /marginlab list/);
  assert.equal(parseAblateArgs(["alpha-bound", "--preset=full", "--set", "a=1", "--set=b=2", "--no-track"]), {
    name: "alpha-bound",
    preset: "full",
    sets: ["a=1", "b=2"],
    track: false,
    help: false,
    presetGiven: true,
    plan: false,
    json: false,
  });
});

test("list CLI prints every ablation with its presets and settings", async () => {
  const r = await capture(() => list(["--verbose"]));
  assert.is(r.code, 0);
  for (const name of ablationNames()) assert.match(r.out, new RegExp(`^${name} `, "m"));
  assert.match(r.out, /presets: smoke, full/);
  assert.match(r.out, /freeAlphas = 1,16 \(smoke\)/);
  const bad = await capture(() => list(["--nope"]));
  assert.is(bad.code, 2);
});

test("alpha-bound's probabilities: the bound gives p at alpha_low, the simplex optimum is above it", () => {
  for (const C of [10, 100, 10572]) {
    for (const p of [0.9, 0.99]) {
      const a = alphaLow(C, p);
      // dropping e^-alpha from the denominator is what makes alpha_low a (slightly conservative) bound
      assert.ok(Math.abs(boundProbability(a, C) - p) < 1e-3, `C=${C} p=${p}: ${boundProbability(a, C)}`);
      assert.ok(boundProbability(a, C) <= p);
      assert.ok(simplexProbability(a, C) >= boundProbability(a, C));
    }
  }
  assert.ok(boundProbability(1, 100) < 0.05 && boundProbability(20, 100) > 0.999);
});

test("text tables and progress lines", () => {
  const t = textTable([
    { a: 1, b: 0.123456 },
    { a: 22, c: "x" },
  ]).split("\n");
  assert.is(t.length, 4);
  assert.match(t[0], /^a\s+b\s+c$/);
  assert.match(t[2], /^1\s+0\.1235$/);
  assert.is(formatNumber(4.2), "4.2");
  assert.is(formatNumber(1234.5), "1235");
  const line = progressLine(
    {
      index: 1,
      total: 4,
      label: "cfg",
      step: 5,
      steps: 10,
      fraction: 0.375,
      elapsedSeconds: 30,
      etaSeconds: 50,
      phase: "step",
    },
    8,
  );
  assert.is(line, "[###.....]  38% 2/4 cfg 5/10  0:30 elapsed, ETA 0:50");
});

test.run();
