/** The ablations by name, in priority order. */
import { alphaBound } from "./alpha-bound";
import { exclusive } from "./exclusive";
import { margins } from "./margins";
import { partialFc } from "./partial-fc";
import { qualitySplit } from "./quality-split";
import { subcenter } from "./subcenter";
import type { AnyAblation } from "./types";

export const ABLATIONS: AnyAblation[] = [alphaBound, margins, exclusive, qualitySplit, subcenter, partialFc];

export function ablationNames(): string[] {
  return ABLATIONS.map((a) => a.name);
}

/** The ablation called `name`; an unknown name throws an Error listing the ones that exist. */
export function getAblation(name: string): AnyAblation {
  const found = ABLATIONS.find((a) => a.name === name);
  if (!found) throw new Error(`ablation = "${name}" is not valid: allowed are ${ablationNames().join(", ")}.`);
  return found;
}
