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
  /** MAX_TAG_VAL_LENGTH: 8000 since MLflow 2.x (5000 before). */
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

/** MLflow's convention for non-finite floats in params (Python's str): nan, inf, -inf. */
function floatString(n: number): string {
  if (Number.isNaN(n)) return "nan";
  if (!Number.isFinite(n)) return n > 0 ? "inf" : "-inf";
  return String(n);
}

/**
 * A param value as MLflow stores it: a canonical string (numbers via String, so the UI parses them
 * back; NaN and infinities as MLflow's Python client writes them, "nan", "inf", "-inf", also inside
 * arrays and objects, where JSON would turn them into null). `name` is for the error of a circular value.
 */
export function paramString(value: unknown, name = "value"): string {
  if (typeof value === "string") return value;
  if (typeof value === "number") return floatString(value);
  if (typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (value === null || value === undefined) return "None";
  const marks: string[] = [];
  let json: string;
  try {
    json = JSON.stringify(value, (_key, v) => {
      if (typeof v !== "number" || Number.isFinite(v)) return typeof v === "bigint" ? String(v) : v;
      marks.push(floatString(v));
      return `\u0000${marks.length - 1}\u0000`;
    });
  } catch (error) {
    throw new Error(
      `param "${name}": cannot be written as a param (${(error as Error).message.split("\n")[0]}); params must be plain data`,
    );
  }
  return marks.length === 0 ? json : json.replace(/"\\u0000(\d+)\\u0000"/g, (_m, i) => marks[Number(i)]);
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

/**
 * An artifact path below the run's artifact root: relative, '/'-separated, no '.' or '..' segments.
 * Checked by MlflowClient for every upload and download, so no entry point (Run API, the low-level
 * client, sync replaying a journal) can reach another run's folder or outside a local artifact root.
 */
export function validateArtifactPath(artifactPath: string): string {
  const p = String(artifactPath).replace(/\\/g, "/").replace(/^\/+/, "");
  if (!p || p.includes("\0") || p.split("/").some((s) => s === ".." || s === "." || s === "")) {
    throw new Error(
      `invalid artifact path ${JSON.stringify(artifactPath)}: it must stay inside the run's artifact folder ` +
        '(a relative path like "plots/loss.html", no "." or ".." segments)',
    );
  }
  return p;
}
