/**
 * Verification of a backbone, end to end: an InsightFace .bin set (consecutive pairs) or any labelled
 * dataset with generated pairs (e.g. held-out synthetic identities).
 */
import type { Backbone } from "../backbones/backbone";
import type { Dataset } from "../data/dataset";
import type { VerificationSet } from "../data/verification-bin";
import { type EmbedOptions, embedDataset } from "./embed";
import {
  evaluatePairs,
  makePairs,
  type RocCurve,
  rocCurve,
  tarAtFar,
  type VerificationResult,
  verifyPairs,
} from "./verification";

export interface BackboneVerification extends VerificationResult {
  /** InsightFace's XNorm (mean raw embedding norm over both views). */
  xnorm: number;
  tar: { far: number; tar: number; threshold: number }[];
  roc: RocCurve;
}

/** As InsightFace's verification.test(): emb(x) + emb(flip(x)), normalised, 10 folds. */
export async function verifySet(
  backbone: Backbone,
  set: VerificationSet,
  o: EmbedOptions & { folds?: number; fars?: number[] } = {},
): Promise<BackboneVerification> {
  const e = await embedDataset(backbone, set.images, { flip: true, ...o });
  const r = evaluatePairs(e.embeddings, set.issame, { folds: o.folds });
  return {
    ...r,
    xnorm: e.xnorm,
    tar: tarAtFar(r.distances, set.issame, o.fars ?? [1e-3, 1e-2, 1e-1]),
    roc: rocCurve(r.distances, set.issame),
  };
}

/** Balanced seeded pairs over a labelled dataset, then the same protocol. */
export async function verifyDataset(
  backbone: Backbone,
  ds: Dataset,
  o: EmbedOptions & { pairs?: number; seed?: number; folds?: number; fars?: number[] } = {},
): Promise<BackboneVerification> {
  const e = await embedDataset(backbone, ds, { flip: true, ...o });
  const { pairs, issame } = makePairs(ds.labels, o.pairs ?? 1000, o.seed ?? 0);
  const r = verifyPairs(e.embeddings, pairs, issame, { folds: o.folds, fars: o.fars });
  return { ...r, xnorm: e.xnorm };
}
