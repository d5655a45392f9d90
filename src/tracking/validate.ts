/**
 * MLflow's name and value rules (mlflow/utils/validation.py, 3.x), checked before anything is sent
 * so a bad key fails at the call that made it, not later in a background batch.
 */

export const LIMITS = {
  metricsPerBatch: 1000,
  paramsPerBatch: 100,
  tagsPerBatch: 100,
  entitiesPerBatch: 1000,
  /** MAX_BATCH_LOG_REQUEST_SIZE is 1e6 bytes of JSON; marginlab stays below with headroom. */
  batchBytes: 1_000_000,
  keyLength: 250,
  paramValueLength: 6000,
  tagValueLength: 8000,
  experimentNameLength: 500,
} as const;

// Alphanumerics, underscore, dash, period, space, colon, slash (MLflow's non-Windows rule).
const KEY_CHARS = /^[\w\-. :/]+$/;

/** Why `key` is not a valid MLflow metric/param/tag key, or undefined when it is. */
export function keyProblem(key: unknown): string | undefined {
  if (typeof key !== "string" || key.length === 0) return "a key must be a non-empty string";
  if (key.length > LIMITS.keyLength) return `keys may have at most ${LIMITS.keyLength} characters (got ${key.length})`;
  if (!KEY_CHARS.test(key)) {
    return "keys may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colons (:) and slashes (/)";
  }
  // MLflow's path_not_unique: the key must equal its posix normpath and not escape upwards.
  const segments = key.split("/");
  if (
    key.startsWith("/") ||
    key.startsWith("..") ||
    segments.some((s, i) => s === "." || s === ".." || (s === "" && i > 0))
  ) {
    return "keys are treated as paths: no leading or trailing '/', no '//', and no '.' or '..' segments";
  }
  return undefined;
}

export function validateKey(kind: string, key: unknown): string {
  const problem = keyProblem(key);
  if (problem) throw new Error(`invalid ${kind} key ${JSON.stringify(key)}: ${problem}`);
  return key as string;
}

/** A param value as MLflow stores it: a canonical string (numbers via String, so the UI parses them back). */
export function paramString(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (value === null || value === undefined) return "None";
  return JSON.stringify(value);
}

export function validateParamValue(key: string, value: string): string {
  if (value.length > LIMITS.paramValueLength) {
    throw new Error(
      `param "${key}": value has ${value.length} characters; MLflow allows at most ${LIMITS.paramValueLength}`,
    );
  }
  return value;
}

export function validateTagValue(key: string, value: unknown): string {
  if (typeof value !== "string") throw new Error(`tag "${key}": value must be a string (got ${typeof value})`);
  if (value.length > LIMITS.tagValueLength) {
    throw new Error(
      `tag "${key}": value has ${value.length} characters; MLflow allows at most ${LIMITS.tagValueLength}`,
    );
  }
  return value;
}

export function validateStep(step: unknown): number {
  if (typeof step !== "number" || !Number.isSafeInteger(step)) {
    throw new Error(`metric step must be an integer (got ${String(step)})`);
  }
  return step;
}

/** An artifact path below the run's artifact root: relative, '/'-separated, no '..'. */
export function validateArtifactPath(artifactPath: string): string {
  const p = artifactPath.replace(/\\/g, "/").replace(/^\/+/, "");
  if (!p || p.split("/").some((s) => s === ".." || s === "." || s === "")) {
    throw new Error(
      `invalid artifact path ${JSON.stringify(artifactPath)}: use a relative path like "plots/loss.html"`,
    );
  }
  return p;
}
