/**
 * The per-run write-ahead journal: every item a run logs is appended here before it is sent, and an
 * acknowledgement line is appended once the server has taken it. One append-only JSON-lines file per
 * run (<dir>/<localId>.jsonl) plus a folder for artifact bytes; a torn last line (crash mid-write) is
 * ignored on reading. Writes go to the OS (write(2)) at every item; `close` fsyncs.
 *
 * A journal that cannot be written (disk full, read-only) raises a JournalError naming the journal
 * file and the filesystem; from then on appends fail with it, and what was written stays readable.
 */
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import type { DatasetInput, KeyValue, RunStatus } from "./client";

/** The journal cannot be created or written; `file` is the journal (or its folder). */
export class JournalError extends Error {
  readonly file: string;
  readonly code: string | undefined;
  constructor(message: string, file: string, code: string | undefined) {
    super(message);
    this.name = "JournalError";
    this.file = file;
    this.code = code;
  }
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(0)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

/** "the disk at /mnt/x (tmpfs, 0 B free of 256 KiB)": the mount holding `target`, from /proc/self/mounts. */
function describeDisk(target: string): string {
  let dir = path.resolve(target);
  while (!existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  try {
    dir = realpathSync(dir);
  } catch {
    // keep the resolved path
  }
  let mount = "/";
  let fsType = "";
  let readOnly = false;
  try {
    for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
      const [, where, type, opts] = line.split(" ");
      if (!where) continue;
      const at = where.replace(/\\040/g, " ");
      if ((dir === at || dir.startsWith(at === "/" ? "/" : `${at}/`)) && at.length >= mount.length) {
        mount = at;
        fsType = type;
        readOnly = opts.split(",").includes("ro");
      }
    }
  } catch {
    // not Linux: no mount table
  }
  let space = "";
  try {
    const st = statfsSync(dir);
    space = `${bytes(st.bavail * st.bsize)} free of ${bytes(st.blocks * st.bsize)}`;
  } catch {
    // statfs unsupported
  }
  const facts = [fsType, readOnly ? "mounted read-only" : "", space].filter(Boolean).join(", ");
  return `the disk at ${mount}${facts ? ` (${facts})` : ""}`;
}

/**
 * The real reason a folder cannot be made: recursive mkdir reports ENOENT or EEXIST where the truth is
 * a read-only or unwritable ancestor, or a file in the way.
 */
function mkdirFailure(dir: string, error: NodeJS.ErrnoException): NodeJS.ErrnoException {
  let at = path.resolve(dir);
  while (!existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
  try {
    if (!statSync(at).isDirectory()) {
      return Object.assign(new Error(`ENOTDIR: ${at} is a file, not a folder`), { code: "ENOTDIR" });
    }
    accessSync(at, constants.W_OK);
  } catch (probe) {
    return probe as NodeJS.ErrnoException;
  }
  return error;
}

function journalError(what: string, file: string, error: unknown, advice: string): JournalError {
  const e = error as NodeJS.ErrnoException;
  const reason = e.code ? `${e.code}: ${e.message.replace(/^[A-Z]+: /, "").replace(/, \w+( '.*')?$/, "")}` : e.message;
  return new JournalError(`${what} ${file} (${reason}) on ${describeDisk(file)}: ${advice}`, file, e.code);
}

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
  /** The first write error: the journal takes no more items. */
  failure: JournalError | undefined;
  /** The file ends in a torn line (a crash mid-write): the next line starts on a fresh one. */
  private torn = false;

  private constructor(dir: string, localId: string) {
    this.dir = dir;
    this.localId = localId;
    this.file = path.join(dir, `${localId}.jsonl`);
    this.filesDir = path.join(dir, `${localId}.files`);
    this.fd = -1;
  }

  /** A new journal for a new run; a JournalError naming the folder and its disk when it cannot be written. */
  static create(dir: string, localId: string): RunJournal {
    const j = new RunJournal(dir, localId);
    try {
      try {
        mkdirSync(dir, { recursive: true });
      } catch (error) {
        throw mkdirFailure(dir, error as NodeJS.ErrnoException);
      }
      j.fd = openSync(j.file, "a");
      j.write({ header: { localId, pid: process.pid, created: Date.now() } });
    } catch (error) {
      if (j.fd >= 0) closeSync(j.fd);
      throw error instanceof JournalError
        ? error
        : journalError(
            "cannot create the run journal",
            j.file,
            error,
            "pass journalDir (StartRunOptions.journalDir) naming a writable folder; nothing was logged",
          );
    }
    return j;
  }

  /** Reads an existing journal (for sync, or to resume); opened for appending acks. */
  static open(file: string): RunJournal {
    const localId = path.basename(file, ".jsonl");
    const j = new RunJournal(path.dirname(file), localId);
    const text = readFileSync(file, "utf8");
    j.torn = text.length > 0 && !text.endsWith("\n");
    const lines = text.split("\n");
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

  /** Writes one line, all of it (write(2) may take part); a failure is kept and thrown as a JournalError. */
  private write(line: Line): void {
    if (this.failure) throw this.failure;
    try {
      if (this.fd < 0) this.fd = openSync(this.file, "a"); // closed after an end that left items waiting
      const data = Buffer.from(`${this.torn ? "\n" : ""}${JSON.stringify(line)}\n`);
      let offset = 0;
      while (offset < data.length) {
        const written = writeSync(this.fd, data, offset);
        offset += written;
        // A partial write leaves a torn line: the next line must start on a fresh one.
        this.torn = offset < data.length;
      }
    } catch (error) {
      this.failure = journalError(
        "cannot write the run journal",
        this.file,
        error,
        "logging stopped; everything journaled before this is kept there and reaches the server " +
          "(free space or make the folder writable, then `npx marginlab sync` sends what is left)",
      );
      throw this.failure;
    }
  }

  /** Bookkeeping lines (acks, the server identity): lost ones only make sync re-check with the server. */
  private note(line: Line): void {
    if (this.failure) return;
    try {
      this.write(line);
    } catch {
      // kept in `failure`; the next append reports it
    }
  }

  /** Appends an item (write-ahead); returns its sequence number. */
  append(item: JournalItem): Entry {
    const entry = { ...item, s: this.nextSeq } as Entry;
    this.write(entry);
    this.nextSeq++;
    this.entries.set(entry.s, entry);
    return entry;
  }

  /** Stores artifact bytes in the journal's folder; returns the name to put in an ArtifactItem. */
  storeBytes(seqHint: string, data: Buffer): string {
    if (this.failure) throw this.failure;
    const name = `${this.nextSeq}-${seqHint.replace(/[^\w.-]+/g, "_").slice(-80)}`;
    try {
      mkdirSync(this.filesDir, { recursive: true });
      writeFileSync(path.join(this.filesDir, name), data);
    } catch (error) {
      rmSync(path.join(this.filesDir, name), { force: true });
      this.failure = journalError(
        "cannot write an artifact into the run journal",
        path.join(this.filesDir, name),
        error,
        "logging stopped; everything journaled before this is kept there and reaches the server",
      );
      throw this.failure;
    }
    return name;
  }

  /** The journal's copy of an artifact; `name` must be a file of this journal's folder (a replayed journal may not be trusted). */
  readBytes(name: string): Buffer {
    if (!name || name !== path.basename(name) || name === "." || name === "..") {
      throw new Error(
        `journal ${this.file}: artifact copy ${JSON.stringify(name)} is not a file name of ${this.filesDir}`,
      );
    }
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
    this.note({ ack: toRanges(fresh) });
  }

  reject(seqs: number[], error: string): void {
    for (const s of seqs) {
      this.done.add(s);
      this.rejected.push({ seq: s, error });
      this.entries.delete(s);
    }
    this.note({ rej: seqs, error });
  }

  setIdentity(identity: RunIdentity): void {
    this.identity = identity;
    this.note({ created: identity });
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

  /**
   * Once everything is acknowledged: move the journal to done/ and drop the artifact copies. False when
   * the folder refuses (full, read-only): the journal stays, and a later sync finds nothing to send.
   */
  retire(): boolean {
    this.close();
    try {
      const doneDir = path.join(this.dir, "done");
      mkdirSync(doneDir, { recursive: true });
      renameSync(this.file, path.join(doneDir, path.basename(this.file)));
      rmSync(this.filesDir, { recursive: true, force: true });
      return true;
    } catch {
      return false;
    }
  }
}

const heldLocks = new Set<string>();

function lockPath(journalFile: string): string {
  return journalFile.replace(/\.jsonl$/, ".lock");
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The pid in a lock file when that process is alive (and not this one), else undefined. */
function livePidOf(lock: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(lock, "utf8"));
  } catch {
    return undefined;
  }
  return Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid) ? pid : undefined;
}

/**
 * Takes the journal's lock (<localId>.lock, created exclusively, holding the pid) so that one process
 * at a time sends a run: a live run and `sync`, or two `sync`s. A lock left by a dead process (a crash)
 * is taken over. Returns the release function, or undefined when another live process (or another
 * sync in this process) holds it.
 */
export function tryLockJournal(journalFile: string): (() => void) | undefined {
  const lock = lockPath(journalFile);
  if (heldLocks.has(lock)) return undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    // Written whole under a private name, then linked into place: link(2) fails when the lock exists,
    // and a lock never exists half-written (an empty one would look stale to another taker).
    const mine = `${lock}.${process.pid}.${attempt}.tmp`;
    writeFileSync(mine, String(process.pid));
    try {
      linkSync(mine, lock);
      heldLocks.add(lock);
      return () => {
        heldLocks.delete(lock);
        rmSync(lock, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    } finally {
      rmSync(mine, { force: true });
    }
    if (livePidOf(lock) !== undefined) return undefined;
    // Stale (its process is gone): move it aside atomically, so two takers cannot both remove a fresh lock.
    const aside = `${lock}.${process.pid}.stale`;
    try {
      renameSync(lock, aside);
    } catch {
      continue; // someone else took it over first; try again
    }
    if (livePidOf(aside) !== undefined) {
      renameSync(aside, lock); // it had just been taken by a live process: give it back
      return undefined;
    }
    rmSync(aside, { force: true });
  }
  return undefined;
}

/** The lock of a new run's own journal (nobody else can hold it yet). */
export function lockJournal(journal: RunJournal): () => void {
  const release = tryLockJournal(journal.file);
  if (!release) throw new Error(`journal ${journal.file} is locked by another process`);
  return release;
}
