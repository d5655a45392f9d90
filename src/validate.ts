/**
 * Configuration errors, one format for the whole project:
 *   `<owner>: <field> = <value> is not valid: <what is allowed>`
 * (`<owner>: ` left out where the field path already says where, as in data and trainer configs). The
 * checks return the value they accept, so that a constructor reads `const k = checkInt(owner, "k", o.k, 1)`.
 */

export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    /** Who rejected it ("ArcFace", "PartialFC"; "" where the field path names the place). */
    readonly owner: string,
    readonly field: string,
    readonly value: unknown,
    /** What is allowed. */
    readonly allowed: string,
  ) {
    super(`${owner ? `${owner}: ` : ""}${field} = ${showValue(value)} is not valid: ${allowed}`);
  }
}

/** A value as the messages show it: numbers and booleans plain, strings and objects as JSON. */
export function showValue(value: unknown): string {
  if (typeof value === "number" || typeof value === "boolean" || value === undefined || value === null) {
    return String(value);
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Throws a ConfigError. */
export function fail(owner: string, field: string, value: unknown, allowed: string): never {
  throw new ConfigError(owner, field, value, allowed);
}

/** Whether `value` is an integer in [min, max]. */
export function isIntIn(value: unknown, min: number, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;
}

/** Whether `value` is a finite number in [min, max] (bounds excluded with `openMin` / `openMax`). */
export function isNumberIn(
  value: unknown,
  min: number,
  max: number,
  openMin = false,
  openMax = false,
): value is number {
  return (
    typeof value === "number" &&
    Number.isFinite(value) &&
    (openMin ? value > min : value >= min) &&
    (openMax ? value < max : value <= max)
  );
}

/** An integer in [min, max]. */
export function checkInt(owner: string, field: string, value: unknown, min: number, max = Infinity): number {
  if (!isIntIn(value, min, max)) {
    const range = max === Infinity ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`;
    fail(owner, field, value, `must be ${range}`);
  }
  return value;
}

/** A finite number in [min, max]; `openMin` / `openMax` exclude the bound. */
export function checkNumber(
  owner: string,
  field: string,
  value: unknown,
  min: number,
  max: number,
  openMin = false,
  openMax = false,
): number {
  if (!isNumberIn(value, min, max, openMin, openMax)) {
    const lo = openMin ? `(${min}` : `[${min}`;
    const hi = max === Infinity ? "inf)" : openMax ? `${max})` : `${max}]`;
    fail(owner, field, value, `must be a finite number in ${lo}, ${hi}`);
  }
  return value;
}

export function checkBoolean(owner: string, field: string, value: unknown): boolean {
  if (typeof value !== "boolean") fail(owner, field, value, "must be true or false");
  return value;
}

/** One of the allowed strings. */
export function oneOf<T extends string>(owner: string, field: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    fail(owner, field, value, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`);
  }
  return value as T;
}

/** A plain object (the options of `owner`). */
export function checkObject(owner: string, field: string, value: unknown, shape: string): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    fail(owner, field, value, `must be an object ${shape}`);
  return value as Record<string, unknown>;
}

/** Rejects option names `owner` does not know (a typo would otherwise silently fall back to a default). */
export function rejectUnknown(owner: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key))
      fail(owner, key, (options as Record<string, unknown>)[key], `unknown option; known: ${known.join(", ")}`);
  }
}
