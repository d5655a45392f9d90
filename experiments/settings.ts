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

/** The preset's settings with overrides applied (overrides: typed values or strings to parse). */
export function resolveSettings(
  ablation: { name: string; presets: Record<Preset, Settings> },
  preset: Preset,
  overrides: Record<string, SettingValue> = {},
): Settings {
  const base = ablation.presets[preset];
  const out: Settings = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    if (!(key in base)) {
      throw new Error(
        `--set ${key}: "${key}" is not a setting of ablation "${ablation.name}"; allowed are ${Object.keys(base).join(", ")}.`,
      );
    }
    const like = base[key];
    if (typeof value === "string" && typeof like !== "string") out[key] = parseSetting(key, value, like);
    else if (Array.isArray(like) !== Array.isArray(value) || (!Array.isArray(like) && typeof like !== typeof value)) {
      throw new Error(`--set ${key}=${JSON.stringify(value)}: expected ${describeType(like)}.`);
    } else out[key] = value;
  }
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
