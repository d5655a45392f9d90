/** Backbones by name, with validation of the configuration. */
import { configError } from "../data/dataset";
import type { Backbone } from "./backbone";
import { IRESNET_LAYERS, type IResNetOptions, iresnet, iresnetSmall } from "./iresnet";
import { type LeNetOptions, lenetPP } from "./lenet";
import { type MobileFaceNetOptions, mobileFaceNet, mobileFaceNetSmall } from "./mobilefacenet";

export const BACKBONES = [
  "lenet++",
  "iresnet-small",
  "iresnet18",
  "iresnet34",
  "iresnet50",
  "iresnet100",
  "iresnet",
  "mobilefacenet-small",
  "mobilefacenet",
  "mobilefacenet-large",
] as const;
export type BackboneName = (typeof BACKBONES)[number];

export type BackboneOptions = { name: BackboneName | string } & LeNetOptions & IResNetOptions & MobileFaceNetOptions;

function checkShape(shape: unknown): void {
  if (shape === undefined) return;
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
    throw configError("backbone.inputShape", shape, "expected [height, width, channels] of positive integers");
  }
}

/** Builds a backbone by name ("iresnet-small", "mobilefacenet", "lenet++", ...). */
export function createBackbone(o: BackboneOptions): Backbone {
  if (!o || !BACKBONES.includes(o.name as BackboneName)) {
    throw configError("backbone.name", o?.name, `allowed are ${BACKBONES.join(", ")}`);
  }
  checkShape(o.inputShape);
  if (o.embeddingDim !== undefined && !(Number.isInteger(o.embeddingDim) && o.embeddingDim >= 1)) {
    throw configError("backbone.embeddingDim", o.embeddingDim, "expected a positive integer");
  }
  if (o.dropout !== undefined && !(o.dropout >= 0 && o.dropout < 1))
    throw configError("backbone.dropout", o.dropout, "expected a number in [0, 1)");
  switch (o.name as BackboneName) {
    case "lenet++":
      return lenetPP(o);
    case "iresnet-small":
      return iresnetSmall(o);
    case "iresnet18":
      return iresnet({ ...o, layers: IRESNET_LAYERS.r18 });
    case "iresnet34":
      return iresnet({ ...o, layers: IRESNET_LAYERS.r34 });
    case "iresnet50":
      return iresnet({ ...o, layers: IRESNET_LAYERS.r50 });
    case "iresnet100":
      return iresnet({ ...o, layers: IRESNET_LAYERS.r100 });
    case "iresnet":
      return iresnet(o);
    case "mobilefacenet-small":
      return mobileFaceNetSmall(o);
    case "mobilefacenet":
      return mobileFaceNet(o);
    case "mobilefacenet-large":
      return mobileFaceNet({ blocks: [2, 8, 12, 4], scale: 4, ...o });
  }
  throw configError("backbone.name", o.name, `allowed are ${BACKBONES.join(", ")}`);
}

export type { Backbone } from "./backbone";
