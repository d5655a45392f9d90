/** JSON that keeps NaN and +-Infinity (a collapsed run's metrics), for task results and records. */
export function encodeJson(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? { $number: String(v) } : v),
    indent,
  );
}
export function decodeJson(text: string): unknown {
  return JSON.parse(text, (_k, v) => (v && typeof v === "object" && "$number" in v ? Number(v.$number) : v));
}
