/**
 * The loss heads' warning channel. Library code never prints: a head hands each warning to its own
 * `onWarning` option when one is given, else to every listener registered with `onLossWarning`, and
 * always records it in its `warnings` array.
 */

export interface LossWarning {
  /** Which head, e.g. "ArcFace". */
  head: string;
  /** Machine-readable kind. */
  code: "scale-below-bound";
  message: string;
  /** The offending value (e.g. the scale) and the bound it falls below. */
  value: number;
  bound: number;
  numClasses: number;
}

export type LossWarningListener = (warning: LossWarning) => void;

const listeners = new Set<LossWarningListener>();

/** Subscribes to warnings of every head that has no `onWarning` of its own; returns the unsubscribe. */
export function onLossWarning(listener: LossWarningListener): () => void {
  listeners.add(listener);
  return () => {
    listeners.delete(listener);
  };
}

export function emitLossWarning(warning: LossWarning, own?: LossWarningListener): void {
  if (own) {
    own(warning);
    return;
  }
  for (const l of listeners) l(warning);
}
