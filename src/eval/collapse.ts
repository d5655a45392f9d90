/**
 * Collapsed or diverged runs, detected by name so that a summary reports them and leaves them out
 * of its statistics (never averaged into a result): a non-finite training loss, verification at
 * chance, all embeddings in one direction.
 */

export type CollapseReason = "loss-nan" | "verification-at-chance" | "one-direction";

export interface CollapseCheck {
  collapsed: boolean;
  reasons: CollapseReason[];
  /** One line per reason with the number that triggered it. */
  details: string[];
}

export interface CollapseThresholds {
  /** AUC at or below this is chance (default 0.55). */
  chanceAuc?: number;
  /** Mean pairwise cosine of held-out embeddings at or above this is one direction (default 0.95). */
  oneDirectionCosine?: number;
}

/** Checks what is given: a run without verification (a closed-set picture) passes no `auc`. */
export function detectCollapse(
  o: { losses: readonly number[]; auc?: number; meanPairwiseCosine?: number },
  thresholds: CollapseThresholds = {},
): CollapseCheck {
  const chance = thresholds.chanceAuc ?? 0.55;
  const oneDirection = thresholds.oneDirectionCosine ?? 0.95;
  const reasons: CollapseReason[] = [];
  const details: string[] = [];
  const bad = o.losses.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0 || o.losses.length === 0) {
    reasons.push("loss-nan");
    details.push(
      o.losses.length === 0
        ? "loss-nan: no training loss recorded"
        : `loss-nan: loss ${o.losses[bad]} at logged point ${bad}`,
    );
  }
  if (o.auc !== undefined && !(o.auc > chance)) {
    reasons.push("verification-at-chance");
    details.push(`verification-at-chance: AUC ${Number.isFinite(o.auc) ? o.auc.toFixed(3) : o.auc} <= ${chance}`);
  }
  if (o.meanPairwiseCosine !== undefined && !(o.meanPairwiseCosine < oneDirection)) {
    reasons.push("one-direction");
    details.push(
      `one-direction: mean pairwise cosine ${Number.isFinite(o.meanPairwiseCosine) ? o.meanPairwiseCosine.toFixed(3) : o.meanPairwiseCosine} >= ${oneDirection}`,
    );
  }
  return { collapsed: reasons.length > 0, reasons, details };
}
