/**
 * Runs: `startRun` returns a Run whose log calls only validate, append to the run's journal and queue
 * (training never waits on HTTP); a JournalSender delivers in the background. `end` flushes with a
 * deadline and reports what still waits in the journal for `marginlab sync`.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import {
  closeFigureRenderer,
  figureHtml,
  figurePng,
  PLOTLY_ARTIFACT,
  type PlotlyFigure,
  type PlotlySource,
  plotlyJs,
} from "../plots/html";
import { projectRoot } from "../project";
import { contentTypeOf, type DatasetInput, type KeyValue, type MlflowClient, type RunStatus } from "./client";
import { secretsOf, trackingConfigFromEnv } from "./config";
import { trackingClient } from "./connect";
import { encodeImage, type ImageSource, LOGGED_IMAGES_TAG } from "./images";
import { defaultJournalDir, type Entry, JournalError, type JournalItem, lockJournal, RunJournal } from "./journal";
import { configHash, flattenConfig } from "./params";
import { isUnreachable, markUnreachable } from "./reachability";
import type { Redactor } from "./redaction";
import { JournalSender, type RejectedItemError } from "./sender";
import { SystemMetricsMonitor, type SystemMetricsOptions, systemMetricsEnabled } from "./system-metrics";
import { inNotebook, type SourceOptions, systemTags } from "./system-tags";
import {
  paramString,
  validateArtifactPath,
  validateKey,
  validateParamValue,
  validateStep,
  validateTagValue,
} from "./validate";

export interface StartRunOptions extends SourceOptions {
  /** Experiment name (get-or-create). Default: MLFLOW_EXPERIMENT_NAME, else MLFLOW_EXPERIMENT_ID, else "Default". */
  experiment?: string;
  experimentId?: string;
  /** Run name (mlflow.runName); the server picks one when absent. */
  name?: string;
  /** Logged as params, flattened ("model.dim"); a child run also gets the marginlab.configHash tag of them. */
  params?: Record<string, unknown>;
  tags?: Record<string, string>;
  /** Markdown description (mlflow.note.content). */
  description?: string;
  /** Makes this a nested run (mlflow.parentRunId): a Run, or a server run id. */
  parent?: Run | string;
  /** Continue this server run instead of creating one (top-level runs default to MLFLOW_RUN_ID). */
  runId?: string;
  /** Server URL; default MLFLOW_TRACKING_URI, else the embedded server (started if needed). */
  trackingUri?: string;
  /** Share one client (and its connection pool) between runs. */
  client?: MlflowClient;
  /** Where the write-ahead journal lives; default <project>/.marginlab/journal. */
  journalDir?: string;
  /** Linger before sending a partial batch (ms, default 1000): a batch goes out when it is full (MLflow's limits), when its oldest point is this old, or at flush/end. */
  flushIntervalMs?: number;
  /** How long startRun waits for the server before carrying on offline (ms, default 15000). */
  startTimeoutMs?: number;
  /** End the run KILLED on SIGINT/SIGTERM (after flushing). Default: true, except inside a notebook kernel. */
  handleSignals?: boolean;
  /** Errors from background sending (a rejected key, lost credentials). Default: kept in `run.errors` only. */
  onError?: (error: Error) => void;
  /** Log the configuration's hash as the marginlab.configHash tag (default: true for child runs). */
  hashConfig?: boolean;
  /**
   * Sample `system/...` metrics (CPU, memory, disk, process RSS, GPU) in the background, every 10 s
   * by default. Default: on for top-level runs, off for nested ones; MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
   * (true/false) overrides that default, and `false` here switches it off.
   */
  systemMetrics?: boolean | SystemMetricsOptions;
}

export interface EndOptions {
  /** How long to wait for the server to take everything (ms, default 30000). */
  timeoutMs?: number;
}

export interface RunEndResult {
  runId: string | undefined;
  localId: string;
  status: RunStatus;
  /** Items still in the journal (0: all on the server). `marginlab sync` sends them later. */
  pending: number;
  /** Where the journal is, when something waits. */
  journal?: string;
  /** Non-finite metric values that were not sent, per key. */
  nonFinite: Record<string, number>;
  /** Entries the server refused, with its reasons, and other sending errors. */
  errors: Error[];
  sent: { requests: number; metrics: number; params: number; tags: number; artifacts: number };
}

export interface FigureResult {
  /** Artifact path of the standalone HTML figure. */
  html: string;
  /** Artifact path of the PNG, when a headless Chromium made one. */
  png?: string;
  /** Why there is no PNG. */
  pngSkipped?: string;
}

export type TableRows = Array<Record<string, unknown>> | { columns: string[]; data: unknown[][] };

export interface DatasetOptions {
  name: string;
  digest: string;
  source: string;
  sourceType?: string;
  schema?: string;
  profile?: string;
  /** mlflow.data.context: "train", "eval", ... */
  context?: string;
}

// --- process-wide state: live runs, signal handlers ---

const liveRuns = new Set<Run>();
const byLocalId = new Map<string, Run>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const onSignal = (signal: NodeJS.Signals) => {
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    // An application that listens too (the CLI) ends the runs itself (endLiveRuns) and reports.
    if (process.listenerCount(signal) > 0) return;
    const runs = [...liveRuns].filter((r) => r.handlesSignals);
    Promise.allSettled(runs.map((r) => r.end("KILLED", { timeoutMs: 5000 }))).finally(() => {
      // Re-raise so the process ends the way it would have without us.
      process.kill(process.pid, signal);
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // Like MLflow's atexit hook: a run nobody ended is ended FINISHED when the event loop drains.
  process.on("beforeExit", () => {
    for (const run of liveRuns) if (!run.ended) void run.end("FINISHED");
  });
}

/** Ends every live run of this process that handles signals (KILLED on an interrupt); what each saved. */
export function endLiveRuns(status: RunStatus = "KILLED", options: EndOptions = { timeoutMs: 5000 }) {
  const runs = [...liveRuns].filter((r) => r.handlesSignals);
  return Promise.all(runs.map((r) => r.end(status, options)));
}

/** A local id that sorts by creation time: journals replay parents before children. */
function newLocalId(): string {
  const t = new Date().toISOString().replace(/[-:.]/g, "").replace("T", "-").replace("Z", "");
  return `${t}-${randomBytes(4).toString("hex")}`;
}

/** The server id of a parent given by journal id: a live run of this process, or a finished journal. */
export function resolveParentFromJournals(dir: string, localId: string): string | undefined {
  const live = byLocalId.get(localId);
  if (live?.id) return live.id;
  for (const file of [path.join(dir, `${localId}.jsonl`), path.join(dir, "done", `${localId}.jsonl`)]) {
    try {
      const text = readFileSync(file, "utf8");
      const match = /\{"created":\{"runId":"([^"]+)"/.exec(text);
      if (match) return match[1];
    } catch {
      // not there
    }
  }
  return undefined;
}

export async function startRun(options: StartRunOptions = {}): Promise<Run> {
  const env = trackingConfigFromEnv();
  const parent = options.parent;
  const journalDir = options.journalDir ?? (parent instanceof Run ? parent.journalDir : defaultJournalDir(projectRoot));
  const existingRunId = options.runId ?? (parent === undefined ? env.runId : undefined);
  // Validate everything the caller gave before anything is written or sent.
  const params = flattenConfig(options.params ?? {});
  for (const [k, v] of Object.entries(params)) validateParamValue(validateKey("param", k), v);
  const userTags: Record<string, string> = { ...(options.tags ?? {}) };
  for (const [k, v] of Object.entries(userTags)) validateTagValue(validateKey("tag", k), v);
  if (options.name !== undefined) validateTagValue("mlflow.runName", options.name);

  const client =
    options.client ??
    (parent instanceof Run && !options.trackingUri
      ? parent.client
      : await trackingClient({ trackingUri: options.trackingUri, shared: true }));
  const localId = newLocalId();
  const tags: Record<string, string> = { ...systemTags(options), ...userTags, "marginlab.localId": localId };
  if (options.description) tags["mlflow.note.content"] = validateTagValue("mlflow.note.content", options.description);
  let parentLocalId: string | undefined;
  if (typeof parent === "string") tags["mlflow.parentRunId"] = parent;
  else if (parent instanceof Run) {
    if (parent.id) tags["mlflow.parentRunId"] = parent.id;
    else parentLocalId = parent.localId;
  }
  if (options.hashConfig ?? parent !== undefined) tags["marginlab.configHash"] = configHash(options.params ?? {});

  // A child goes where its parent is, even when the parent exists only in the journal so far.
  const inherit = options.experiment === undefined && options.experimentId === undefined && parent instanceof Run;
  const experimentId =
    options.experimentId ??
    (inherit ? parent.experimentId : undefined) ??
    (options.experiment === undefined && !inherit ? env.experimentId : undefined);
  const experimentName =
    options.experiment ??
    (experimentId ? undefined : inherit ? parent.experimentName : undefined) ??
    (experimentId ? undefined : (env.experimentName ?? "Default"));

  const journal = RunJournal.create(journalDir, localId);
  const run = new Run(client, journal, options, experimentName);
  // Tags other than the run name go in log-batch (runs/create takes them too, but a continued run cannot).
  const createTags: KeyValue[] = Object.entries(tags).map(([key, value]) => ({ key, value }));
  run.enqueue({
    t: "create",
    experimentName,
    experimentId,
    runName: options.name,
    startTime: Date.now(),
    tags: existingRunId ? [] : createTags,
    parentLocalId,
    existingRunId,
  });
  if (existingRunId) run.enqueue({ t: "tag", tags: createTags.filter((t) => t.key !== "mlflow.runName") });
  if (Object.keys(params).length > 0) run.logParams(params);

  // Wait (bounded) for the run to exist, so run.id is there in the normal case; offline, carry on.
  const created = await run.waitForServer(options.startTimeoutMs ?? 15_000);
  if (!created && run.sender.lastError && !run.sender.offline) {
    // A configuration problem (deleted experiment, bad credentials): fail now, keep nothing.
    const error = run.sender.lastError;
    await run.discard();
    throw error;
  }
  const sampling = options.systemMetrics;
  if (sampling === undefined ? systemMetricsEnabled(parent === undefined) : sampling !== false)
    run.sampleSystemMetrics(typeof sampling === "object" ? sampling : {});
  return run;
}

/** Runs `fn` inside a run: ends FINISHED when it resolves, FAILED (and rethrows) when it throws. */
export async function withRun<T>(options: StartRunOptions, fn: (run: Run) => Promise<T> | T): Promise<T> {
  const run = await startRun(options);
  try {
    const result = await fn(run);
    await run.end("FINISHED");
    return result;
  } catch (error) {
    await run.end("FAILED");
    throw error;
  }
}

export class Run {
  readonly client: MlflowClient;
  readonly journal: RunJournal;
  readonly sender: JournalSender;
  readonly localId: string;
  readonly handlesSignals: boolean;
  /** Errors from background sending; also passed to options.onError. */
  readonly errors: Error[] = [];
  /** Non-finite metric values skipped, per key. */
  readonly nonFinite: Record<string, number> = {};
  ended = false;
  /** The experiment named at start (a child's parent's), for children started before the server answers. */
  readonly experimentName: string | undefined;
  /** Set when the journal could not be written: logging has stopped with this error. */
  journalFailure: JournalError | undefined;
  private readonly params = new Map<string, string>();
  private readonly loggedTables: Array<{ path: string; type: "table" }> = [];
  private readonly releaseLock: () => void;
  private readonly redactor: Redactor;
  private endResult: Promise<RunEndResult> | undefined;
  private systemMetrics: SystemMetricsMonitor | undefined;
  private loggedImages = false;
  private plotlyLogged = false;

  constructor(
    client: MlflowClient,
    journal: RunJournal,
    private readonly options: StartRunOptions,
    experimentName?: string,
  ) {
    this.client = client;
    this.journal = journal;
    this.localId = journal.localId;
    this.experimentName = experimentName;
    this.redactor = client.transport.redactor.plus(secretsOf(trackingConfigFromEnv().credentials));
    this.handlesSignals = options.handleSignals ?? !inNotebook();
    this.releaseLock = lockJournal(journal);
    this.sender = new JournalSender(client, journal, {
      flushIntervalMs: options.flushIntervalMs,
      resolveParent: (id) => resolveParentFromJournals(journal.dir, id),
      onError: (error) => this.recordError(error),
    });
    liveRuns.add(this);
    byLocalId.set(this.localId, this);
    if (this.handlesSignals) installHandlers();
  }

  private recordError(error: Error): void {
    this.errors.push(error);
    this.options.onError?.(error);
  }

  /** The server's run id (undefined while the server has not been reached). */
  get id(): string | undefined {
    return this.journal.identity?.runId;
  }
  get experimentId(): string | undefined {
    return this.journal.identity?.experimentId ?? this.journal.createItem?.experimentId;
  }
  get journalDir(): string {
    return this.journal.dir;
  }
  /** The run's URL in the MLflow UI (when it exists on the server). */
  get url(): string | undefined {
    const identity = this.journal.identity;
    return identity
      ? `${this.client.trackingUri}/#/experiments/${identity.experimentId}/runs/${identity.runId}`
      : undefined;
  }

  /**
   * @internal redacts (the one place: redaction.ts), appends to the journal (write-ahead) and queues
   * for sending. A journal that cannot be written stops logging: the error (naming the journal and
   * the disk) is thrown here and at every later call, and the run is ended FAILED on the server with
   * that reason once what was journaled before has been sent.
   */
  enqueue(item: JournalItem): Entry {
    if (this.journalFailure) throw this.journalFailure;
    if (this.ended) throw new Error(`run ${this.id ?? this.localId} has ended; start a new run to log more`);
    let entry: Entry;
    try {
      entry = this.journal.append(this.redactor.item(item));
    } catch (error) {
      if (error instanceof JournalError) this.failJournal(error);
      throw error;
    }
    this.sender.enqueue(entry);
    return entry;
  }

  /** Stores artifact bytes in the journal (same failure rule as enqueue). */
  private storeBytes(target: string, data: Buffer): string {
    if (this.journalFailure) throw this.journalFailure;
    try {
      return this.journal.storeBytes(target, data);
    } catch (error) {
      if (error instanceof JournalError) this.failJournal(error);
      throw error;
    }
  }

  private failJournal(error: JournalError): void {
    this.journalFailure = error;
    this.recordError(error);
    this.ended = true;
    // Not journaled (the journal is what failed): sent after everything journaled before it.
    this.sender.enqueueUnjournaled({
      t: "tag",
      tags: [{ key: "marginlab.error", value: error.message.slice(0, 5000) }],
    });
    this.sender.enqueueUnjournaled({ t: "end", status: "FAILED", endTime: Date.now() });
  }

  /** @internal waits (bounded) for the run to exist; a server silent that long counts as unreachable. */
  async waitForServer(timeoutMs: number): Promise<boolean> {
    await this.sender.drain(timeoutMs);
    const silent = timeoutMs > 0 && this.id === undefined && this.sender.lastError === undefined;
    if (silent && !isUnreachable(this.client.trackingUri)) {
      markUnreachable(this.client.trackingUri, `no answer within ${timeoutMs} ms`, this.journalDir);
    }
    return this.id !== undefined;
  }

  /** @internal a run that could not be created: forget it entirely. */
  async discard(): Promise<void> {
    this.ended = true;
    await this.sender.stop();
    this.journal.retire();
    this.detach();
  }

  private detach(): void {
    this.releaseLock();
    liveRuns.delete(this);
    byLocalId.delete(this.localId);
  }

  /** @internal starts the background sampler of system/ metrics (stopped by end). */
  sampleSystemMetrics(options: SystemMetricsOptions): void {
    this.systemMetrics ??= new SystemMetricsMonitor((values, step) => this.logMetrics(values, step), options).start();
  }

  /**
   * Logs an image at a step in MLflow's layout (images/<key>+step+<N>+timestamp+<T>+<uuid>.png and a
   * WebP thumbnail) and sets mlflow.loggedImages, so the UI's image grid and comparison show it.
   * `image`: encoded bytes (PNG, JPEG, ...) or raw pixels. Returns the two artifact paths.
   */
  async logImage(key: string, image: ImageSource, step = 0): Promise<{ png: string; webp: string }> {
    validateStep(step);
    const files = await encodeImage(key, image, step);
    const png = this.logArtifact(files.png.bytes, files.png.path);
    const webp = this.logArtifact(files.webp.bytes, files.webp.path);
    if (!this.loggedImages) this.setTags({ [LOGGED_IMAGES_TAG]: "True" });
    this.loggedImages = true;
    return { png, webp };
  }

  /** Logs params (nested objects are flattened to dotted keys). A param keeps its first value, as in MLflow. */
  logParams(params: Record<string, unknown>): void {
    const flat = flattenConfig(params);
    const fresh: KeyValue[] = [];
    for (const [key, raw] of Object.entries(flat)) {
      validateKey("param", key);
      const value = validateParamValue(key, paramString(raw));
      const prior = this.params.get(key);
      if (prior !== undefined) {
        if (prior !== value) {
          throw new Error(
            `param "${key}" was already logged as "${prior}"; MLflow params cannot change (got "${value}")`,
          );
        }
        continue;
      }
      this.params.set(key, value);
      fresh.push({ key, value });
    }
    if (fresh.length > 0) this.enqueue({ t: "p", params: fresh });
  }

  /**
   * Logs metric values at a step (default 0). Returns at once; the values go out in background
   * batches. Non-finite values are not sent: they are counted in `nonFinite` and in end()'s result.
   */
  logMetrics(values: Record<string, number>, step = 0): void {
    validateStep(step);
    const finite: Record<string, number> = {};
    let any = false;
    for (const [key, value] of Object.entries(values)) {
      validateKey("metric", key);
      if (typeof value !== "number") throw new Error(`metric "${key}": value must be a number (got ${typeof value})`);
      if (!Number.isFinite(value)) {
        this.nonFinite[key] = (this.nonFinite[key] ?? 0) + 1;
        continue;
      }
      finite[key] = value;
      any = true;
    }
    if (any) this.enqueue({ t: "m", step, ts: Date.now(), values: finite });
  }

  logMetric(key: string, value: number, step = 0): void {
    this.logMetrics({ [key]: value }, step);
  }

  setTags(tags: Record<string, string>): void {
    const list: KeyValue[] = [];
    for (const [key, value] of Object.entries(tags)) {
      list.push({ key: validateKey("tag", key), value: validateTagValue(key, value) });
    }
    if (list.length > 0) this.enqueue({ t: "tag", tags: list });
  }

  setTag(key: string, value: string): void {
    this.setTags({ [key]: value });
  }

  /** Sets the run's Markdown description (mlflow.note.content). */
  setDescription(markdown: string): void {
    this.setTags({ "mlflow.note.content": markdown });
  }

  /**
   * Logs an artifact. A file path: uploaded under `artifactPath` (a folder, as in MLflow's
   * log_artifact). Bytes or a Uint8Array: `artifactPath` is the file's full path in the run.
   * The bytes are copied into the journal first; the upload happens in the background.
   * Returns the artifact path.
   */
  logArtifact(source: string | Uint8Array, artifactPath?: string): string {
    let target: string;
    let data: Buffer;
    if (typeof source === "string") {
      if (statSync(source).isDirectory()) throw new Error(`"${source}" is a folder; use logArtifacts for folders`);
      target = validateArtifactPath(artifactPath ? `${artifactPath}/${path.basename(source)}` : path.basename(source));
      data = readFileSync(source);
    } else {
      if (!artifactPath)
        throw new Error("logArtifact(bytes, artifactPath): artifactPath (the file's path in the run) is required");
      target = validateArtifactPath(artifactPath);
      data = Buffer.from(source.buffer, source.byteOffset, source.byteLength);
    }
    const file = this.storeBytes(target, data);
    this.enqueue({ t: "art", path: target, file, contentType: contentTypeOf(target) });
    return target;
  }

  /** Logs every file under a folder, keeping the layout, below `artifactPath`. Returns the paths. */
  logArtifacts(dir: string, artifactPath?: string): string[] {
    const out: string[] = [];
    const walk = (sub: string) => {
      for (const name of readdirSync(path.join(dir, sub)).sort()) {
        const rel = sub ? `${sub}/${name}` : name;
        if (statSync(path.join(dir, rel)).isDirectory()) walk(rel);
        else
          out.push(this.logArtifact(path.join(dir, rel), [artifactPath, sub].filter(Boolean).join("/") || undefined));
      }
    };
    walk("");
    return out;
  }

  /**
   * Logs a Plotly figure as `<name>.html` (a few KB loading the run's one copy of plotly.js,
   * plotly/plotly-<version>.min.mjs; see src/plots/html.ts) and `<name>.png` when a
   * headless Chromium is available (else `pngSkipped` says why). `name` may include folders, e.g.
   * "plots/loss". With `imageKey` the PNG is also logged with logImage (MLflow's image grid).
   */
  async logFigure(
    figure: PlotlyFigure,
    name: string,
    options: { png?: boolean; width?: number; height?: number; imageKey?: string } = {},
  ): Promise<FigureResult> {
    const base = name.replace(/\.(html|png)$/i, "");
    validateArtifactPath(base);
    const html = this.logArtifact(
      Buffer.from(figureHtml(figure, path.basename(base), this.plotlyFor(`${base}.html`))),
      `${base}.html`,
    );
    if (options.png === false) return { html, pngSkipped: "PNG not requested" };
    const png = await figurePng(figure, { width: options.width, height: options.height });
    if ("skipped" in png) return { html, pngSkipped: png.skipped };
    if (options.imageKey) await this.logImage(options.imageKey, png.png);
    return { html, png: this.logArtifact(png.png, `${base}.png`) };
  }

  /** The run's one copy of plotly.js for its figures (logged with the first); inlined while the run has no id. */
  private plotlyFor(figurePath: string): PlotlySource {
    if (!this.id) return { inline: true };
    if (!this.plotlyLogged) this.logArtifact(Buffer.from(plotlyJs()), PLOTLY_ARTIFACT);
    this.plotlyLogged = true;
    return { runId: this.id, artifact: PLOTLY_ARTIFACT, figurePath };
  }

  /**
   * Logs a table in MLflow's JSON table form ({"columns": [...], "data": [[...]]}, as mlflow.log_table
   * writes it), from row objects or columns+data. Returns the artifact path (`<name>.json`).
   */
  logTable(rows: TableRows, name: string): string {
    let table: { columns: string[]; data: unknown[][] };
    if (Array.isArray(rows)) {
      const columns: string[] = [];
      const seen = new Set<string>();
      for (const row of rows) {
        for (const key of Object.keys(row)) {
          if (!seen.has(key)) {
            seen.add(key);
            columns.push(key);
          }
        }
      }
      table = { columns, data: rows.map((row) => columns.map((c) => (row[c] === undefined ? null : row[c]))) };
    } else {
      if (rows.data.some((r) => r.length !== rows.columns.length)) {
        throw new Error(`logTable "${name}": every data row must have ${rows.columns.length} values (one per column)`);
      }
      table = { columns: rows.columns, data: rows.data };
    }
    const target = this.logArtifact(Buffer.from(JSON.stringify(table)), name.endsWith(".json") ? name : `${name}.json`);
    // As mlflow.log_table does: lets the UI's evaluation view find the table.
    if (!this.loggedTables.some((t) => t.path === target)) {
      this.loggedTables.push({ path: target, type: "table" });
      this.setTags({ "mlflow.loggedArtifacts": JSON.stringify(this.loggedTables) });
    }
    return target;
  }

  /** Records a dataset input (log-inputs), e.g. { name: "mnist", digest, source, context: "train" }. */
  logDataset(dataset: DatasetOptions): void {
    const input: DatasetInput = {
      tags: dataset.context ? [{ key: "mlflow.data.context", value: dataset.context }] : [],
      dataset: {
        name: dataset.name,
        digest: dataset.digest.slice(0, 36),
        source_type: dataset.sourceType ?? "local",
        source: dataset.source,
        schema: dataset.schema,
        profile: dataset.profile,
      },
    };
    this.enqueue({ t: "in", datasets: [input] });
  }

  /** A nested run under this one (inherits the experiment and the server). */
  child(options: Omit<StartRunOptions, "parent"> = {}): Promise<Run> {
    return startRun({
      journalDir: this.journalDir,
      flushIntervalMs: this.options.flushIntervalMs,
      ...options,
      parent: this,
      client: options.client ?? this.client,
    });
  }

  /** Sends what is queued now; resolves with the number of items still waiting. */
  flush(options: EndOptions = {}): Promise<number> {
    return this.sender.drain(options.timeoutMs ?? 30_000);
  }

  /**
   * Ends the run (FINISHED unless told otherwise) after flushing. Never throws for an unreachable
   * server: the result says how many items wait in the journal for `marginlab sync`.
   */
  end(status: RunStatus = "FINISHED", options: EndOptions = {}): Promise<RunEndResult> {
    if (!this.endResult) this.endResult = this.finish(status, options);
    return this.endResult;
  }

  private async finish(requested: RunStatus, options: EndOptions): Promise<RunEndResult> {
    await this.systemMetrics?.stop();
    // After a journal failure the run is already being ended FAILED (failJournal).
    const status = this.journalFailure ? "FAILED" : requested;
    if (!this.journalFailure) this.enqueue({ t: "end", status, endTime: Date.now() });
    this.ended = true;
    const pending = await this.sender.drain(options.timeoutMs ?? 30_000);
    await this.sender.stop();
    const result: RunEndResult = {
      runId: this.id,
      localId: this.localId,
      status,
      pending,
      nonFinite: { ...this.nonFinite },
      errors: [...this.errors],
      sent: { ...this.sender.sent },
    };
    if (pending > 0 || !this.journal.retire()) {
      this.journal.close();
      result.journal = this.journal.file;
      const last = this.sender.lastError;
      if (last && !result.errors.some((e) => e.message === last.message)) result.errors.push(last);
    }
    this.detach();
    if (liveRuns.size === 0) await closeFigureRenderer();
    return result;
  }

  /** Entries the server refused. */
  get rejected(): RejectedItemError[] {
    return this.sender.rejected;
  }
}
