/**
 * Sweeps: one parent run with one nested child run per configuration, so the MLflow UI groups them.
 * Every child carries the full flattened configuration as params (the compare view and parallel
 * coordinates only offer keys that every selected run has) and a marginlab.configHash tag.
 */
import { type Run, type RunEndResult, type StartRunOptions, startRun } from "./run";

/** What a child run may set besides the defaults (the config as params, marginlab.sweep.index). */
export type SweepChildOptions = Pick<StartRunOptions, "name" | "params" | "tags" | "hashConfig" | "description">;

export interface SweepOptions<C extends Record<string, unknown>> extends Omit<StartRunOptions, "params" | "parent"> {
  /** The configurations, one child run each. */
  configs: C[];
  /** The child run's name; default "<sweep name>-<i>". */
  childName?: (config: C, index: number) => string;
  /** The child run's options in full (name, params, tags; `parent` is the sweep's run), in place of the defaults. */
  childOptions?: (config: C, index: number, parent: Run) => SweepChildOptions;
  /**
   * Called after the last child ended FINISHED, before the parent ends (a summary onto the parent). When
   * it throws, the parent ends FAILED and the error is rethrown.
   */
  finish?: (parent: Run, children: Array<SweepChildResult<C, unknown>>) => Promise<void> | void;
  /** How long the parent's end waits for the server to take everything (Run.end's timeoutMs). */
  endTimeoutMs?: number;
  /** Params logged on the parent too (e.g. what all children share). */
  params?: Record<string, unknown>;
  /** Keep going after a child throws (it ends FAILED); default false: the sweep stops and rethrows. */
  continueOnError?: boolean;
}

export interface SweepChildResult<C, R> {
  config: C;
  index: number;
  runId: string | undefined;
  /** What the child function returned (undefined when it threw). */
  value?: R;
  error?: Error;
  end: RunEndResult;
}
export interface SweepResult<C, R> {
  parent: RunEndResult;
  children: Array<SweepChildResult<C, R>>;
}

/**
 * Runs `fn` once per configuration inside a child run of one parent run. Each child ends FINISHED,
 * or FAILED when `fn` throws; the parent ends FINISHED, or FAILED when any child failed.
 */
export async function runSweep<C extends Record<string, unknown>, R>(
  options: SweepOptions<C>,
  fn: (run: Run, config: C, index: number, parent: Run) => Promise<R> | R,
): Promise<SweepResult<C, R>> {
  const { configs, childName, childOptions, finish, endTimeoutMs, continueOnError, ...runOptions } = options;
  const parent = await startRun({
    ...runOptions,
    tags: { ...(runOptions.tags ?? {}), "marginlab.sweep.size": String(configs.length) },
  });
  const children: Array<SweepChildResult<C, R>> = [];
  let failed = false;
  try {
    for (let index = 0; index < configs.length; index++) {
      const config = configs[index];
      const child = await parent.child(
        childOptions
          ? childOptions(config, index, parent)
          : {
              name: childName ? childName(config, index) : `${runOptions.name ?? "sweep"}-${index}`,
              params: config,
              tags: { "marginlab.sweep.index": String(index) },
            },
      );
      try {
        const value = await fn(child, config, index, parent);
        children.push({ config, index, runId: child.id, value, end: await child.end("FINISHED") });
      } catch (error) {
        failed = true;
        children.push({ config, index, runId: child.id, error: error as Error, end: await child.end("FAILED") });
        if (!continueOnError) throw error;
      }
    }
    if (!failed) await finish?.(parent, children);
  } catch (error) {
    await parent.end("FAILED", { timeoutMs: endTimeoutMs });
    throw error;
  }
  return { parent: await parent.end(failed ? "FAILED" : "FINISHED", { timeoutMs: endTimeoutMs }), children };
}
