/**
 * The per-run write-ahead journal: every item a run logs is appended here before it is sent, and an
 * acknowledgement line is appended once the server has taken it. One append-only JSON-lines file per
 * run (<dir>/<localId>.jsonl) plus a folder for artifact bytes; a torn last line (crash mid-write) is
 * ignored on reading. Writes go to the OS (write(2)) at every item; `close` fsyncs.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import type { DatasetInput, KeyValue, RunStatus } from "./client";

/** Everything needed to create the run on the server, even much later. */
export interface CreateItem {
  t: "create";
  experimentName?: string;
  experimentId?: string;
  runName?: string;
  startTime: number;
  tags: KeyValue[];
  /** The parent's journal id, when the parent may not exist on the server yet. */
  parentLocalId?: string;
  /** Continue this existing server run instead of creating one. */
  existingRunId?: string;
}
export interface MetricsItem {
  t: "m";
  step: number;
  ts: number;
  values: Record<string, number>;
}
export interface ParamsItem {
  t: "p";
  params: KeyValue[];
}
export interface TagsItem {
  t: "tag";
  tags: KeyValue[];
}
export interface ArtifactItem {
  t: "art";
  /** Path below the run's artifact root. */
  path: string;
  /** The journal's copy of the bytes, relative to the journal folder. */
  file: string;
  contentType?: string;
}
export interface InputsItem {
  t: "in";
  datasets: DatasetInput[];
}
export interface EndItem {
  t: "end";
  status: RunStatus;
  endTime: number;
}
export type JournalItem = CreateItem | MetricsItem | ParamsItem | TagsItem | ArtifactItem | InputsItem | EndItem;
export type Entry = JournalItem & { s: number };

export interface RunIdentity {
  runId: string;
  experimentId: string;
  artifactUri: string;
}

type Line =
  | Entry
  | { ack: Array<[number, number]> }
  | { rej: number[]; error: string }
  | { created: RunIdentity }
  | { header: { localId: string; pid: number; created: number } };

/** Sorted seq numbers as [from, to] ranges. */
function toRanges(seqs: number[]): Array<[number, number]> {
  const sorted = [...seqs].sort((a, b) => a - b);
  const ranges: Array<[number, number]> = [];
  for (const s of sorted) {
    const last = ranges[ranges.length - 1];
    if (last && s === last[1] + 1) last[1] = s;
    else ranges.push([s, s]);
  }
  return ranges;
}

export function defaultJournalDir(root: string): string {
  return path.join(root, ".marginlab", "journal");
}

export class RunJournal {
  readonly dir: string;
  readonly localId: string;
  readonly file: string;
  readonly filesDir: string;
  private fd: number;
  private nextSeq = 1;
  private readonly entries = new Map<number, Entry>();
  private readonly done = new Set<number>();
  readonly rejected: Array<{ seq: number; error: string }> = [];
  identity: RunIdentity | undefined;
  private endSeen = false;

  private constructor(dir: string, localId: string) {
    this.dir = dir;
    this.localId = localId;
    this.file = path.join(dir, `${localId}.jsonl`);
    this.filesDir = path.join(dir, `${localId}.files`);
    mkdirSync(dir, { recursive: true });
    this.fd = -1;
  }

  /** A new journal for a new run. */
  static create(dir: string, localId: string): RunJournal {
    const j = new RunJournal(dir, localId);
    j.fd = openSync(j.file, "a");
    j.write({ header: { localId, pid: process.pid, created: Date.now() } });
    return j;
  }

  /** Reads an existing journal (for sync, or to resume); opened for appending acks. */
  static open(file: string): RunJournal {
    const localId = path.basename(file, ".jsonl");
    const j = new RunJournal(path.dirname(file), localId);
    const lines = readFileSync(file, "utf8").split("\n");
    for (const line of lines) {
      if (!line) continue;
      let parsed: Line;
      try {
        parsed = JSON.parse(line);
      } catch {
        continue; // a torn write at a crash
      }
      if ("s" in parsed) {
        if (parsed.t === "end") j.endSeen = true;
        j.entries.set(parsed.s, parsed);
        j.nextSeq = Math.max(j.nextSeq, parsed.s + 1);
      } else if ("ack" in parsed) {
        for (const [a, b] of parsed.ack) for (let s = a; s <= b; s++) j.done.add(s);
      } else if ("rej" in parsed) {
        for (const s of parsed.rej) {
          j.done.add(s);
          j.rejected.push({ seq: s, error: parsed.error });
        }
      } else if ("created" in parsed) {
        j.identity = parsed.created;
      }
    }
    j.fd = openSync(file, "a");
    return j;
  }

  /** The journals in a folder that still hold unacknowledged items (or were never completed). */
  static list(dir: string): string[] {
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith(".jsonl"))
      .map((f) => path.join(dir, f))
      .sort();
  }

  private write(line: Line): void {
    if (this.fd < 0) this.fd = openSync(this.file, "a"); // closed after an end that left items waiting
    writeSync(this.fd, `${JSON.stringify(line)}\n`);
  }

  /** Appends an item (write-ahead); returns its sequence number. */
  append(item: JournalItem): Entry {
    const entry = { ...item, s: this.nextSeq++ } as Entry;
    this.entries.set(entry.s, entry);
    this.write(entry);
    return entry;
  }

  /** Stores artifact bytes in the journal's folder; returns the name to put in an ArtifactItem. */
  storeBytes(seqHint: string, data: Buffer): string {
    mkdirSync(this.filesDir, { recursive: true });
    const name = `${this.nextSeq}-${seqHint.replace(/[^\w.-]+/g, "_").slice(-80)}`;
    writeFileSync(path.join(this.filesDir, name), data);
    return name;
  }

  readBytes(name: string): Buffer {
    return readFileSync(path.join(this.filesDir, name));
  }

  ack(seqs: number[]): void {
    const fresh = seqs.filter((s) => !this.done.has(s));
    if (fresh.length === 0) return;
    for (const s of fresh) {
      this.done.add(s);
      const entry = this.entries.get(s);
      // The bytes are on the server now; the journal's copy is no longer needed.
      if (entry?.t === "art") rmSync(path.join(this.filesDir, entry.file), { force: true });
      // Keep the map small: acknowledged items are never needed again by this process.
      this.entries.delete(s);
    }
    this.write({ ack: toRanges(fresh) });
  }

  reject(seqs: number[], error: string): void {
    for (const s of seqs) {
      this.done.add(s);
      this.rejected.push({ seq: s, error });
      this.entries.delete(s);
    }
    this.write({ rej: seqs, error });
  }

  setIdentity(identity: RunIdentity): void {
    this.identity = identity;
    this.write({ created: identity });
  }

  /** Items not yet acknowledged or rejected, in order. */
  pending(): Entry[] {
    return [...this.entries.values()].filter((e) => !this.done.has(e.s)).sort((a, b) => a.s - b.s);
  }

  get pendingCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (!this.done.has(e.s)) n++;
    return n;
  }

  /** Whether the run's end (status) was ever journaled. */
  get hasEnd(): boolean {
    return this.endSeen || [...this.entries.values()].some((e) => e.t === "end");
  }

  /** The create item (always seq 1 of a journal that marginlab wrote). */
  get createItem(): CreateItem | undefined {
    for (const e of this.entries.values()) if (e.t === "create") return e;
    return undefined;
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      fsyncSync(this.fd);
    } catch {
      // fsync is best effort (some filesystems refuse it)
    }
    closeSync(this.fd);
    this.fd = -1;
  }

  /** Once everything is acknowledged: move the journal to done/ and drop the artifact copies. */
  retire(): void {
    this.close();
    const doneDir = path.join(this.dir, "done");
    mkdirSync(doneDir, { recursive: true });
    renameSync(this.file, path.join(doneDir, path.basename(this.file)));
    rmSync(this.filesDir, { recursive: true, force: true });
  }
}

/** A pid file next to a journal, so `sync` leaves runs alone that a live process is still sending. */
export function lockJournal(journal: RunJournal): () => void {
  const lock = path.join(journal.dir, `${journal.localId}.lock`);
  writeFileSync(lock, String(process.pid));
  return () => {
    try {
      unlinkSync(lock);
    } catch {
      // already gone
    }
  };
}

export function isLockedByLiveProcess(journalFile: string): boolean {
  const lock = journalFile.replace(/\.jsonl$/, ".lock");
  if (!existsSync(lock)) return false;
  const pid = Number(readFileSync(lock, "utf8"));
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
