/**
 * Statistics over seeds for the ablations: mean, sample standard deviation, Student-t quantiles
 * (exact: the regularised incomplete beta function, inverted by bisection), the 95 % confidence
 * interval of a paired mean difference, the paired t-test, the Wilcoxon signed-rank test, and the
 * verdict on a paper's claim computed from them. Checked against scipy.stats in
 * test/eval-stats.test.ts (fixture: scripts/fixtures/write_stats_reference.py).
 */

export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Sample standard deviation (n - 1 in the denominator); NaN for fewer than 2 values. */
export function sampleStd(xs: readonly number[]): number {
  if (xs.length < 2) return Number.NaN;
  const m = mean(xs);
  let s = 0;
  for (const x of xs) s += (x - m) ** 2;
  return Math.sqrt(s / (xs.length - 1));
}

// Lanczos approximation (g = 7, 9 terms), relative error about 1e-15 for x > 0.
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const z = x - 1;
  let a = LANCZOS[0];
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i] / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the incomplete beta function (modified Lentz). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 1000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return h;
}

/** The regularised incomplete beta function I_x(a, b), x in [0, 1]. */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (!(x >= 0 && x <= 1)) throw new Error(`incompleteBeta: x = ${x} is not valid: expected 0 <= x <= 1.`);
  if (x === 0 || x === 1) return x;
  const lnFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log1p(-x);
  // the continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(lnFront) * betaContinuedFraction(a, b, x)) / a;
  return 1 - (Math.exp(lnFront) * betaContinuedFraction(b, a, 1 - x)) / b;
}

function checkDf(df: number): void {
  if (!(df > 0) || !Number.isFinite(df)) throw new Error(`degrees of freedom = ${df} is not valid: expected > 0.`);
}

/** P(T > |t|) for Student's t with df degrees of freedom (one tail). */
function tTail(t: number, df: number): number {
  return 0.5 * incompleteBeta(df / (df + t * t), df / 2, 0.5);
}

/** Student-t cumulative distribution function. */
export function tCdf(t: number, df: number): number {
  checkDf(df);
  if (Number.isNaN(t)) return Number.NaN;
  if (t === Number.POSITIVE_INFINITY) return 1;
  if (t === Number.NEGATIVE_INFINITY) return 0;
  const tail = tTail(t, df);
  return t > 0 ? 1 - tail : tail;
}

/**
 * Student-t quantile (scipy.stats.t.ppf): the t with tCdf(t, df) = q, found by bisection on
 * x = df / (df + t^2) of the tail probability (geometric steps while x spans decades, so far tails
 * keep full relative precision).
 */
export function tQuantile(q: number, df: number): number {
  checkDf(df);
  if (!(q >= 0 && q <= 1)) throw new Error(`tQuantile: q = ${q} is not valid: expected 0 <= q <= 1.`);
  if (q === 0) return Number.NEGATIVE_INFINITY;
  if (q === 1) return Number.POSITIVE_INFINITY;
  if (q === 0.5) return 0;
  const tail = q > 0.5 ? 1 - q : q; // target P(T > |t|); 1 - q loses digits only below 1e-16
  // 0.5 * I_x(df/2, 1/2) increases from 0 (x = 0, t = inf) to 0.5 (x = 1, t = 0)
  let lo = Number.MIN_VALUE;
  let hi = 1;
  for (let i = 0; i < 2000 && hi - lo > 0; i++) {
    const mid = hi / lo > 4 ? Math.sqrt(lo * hi) : lo + (hi - lo) / 2;
    if (mid <= lo || mid >= hi) break;
    if (0.5 * incompleteBeta(mid, df / 2, 0.5) < tail) lo = mid;
    else hi = mid;
  }
  const x = lo + (hi - lo) / 2;
  const t = Math.sqrt((df * (1 - x)) / x);
  return q > 0.5 ? t : -t;
}

export interface PairedTest {
  /** Number of pairs. */
  n: number;
  /** Mean of treatment - baseline. */
  meanDiff: number;
  /** Sample standard deviation of the differences. */
  sdDiff: number;
  /** The 95 % (or 1 - alpha) confidence interval of the mean difference. */
  ci: [number, number];
  /** Paired t statistic and degrees of freedom (n - 1). */
  t: number;
  df: number;
  /** Two-sided p of the paired t-test. */
  p: number;
  /** Wilcoxon signed-rank test, for n >= 6 (below that its smallest two-sided p is above 0.05). */
  wilcoxon?: { statistic: number; p: number };
}

function checkPaired(treatment: readonly number[], baseline: readonly number[]): void {
  if (treatment.length !== baseline.length)
    throw new Error(
      `paired test: ${treatment.length} treatment values for ${baseline.length} baseline values (expected one pair per seed).`,
    );
  const bad = [...treatment, ...baseline].findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`paired test: value ${bad} is not finite (collapsed runs must be left out first).`);
}

/** The paired t-test of treatment against baseline (scipy.stats.ttest_rel(treatment, baseline)). */
export function pairedTTest(
  treatment: readonly number[],
  baseline: readonly number[],
  options: { confidence?: number } = {},
): PairedTest {
  checkPaired(treatment, baseline);
  const n = treatment.length;
  const d = treatment.map((v, i) => v - baseline[i]);
  const m = mean(d);
  const sd = sampleStd(d);
  const df = n - 1;
  if (n < 2) return { n, meanDiff: m, sdDiff: sd, ci: [Number.NaN, Number.NaN], t: Number.NaN, df, p: Number.NaN };
  const se = sd / Math.sqrt(n);
  const confidence = options.confidence ?? 0.95;
  const half = tQuantile(1 - (1 - confidence) / 2, df) * se;
  let t: number;
  let p: number;
  if (se === 0) {
    // identical differences: no spread to test against; a nonzero shift is certain, no shift is not one
    t = m === 0 ? Number.NaN : m > 0 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
    p = m === 0 ? 1 : 0;
  } else {
    t = m / se;
    p = Math.min(1, 2 * tTail(t, df));
  }
  const out: PairedTest = { n, meanDiff: m, sdDiff: sd, ci: [m - half, m + half], t, df, p };
  if (n >= 6) out.wilcoxon = wilcoxonSignedRank(treatment, baseline);
  return out;
}

/**
 * Wilcoxon signed-rank test of the paired differences, two-sided (scipy.stats.wilcoxon(x, y) with
 * zero_method "wilcox": zero differences dropped). The statistic is min(R+, R-). The p value is the
 * exact permutation probability over the 2^n sign patterns (scipy's default without ties); with
 * tied |differences| the midranks are used in the same exact count (scipy switches to a normal
 * approximation there).
 */
export function wilcoxonSignedRank(x: readonly number[], y: readonly number[]): { statistic: number; p: number } {
  checkPaired(x, y);
  const d = x.map((v, i) => v - y[i]).filter((v) => v !== 0);
  const n = d.length;
  if (n === 0) return { statistic: 0, p: 1 };
  const order = d.map((_, i) => i).sort((a, b) => Math.abs(d[a]) - Math.abs(d[b]));
  // doubled midranks stay integers, so the exact distribution is a subset-sum count
  const rank2 = new Array<number>(n);
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && Math.abs(d[order[j + 1]]) === Math.abs(d[order[i]])) j++;
    for (let k = i; k <= j; k++) rank2[order[k]] = i + j + 2; // 2 * ((i + 1 + j + 1) / 2)
    i = j + 1;
  }
  let plus2 = 0;
  let total2 = 0;
  for (let i = 0; i < n; i++) {
    total2 += rank2[i];
    if (d[i] > 0) plus2 += rank2[i];
  }
  const stat2 = Math.min(plus2, total2 - plus2);
  let dist = new Float64Array(total2 + 1);
  dist[0] = 1;
  for (const r of rank2) {
    const next = new Float64Array(total2 + 1);
    for (let s = 0; s <= total2; s++) {
      if (dist[s] === 0) continue;
      next[s] += dist[s] * 0.5;
      next[s + r] += dist[s] * 0.5;
    }
    dist = next;
  }
  let lower = 0;
  for (let s = 0; s <= stat2; s++) lower += dist[s];
  return { statistic: stat2 / 2, p: Math.min(1, 2 * lower) };
}

export type Direction = "greater" | "less";
export type VerdictWord = "held" | "not shown" | "contradicted";

export interface Verdict extends PairedTest {
  verdict: VerdictWord;
  /** What the paper expects of treatment - baseline. */
  expected: Direction;
  alpha: number;
  /** One line with the numbers, e.g. "held: +0.031 (95 % CI +0.012 to +0.050), t = 7.1, df = 2, p = 0.019, n = 3". */
  text: string;
}

const signed = (v: number, digits: number) =>
  Number.isFinite(v) ? `${v >= 0 ? "+" : ""}${v.toFixed(digits)}` : String(v);

function formatP(p: number): string {
  if (!Number.isFinite(p)) return String(p);
  return p < 1e-4 ? p.toExponential(1) : p.toPrecision(2);
}

/**
 * The verdict on "treatment - baseline is `expected`" from paired values (one pair per seed):
 * "held" when the two-sided paired t-test rejects no difference at `alpha` (default 0.05, i.e. the
 * 95 % interval excludes 0) with the mean difference in the expected direction, "contradicted" when
 * it rejects with the opposite sign, "not shown" otherwise: fewer than 2 pairs, or differences with
 * no spread at all (identical over seeds, as discrete TARs on few pairs can be), where the t-test
 * gives p = 0 but there is no evidence of a consistent effect.
 */
export function verdictOf(
  treatment: readonly number[],
  baseline: readonly number[],
  expected: Direction,
  options: { alpha?: number; digits?: number } = {},
): Verdict {
  const alpha = options.alpha ?? 0.05;
  const digits = options.digits ?? 3;
  const test = pairedTTest(treatment, baseline, { confidence: 1 - alpha });
  let verdict: VerdictWord = "not shown";
  // Differences equal across seeds up to float32 round-off (two arms that compute the same thing) make t
  // huge and p tiny; such a spread is none, and the test is undefined.
  const scale = Math.max(...treatment.map(Math.abs), ...baseline.map(Math.abs), 0);
  const noSpread = test.n >= 2 && test.sdDiff <= 1e-6 * scale;
  if (test.n >= 2 && !noSpread && test.p < alpha) {
    const wantsPositive = expected === "greater";
    verdict = test.meanDiff > 0 === wantsPositive ? "held" : "contradicted";
  }
  const pct = Math.round((1 - alpha) * 100);
  const text =
    test.n < 2
      ? `${verdict}: ${signed(test.meanDiff, digits)} from n = ${test.n} paired seed${test.n === 1 ? "" : "s"} (a test needs at least 2)`
      : noSpread
        ? `${verdict}: ${signed(test.meanDiff, digits)} on each of n = ${test.n} seeds (no spread across seeds: the t-test is undefined)`
        : `${verdict}: ${signed(test.meanDiff, digits)} (${pct} % CI ${signed(test.ci[0], digits)} to ${signed(test.ci[1], digits)}), paired t = ${Number.isFinite(test.t) ? test.t.toFixed(2) : String(test.t)}, df = ${test.df}, p = ${formatP(test.p)}, n = ${test.n}${test.wilcoxon ? `; Wilcoxon p = ${formatP(test.wilcoxon.p)}` : ""}`;
  return { ...test, verdict, expected, alpha, text };
}

/** Mean, sample std and the 95 % interval of a mean over seeds (what a configuration's run holds). */
export function meanInterval(
  xs: readonly number[],
  confidence = 0.95,
): { mean: number; std: number; ci: [number, number]; n: number } {
  const m = mean(xs);
  const sd = sampleStd(xs);
  if (xs.length < 2) return { mean: m, std: sd, ci: [Number.NaN, Number.NaN], n: xs.length };
  const half = (tQuantile(1 - (1 - confidence) / 2, xs.length - 1) * sd) / Math.sqrt(xs.length);
  return { mean: m, std: sd, ci: [m - half, m + half], n: xs.length };
}
