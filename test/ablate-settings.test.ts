// Setting ranges (checked before any run is created), the plan's order, and the --jobs layout.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ABLATIONS } from "../experiments/registry";
import { planTasks, taskCommand } from "../experiments/runner";
import { checkSettingRange, resolveSettings, SETTING_RANGES } from "../experiments/settings";
import { PRESETS } from "../experiments/types";
import { jobLayout, parseAblateArgs } from "../src/cli/ablate";

test("every preset of every ablation is within the ranges", () => {
  for (const a of ABLATIONS)
    for (const p of PRESETS) {
      // the paper preset resolves with the user's data (test/experiments-real-data.test.ts), or not at all
      if (p === "paper" && a.realDataUnsupported)
        for (const [key, value] of Object.entries(a.presets.paper)) checkSettingRange(key, value);
      else resolveSettings(a, p, p === "paper" ? { data: "/sets/casia", eval: "/sets/lfw.bin" } : {});
    }
});

test("out-of-range values name the setting, the value and what is allowed", () => {
  const alpha = ABLATIONS.find((a) => a.name === "alpha-bound");
  if (!alpha) throw new Error("alpha-bound missing");
  assert.throws(
    () => resolveSettings(alpha, "smoke", { steps: "-5" }),
    /--set steps=-5 is not valid: steps must be an integer >= 1\./,
  );
  assert.throws(() => resolveSettings(alpha, "smoke", { steps: "2.5" }), /steps must be an integer >= 1/);
  assert.throws(() => resolveSettings(alpha, "smoke", { lr: "0" }), /lr must be a number > 0/);
  assert.throws(() => resolveSettings(alpha, "smoke", { seed: "1.5" }), /seed must be an integer\./);
  assert.throws(
    () => resolveSettings(alpha, "smoke", { freeAlphas: "1,0" }),
    /--set freeAlphas=1,0 is not valid: each element of freeAlphas must be a number > 0 \(0 is not\)/,
  );
  assert.throws(() => checkSettingRange("degradedFraction", 1.5), /degradedFraction must be a number >= 0 and <= 1/);
  assert.equal(resolveSettings(alpha, "smoke", { steps: "1" }).steps, 1);
  checkSettingRange("notARangedSetting", -1e9);
  assert.ok(Object.keys(SETTING_RANGES).length > 40);
});

test("the plan is a pure function of preset and settings, seed-major, and names each task's command", () => {
  const a = planTasks("alpha-bound", "smoke", { trainAlphas: "2,16" });
  const b = planTasks("alpha-bound", "smoke", { trainAlphas: "2,16" });
  assert.equal(
    a.tasks.map((t) => [t.configHash, t.seed]),
    b.tasks.map((t) => [t.configHash, t.seed]),
  );
  assert.ok(a.tasks.slice(0, a.configs.length).every((t) => t.seed === a.seeds[0]));
  assert.is(taskCommand(a, 4, "abc"), "npx marginlab ablate alpha-bound --preset smoke --index 4 --parent abc");
});

test("--jobs layout keeps jobs x threads within the cores; the modes are exclusive", () => {
  assert.equal(jobLayout("auto", undefined, 16), { jobs: 16, threads: 1 });
  assert.equal(jobLayout("auto", 4, 16), { jobs: 4, threads: 4 });
  assert.equal(jobLayout(3, undefined, 16), { jobs: 3, threads: 5 });
  assert.equal(jobLayout(4, undefined, 2), { jobs: 4, threads: 1 });
  assert.equal(parseAblateArgs(["x", "--index", "1,3", "--parent", "p"]).indices, [1, 3]);
  assert.throws(() => parseAblateArgs(["x", "--index", "1"]), /--index and --parent go together/);
  assert.throws(() => parseAblateArgs(["x", "--plan", "--jobs", "2"]), /different modes/);
  assert.throws(() => parseAblateArgs(["x", "--jobs", "0"]), /--jobs 0: expected an integer >= 1/);
  assert.throws(
    () => parseAblateArgs(["x", "--index", "1", "--parent", "p", "--set", "steps=3"]),
    /takes its settings from the parent/,
  );
  assert.throws(() => parseAblateArgs(["x", "--plan", "--no-track"]), /drop --no-track/);
});

test.run();
