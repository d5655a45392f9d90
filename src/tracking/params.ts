/**
 * Configurations as MLflow params: nested objects flattened to dotted keys with canonical string
 * values (so the compare view and parallel coordinates see every key on every run), and a stable hash
 * of the whole configuration for grouping identical runs. A circular configuration is an error naming
 * where it loops (not a stack overflow).
 */
import { createHash } from "node:crypto";
import { paramString } from "./validate";

function circular(where: string): Error {
  return new Error(
    `params: "${where}" refers back to an object that contains it (a circular reference); params must be plain data (numbers, strings, booleans, arrays and objects)`,
  );
}

/** { a: { b: 1 }, c: [1, 2] } -> { "a.b": "1", c: "[1,2]" }; undefined values are left out. */
export function flattenConfig(
  config: Record<string, unknown>,
  prefix = "",
  within: object[] = [],
): Record<string, string> {
  const out: Record<string, string> = {};
  const path = [...within, config];
  for (const [key, value] of Object.entries(config)) {
    if (value === undefined || typeof value === "function") continue;
    const name = prefix ? `${prefix}.${key}` : key;
    if (value !== null && typeof value === "object" && path.includes(value)) throw circular(name);
    if (value !== null && typeof value === "object" && !Array.isArray(value) && !(value instanceof Date)) {
      Object.assign(out, flattenConfig(value as Record<string, unknown>, name, path));
    } else {
      out[name] = value instanceof Date ? value.toISOString() : paramString(value, name);
    }
  }
  return out;
}

function canonical(value: unknown, where: string, within: object[]): unknown {
  if (typeof value === "number" && !Number.isFinite(value)) return paramString(value, where);
  if (value === null || typeof value !== "object" || value instanceof Date) return value;
  if (within.includes(value)) throw circular(where);
  const path = [...within, value];
  if (Array.isArray(value)) return value.map((v, i) => canonical(v, `${where}[${i}]`, path));
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const v = (value as Record<string, unknown>)[key];
    if (v !== undefined && typeof v !== "function") sorted[key] = canonical(v, where ? `${where}.${key}` : key, path);
  }
  return sorted;
}

/** sha256 of the configuration's canonical JSON (keys sorted; NaN and infinities as MLflow writes them), first 12 hex digits. */
export function configHash(config: Record<string, unknown>): string {
  return createHash("sha256")
    .update(JSON.stringify(canonical(config, "", [])))
    .digest("hex")
    .slice(0, 12);
}
