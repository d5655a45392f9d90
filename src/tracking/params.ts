/**
 * Configurations as MLflow params: nested objects flattened to dotted keys with canonical string
 * values (so the compare view and parallel coordinates see every key on every run), and a stable hash
 * of the whole configuration for grouping identical runs.
 */
import { createHash } from "node:crypto";
import { paramString } from "./validate";

/** { a: { b: 1 }, c: [1, 2] } -> { "a.b": "1", c: "[1,2]" }; undefined values are left out. */
export function flattenConfig(config: Record<string, unknown>, prefix = ""): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(config)) {
    if (value === undefined || typeof value === "function") continue;
    const name = prefix ? `${prefix}.${key}` : key;
    if (value !== null && typeof value === "object" && !Array.isArray(value) && !(value instanceof Date)) {
      Object.assign(out, flattenConfig(value as Record<string, unknown>, name));
    } else {
      out[name] = value instanceof Date ? value.toISOString() : paramString(value);
    }
  }
  return out;
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === "object" && !(value instanceof Date)) {
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(value as object).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined && typeof v !== "function") sorted[key] = canonical(v);
    }
    return sorted;
  }
  return value;
}

/** sha256 of the configuration's canonical JSON (keys sorted), first 12 hex digits. */
export function configHash(config: Record<string, unknown>): string {
  return createHash("sha256")
    .update(JSON.stringify(canonical(config)))
    .digest("hex")
    .slice(0, 12);
}
