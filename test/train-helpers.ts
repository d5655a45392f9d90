/** Shared by the train-* tests: the small model they train. */
import { createBackbone } from "../src/backbones";
import type { Backbone } from "../src/backbones/backbone";

/** A small iResNet on 16x16x1 with BatchNorm (a second forward pass per step would show in its statistics). */
export function smallBackbone(embeddingDim = 8): Backbone {
  return createBackbone({
    name: "iresnet",
    inputShape: [16, 16, 1],
    layers: [1, 1],
    widths: [8, 16],
    embeddingDim,
    seed: 5,
  });
}
