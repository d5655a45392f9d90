/**
 * Lower bounds on the scale of normalised-softmax heads.
 *
 * - L2-softmax (Ranjan et al. 2017): alpha_low(C, p) = log(p (C - 2) / (1 - p)); with the target at cosine
 *   1, one class at -1 and C - 2 orthogonal, the target probability reaches p only when alpha >= alpha_low.
 * - CosFace (Wang et al. 2018, eq. 6): s >= (C - 1)/C * log((C - 1) p / (1 - p)), p the expected minimum
 *   posterior of the class centre.
 * Both are almost equal for C >= 100. p defaults to 0.9 (the value the Gluon L2Softmax assertion uses).
 */
import { fail, requireInteger, requireNumber } from "./validate";
import { emitLossWarning, type LossWarning, type LossWarningListener } from "./warnings";

export const DEFAULT_TARGET_PROBABILITY = 0.9;

function checkArgs(owner: string, numClasses: number, p: number, minClasses: number): void {
  requireInteger(owner, "numClasses", numClasses, minClasses);
  requireNumber(owner, "p", p, 0, 1, true, true);
}

/** L2-softmax's alpha_low(C, p) = log(p (C - 2) / (1 - p)); needs C >= 3. */
export function alphaLow(numClasses: number, p = DEFAULT_TARGET_PROBABILITY): number {
  checkArgs("alphaLow", numClasses, p, 3);
  return Math.log((p * (numClasses - 2)) / (1 - p));
}

/** CosFace's bound s_low(C, p) = (C - 1)/C * log((C - 1) p / (1 - p)); needs C >= 2. */
export function cosFaceScaleBound(numClasses: number, p = DEFAULT_TARGET_PROBABILITY): number {
  checkArgs("cosFaceScaleBound", numClasses, p, 2);
  return ((numClasses - 1) / numClasses) * Math.log(((numClasses - 1) * p) / (1 - p));
}

export type ScaleBound = "l2-softmax" | "cosface";

/** The bound a head's scale is checked against (undefined when it does not apply, e.g. C < 3). */
export function scaleBound(kind: ScaleBound, numClasses: number, p = DEFAULT_TARGET_PROBABILITY): number | undefined {
  if (kind === "l2-softmax") return numClasses >= 3 ? alphaLow(numClasses, p) : undefined;
  return numClasses >= 2 ? cosFaceScaleBound(numClasses, p) : undefined;
}

/**
 * Reports (through the warning channel) when `scale` is below the bound for `numClasses`; returns the
 * warning or undefined. Called by every scaled head at construction.
 */
export function checkScale(
  head: string,
  field: string,
  scale: number,
  numClasses: number,
  kind: ScaleBound,
  p: number,
  sink: LossWarning[],
  onWarning?: LossWarningListener,
): LossWarning | undefined {
  if (!(p > 0 && p < 1)) fail(head, "scaleBoundP", p, "must be a number in (0, 1)");
  const bound = scaleBound(kind, numClasses, p);
  if (bound === undefined || scale >= bound) return undefined;
  const name = kind === "l2-softmax" ? "alpha_low" : "CosFace's s_low";
  const warning: LossWarning = {
    head,
    code: "scale-below-bound",
    message:
      `${head}: ${field} = ${scale} is below ${name}(C = ${numClasses}, p = ${p}) = ${bound.toFixed(3)}; ` +
      `the target class cannot reach probability ${p} even at cosine 1, training may not converge`,
    value: scale,
    bound,
    numClasses,
  };
  sink.push(warning);
  emitLossWarning(warning, onWarning);
  return warning;
}
