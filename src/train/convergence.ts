/**
 * Has training stopped improving? `convergence(history)` compares the mean training loss of the last
 * 10 % of steps with the mean of the 10 % just before them (each mean smooths the batch-to-batch noise):
 *
 *   relativeImprovement = (before - after) / |before|
 *
 * e.g. 0.002 after 1000 steps: the loss fell 0.2 % over the last 100 steps (a plateau); 0.3: still
 * falling fast (more steps, or a higher learning rate, would help). Negative: the loss rose.
 */

export interface ConvergenceReport {
  /** (before - after) / |before|; NaN when a loss in either window is not finite. */
  relativeImprovement: number;
  /** Mean loss of the window before the last one, and of the last window. */
  before: number;
  after: number;
  /** Steps per window: max(1, round(fraction * steps)). */
  window: number;
  steps: number;
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

/** The relative improvement of the training loss over the last `fraction` (default 0.1) of the steps. */
export function convergence(
  history: ReadonlyArray<{ loss: number }>,
  options: { fraction?: number } = {},
): ConvergenceReport {
  const fraction = options.fraction ?? 0.1;
  if (typeof fraction !== "number" || !(fraction > 0 && fraction <= 0.5))
    throw new Error(`convergence: fraction = ${String(fraction)} is not valid: expected a number in (0, 0.5]`);
  const losses = history.map((m) => m.loss);
  const steps = losses.length;
  if (steps < 2)
    throw new Error(`convergence: history has ${steps} step${steps === 1 ? "" : "s"}; needs at least 2 (two windows)`);
  const window = Math.max(1, Math.round(fraction * steps));
  const after = mean(losses.slice(steps - window));
  const before = mean(losses.slice(Math.max(0, steps - 2 * window), steps - window));
  const relativeImprovement =
    Number.isFinite(before) && Number.isFinite(after) ? (before - after) / Math.abs(before) : Number.NaN;
  return { relativeImprovement, before, after, window, steps };
}
