/**
 * Sends a run's journal to the server in the background, in order, in log-batch requests within
 * MLflow's limits, and acknowledges each item in the journal once the server has taken all of it.
 * Used by a live Run and by `marginlab sync` alike, so a replay behaves exactly like the first send.
 *
 * Failure handling:
 * - network errors, 408/429/5xx: the items stay queued; retried with backoff (the run carries on);
 * - a 400 on a log-batch: the batch is bisected until the offending entries are isolated; those are
 *   rejected with the server's message (and reported), the rest is logged;
 * - other 4xx (401/403/404): sending pauses with that error; nothing is dropped.
 */
import type { KeyValue, Metric, MlflowClient } from "./client";
import { MlflowHttpError, MlflowNetworkError } from "./http";
import type { CreateItem, Entry, RunIdentity, RunJournal } from "./journal";
import { LIMITS } from "./validate";

type Part =
  | { seq: number; kind: "m"; metric: Metric }
  | { seq: number; kind: "p"; kv: KeyValue }
  | { seq: number; kind: "tag"; kv: KeyValue }
  | { seq: number; kind: "barrier"; entry: Entry };

/** An item the server refused (after isolating it), with the server's reason. */
export class RejectedItemError extends Error {
  readonly kind: "metric" | "param" | "tag" | "artifact" | "inputs" | "run";
  readonly key: string;
  override readonly cause: Error;
  constructor(kind: RejectedItemError["kind"], key: string, cause: Error) {
    super(`MLflow rejected ${kind} "${key}": ${cause.message}`);
    this.name = "RejectedItemError";
    this.kind = kind;
    this.key = key;
    this.cause = cause;
  }
}

export interface SenderOptions {
  /** Linger before sending a partial batch, so steps logged close together share a request. */
  flushIntervalMs?: number;
  /** Transport retries per request (the sender's own loop retries after that, with a longer backoff). */
  requestRetries?: number;
  /** Longest wait between attempts while the server is unreachable. */
  maxOfflineBackoffMs?: number;
  /** Look up server run ids of parents that were created by other journals/runs. */
  resolveParent?: (localId: string) => string | undefined;
  /** Drop metric points the server already has (sync after an interrupted send). */
  dedupeAgainstServer?: boolean;
  onError?: (error: Error) => void;
  /** Called once the run exists on the server. */
  onCreated?: (identity: RunIdentity) => void;
}

const isTransient = (e: unknown) =>
  e instanceof MlflowNetworkError || (e instanceof MlflowHttpError && e.retryable) || e instanceof ParentNotReadyError;

class ParentNotReadyError extends Error {}

export class JournalSender {
  readonly client: MlflowClient;
  readonly journal: RunJournal;
  private readonly options: Required<Omit<SenderOptions, "resolveParent" | "onError" | "onCreated">> & SenderOptions;
  private parts: Part[] = [];
  private readonly remaining = new Map<number, number>();
  private readonly rejectedSeqs = new Map<number, string>();
  private batchable = 0;
  private pumping: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private readonly abort = new AbortController();
  private stopped = false;
  private deduped = false;
  /** The error that stopped the last attempt (cleared by a success). */
  lastError: Error | undefined;
  /** Entries refused by the server (after isolation). */
  readonly rejected: RejectedItemError[] = [];
  /** log-batch requests that succeeded, and points/items sent. */
  readonly sent = { requests: 0, metrics: 0, params: 0, tags: 0, artifacts: 0 };

  constructor(client: MlflowClient, journal: RunJournal, options: SenderOptions = {}) {
    this.journal = journal;
    this.options = {
      flushIntervalMs: 500,
      requestRetries: 2,
      maxOfflineBackoffMs: 30_000,
      dedupeAgainstServer: false,
      ...options,
    };
    // Every request of this sender: few transport retries (its own loop retries longer), abortable by stop().
    this.client = client.scoped({ maxRetries: this.options.requestRetries, signal: this.abort.signal });
  }

  get identity(): RunIdentity | undefined {
    return this.journal.identity;
  }

  /** Items not yet acknowledged (what `end` reports as waiting). */
  get pendingItems(): number {
    return this.remaining.size;
  }

  get offline(): boolean {
    return this.lastError !== undefined && isTransient(this.lastError);
  }

  /** Queues a journal entry (already appended to the journal) for sending. */
  enqueue(entry: Entry): void {
    const before = this.parts.length;
    if (entry.t === "m") {
      for (const [key, value] of Object.entries(entry.values)) {
        this.parts.push({ seq: entry.s, kind: "m", metric: { key, value, timestamp: entry.ts, step: entry.step } });
      }
    } else if (entry.t === "p") {
      for (const kv of entry.params) this.parts.push({ seq: entry.s, kind: "p", kv });
    } else if (entry.t === "tag") {
      for (const kv of entry.tags) this.parts.push({ seq: entry.s, kind: "tag", kv });
    } else {
      this.parts.push({ seq: entry.s, kind: "barrier", entry });
    }
    const added = this.parts.length - before;
    if (added === 0) {
      this.journal.ack([entry.s]);
      return;
    }
    if (entry.t === "m" || entry.t === "p" || entry.t === "tag") this.batchable += added;
    this.remaining.set(entry.s, added);
    this.kick(false);
  }

  /** Starts sending now (urgent) or after the linger interval. */
  kick(urgent: boolean): void {
    if (this.stopped) return;
    if (this.pumping) {
      if (urgent) this.wake?.();
      return;
    }
    if (urgent || this.batchable >= LIMITS.metricsPerBatch) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.pumping = this.pump();
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (!this.pumping && !this.stopped) this.pumping = this.pump();
      }, this.options.flushIntervalMs);
      this.timer.unref();
    }
  }

  /**
   * Sends until the queue is empty or the deadline passes. Resolves with the number of items still
   * waiting (0: everything acknowledged or rejected).
   */
  async drain(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.parts.length > 0 && !this.stopped && Date.now() < deadline) {
      this.kick(true);
      const current = this.pumping;
      if (!current) break;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
      });
      await Promise.race([current, timeout]);
      clearTimeout(timer);
      if (this.parts.length > 0 && this.lastError && !isTransient(this.lastError)) break;
    }
    return this.pendingItems;
  }

  /** Stops sending (aborting a request in flight); the journal keeps what is left. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.abort.abort();
    this.wake?.();
    await this.pumping?.catch(() => undefined);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      this.wake = done;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    });
  }

  private async pump(): Promise<void> {
    let failures = 0;
    try {
      while (this.parts.length > 0 && !this.stopped) {
        try {
          await this.step();
          failures = 0;
          this.lastError = undefined;
        } catch (error) {
          if (this.stopped) break;
          this.lastError = error as Error;
          failures++;
          if (!isTransient(error)) {
            // 401/403/404 and such: waiting will not fix it; report and pause until the next kick.
            this.options.onError?.(error as Error);
            break;
          }
          await this.sleep(Math.min(this.options.maxOfflineBackoffMs, 250 * 2 ** failures));
        }
      }
    } finally {
      this.pumping = undefined;
      this.wake = undefined;
    }
  }

  /** One part of item `seq` is through; when it was the last, the item is acknowledged (in `acks`, or now). */
  private done(seq: number, acks?: number[]): void {
    const left = (this.remaining.get(seq) ?? 1) - 1;
    if (left > 0) {
      this.remaining.set(seq, left);
      return;
    }
    this.remaining.delete(seq);
    const rejection = this.rejectedSeqs.get(seq);
    if (rejection !== undefined) {
      this.rejectedSeqs.delete(seq);
      this.journal.reject([seq], rejection);
    } else if (acks) {
      acks.push(seq);
    } else {
      this.journal.ack([seq]);
    }
  }

  private async step(): Promise<void> {
    if (!this.journal.identity) {
      await this.create();
      return;
    }
    if (this.options.dedupeAgainstServer && !this.deduped) {
      await this.dedupe();
      this.deduped = true;
    }
    const head = this.parts[0];
    if (head.kind === "barrier") {
      await this.barrier(head.entry);
      this.parts.shift();
      this.done(head.seq);
      return;
    }
    // Greedy batch of consecutive batchable parts within the count and size limits.
    const batch: Part[] = [];
    let metrics = 0;
    let params = 0;
    let tags = 0;
    let bytes = 200;
    for (const part of this.parts) {
      if (part.kind === "barrier") break;
      if (batch.length >= LIMITS.entitiesPerBatch) break;
      if (part.kind === "m" && metrics >= LIMITS.metricsPerBatch) break;
      if (part.kind === "p" && params >= LIMITS.paramsPerBatch) break;
      if (part.kind === "tag" && tags >= LIMITS.tagsPerBatch) break;
      const size =
        part.kind === "m"
          ? part.metric.key.length + 80
          : Buffer.byteLength(part.kv.key) + Buffer.byteLength(part.kv.value) * 2 + 40;
      if (bytes + size > LIMITS.batchBytes - 50_000 && batch.length > 0) break;
      bytes += size;
      if (part.kind === "m") metrics++;
      else if (part.kind === "p") params++;
      else tags++;
      batch.push(part);
    }
    const sent = new Set<Part>();
    try {
      await this.sendParts(batch, sent);
    } finally {
      // Whatever the server took is done, even when a later half failed on the network.
      if (sent.size > 0) {
        // Usually the sent parts are exactly the head of the queue: drop them without a full scan.
        let prefix = 0;
        while (prefix < this.parts.length && sent.has(this.parts[prefix])) prefix++;
        if (prefix === sent.size) this.parts.splice(0, prefix);
        else this.parts = this.parts.filter((p) => !sent.has(p));
        const acks: number[] = [];
        for (const p of sent) {
          this.batchable--;
          this.done(p.seq, acks);
        }
        this.journal.ack(acks); // one journal line per request
      }
    }
  }

  /** One log-batch; on a 400, bisects to isolate and reject the entries the server refuses. */
  private async sendParts(parts: Part[], sent: Set<Part>): Promise<void> {
    const payload = { metrics: [] as Metric[], params: [] as KeyValue[], tags: [] as KeyValue[] };
    for (const p of parts) {
      if (p.kind === "m") payload.metrics.push(p.metric);
      else if (p.kind === "p") payload.params.push(p.kv);
      else if (p.kind === "tag") payload.tags.push(p.kv);
    }
    try {
      await this.client.logBatchOnce(this.journal.identity!.runId, payload);
      this.sent.requests++;
      this.sent.metrics += payload.metrics.length;
      this.sent.params += payload.params.length;
      this.sent.tags += payload.tags.length;
      for (const p of parts) sent.add(p);
    } catch (error) {
      if (!(error instanceof MlflowHttpError && error.status === 400)) throw error;
      if (parts.length > 1) {
        const mid = Math.ceil(parts.length / 2);
        await this.sendParts(parts.slice(0, mid), sent);
        await this.sendParts(parts.slice(mid), sent);
        return;
      }
      const part = parts[0];
      if (part.kind === "barrier") throw error;
      const kind = part.kind === "m" ? "metric" : part.kind === "p" ? "param" : "tag";
      const key = part.kind === "m" ? part.metric.key : part.kv.key;
      this.reject(part.seq, new RejectedItemError(kind, key, error));
      sent.add(part);
    }
  }

  private reject(seq: number, error: RejectedItemError): void {
    this.rejected.push(error);
    const prior = this.rejectedSeqs.get(seq);
    this.rejectedSeqs.set(seq, prior ? `${prior}; ${error.message}` : error.message);
    this.options.onError?.(error);
  }

  private async barrier(entry: Entry): Promise<void> {
    const runId = this.journal.identity!.runId;
    try {
      if (entry.t === "art") {
        await this.client.uploadArtifact(
          this.journal.identity!.artifactUri,
          entry.path,
          this.journal.readBytes(entry.file),
          entry.contentType,
        );
        this.sent.artifacts++;
      } else if (entry.t === "in") {
        await this.client.call("POST", "runs/log-inputs", { run_id: runId, datasets: entry.datasets });
      } else if (entry.t === "end") {
        await this.client.call("POST", "runs/update", { run_id: runId, status: entry.status, end_time: entry.endTime });
      }
    } catch (error) {
      if (!(error instanceof MlflowHttpError && error.status === 400)) throw error;
      const kind = entry.t === "art" ? "artifact" : entry.t === "in" ? "inputs" : "run";
      this.reject(entry.s, new RejectedItemError(kind, entry.t === "art" ? entry.path : entry.t, error));
    }
  }

  /** Creates (or finds, or continues) the run on the server; acknowledges the create item. */
  private async create(): Promise<void> {
    const head = this.parts[0];
    if (head?.kind !== "barrier" || head.entry.t !== "create") {
      throw new Error(`journal ${this.journal.file} has no create item; cannot send it`);
    }
    const item = head.entry as CreateItem & { s: number };
    let identity: RunIdentity;
    if (item.existingRunId) {
      const run = await this.client.getRun(item.existingRunId);
      if (run.info.status !== "RUNNING") await this.client.updateRun(item.existingRunId, { status: "RUNNING" });
      identity = { runId: run.info.run_id, experimentId: run.info.experiment_id, artifactUri: run.info.artifact_uri };
    } else {
      const tags = [...item.tags];
      if (item.parentLocalId && !tags.some((t) => t.key === "mlflow.parentRunId")) {
        const parentRunId = this.options.resolveParent?.(item.parentLocalId);
        if (!parentRunId) throw new ParentNotReadyError(`parent run ${item.parentLocalId} is not on the server yet`);
        tags.push({ key: "mlflow.parentRunId", value: parentRunId });
      }
      const experimentId =
        item.experimentId ?? (await this.client.getOrCreateExperiment(item.experimentName ?? "Default")).experiment_id;
      // A create whose answer was lost may have happened: find the run by its journal id first.
      const existing = await this.client.searchRuns({
        experimentIds: [experimentId],
        filter: `tags."marginlab.localId" = '${this.journal.localId}'`,
        runViewType: "ALL",
        maxResults: 1,
      });
      const run =
        existing.runs[0] ??
        (await this.client.createRun({ experimentId, runName: item.runName, startTime: item.startTime, tags }));
      identity = { runId: run.info.run_id, experimentId: run.info.experiment_id, artifactUri: run.info.artifact_uri };
    }
    this.journal.setIdentity(identity);
    this.parts.shift();
    this.done(item.s);
    this.options.onCreated?.(identity);
  }

  /** Drops queued metric points that the server already holds (same key, step, timestamp, value). */
  private async dedupe(): Promise<void> {
    const keys = new Set<string>();
    for (const p of this.parts) if (p.kind === "m") keys.add(p.metric.key);
    if (keys.size === 0) return;
    const have = new Set<string>();
    for (const key of keys) {
      for (const m of await this.client.getMetricHistory(this.journal.identity!.runId, key)) {
        have.add(`${key}\u0000${m.step}\u0000${m.timestamp}\u0000${m.value}`);
      }
    }
    const kept: Part[] = [];
    const acks: number[] = [];
    for (const p of this.parts) {
      if (
        p.kind === "m" &&
        have.has(`${p.metric.key}\u0000${p.metric.step}\u0000${p.metric.timestamp}\u0000${p.metric.value}`)
      ) {
        this.batchable--;
        this.done(p.seq, acks);
      } else {
        kept.push(p);
      }
    }
    this.parts = kept;
    this.journal.ack(acks);
  }
}
