/**
 * Has training stopped improving? `convergence(history)` compares the mean training loss of the last
 * 10 % of the logged steps with the mean of the 10 % just before them (each mean smooths the
 * batch-to-batch noise):
 *
 *   relativeImprovement = (before - after) / |before|      converged when < tolerance (1 %)
 *   shareOfFall         = (before - after) / (first - after)
 *
 * e.g. 0.002 after 1000 steps: the loss fell 0.2 % over the last 100 steps (a plateau); 0.3: still
 * falling fast (more steps, or a higher learning rate, would help). Negative: the loss rose.
 * `shareOfFall` tells the two kinds of "not converged" apart: a run still descending (a large share of
 * its whole fall came in the last stretch) and a run fitting its training set towards a loss of 0,
 * where a fall of 0.05 is 30 % of the loss but 0.2 % of the fall from the first window.
 * This is the one convergence check: the trainer's users, the ablations' statistics and the
 * tracked per-seed metric all read it.
 */

export interface ConvergenceReport {
  /** relativeImprovement < tolerance (and finite). */
  converged: boolean;
  /** (before - after) / |before|; NaN when a loss in either window is not finite. */
  relativeImprovement: number;
  /** (before - after) / (first - after): the last window's part of the fall since the first window. */
  shareOfFall: number;
  /** Mean loss of the first window, of the window before the last one, and of the last window. */
  first: number;
  before: number;
  after: number;
  /** Logged points per window: max(1, round(fraction * points)). */
  window: number;
  steps: number;
  /** The step of the first point of the "before" window and of the last point (`step` when logged, else index + 1). */
  fromStep: number;
  toStep: number;
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

/** The relative improvement of the training loss over the last `fraction` (default 0.1) of the logged steps. */
export function convergence(
  history: ReadonlyArray<{ loss: number; step?: number }>,
  options: { fraction?: number; tolerance?: number } = {},
): ConvergenceReport {
  const fraction = options.fraction ?? 0.1;
  const tolerance = options.tolerance ?? 0.01;
  if (typeof fraction !== "number" || !(fraction > 0 && fraction <= 0.5))
    throw new Error(`convergence: fraction = ${String(fraction)} is not valid: expected a number in (0, 0.5]`);
  if (typeof tolerance !== "number" || !(tolerance > 0))
    throw new Error(`convergence: tolerance = ${String(tolerance)} is not valid: expected a number > 0`);
  const losses = history.map((m) => m.loss);
  const steps = losses.length;
  if (steps < 2)
    throw new Error(`convergence: history has ${steps} step${steps === 1 ? "" : "s"}; needs at least 2 (two windows)`);
  const window = Math.max(1, Math.round(fraction * steps));
  const beforeStart = Math.max(0, steps - 2 * window);
  const first = mean(losses.slice(0, window));
  const after = mean(losses.slice(steps - window));
  const before = mean(losses.slice(beforeStart, steps - window));
  const finite = Number.isFinite(before) && Number.isFinite(after) && Number.isFinite(first);
  const relativeImprovement = finite ? (before - after) / Math.abs(before) : Number.NaN;
  const shareOfFall = finite && first !== after ? (before - after) / (first - after) : Number.NaN;
  const stepOf = (i: number) => history[i].step ?? i + 1;
  return {
    converged: Number.isFinite(relativeImprovement) && relativeImprovement < tolerance,
    relativeImprovement,
    shareOfFall,
    first,
    before,
    after,
    window,
    steps,
    fromStep: stepOf(beforeStart),
    toStep: stepOf(steps - 1),
  };
}
