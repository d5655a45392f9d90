/**
 * Learning-rate schedules as closed forms of the optimizer step index l = 0, 1, ... (so a resumed run
 * needs only the step). Warm-up is InsightFace's PolynomialLRWarmup: lr = base * l / w for l < w
 * (the first step runs at lr 0, as there).
 */
import { checkInt, checkNumber, configError } from "../data/dataset";

export type Schedule =
  | { type: "constant"; warmupSteps?: number }
  /** MultiStepLR: multiply by gamma at each milestone (in steps). */
  | { type: "step"; milestones: number[]; gamma?: number; warmupSteps?: number }
  /** Cosine from base to minLr over the steps after warm-up. */
  | { type: "cosine"; minLr?: number; warmupSteps?: number }
  /** InsightFace: base * (1 - (min(T, l) - w) / (T - w))^power after warm-up (power 1: linear to 0). */
  | { type: "polynomial"; power?: number; warmupSteps?: number };

export const SCHEDULES = ["constant", "step", "cosine", "polynomial"] as const;

export function validateSchedule(s: Schedule | undefined, totalSteps: number): void {
  if (s === undefined) return;
  if (!s || !SCHEDULES.includes(s.type))
    throw configError("schedule.type", s?.type, `allowed are ${SCHEDULES.join(", ")}`);
  if (s.warmupSteps !== undefined) checkInt("schedule.warmupSteps", s.warmupSteps, 0, totalSteps);
  if (s.type === "step") {
    if (!Array.isArray(s.milestones))
      throw configError("schedule.milestones", s.milestones, "expected an array of step numbers");
    s.milestones.forEach((m, i) => {
      checkInt(`schedule.milestones[${i}]`, m, 0);
    });
    if (s.gamma !== undefined) checkNumber("schedule.gamma", s.gamma, 0, 1e6);
  }
  if (s.type === "cosine" && s.minLr !== undefined) checkNumber("schedule.minLr", s.minLr, 0, 1e6);
  if (s.type === "polynomial" && s.power !== undefined) checkNumber("schedule.power", s.power, 0, 100);
}

/** Learning rate of optimizer step l (0-based) out of T. */
export function learningRate(s: Schedule | undefined, base: number, l: number, T: number): number {
  const sched = s ?? { type: "constant" };
  const w = sched.warmupSteps ?? 0;
  if (l < w) return (base * l) / w;
  switch (sched.type) {
    case "constant":
      return base;
    case "step": {
      const passed = sched.milestones.filter((m) => l >= m).length;
      return base * (sched.gamma ?? 0.1) ** passed;
    }
    case "cosine": {
      const min = sched.minLr ?? 0;
      const t = T > w ? (Math.min(T, l) - w) / (T - w) : 1;
      return min + ((base - min) * (1 + Math.cos(Math.PI * t))) / 2;
    }
    case "polynomial": {
      const t = T > w ? (Math.min(T, l) - w) / (T - w) : 1;
      return base * (1 - t) ** (sched.power ?? 1);
    }
  }
}
