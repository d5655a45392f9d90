// alpha-bound's smoke preset cut to 5 configurations x 2 seeds (a few seconds of training): the ablation
// the runner, record, cluster and notebook tests run end to end.
export const CUT_ALPHA_BOUND = {
  freeClasses: [10],
  freeAlphas: [1, 16],
  trainAlphas: [2, 16],
  unitWAlphas: [1],
  steps: 10,
  freeSteps: 20,
};

/** The same settings as the CLI receives them (`--set k=v` text). */
export const CUT_ALPHA_BOUND_TEXT: Record<string, string> = Object.fromEntries(
  Object.entries(CUT_ALPHA_BOUND).map(([k, v]) => [k, Array.isArray(v) ? v.join(",") : String(v)]),
);

/** `--set k=v` arguments for the CLI. */
export const cutAlphaBoundArgs = (): string[] =>
  Object.entries(CUT_ALPHA_BOUND_TEXT).flatMap(([k, v]) => ["--set", `${k}=${v}`]);
