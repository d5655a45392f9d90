/**
 * `marginlab sync`: replays what run journals still hold (server down during a run, process killed),
 * idempotently: a run created earlier is found by its marginlab.localId tag, metric points the server
 * already has are skipped, params are re-sent with the same value (accepted as no-ops), artifacts are
 * PUT to the same path. Each journal is locked while it is sent (journal.ts tryLockJournal), so two
 * syncs at once, or a sync and the live run, never both create its run; a crashed run's stale lock is
 * taken over and removed.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import type { MlflowClient } from "./client";
import { RunJournal, tryLockJournal } from "./journal";
import { resolveParentFromJournals } from "./run";
import { JournalSender } from "./sender";

export interface SyncRunReport {
  journal: string;
  localId: string;
  runId: string | undefined;
  /** Items waiting before the sync. */
  before: number;
  /** Items still waiting after it. */
  after: number;
  skipped?: string;
  errors: string[];
}

export interface SyncOptions {
  dir: string;
  client: MlflowClient;
  /** Per journal (ms, default 120000). */
  timeoutMs?: number;
}

export async function syncJournals(options: SyncOptions): Promise<SyncRunReport[]> {
  const reports = new Map<string, SyncRunReport>();
  // A child's journal can sort before its parent's (both named in the same millisecond); it then waits for
  // the parent's server run. Runs that waited on a parent are tried again while a pass makes progress.
  let files = RunJournal.list(options.dir);
  for (;;) {
    const waiting: string[] = [];
    for (const file of files) {
      const report = await syncFile(file, options);
      reports.set(file, report);
      if (report.after > 0 && report.errors.some((e) => e.includes("is not on the server yet"))) waiting.push(file);
    }
    if (waiting.length === 0 || waiting.length === files.length) break;
    files = waiting;
  }
  return [...reports.values()];
}

async function syncFile(file: string, options: SyncOptions): Promise<SyncRunReport> {
  const localId = path.basename(file, ".jsonl");
  const release = tryLockJournal(file);
  if (!release) {
    return {
      journal: file,
      localId,
      runId: undefined,
      before: 0,
      after: 0,
      skipped: "another process (the live run, or another sync) is sending this run",
      errors: [],
    };
  }
  try {
    return await syncOne(file, localId, options);
  } finally {
    release();
  }
}

async function syncOne(file: string, localId: string, options: SyncOptions): Promise<SyncRunReport> {
  // Read after taking the lock: a sync that finished meanwhile has retired it or recorded its run id.
  if (!existsSync(file)) {
    return { journal: file, localId, runId: undefined, before: 0, after: 0, skipped: "already synced", errors: [] };
  }
  const journal = RunJournal.open(file);
  if (!journal.hasEnd) {
    // The process that wrote it died without ending the run (a crash, SIGKILL): end it FAILED,
    // as a thrown error would have, instead of leaving it RUNNING forever.
    journal.append({ t: "end", status: "FAILED", endTime: Date.now() });
  }
  const pending = journal.pending();
  const report: SyncRunReport = {
    journal: file,
    localId,
    runId: journal.identity?.runId,
    before: pending.length,
    after: pending.length,
    errors: [],
  };
  if (pending.length === 0) {
    journal.retire();
    return report;
  }
  const sender = new JournalSender(options.client, journal, {
    flushIntervalMs: 0,
    dedupeAgainstServer: true,
    waitWhenUnreachable: true,
    resolveParent: (id) => resolveParentFromJournals(options.dir, id),
    onError: (error) => report.errors.push(error.message),
  });
  for (const entry of pending) sender.enqueue(entry);
  report.after = await sender.drain(options.timeoutMs ?? 120_000);
  await sender.stop();
  report.runId = journal.identity?.runId;
  if (report.after > 0 && sender.lastError && !report.errors.includes(sender.lastError.message)) {
    report.errors.push(sender.lastError.message);
  }
  if (report.after === 0) journal.retire();
  else journal.close();
  return report;
}
