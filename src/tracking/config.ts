/**
 * Tracking configuration the way MLflow users expect it: the MLFLOW_* environment variables, with the
 * Python client's defaults for retries and timeouts. Credentials live only here and in the request
 * headers built from them; everything that prints, logs or stores goes through redaction.ts.
 */
import { readFileSync } from "node:fs";
import { Redactor } from "./redaction";

export interface Credentials {
  /** MLFLOW_TRACKING_TOKEN: sent as `Authorization: Bearer`. */
  token?: string;
  /** MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD: basic auth; wins over the token when both are set. */
  username?: string;
  password?: string;
}

export interface TlsOptions {
  /** MLFLOW_TRACKING_INSECURE_TLS: skip certificate verification. */
  insecure?: boolean;
  /** MLFLOW_TRACKING_SERVER_CERT_PATH: a CA bundle (PEM) to verify the server with. */
  caFile?: string;
  /** MLFLOW_TRACKING_CLIENT_CERT_PATH: a client certificate (PEM; may also hold the key). */
  certFile?: string;
  /** MLFLOW_TRACKING_CLIENT_KEY_PATH (marginlab's addition): the client key when it is a separate file. */
  keyFile?: string;
}

export interface RetryOptions {
  /** MLFLOW_HTTP_REQUEST_MAX_RETRIES (7). */
  maxRetries: number;
  /** MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR (2): the n-th retry waits factor * 2^(n-1) seconds (capped). */
  backoffFactor: number;
  /** MLFLOW_HTTP_REQUEST_BACKOFF_JITTER (1.0): up to this many random seconds added to each wait. */
  backoffJitter: number;
  /** Longest single wait, in ms (MLflow's urllib3 default: 120 s). */
  maxBackoffMs: number;
}

export interface TrackingConfig {
  /** MLFLOW_TRACKING_URI (http or https), without any user:password part. Absent: the embedded server. */
  trackingUri?: string;
  experimentName?: string;
  experimentId?: string;
  /** MLFLOW_RUN_ID: log into (continue) this run. */
  runId?: string;
  credentials: Credentials;
  tls: TlsOptions;
  retry: RetryOptions;
  /** MLFLOW_HTTP_REQUEST_TIMEOUT (120 s), per request, in ms. */
  timeoutMs: number;
}

/** MLflow's boolean parsing: true|false|1|0, any case; anything else is an error naming the variable. */
export function parseBool(name: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined || value === "") return fallback;
  const v = value.toLowerCase();
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw new Error(`${name}="${value}" is not a boolean; use true, false, 1 or 0`);
}

function parseNumber(name: string, value: string | undefined, fallback: number, integer: boolean): number {
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
    throw new Error(`${name}="${value}" must be a non-negative ${integer ? "integer" : "number"}`);
  }
  return n;
}

/**
 * Splits user:password out of a tracking URI (http://me:secret@host:5000 is accepted like the Python
 * client's requests does), so that the URI itself can be printed.
 */
export function normalizeTrackingUri(uri: string): { uri: string; username?: string; password?: string } {
  let parsed: URL;
  try {
    parsed = new URL(uri);
  } catch {
    throw new Error(
      `MLFLOW_TRACKING_URI "${new Redactor([]).text(uri)}" is not a URL; use http://host:port or https://host`,
    );
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new Error(
      `MLFLOW_TRACKING_URI scheme "${parsed.protocol}" is not supported: marginlab talks to an MLflow server over ` +
        `http(s) (start one with \`marginlab ui\` or \`mlflow server\`); sqlite:, file: and databricks URIs are Python-only`,
    );
  }
  const username = parsed.username ? decodeURIComponent(parsed.username) : undefined;
  const password = parsed.password ? decodeURIComponent(parsed.password) : undefined;
  parsed.username = "";
  parsed.password = "";
  return { uri: parsed.toString().replace(/\/+$/, ""), username, password };
}

export function trackingConfigFromEnv(env: NodeJS.ProcessEnv = process.env): TrackingConfig {
  const credentials: Credentials = {
    token: env.MLFLOW_TRACKING_TOKEN || undefined,
    username: env.MLFLOW_TRACKING_USERNAME || undefined,
    password: env.MLFLOW_TRACKING_PASSWORD || undefined,
  };
  let trackingUri: string | undefined;
  if (env.MLFLOW_TRACKING_URI) {
    const normalized = normalizeTrackingUri(env.MLFLOW_TRACKING_URI);
    trackingUri = normalized.uri;
    credentials.username ??= normalized.username;
    credentials.password ??= normalized.password;
  }
  return {
    trackingUri,
    experimentName: env.MLFLOW_EXPERIMENT_NAME || undefined,
    experimentId: env.MLFLOW_EXPERIMENT_ID || undefined,
    runId: env.MLFLOW_RUN_ID || undefined,
    credentials,
    tls: {
      insecure: parseBool("MLFLOW_TRACKING_INSECURE_TLS", env.MLFLOW_TRACKING_INSECURE_TLS, false),
      caFile: env.MLFLOW_TRACKING_SERVER_CERT_PATH || undefined,
      certFile: env.MLFLOW_TRACKING_CLIENT_CERT_PATH || undefined,
      keyFile: env.MLFLOW_TRACKING_CLIENT_KEY_PATH || undefined,
    },
    retry: {
      maxRetries: parseNumber("MLFLOW_HTTP_REQUEST_MAX_RETRIES", env.MLFLOW_HTTP_REQUEST_MAX_RETRIES, 7, true),
      backoffFactor: parseNumber(
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
        env.MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        2,
        false,
      ),
      backoffJitter: parseNumber(
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
        env.MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
        1,
        false,
      ),
      maxBackoffMs: 120_000,
    },
    timeoutMs: parseNumber("MLFLOW_HTTP_REQUEST_TIMEOUT", env.MLFLOW_HTTP_REQUEST_TIMEOUT, 120, false) * 1000,
  };
}

/** The Authorization header value for these credentials (basic wins over bearer, as in MLflow). */
export function authorizationHeader(credentials: Credentials): string | undefined {
  if (credentials.username && credentials.password) {
    return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`;
  }
  if (credentials.token) return `Bearer ${credentials.token}`;
  return undefined;
}

/** The secret strings of these credentials (and their encodings), for a Redactor. */
export function secretsOf(credentials: Credentials): string[] {
  const secrets: string[] = [];
  if (credentials.token) secrets.push(credentials.token);
  if (credentials.password) {
    secrets.push(credentials.password, encodeURIComponent(credentials.password));
    if (credentials.username) {
      secrets.push(Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64"));
    }
  }
  return secrets;
}

/** TLS material read from the files the options name; errors name the variable and the file. */
export function readTlsFiles(tls: TlsOptions): {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized: boolean;
} {
  const read = (what: string, file: string | undefined) => {
    if (!file) return undefined;
    try {
      return readFileSync(file);
    } catch (error) {
      throw new Error(`${what}: cannot read "${file}": ${(error as Error).message}`);
    }
  };
  const cert = read("MLFLOW_TRACKING_CLIENT_CERT_PATH", tls.certFile);
  return {
    ca: read("MLFLOW_TRACKING_SERVER_CERT_PATH", tls.caFile),
    cert,
    key: read("MLFLOW_TRACKING_CLIENT_KEY_PATH", tls.keyFile) ?? cert,
    rejectUnauthorized: !tls.insecure,
  };
}
