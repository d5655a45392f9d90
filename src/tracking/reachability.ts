/**
 * Whether this process can reach a tracking server. The first failed contact marks the server
 * unreachable for the process: later runs start and end without waiting on it (everything goes to
 * the journal, at full speed), and listeners hear about it once, so the CLI or a notebook can say so.
 * Any later success (a background retry, `marginlab sync`) marks it reachable again.
 */

export interface TrackingOfflineEvent {
  /** The server's URL (no credentials). */
  uri: string;
  /** Why: the network error of the failed contact. */
  reason: string;
  /** Where the runs' journals are. */
  journalDir: string;
  /** One line to show the user. */
  message: string;
}

const unreachable = new Map<string, TrackingOfflineEvent>();
const listeners = new Set<(event: TrackingOfflineEvent) => void>();

/** Calls `listener` each time a server becomes unreachable for this process. Returns an unsubscribe. */
export function onTrackingOffline(listener: (event: TrackingOfflineEvent) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function isUnreachable(uri: string): boolean {
  return unreachable.has(uri);
}

export function markUnreachable(uri: string, reason: string, journalDir: string): void {
  if (unreachable.has(uri)) return;
  const event: TrackingOfflineEvent = {
    uri,
    reason,
    journalDir,
    message:
      `MLflow server ${uri} is unreachable (${reason}): runs are logged to the journal in ${journalDir} ` +
      "without waiting; run `npx marginlab sync` once the server is back",
  };
  unreachable.set(uri, event);
  for (const listener of listeners) listener(event);
}

export function markReachable(uri: string): void {
  unreachable.delete(uri);
}
