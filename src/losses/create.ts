/**
 * Heads from plain data, beside createBackbone (src/backbones) and openDataset (src/data): a spec is
 * `{ type, ...the head's own options }`, e.g. { type: "arcface", numClasses: 1000, embeddingDim: 512,
 * s: 64, m: 0.5 }. The type is checked here; every option by the head's constructor, which rejects
 * unknown ones, so a spec from a JSON or YAML file fails with the field it got wrong.
 */
import { ArcFace, type ArcFaceOptions } from "./arcface";
import { CenterLoss, type CenterLossOptions } from "./center-loss";
import { CombinedMargin, type CombinedMarginOptions } from "./combined-margin";
import { CosFace, type CosFaceOptions } from "./cosface";
import type { Head } from "./head";
import { L2Softmax, type L2SoftmaxOptions } from "./l2-softmax";
import { NormFace, type NormFaceOptions } from "./normface";
import { Softmax, type SoftmaxOptions } from "./softmax";
import { SphereFace, type SphereFaceOptions } from "./sphereface";
import { SubCenterArcFace, type SubCenterArcFaceOptions } from "./subcenter-arcface";
import { fail, requireOneOf } from "./validate";

/** Every head type a spec can name. */
export const HEADS = [
  "softmax",
  "l2-softmax",
  "normface",
  "cosface",
  "arcface",
  "combined-margin",
  "subcenter-arcface",
  "sphereface",
  "center-loss",
] as const;

export type HeadType = (typeof HEADS)[number];

export type HeadSpec =
  | ({ type: "softmax" } & SoftmaxOptions)
  | ({ type: "l2-softmax" } & L2SoftmaxOptions)
  | ({ type: "normface" } & NormFaceOptions)
  | ({ type: "cosface" } & CosFaceOptions)
  | ({ type: "arcface" } & ArcFaceOptions)
  | ({ type: "combined-margin" } & CombinedMarginOptions)
  | ({ type: "subcenter-arcface" } & SubCenterArcFaceOptions)
  | ({ type: "sphereface" } & SphereFaceOptions)
  | ({ type: "center-loss" } & CenterLossOptions);

const BUILD: { [K in HeadType]: (o: never) => Head } = {
  softmax: (o: SoftmaxOptions) => new Softmax(o),
  "l2-softmax": (o: L2SoftmaxOptions) => new L2Softmax(o),
  normface: (o: NormFaceOptions) => new NormFace(o),
  cosface: (o: CosFaceOptions) => new CosFace(o),
  arcface: (o: ArcFaceOptions) => new ArcFace(o),
  "combined-margin": (o: CombinedMarginOptions) => new CombinedMargin(o),
  "subcenter-arcface": (o: SubCenterArcFaceOptions) => new SubCenterArcFace(o),
  sphereface: (o: SphereFaceOptions) => new SphereFace(o),
  "center-loss": (o: CenterLossOptions) => new CenterLoss(o),
};

/** Builds the head a spec names; errors name the field (`head.type`, or the head's own option). */
export function createHead(spec: HeadSpec): Head {
  if (spec === null || typeof spec !== "object" || Array.isArray(spec))
    fail("createHead", "spec", spec, "expected an object { type, numClasses, embeddingDim, ... }");
  const type = requireOneOf("createHead", "type", spec.type, HEADS);
  const { type: _type, ...options } = spec;
  return BUILD[type](options as never);
}
