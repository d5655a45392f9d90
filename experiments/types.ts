/**
 * The shape of an ablation: settings per preset (overridable with `--set key=value`), a grid of
 * configurations built from the settings, `runOne` (data -> backbone -> head -> training ->
 * evaluation for one configuration) and `summarize` (child results -> tables + Plotly figures).
 * The runner (runner.ts) wraps each configuration in an MLflow child run.
 */
import type { PlotlyFigure } from "../src/plots/html";

export const PRESETS = ["smoke", "full"] as const;
export type Preset = (typeof PRESETS)[number];

/** A setting value: what `--set key=value` can express. */
export type SettingValue = number | string | boolean | number[] | string[];
export type Settings = Record<string, SettingValue>;

/** One configuration: flat-ish values that become the child run's params. */
export type Config = Record<string, unknown> & { label: string };

/** What a configuration's run returns: scalar metrics (the summary table) and optional series/extras. */
export interface ConfigResult {
  metrics: Record<string, number>;
  /** Anything the summary needs beyond scalars (curves, 2-D features); not logged as metrics. */
  extra?: Record<string, unknown>;
}

export interface RunContext {
  /** The resolved settings of the ablation. */
  settings: Settings;
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
  result: ConfigResult;
  seconds: number;
}

export interface Ablation<C extends Config = Config> {
  name: string;
  title: string;
  /** The paper(s) and the claim being checked, in a sentence or two. */
  claim: string;
  presets: Record<Preset, Settings>;
  /** Help for each setting key (shown by `marginlab list` and in errors). */
  describe: Record<string, string>;
  grid(settings: Settings): C[];
  runOne(config: C, ctx: RunContext): Promise<ConfigResult>;
  summarize(results: Array<ResultOf<C>>, settings: Settings): Summary;
}

/** Any ablation, whatever its configuration type (the registry's element type). */
// biome-ignore lint/suspicious/noExplicitAny: the registry holds ablations of different configuration types.
export type AnyAblation = Ablation<any>;
