/**
 * Resolving an ablation's settings: the preset's values, then `key=value` overrides parsed to the
 * type of the preset's value (number, boolean, string, or comma-separated lists). Unknown keys and
 * unparsable values throw an Error naming the key, the value and what is allowed.
 */
import { PRESETS, type Preset, type Settings, type SettingValue } from "./types";

export function checkPreset(ablation: string, preset: string): Preset {
  if (!(PRESETS as readonly string[]).includes(preset)) {
    throw new Error(`preset = "${preset}" is not valid for ablation "${ablation}": allowed are ${PRESETS.join(", ")}.`);
  }
  return preset as Preset;
}

function describeType(v: SettingValue): string {
  if (Array.isArray(v))
    return typeof v[0] === "string" ? "a comma-separated list of strings" : "a comma-separated list of numbers";
  return `a ${typeof v}`;
}

function parseNumber(key: string, text: string): number {
  const n = Number(text.trim());
  if (text.trim() === "" || !Number.isFinite(n))
    throw new Error(`--set ${key}=${text}: "${text}" is not a finite number.`);
  return n;
}

/** Parses `text` to the type of `like` (the preset's value for the key). */
export function parseSetting(key: string, text: string, like: SettingValue): SettingValue {
  if (typeof like === "number") return parseNumber(key, text);
  if (typeof like === "boolean") {
    if (text === "true" || text === "1") return true;
    if (text === "false" || text === "0") return false;
    throw new Error(`--set ${key}=${text}: expected true or false.`);
  }
  if (typeof like === "string") return text;
  const parts = text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (parts.length === 0) throw new Error(`--set ${key}=${text}: expected ${describeType(like)}.`);
  if (like.length > 0 && typeof like[0] === "string") return parts;
  return parts.map((p) => parseNumber(key, p));
}

/** Splits "key=value" strings; throws on a missing "=". */
export function parseAssignments(assignments: string[]): Array<[string, string]> {
  return assignments.map((a) => {
    const eq = a.indexOf("=");
    if (eq <= 0) throw new Error(`--set "${a}" is not valid: expected key=value.`);
    return [a.slice(0, eq).trim(), a.slice(eq + 1)];
  });
}

/** What a numeric setting (or each element of a numeric list) may be. */
interface Range {
  integer?: boolean;
  min?: number;
  /** Lower bound excluded (min < v). */
  above?: number;
  max?: number;
}

const COUNT: Range = { integer: true, min: 1 };
const POSITIVE: Range = { above: 0 };
const NON_NEGATIVE: Range = { min: 0 };
const FRACTION: Range = { min: 0, max: 1 };

/**
 * The allowed range of each numeric setting, by name (the same name means the same thing in every
 * ablation). A setting not listed here only has to be finite; partial-fc's rates, flip, split, filter
 * and filterRates are checked by its grid (planTasks calls it before any run exists).
 */
export const SETTING_RANGES: Record<string, Range> = {
  seed: { integer: true },
  dataSeed: { integer: true },
  seeds: COUNT,
  steps: COUNT,
  freeSteps: COUNT,
  pictureSteps: COUNT,
  batchSize: COUNT,
  trainIds: COUNT,
  testIds: { integer: true, min: 2 },
  imagesPerIdentity: { integer: true, min: 2 },
  imageSize: { integer: true, min: 8 },
  embeddingDim: COUNT,
  freeDim: { integer: true, min: 2 },
  freeClasses: { integer: true, min: 2 },
  pictureTrainPerClass: COUNT,
  pictureTestPerClass: COUNT,
  plotPoints: COUNT,
  pairs: COUNT,
  pairsPerGroup: COUNT,
  Ks: COUNT,
  dropK: COUNT,
  lr: POSITIVE,
  freeLr: POSITIVE,
  pictureLr: POSITIVE,
  s: POSITIVE,
  pictureS: POSITIVE,
  alpha: POSITIVE,
  freeAlphas: POSITIVE,
  trainAlphas: POSITIVE,
  unitWAlphas: POSITIVE,
  trainableInits: POSITIVE,
  sphereM: { min: 1 },
  pictureSphereM: { min: 1 },
  cosfaceM: NON_NEGATIVE,
  pictureCosfaceM: NON_NEGATIVE,
  arcfaceM: NON_NEGATIVE,
  pictureArcfaceM: NON_NEGATIVE,
  m: NON_NEGATIVE,
  exclusiveWeight: NON_NEGATIVE,
  centerLambda: NON_NEGATIVE,
  noteMargin: NON_NEGATIVE,
  dropDegrees: { min: 0, max: 180 },
  degradedFraction: FRACTION,
  noises: FRACTION,
};

function describeRange(r: Range): string {
  const parts: string[] = [];
  if (r.above !== undefined) parts.push(`> ${r.above}`);
  if (r.min !== undefined) parts.push(`>= ${r.min}`);
  if (r.max !== undefined) parts.push(`<= ${r.max}`);
  return `${r.integer ? "an integer" : "a number"}${parts.length ? ` ${parts.join(" and ")}` : ""}`;
}

function inRange(v: number, r: Range): boolean {
  return (
    Number.isFinite(v) &&
    (!r.integer || Number.isInteger(v)) &&
    (r.min === undefined || v >= r.min) &&
    (r.above === undefined || v > r.above) &&
    (r.max === undefined || v <= r.max)
  );
}

/** Throws naming the setting, the value and what is allowed when a numeric value is out of its range. */
export function checkSettingRange(key: string, value: SettingValue): void {
  const range = SETTING_RANGES[key];
  if (!range) return;
  const values = Array.isArray(value) ? value : [value];
  for (const v of values) {
    if (typeof v !== "number") continue;
    if (!inRange(v, range)) {
      const shown = Array.isArray(value) ? value.join(",") : String(value);
      const allowed = Array.isArray(value)
        ? `each element of ${key} must be ${describeRange(range)} (${v} is not)`
        : `${key} must be ${describeRange(range)}`;
      throw new Error(`--set ${key}=${shown} is not valid: ${allowed}.`);
    }
  }
}

/**
 * The settings every ablation takes besides its preset's: the user's data (experiments/data-source.ts).
 * Absent means synthetic identities; they are set only when given, so synthetic runs keep their params.
 */
export const DATA_SETTINGS = {
  data: "the training set: an InsightFace .rec/.idx prefix, a .rec file, a folder with train.rec, or an image folder (one sub-folder per identity)",
  eval: "verification sets, comma-separated InsightFace .bin files (lfw.bin, cfp_fp.bin, agedb_30.bin): verification on their pairs replaces the held-out synthetic identities",
} as const;

function dataSetting(key: keyof typeof DATA_SETTINGS, value: SettingValue): SettingValue {
  const list = (Array.isArray(value) ? value.map(String) : String(value).split(","))
    .map((v) => v.trim())
    .filter((v) => v !== "");
  if (list.length === 0 || (key === "data" && list.length > 1))
    throw new Error(
      `--set ${key}=${JSON.stringify(value)} is not valid: expected ${key === "data" ? "one path" : "comma-separated paths"} (${DATA_SETTINGS[key]}).`,
    );
  return key === "data" ? list[0] : list;
}

/**
 * What the data settings may be with this preset and ablation: `data` and `eval` go together, the
 * paper preset needs them (it is sized like the paper's data set), and an ablation whose design
 * needs synthetic control says why it does not take them (`realDataUnsupported`).
 */
function checkDataSettings(
  ablation: { name: string; realDataUnsupported?: string },
  preset: Preset,
  s: Settings,
): void {
  const has = (k: string) => s[k] !== undefined;
  if (has("data") && ablation.realDataUnsupported)
    throw new Error(`ablation "${ablation.name}" does not take --data: ${ablation.realDataUnsupported}`);
  if (preset === "paper" && !has("data"))
    throw new Error(
      ablation.realDataUnsupported
        ? `--preset paper needs --data, and ablation "${ablation.name}" does not take it: ${ablation.realDataUnsupported}`
        : `--preset paper is sized like the paper's training set (iResNet-50 at 112x112 on CASIA-WebFace's 10,572 identities): give --data <InsightFace .rec/.idx prefix or image folder> and --eval <lfw.bin,cfp_fp.bin,agedb_30.bin>.`,
    );
  if (has("data") !== has("eval"))
    throw new Error(
      has("data")
        ? "--data needs --eval (comma-separated InsightFace .bin files such as lfw.bin,cfp_fp.bin,agedb_30.bin): with the user's training set, verification is on those sets' pairs, as the papers report it."
        : "--eval needs --data: the verification sets are real faces, which a model trained on the synthetic identities does not see.",
    );
}

/**
 * The preset's settings with overrides applied (overrides: typed values or strings to parse). Every
 * numeric value is checked against its range (SETTING_RANGES), so a bad value fails before any run.
 */
export function resolveSettings(
  ablation: { name: string; presets: Record<Preset, Settings>; realDataUnsupported?: string },
  preset: Preset,
  overrides: Record<string, SettingValue> = {},
): Settings {
  const base = ablation.presets[preset];
  const out: Settings = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    if (key in DATA_SETTINGS) {
      out[key] = dataSetting(key as keyof typeof DATA_SETTINGS, value);
      continue;
    }
    if (!(key in base)) {
      throw new Error(
        `--set ${key}: "${key}" is not a setting of ablation "${ablation.name}"; allowed are ${[...Object.keys(base), ...Object.keys(DATA_SETTINGS)].join(", ")}.`,
      );
    }
    const like = base[key];
    if (typeof value === "string" && typeof like !== "string") out[key] = parseSetting(key, value, like);
    else if (Array.isArray(like) !== Array.isArray(value) || (!Array.isArray(like) && typeof like !== typeof value)) {
      throw new Error(`--set ${key}=${JSON.stringify(value)}: expected ${describeType(like)}.`);
    } else out[key] = value;
    checkSettingRange(key, out[key]);
  }
  checkDataSettings(ablation, preset, out);
  return out;
}

export function numberSetting(s: Settings, key: string): number {
  const v = s[key];
  if (typeof v !== "number") throw new Error(`setting ${key} = ${JSON.stringify(v)} is not valid: expected a number.`);
  return v;
}

export function numbersSetting(s: Settings, key: string): number[] {
  const v = s[key];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "number"))
    throw new Error(`setting ${key} = ${JSON.stringify(v)} is not valid: expected a list of numbers.`);
  return v as number[];
}

export function stringsSetting(s: Settings, key: string): string[] {
  const v = s[key];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string"))
    throw new Error(`setting ${key} = ${JSON.stringify(v)} is not valid: expected a list of strings.`);
  return v as string[];
}

export function booleanSetting(s: Settings, key: string): boolean {
  const v = s[key];
  if (typeof v !== "boolean")
    throw new Error(`setting ${key} = ${JSON.stringify(v)} is not valid: expected true or false.`);
  return v;
}
