/**
 * The HTTP layer under the MLflow client: node:http(s) with keep-alive, per-request timeouts, and
 * MLflow's retry policy (network errors, 408, 429 and 5xx, exponential backoff with jitter).
 * Built on node:http rather than fetch so TLS options (CA, client certificate, insecure) apply per
 * client instead of process-wide.
 */
import http from "node:http";
import https from "node:https";
import {
  authorizationHeader,
  type Credentials,
  type RetryOptions,
  readTlsFiles,
  secretsOf,
  type TlsOptions,
} from "./config";
import { Redactor } from "./redaction";

export const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** An answer from MLflow (or whatever stands in front of it) that is not 2xx. */
export class MlflowHttpError extends Error {
  readonly status: number;
  readonly errorCode: string | undefined;
  readonly endpoint: string;
  /** The server's message (MLflow's JSON `message`, or the plain-text body). */
  readonly serverMessage: string;
  constructor(endpoint: string, status: number, errorCode: string | undefined, serverMessage: string) {
    const hint =
      status === 401
        ? " (credentials missing or wrong: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN)"
        : status === 403 && !errorCode
          ? " (rejected before MLflow: if you reach the server by a name other than localhost, start it with --allowed-hosts)"
          : "";
    super(`MLflow ${endpoint} failed: HTTP ${status}${errorCode ? ` ${errorCode}` : ""}: ${serverMessage}${hint}`);
    this.name = "MlflowHttpError";
    this.status = status;
    this.errorCode = errorCode;
    this.endpoint = endpoint;
    this.serverMessage = serverMessage;
  }
  get retryable(): boolean {
    return RETRYABLE_STATUS.has(this.status);
  }
}

/** The server could not be reached (after retries): connection refused, reset, DNS, timeout. */
export class MlflowNetworkError extends Error {
  readonly endpoint: string;
  readonly code: string | undefined;
  constructor(endpoint: string, message: string, code: string | undefined) {
    super(`MLflow ${endpoint}: server unreachable: ${message}`);
    this.name = "MlflowNetworkError";
    this.endpoint = endpoint;
    this.code = code;
  }
}

export interface TransportOptions {
  baseUrl: string;
  credentials?: Credentials;
  tls?: TlsOptions;
  retry: RetryOptions;
  timeoutMs: number;
}

export interface HttpRequest {
  method: "GET" | "POST" | "PUT" | "DELETE" | "PATCH";
  /** Path below the base URL, starting with "/". */
  path: string;
  query?: Record<string, string | number | undefined>;
  /** A JSON body (object: stringified) or raw bytes. */
  json?: unknown;
  body?: Buffer | string;
  contentType?: string;
  /** Overrides the transport's retry count for this call (0: one attempt). */
  maxRetries?: number;
  /** Stop retrying once this absolute time (ms) has passed. */
  deadline?: number;
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface TransportStats {
  /** HTTP requests sent, retries included. */
  requests: number;
  retries: number;
  bytesSent: number;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    // Kept referenced: an awaited request keeps the process alive through its retries.
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", done);
      clearTimeout(timer);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });

export class HttpTransport {
  readonly baseUrl: string;
  readonly stats: TransportStats = { requests: 0, retries: 0, bytesSent: 0 };
  private readonly agent: http.Agent;
  private readonly isHttps: boolean;
  private readonly authorization: string | undefined;
  /** Keeps this transport's credentials out of messages (and, through Run, out of stored values). */
  readonly redactor: Redactor;
  private readonly options: TransportOptions;

  constructor(options: TransportOptions) {
    this.options = options;
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.isHttps = this.baseUrl.startsWith("https:");
    this.authorization = authorizationHeader(options.credentials ?? {});
    this.redactor = new Redactor(secretsOf(options.credentials ?? {}));
    this.agent = this.isHttps
      ? new https.Agent({ keepAlive: true, maxSockets: 8, ...readTlsFiles(options.tls ?? {}) })
      : new http.Agent({ keepAlive: true, maxSockets: 8 });
  }

  close(): void {
    this.agent.destroy();
  }

  /** Sends with retries; resolves for any HTTP status that is not retried, rejects for network errors. */
  async send(request: HttpRequest): Promise<HttpResponse> {
    const maxRetries = request.maxRetries ?? this.options.retry.maxRetries;
    const endpoint = `${request.method} ${request.path}`;
    for (let attempt = 0; ; attempt++) {
      let failure: Error;
      try {
        const response = await this.once(request);
        if (!RETRYABLE_STATUS.has(response.status) || attempt >= maxRetries) return response;
        failure = new Error(`HTTP ${response.status}`);
        const retryAfter = Number(response.headers["retry-after"]);
        if (Number.isFinite(retryAfter) && retryAfter > 0) {
          if (!(await this.wait(request, Math.min(retryAfter * 1000, this.options.retry.maxBackoffMs))))
            return response;
          continue;
        }
      } catch (error) {
        failure = error as Error;
        if (request.signal?.aborted || attempt >= maxRetries) {
          throw new MlflowNetworkError(
            endpoint,
            this.redactor.text(failure.message),
            (failure as NodeJS.ErrnoException).code,
          );
        }
      }
      const { backoffFactor, backoffJitter, maxBackoffMs } = this.options.retry;
      const delay = Math.min(backoffFactor * 1000 * 2 ** attempt, maxBackoffMs) + Math.random() * backoffJitter * 1000;
      if (!(await this.wait(request, delay))) {
        throw new MlflowNetworkError(
          endpoint,
          this.redactor.text(failure.message),
          (failure as NodeJS.ErrnoException).code,
        );
      }
    }
  }

  /** Sleeps before a retry; false when the deadline or an abort means no retry should follow. */
  private async wait(request: HttpRequest, ms: number): Promise<boolean> {
    if (request.deadline !== undefined && Date.now() + ms > request.deadline) return false;
    await sleep(ms, request.signal);
    if (request.signal?.aborted) return false;
    this.stats.retries++;
    return true;
  }

  private once(request: HttpRequest): Promise<HttpResponse> {
    let path = `${this.baseUrl}${request.path}`;
    if (request.query) {
      const search = new URLSearchParams();
      for (const [k, v] of Object.entries(request.query)) if (v !== undefined) search.set(k, String(v));
      const qs = search.toString();
      if (qs) path += `?${qs}`;
    }
    let body: Buffer | undefined;
    let contentType = request.contentType;
    if (request.json !== undefined) {
      body = Buffer.from(JSON.stringify(request.json));
      contentType ??= "application/json";
    } else if (request.body !== undefined) {
      body = typeof request.body === "string" ? Buffer.from(request.body) : request.body;
      contentType ??= "application/octet-stream";
    }
    const headers: http.OutgoingHttpHeaders = { "User-Agent": "marginlab-mlflow-client" };
    if (this.authorization) headers.Authorization = this.authorization;
    if (contentType) headers["Content-Type"] = contentType;
    if (body) headers["Content-Length"] = body.length;
    this.stats.requests++;
    this.stats.bytesSent += body?.length ?? 0;
    const lib = this.isHttps ? https : http;
    return new Promise((resolve, reject) => {
      const req = lib.request(path, { method: request.method, headers, agent: this.agent, signal: request.signal });
      req.setTimeout(this.options.timeoutMs, () => {
        req.destroy(Object.assign(new Error(`no answer within ${this.options.timeoutMs} ms`), { code: "ETIMEDOUT" }));
      });
      req.on("error", reject);
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      });
      req.end(body);
    });
  }
}
