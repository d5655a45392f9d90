/**
 * A typed client for the MLflow 3.x tracking REST API (/api/2.0/mlflow/...) and the server's proxied
 * artifact API (/api/2.0/mlflow-artifacts/...). One request per method except logBatch, which splits
 * to the server's limits (batch.ts), and the *All helpers, which follow page tokens. Artifact paths are
 * checked here, so no entry point can write or read outside a run's artifact folder.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { splitBatch } from "./batch";
import { normalizeTrackingUri, type TrackingConfig, trackingConfigFromEnv } from "./config";
import { HttpTransport, MlflowHttpError, type TransportStats } from "./http";
import { LIMITS, validateArtifactPath } from "./validate";

export type RunStatus = "RUNNING" | "SCHEDULED" | "FINISHED" | "FAILED" | "KILLED";
export type ViewType = "ACTIVE_ONLY" | "DELETED_ONLY" | "ALL";

export interface KeyValue {
  key: string;
  value: string;
}
export interface Metric {
  key: string;
  value: number;
  timestamp: number;
  step: number;
}
export interface Experiment {
  experiment_id: string;
  name: string;
  artifact_location?: string;
  lifecycle_stage: "active" | "deleted";
  creation_time?: number;
  last_update_time?: number;
  tags?: KeyValue[];
}
export interface RunInfo {
  run_id: string;
  run_name?: string;
  experiment_id: string;
  status: RunStatus;
  start_time?: number;
  end_time?: number;
  artifact_uri: string;
  lifecycle_stage: "active" | "deleted";
}
export interface MlflowRun {
  info: RunInfo;
  data: { metrics?: Metric[]; params?: KeyValue[]; tags?: KeyValue[] };
  inputs?: { dataset_inputs?: DatasetInput[] };
}
export interface Dataset {
  name: string;
  digest: string;
  source_type: string;
  source: string;
  schema?: string;
  profile?: string;
}
export interface DatasetInput {
  tags?: KeyValue[];
  dataset: Dataset;
}
export interface FileInfo {
  path: string;
  is_dir: boolean;
  file_size?: number;
}
export interface BatchPayload {
  metrics?: Metric[];
  params?: KeyValue[];
  tags?: KeyValue[];
}

export interface ClientOptions extends Partial<Omit<TrackingConfig, "trackingUri">> {
  /** The server's base URL; defaults to MLFLOW_TRACKING_URI. */
  trackingUri?: string;
}

/** Defaults for every request of a (scoped) client: fewer retries, an abort signal. */
export interface RequestDefaults {
  maxRetries?: number;
  signal?: AbortSignal;
}

export class MlflowClient {
  readonly trackingUri: string;
  readonly transport: HttpTransport;
  private defaults: RequestDefaults = {};

  constructor(options: ClientOptions = {}) {
    const env = trackingConfigFromEnv();
    const uri = options.trackingUri ?? env.trackingUri;
    if (!uri) {
      throw new Error(
        "no MLflow server: pass trackingUri or set MLFLOW_TRACKING_URI (or use connect() for the embedded server)",
      );
    }
    const normalized = normalizeTrackingUri(uri);
    this.trackingUri = normalized.uri;
    const credentials = { ...(options.credentials ?? env.credentials) };
    credentials.username ??= normalized.username;
    credentials.password ??= normalized.password;
    this.transport = new HttpTransport({
      baseUrl: this.trackingUri,
      credentials,
      tls: options.tls ?? env.tls,
      retry: { ...env.retry, ...options.retry },
      timeoutMs: options.timeoutMs ?? env.timeoutMs,
    });
  }

  /** The same client (same connections) whose requests all use these defaults. */
  scoped(defaults: RequestDefaults): MlflowClient {
    const scoped = Object.create(this) as MlflowClient;
    scoped.defaults = { ...this.defaults, ...defaults };
    return scoped;
  }

  get stats(): TransportStats {
    return this.transport.stats;
  }

  close(): void {
    this.transport.close();
  }

  /** A REST call; non-2xx answers become MlflowHttpError with the server's code and message. */
  async call<T>(
    method: "GET" | "POST",
    endpoint: string,
    body?: Record<string, unknown>,
    extra: { maxRetries?: number; deadline?: number; signal?: AbortSignal } = {},
  ): Promise<T> {
    const apiPath = `/api/2.0/mlflow/${endpoint}`;
    const response = await this.transport.send({
      method,
      path: apiPath,
      ...(method === "GET" ? { query: body as Record<string, string> } : { json: body ?? {} }),
      ...this.defaults,
      ...extra,
    });
    const text = response.body.toString("utf8");
    if (response.status < 200 || response.status >= 300)
      throw this.httpError(`${method} ${apiPath}`, response.status, text);
    return (text ? JSON.parse(text) : {}) as T;
  }

  private httpError(endpoint: string, status: number, text: string): MlflowHttpError {
    let code: string | undefined;
    let message = text.trim().slice(0, 2000);
    try {
      const parsed = JSON.parse(text);
      code = parsed.error_code;
      message = parsed.message ?? parsed.detail ?? message;
    } catch {
      // not JSON: auth proxies and the host-check middleware answer in plain text
    }
    return new MlflowHttpError(endpoint, status, code, this.transport.redactor.text(String(message || "(empty body)")));
  }

  // --- experiments ---

  async getExperimentByName(name: string): Promise<Experiment | undefined> {
    try {
      const r = await this.call<{ experiment: Experiment }>("GET", "experiments/get-by-name", {
        experiment_name: name,
      });
      return r.experiment;
    } catch (error) {
      if (error instanceof MlflowHttpError && error.errorCode === "RESOURCE_DOES_NOT_EXIST") return undefined;
      throw error;
    }
  }

  async getExperiment(experimentId: string): Promise<Experiment> {
    return (await this.call<{ experiment: Experiment }>("GET", "experiments/get", { experiment_id: experimentId }))
      .experiment;
  }

  async createExperiment(
    name: string,
    options: { artifactLocation?: string; tags?: KeyValue[] } = {},
  ): Promise<string> {
    const r = await this.call<{ experiment_id: string }>("POST", "experiments/create", {
      name,
      artifact_location: options.artifactLocation,
      tags: options.tags,
    });
    return r.experiment_id;
  }

  async restoreExperiment(experimentId: string): Promise<void> {
    await this.call("POST", "experiments/restore", { experiment_id: experimentId });
  }

  /**
   * The experiment with this name, created if missing (race-safe like mlflow.set_experiment). A name
   * held by a deleted experiment is an error that says how to resolve it, unless restoreDeleted.
   */
  async getOrCreateExperiment(name: string, options: { restoreDeleted?: boolean } = {}): Promise<Experiment> {
    if (!name || name.length > LIMITS.experimentNameLength) {
      throw new Error(
        `experiment name must have 1 to ${LIMITS.experimentNameLength} characters (got ${JSON.stringify(name)})`,
      );
    }
    let experiment = await this.getExperimentByName(name);
    if (!experiment) {
      try {
        const id = await this.createExperiment(name);
        return await this.getExperiment(id);
      } catch (error) {
        if (!(error instanceof MlflowHttpError && error.errorCode === "RESOURCE_ALREADY_EXISTS")) throw error;
        experiment = await this.getExperimentByName(name);
        if (!experiment) throw error;
      }
    }
    if (experiment.lifecycle_stage === "deleted") {
      if (!options.restoreDeleted) {
        throw new Error(
          `experiment "${name}" exists but is deleted (id ${experiment.experiment_id}), and MLflow keeps the name: ` +
            `restore it (UI, \`mlflow experiments restore --experiment-id ${experiment.experiment_id}\`, or restoreDeleted: true), ` +
            "purge it for good (`mlflow gc`), or choose another experiment name",
        );
      }
      await this.restoreExperiment(experiment.experiment_id);
      experiment = await this.getExperiment(experiment.experiment_id);
    }
    return experiment;
  }

  // --- runs ---

  async createRun(options: {
    experimentId: string;
    runName?: string;
    startTime?: number;
    tags?: KeyValue[];
  }): Promise<MlflowRun> {
    const r = await this.call<{ run: MlflowRun }>("POST", "runs/create", {
      experiment_id: options.experimentId,
      run_name: options.runName,
      start_time: options.startTime ?? Date.now(),
      tags: options.tags,
    });
    return r.run;
  }

  async updateRun(runId: string, update: { status?: RunStatus; endTime?: number; runName?: string }): Promise<RunInfo> {
    const r = await this.call<{ run_info: RunInfo }>("POST", "runs/update", {
      run_id: runId,
      status: update.status,
      end_time: update.endTime,
      run_name: update.runName,
    });
    return r.run_info;
  }

  /** Marks the run deleted (restorable, like `mlflow runs delete`). */
  async deleteRun(runId: string): Promise<void> {
    await this.call("POST", "runs/delete", { run_id: runId });
  }

  async restoreRun(runId: string): Promise<void> {
    await this.call("POST", "runs/restore", { run_id: runId });
  }

  async getRun(runId: string): Promise<MlflowRun> {
    return (await this.call<{ run: MlflowRun }>("GET", "runs/get", { run_id: runId })).run;
  }

  async searchRuns(options: {
    experimentIds: string[];
    filter?: string;
    runViewType?: ViewType;
    maxResults?: number;
    orderBy?: string[];
    pageToken?: string;
  }): Promise<{ runs: MlflowRun[]; nextPageToken?: string }> {
    const r = await this.call<{ runs?: MlflowRun[]; next_page_token?: string }>("POST", "runs/search", {
      experiment_ids: options.experimentIds,
      filter: options.filter,
      run_view_type: options.runViewType,
      max_results: options.maxResults,
      order_by: options.orderBy,
      page_token: options.pageToken,
    });
    return { runs: r.runs ?? [], nextPageToken: r.next_page_token || undefined };
  }

  /** Every matching run, following page tokens. */
  async searchAllRuns(options: {
    experimentIds: string[];
    filter?: string;
    runViewType?: ViewType;
    orderBy?: string[];
  }) {
    const runs: MlflowRun[] = [];
    let pageToken: string | undefined;
    do {
      const page = await this.searchRuns({ ...options, maxResults: 1000, pageToken });
      runs.push(...page.runs);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return runs;
  }

  async setTag(runId: string, key: string, value: string): Promise<void> {
    await this.call("POST", "runs/set-tag", { run_id: runId, key, value });
  }

  /** One log-batch request as given (no splitting): the unit the journal acknowledges. */
  async logBatchOnce(
    runId: string,
    batch: BatchPayload,
    extra: { deadline?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    await this.call(
      "POST",
      "runs/log-batch",
      { run_id: runId, metrics: batch.metrics, params: batch.params, tags: batch.tags },
      extra,
    );
  }

  /** Logs any number of metrics/params/tags, split into requests within the server's limits. Returns the request count. */
  async logBatch(runId: string, payload: BatchPayload): Promise<number> {
    const batches = splitBatch(payload);
    for (const batch of batches) await this.logBatchOnce(runId, batch);
    return batches.length;
  }

  async logInputs(runId: string, datasets: DatasetInput[]): Promise<void> {
    await this.call("POST", "runs/log-inputs", { run_id: runId, datasets });
  }

  /** The full history of one metric (all pages). */
  async getMetricHistory(runId: string, key: string): Promise<Metric[]> {
    const metrics: Metric[] = [];
    let pageToken: string | undefined;
    do {
      const r = await this.call<{ metrics?: Metric[]; next_page_token?: string }>("GET", "metrics/get-history", {
        run_id: runId,
        metric_key: key,
        max_results: 25000,
        page_token: pageToken,
      });
      for (const m of r.metrics ?? [])
        metrics.push({ ...m, value: Number(m.value), timestamp: Number(m.timestamp), step: Number(m.step ?? 0) });
      pageToken = r.next_page_token || undefined;
    } while (pageToken);
    return metrics;
  }

  // --- artifacts (proxied mlflow-artifacts:, http(s), or a local path the server shares with us) ---

  /**
   * Where an artifact of a run lives: a URL path on this server, or a local folder. `artifactPath` must
   * stay below the run's artifact root (no "..", validateArtifactPath): an error otherwise.
   */
  resolveArtifact(
    artifactUri: string,
    artifactPath = "",
  ): { kind: "http"; url: string } | { kind: "file"; file: string } {
    const rel = artifactPath === "" ? "" : validateArtifactPath(artifactPath);
    if (artifactUri.startsWith("mlflow-artifacts:")) {
      const parsed = new URL(artifactUri);
      const base = parsed.host ? `${new URL(this.trackingUri).protocol}//${parsed.host}` : this.trackingUri;
      const root = parsed.pathname.replace(/^\/+|\/+$/g, "");
      const full = [root, rel].filter(Boolean).join("/");
      return {
        kind: "http",
        url: `${base}/api/2.0/mlflow-artifacts/artifacts/${full.split("/").map(encodeURIComponent).join("/")}`,
      };
    }
    if (artifactUri.startsWith("http://") || artifactUri.startsWith("https://")) {
      return { kind: "http", url: [artifactUri.replace(/\/+$/, ""), rel].filter(Boolean).join("/") };
    }
    if (artifactUri.startsWith("file:") || artifactUri.startsWith("/")) {
      const root = artifactUri.startsWith("file:") ? fileURLToPath(artifactUri) : artifactUri;
      return { kind: "file", file: path.join(root, rel) };
    }
    throw new Error(
      `artifact store "${artifactUri.split(":")[0]}:" is not supported by marginlab: start the server with proxied artifacts ` +
        "(the default; --artifacts-destination s3://... keeps uploads going through the server)",
    );
  }

  private pathOf(url: string): string {
    if (!url.startsWith(this.trackingUri)) {
      throw new Error(`artifact URL on another host (${new URL(url).host}) is not supported`);
    }
    return url.slice(this.trackingUri.length);
  }

  async uploadArtifact(artifactUri: string, artifactPath: string, data: Buffer, contentType?: string): Promise<void> {
    const target = this.resolveArtifact(artifactUri, artifactPath);
    if (target.kind === "file") {
      mkdirSync(path.dirname(target.file), { recursive: true });
      writeFileSync(target.file, data);
      return;
    }
    const endpoint = this.pathOf(target.url);
    const response = await this.transport.send({
      ...this.defaults,
      method: "PUT",
      path: endpoint,
      body: data,
      contentType: contentType ?? contentTypeOf(artifactPath),
    });
    if (response.status < 200 || response.status >= 300) {
      throw this.httpError(`PUT ${decodeURIComponent(endpoint)}`, response.status, response.body.toString("utf8"));
    }
  }

  async downloadArtifact(artifactUri: string, artifactPath: string): Promise<Buffer> {
    const target = this.resolveArtifact(artifactUri, artifactPath);
    if (target.kind === "file") return readFileSync(target.file);
    const endpoint = this.pathOf(target.url);
    const response = await this.transport.send({ ...this.defaults, method: "GET", path: endpoint });
    if (response.status !== 200)
      throw this.httpError(`GET ${decodeURIComponent(endpoint)}`, response.status, response.body.toString("utf8"));
    return response.body;
  }

  /** The files directly under a folder of a run's artifacts (paths relative to the run's artifact root). */
  async listArtifacts(runId: string, artifactPath = ""): Promise<FileInfo[]> {
    const r = await this.call<{ files?: FileInfo[] }>("GET", "artifacts/list", {
      run_id: runId,
      path: artifactPath || undefined,
    });
    return (r.files ?? []).map((f) => ({
      ...f,
      file_size: f.file_size === undefined ? undefined : Number(f.file_size),
    }));
  }
}

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html",
  ".json": "application/json",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".txt": "text/plain",
  ".csv": "text/csv",
  ".md": "text/markdown",
  ".yaml": "application/x-yaml",
  ".yml": "application/x-yaml",
};

export function contentTypeOf(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? "application/octet-stream";
}
