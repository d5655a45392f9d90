/**
 * The shape of an ablation: settings per preset (overridable with `--set key=value`), a grid of
 * configurations built from the settings, `runOne` (data -> backbone -> head -> training ->
 * evaluation for one configuration and one seed), the comparisons the paper makes (each becomes a
 * computed verdict) and `summarize` (results -> tables + Plotly figures). The protocol (runner.ts,
 * analysis.ts) runs every configuration on every seed and computes the statistics.
 */
import type { CollapseCheck } from "../src/eval/collapse";
import type { Direction, Verdict } from "../src/eval/stats";
import type { PlotlyFigure } from "../src/plots/html";

/**
 * smoke: seconds, for CI; full: what the write-up reports, on synthetic identities, within 25 minutes
 * on 2 cores; paper: sized like the paper's training run, for the user's data set (`data`, `eval`) on
 * a GPU machine or a cluster.
 */
export const PRESETS = ["smoke", "full", "paper"] as const;
export type Preset = (typeof PRESETS)[number];

/** A setting value: what `--set key=value` can express. */
export type SettingValue = number | string | boolean | number[] | string[];
export type Settings = Record<string, SettingValue>;

/** One configuration: flat-ish values that become the child run's params. */
export type Config = Record<string, unknown> & { label: string };

/** What a configuration's run returns: scalar metrics (the summary table) and optional series/extras. */
export interface ConfigResult {
  /** Final scalar metrics (the statistics over seeds are computed for each). */
  metrics: Record<string, number>;
  /** Anything the summary needs beyond scalars (curves, 2-D features); not logged as metrics. */
  extra?: Record<string, unknown>;
  /** The training loss at the logged steps (the convergence check reads it). */
  lossHistory?: Array<{ step: number; loss: number }>;
  /** Set by ablations that evaluate held-out verification: a collapsed run is left out of the statistics. */
  collapse?: CollapseCheck;
}

export interface RunContext {
  /** The resolved settings of the ablation. */
  settings: Settings;
  /** The seed of this task: initialisation and data order derive from it alone, so arms are paired. */
  seed: number;
  /** The task's place in the plan (0-based) and the plan's length. */
  index: number;
  total: number;
  /** Logs metrics of this configuration at a step (to the child run when tracking). */
  log(metrics: Record<string, number>, step?: number): void;
  /** Progress inside this configuration (steps done of total). */
  progress(done: number, total: number, message?: string): void;
}

export interface SummaryTable {
  name: string;
  title: string;
  rows: Array<Record<string, string | number | boolean | null>>;
}

export interface SummaryFigure {
  name: string;
  title: string;
  figure: PlotlyFigure;
}

export interface Summary {
  tables: SummaryTable[];
  figures: SummaryFigure[];
  /** Plain-language findings (did the paper's trend hold here?). */
  notes: string[];
}

export interface ResultOf<C extends Config = Config> {
  config: C;
  seed: number;
  result: ConfigResult;
  seconds: number;
}

/** A comparison the paper makes: treatment - baseline on `metric` is expected to be `expected`. */
export interface Comparison {
  /** Short id (MLflow tag marginlab.verdict.<name>). */
  name: string;
  /** The claim in words. */
  claim: string;
  metric: string;
  /** Configuration labels. */
  baseline: string;
  treatment: string;
  expected: Direction;
  /** The paper's own numbers for this comparison, with the source (shared/research/papers.md). */
  paper?: string;
}

export interface ConfigStatistics {
  label: string;
  configHash: string;
  seeds: number[];
  /** Seeds whose run collapsed or diverged, with the reasons (left out of `metrics`). */
  collapsed: Array<{ seed: number; reasons: string[]; details: string[] }>;
  /** Across healthy seeds: mean, sample std, 95 % interval and n of each final metric. */
  metrics: Record<string, { mean: number; std: number; ci: [number, number]; n: number }>;
  /** Seeds whose last 10 % of steps improved the training loss by < 1 % (of those with a loss history). */
  converged: {
    seeds: number[];
    of: number;
    relativeImprovement: Record<number, number>;
    /** Per seed: the last 10 %'s part of the run's whole fall in loss (src/train/convergence.ts). */
    shareOfFall: Record<number, number>;
  };
}

export interface ComparisonResult extends Comparison {
  verdict: Verdict;
  /** Seeds paired in the test (both arms healthy). */
  seeds: number[];
  excluded: Array<{ seed: number; why: string }>;
}

/** The statistics the protocol computes from the results (analysis.ts). */
export interface Analysis {
  configs: ConfigStatistics[];
  comparisons: ComparisonResult[];
}

export interface Ablation<C extends Config = Config> {
  name: string;
  title: string;
  /** The paper(s) and the claim being checked, in a sentence or two. */
  claim: string;
  presets: Record<Preset, Settings>;
  /**
   * Set when the ablation's design cannot run on the user's data (`data`, `eval` settings): why, in
   * words (the error of `--data` with this ablation, before any run).
   */
  realDataUnsupported?: string;
  /** Help for each setting key (shown by `marginlab list` and in errors). */
  describe: Record<string, string>;
  grid(settings: Settings): C[];
  runOne(config: C, ctx: RunContext): Promise<ConfigResult>;
  /** The paper's comparisons among the grid's configurations (verdicts are computed for each). */
  comparisons?(settings: Settings, configs: C[]): Comparison[];
  /** Results in configuration order, each configuration's seeds together. */
  summarize(results: Array<ResultOf<C>>, settings: Settings, analysis: Analysis): Summary;
}

/** Any ablation, whatever its configuration type (the registry's element type). */
// biome-ignore lint/suspicious/noExplicitAny: the registry holds ablations of different configuration types.
export type AnyAblation = Ablation<any>;
