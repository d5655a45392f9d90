/**
 * Sends a run's journal to the server in the background, in order, in log-batch requests filled up to
 * MLflow's limits (batch.ts), and acknowledges each item in the journal once the server has taken all
 * of it. Used by a live Run and by `marginlab sync` alike, so a replay behaves exactly like the first send.
 *
 * Batching: a partial batch lingers (flushIntervalMs since its oldest point) unless it is full or a
 * flush/end is waiting, so steady logging sends full requests, not one per point.
 *
 * Failure handling (nothing is dropped except what the server refuses item by item):
 * - network errors, 408/429/5xx: the items stay queued; retried with backoff (the run carries on), and
 *   the server is marked unreachable for the process (reachability.ts), so nobody waits on it;
 * - run-level errors (the run deleted or its experiment, not found, not active, permission denied,
 *   credentials): the items stay queued, the user is told once what to do (RunUnavailableError), and
 *   sending is retried with backoff, so a restored run gets everything;
 * - a 400 on a log-batch of an active run: the batch is bisected until the offending entries are
 *   isolated; those are rejected with the server's message (and reported), the rest is logged.
 */
import { BatchBuilder } from "./batch";
import type { KeyValue, Metric, MlflowClient } from "./client";
import { MlflowHttpError, MlflowNetworkError } from "./http";
import type { CreateItem, EndItem, Entry, RunIdentity, RunJournal, TagsItem } from "./journal";
import { isUnreachable, markReachable, markUnreachable } from "./reachability";
import { LIMITS, validateArtifactPath } from "./validate";

type Part =
  | { seq: number; queuedAt: number; kind: "m"; metric: Metric }
  | { seq: number; queuedAt: number; kind: "p" | "tag"; kv: KeyValue }
  | { seq: number; queuedAt: number; kind: "barrier"; entry: Entry };

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

/** The run as a whole cannot take data now (deleted, missing, not active, permission): nothing is dropped. */
export class RunUnavailableError extends Error {
  readonly runId: string;
  override readonly cause: Error;
  constructor(runId: string, cause: Error, journalFile: string) {
    const http = cause instanceof MlflowHttpError ? cause : undefined;
    const what =
      http?.status === 401 || http?.status === 403
        ? "check the credentials and your permission on the run's experiment"
        : http?.status === 404
          ? "the run is not on this server (purged, or another server): point MLFLOW_TRACKING_URI at the right one"
          : `restore it (\`mlflow runs restore --run-id ${runId}\`, or Restore in the UI; its experiment too if deleted)`;
    super(
      `MLflow run ${runId} cannot take data (${cause.message}); nothing is dropped: the items wait in ${journalFile} ` +
        `and are retried: ${what}, then they are sent (or later with \`npx marginlab sync\`)`,
    );
    this.name = "RunUnavailableError";
    this.runId = runId;
    this.cause = cause;
  }
}

/** Errors about the whole run, not one item: retrying later (after the user acts) can succeed. */
export function isRunLevel(error: unknown): boolean {
  if (error instanceof RunUnavailableError) return true;
  if (!(error instanceof MlflowHttpError)) return false;
  if (error.status === 401 || error.status === 403 || error.status === 404) return true;
  return error.status === 400 && /must be in the 'active' state/.test(error.serverMessage);
}

export interface SenderOptions {
  /** Linger before sending a partial batch, so steps logged close together share a request (ms, default 1000). */
  flushIntervalMs?: number;
  /** Transport retries per request (the sender's own loop retries after that, with a longer backoff). */
  requestRetries?: number;
  /** Longest wait between attempts while the server is unreachable. */
  maxOfflineBackoffMs?: number;
  /** Look up server run ids of parents that were created by other journals/runs. */
  resolveParent?: (localId: string) => string | undefined;
  /** Drop metric points the server already has (sync after an interrupted send). */
  dedupeAgainstServer?: boolean;
  /** Wait for a server marked unreachable in this process (sync: true; a live run: false, no waiting). */
  waitWhenUnreachable?: boolean;
  onError?: (error: Error) => void;
}

const isTransient = (e: unknown) =>
  e instanceof MlflowNetworkError || (e instanceof MlflowHttpError && e.retryable) || e instanceof ParentNotReadyError;

class ParentNotReadyError extends Error {}

export class JournalSender {
  readonly client: MlflowClient;
  readonly journal: RunJournal;
  private readonly options: Required<Omit<SenderOptions, "resolveParent" | "onError">> & SenderOptions;
  private parts: Part[] = [];
  private readonly remaining = new Map<number, number>();
  private readonly rejectedSeqs = new Map<number, string>();
  private batchable = 0;
  private pumping: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private sleepingFor: "linger" | "backoff" | undefined;
  private readonly abort = new AbortController();
  private stopped = false;
  private deduped = false;
  /** flush()/end() calls waiting: no lingering while one is. */
  private flushing = 0;
  /** Send attempts so far, and who waits for the next one to finish. */
  private attempts = 0;
  private attemptWaiters: Array<() => void> = [];
  private reported: string | undefined;
  private unjournaled = 0;
  /** The error that stopped the last attempt (cleared by a success). */
  lastError: Error | undefined;
  /** Entries refused by the server (after isolation). */
  readonly rejected: RejectedItemError[] = [];
  /** log-batch requests that succeeded, and points/items sent. */
  readonly sent = { requests: 0, metrics: 0, params: 0, tags: 0, artifacts: 0 };

  constructor(client: MlflowClient, journal: RunJournal, options: SenderOptions = {}) {
    this.journal = journal;
    this.options = {
      flushIntervalMs: 1000,
      requestRetries: 2,
      maxOfflineBackoffMs: 30_000,
      dedupeAgainstServer: false,
      waitWhenUnreachable: false,
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

  /** The server could not be reached (this sender's last attempt, or any contact of this process). */
  get offline(): boolean {
    return (this.lastError !== undefined && isTransient(this.lastError)) || isUnreachable(this.client.trackingUri);
  }

  /** Queues a journal entry (already appended to the journal) for sending. */
  enqueue(entry: Entry): void {
    const before = this.parts.length;
    const queuedAt = Date.now();
    if (entry.t === "m") {
      for (const [key, value] of Object.entries(entry.values)) {
        this.parts.push({
          seq: entry.s,
          queuedAt,
          kind: "m",
          metric: { key, value, timestamp: entry.ts, step: entry.step },
        });
      }
    } else if (entry.t === "p") {
      for (const kv of entry.params) this.parts.push({ seq: entry.s, queuedAt, kind: "p", kv });
    } else if (entry.t === "tag") {
      for (const kv of entry.tags) this.parts.push({ seq: entry.s, queuedAt, kind: "tag", kv });
    } else {
      this.parts.push({ seq: entry.s, queuedAt, kind: "barrier", entry });
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

  /**
   * Queues an item that could not be journaled (the journal failed): sent like the others, never
   * acknowledged in the journal. Used to end a run FAILED with the journal's error.
   */
  enqueueUnjournaled(item: TagsItem | EndItem): void {
    this.enqueue({ ...item, s: -++this.unjournaled });
  }

  /** Starts sending now (urgent: no linger) or lets the pump linger for a fuller batch. */
  kick(urgent: boolean): void {
    if (this.stopped) return;
    if (this.pumping) {
      if (urgent || (this.sleepingFor === "linger" && this.batchable >= LIMITS.metricsPerBatch)) this.wake?.();
      return;
    }
    this.pumping = this.pump();
  }

  /**
   * Sends until the queue is empty, the deadline passes, or an attempt fails in a way waiting will not
   * fix (the server unreachable for this process, a run-level or configuration error). Resolves with
   * the number of items still waiting (0: everything acknowledged or rejected).
   */
  async drain(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    const firstAttempt = this.attempts;
    this.flushing++;
    try {
      while (this.parts.length > 0 && !this.stopped && Date.now() < deadline) {
        if (!this.options.waitWhenUnreachable && isUnreachable(this.client.trackingUri)) break;
        if (this.attempts > firstAttempt && this.lastError && !isTransient(this.lastError)) break;
        this.kick(true);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((resolve) => this.attemptWaiters.push(resolve)),
          this.pumping,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
          }),
        ]);
        clearTimeout(timer);
      }
    } finally {
      this.flushing--;
    }
    return this.pendingItems;
  }

  /** Stops sending (aborting a request in flight); the journal keeps what is left. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.wake?.();
    await this.pumping?.catch(() => undefined);
  }

  private sleep(ms: number, why: "linger" | "backoff"): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      this.sleepingFor = why;
      const self = this;
      this.wake = done;
      function done() {
        clearTimeout(timer);
        self.sleepingFor = undefined;
        resolve();
      }
    });
  }

  /** How long to wait for a fuller batch before sending the head of the queue (0: send now). */
  private lingerMs(): number {
    const head = this.parts[0];
    if (!head || head.kind === "barrier" || !this.journal.identity || this.flushing > 0) return 0;
    if (this.batchable >= LIMITS.metricsPerBatch) return 0;
    return Math.max(0, head.queuedAt + this.options.flushIntervalMs - Date.now());
  }

  private attempted(): void {
    this.attempts++;
    for (const waiter of this.attemptWaiters.splice(0)) waiter();
  }

  private report(error: Error): void {
    if (error.message === this.reported) return; // once per episode, not at every retry
    this.reported = error.message;
    this.options.onError?.(error);
  }

  private async pump(): Promise<void> {
    let failures = 0;
    try {
      while (this.parts.length > 0 && !this.stopped) {
        const linger = this.lingerMs();
        if (linger > 0) {
          await this.sleep(linger, "linger");
          continue;
        }
        try {
          await this.step();
          failures = 0;
          this.lastError = undefined;
          this.reported = undefined;
          markReachable(this.client.trackingUri);
          this.attempted();
        } catch (error) {
          if (this.stopped) break;
          const failure = this.explain(error as Error);
          this.lastError = failure;
          failures++;
          if (error instanceof MlflowNetworkError) {
            markUnreachable(this.client.trackingUri, error.message, this.journal.dir);
          }
          if (!isTransient(failure)) this.report(failure);
          this.attempted();
          // A configuration error: pause until the next kick. Offline or run-level: retry with backoff.
          if (!isTransient(failure) && !isRunLevel(failure)) break;
          await this.sleep(Math.min(this.options.maxOfflineBackoffMs, 250 * 2 ** failures), "backoff");
        }
      }
    } finally {
      this.pumping = undefined;
      this.wake = undefined;
      this.attempted();
    }
  }

  /** A run-level error as the user should read it: what happened, that nothing is lost, what to do. */
  private explain(error: Error): Error {
    const runId = this.journal.identity?.runId;
    if (!runId || !isRunLevel(error) || error instanceof RunUnavailableError) return error;
    return new RunUnavailableError(runId, error, this.journal.file);
  }

  /** One part of item `seq` is through; when it was the last, the item is acknowledged (in `acks`, or now). */
  private done(seq: number, acks?: number[]): void {
    const left = (this.remaining.get(seq) ?? 1) - 1;
    if (left > 0) {
      this.remaining.set(seq, left);
      return;
    }
    this.remaining.delete(seq);
    if (seq < 0) return; // never journaled
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
    // One request of consecutive batchable parts, as full as MLflow allows.
    const builder = new BatchBuilder();
    const batch: Part[] = [];
    for (const part of this.parts) {
      if (part.kind === "barrier") break;
      const fits = builder.add(
        part.kind === "m"
          ? { kind: "metric", metric: part.metric }
          : { kind: part.kind === "p" ? "param" : "tag", kv: part.kv },
      );
      if (!fits) break;
      batch.push(part);
    }
    const sent = new Set<Part>();
    try {
      await this.sendParts(batch, sent, true);
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

  /**
   * One log-batch; on a 400 about the items (the run itself being active), bisects to isolate and
   * reject the entries the server refuses. Run-level errors propagate: nothing is marked.
   */
  private async sendParts(parts: Part[], sent: Set<Part>, top = false): Promise<void> {
    const payload = { metrics: [] as Metric[], params: [] as KeyValue[], tags: [] as KeyValue[] };
    for (const p of parts) {
      if (p.kind === "m") payload.metrics.push(p.metric);
      else if (p.kind === "p") payload.params.push(p.kv);
      else if (p.kind === "tag") payload.tags.push(p.kv);
    }
    const runId = this.journal.identity!.runId;
    try {
      await this.client.logBatchOnce(runId, payload);
      this.sent.requests++;
      this.sent.metrics += payload.metrics.length;
      this.sent.params += payload.params.length;
      this.sent.tags += payload.tags.length;
      for (const p of parts) sent.add(p);
    } catch (error) {
      if (!(error instanceof MlflowHttpError && error.status === 400) || isRunLevel(error)) throw error;
      // A 400 may still be about the run (a server whose wording differs): ask before blaming items.
      if (top) await this.checkRunActive(runId, error);
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

  private async checkRunActive(runId: string, cause: Error): Promise<void> {
    const run = await this.client.getRun(runId);
    if (run.info.lifecycle_stage !== "active") throw new RunUnavailableError(runId, cause, this.journal.file);
  }

  private reject(seq: number, error: RejectedItemError): void {
    this.rejected.push(error);
    const prior = this.rejectedSeqs.get(seq);
    this.rejectedSeqs.set(seq, prior ? `${prior}; ${error.message}` : error.message);
    this.options.onError?.(error);
  }

  private async barrier(entry: Entry): Promise<void> {
    const { runId, artifactUri } = this.journal.identity!;
    if (entry.t === "art") {
      // A journal replayed by sync is data, not trusted: its paths must stay in the run's folders.
      let data: Buffer;
      try {
        validateArtifactPath(entry.path);
        data = this.journal.readBytes(entry.file);
      } catch (error) {
        this.reject(entry.s, new RejectedItemError("artifact", entry.path, error as Error));
        return;
      }
      try {
        await this.client.uploadArtifact(artifactUri, entry.path, data, entry.contentType);
        this.sent.artifacts++;
      } catch (error) {
        if (!(error instanceof MlflowHttpError && error.status === 400) || isRunLevel(error)) throw error;
        this.reject(entry.s, new RejectedItemError("artifact", entry.path, error));
      }
      return;
    }
    try {
      if (entry.t === "in") await this.client.logInputs(runId, entry.datasets);
      else if (entry.t === "end") await this.client.updateRun(runId, { status: entry.status, endTime: entry.endTime });
    } catch (error) {
      if (!(error instanceof MlflowHttpError && error.status === 400) || isRunLevel(error)) throw error;
      await this.checkRunActive(runId, error);
      this.reject(entry.s, new RejectedItemError(entry.t === "in" ? "inputs" : "run", entry.t, error));
    }
  }

  /** Creates (or finds, or continues) the run on the server; acknowledges the create item. */
  private async create(): Promise<void> {
    const head = this.parts[0];
    if (head?.kind !== "barrier" || head.entry.t !== "create") {
      throw new Error(`journal ${this.journal.file} has no create item; cannot send it`);
    }
    const item = head.entry as CreateItem & { s: number };
    // The first contact: one attempt, so an unreachable server is known at once (the loop retries later).
    const client = this.client.scoped({ maxRetries: 0 });
    let identity: RunIdentity;
    if (item.existingRunId) {
      const run = await client.getRun(item.existingRunId);
      if (run.info.status !== "RUNNING") await client.updateRun(item.existingRunId, { status: "RUNNING" });
      identity = { runId: run.info.run_id, experimentId: run.info.experiment_id, artifactUri: run.info.artifact_uri };
    } else {
      const tags = [...item.tags];
      if (item.parentLocalId && !tags.some((t) => t.key === "mlflow.parentRunId")) {
        const parentRunId = this.options.resolveParent?.(item.parentLocalId);
        if (!parentRunId) throw new ParentNotReadyError(`parent run ${item.parentLocalId} is not on the server yet`);
        tags.push({ key: "mlflow.parentRunId", value: parentRunId });
      }
      const experimentId =
        item.experimentId ?? (await client.getOrCreateExperiment(item.experimentName ?? "Default")).experiment_id;
      // A create whose answer was lost may have happened: find the run by its journal id first.
      const existing = await client.searchRuns({
        experimentIds: [experimentId],
        filter: `tags."marginlab.localId" = '${this.journal.localId}'`,
        runViewType: "ALL",
        maxResults: 1,
      });
      const run =
        existing.runs[0] ??
        (await client.createRun({ experimentId, runName: item.runName, startTime: item.startTime, tags }));
      identity = { runId: run.info.run_id, experimentId: run.info.experiment_id, artifactUri: run.info.artifact_uri };
    }
    this.journal.setIdentity(identity);
    this.parts.shift();
    this.done(item.s);
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
