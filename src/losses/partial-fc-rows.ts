/**
 * Partial FC's sparse row store: the full W [C, D] and its SGD-momentum buffer on the host (Float32Arrays:
 * 2 GB each at C = 1,000,000, D = 512). Each step hands only the active rows of W to TensorFlow (`read`)
 * and applies the SGD rule to them in place from their gradient (`update`, src/train/optimizers.ts
 * sgdUpdateRows): the momentum never leaves the host, so a step moves K D floats in and K D out, where
 * updating in TensorFlow would move both arrays both ways (measured in bench/pfc.ts: 1.3 s against 2.0 s
 * per step at C = 1M, r = 0.1).
 *
 * "dense" semantics (InsightFace PartialFC_V2 with torch.optim.SGD) update every row every step: an
 * unsampled row has zero gradient, but weight decay and momentum still move it, linearly:
 * (w, m) <- [[1 - lr wd, -lr mu], [wd, mu]] (w, m). The store does this lazily and exactly: each row
 * remembers the step it is up to date with, and `read` brings it forward in place with the product of
 * those 2x2 maps (one per step missed, each with that step's learning rate), formed once per group of
 * rows and applied while the rows are gathered (one pass over each row). "frozen" (the removed PartialFC
 * V1): unsampled rows stay as they are.
 */
import { tf } from "../backend";
import { type SgdRule, sgdUpdateRows } from "../train/optimizers";
import type { Tensor2D } from "./head";

export type PartialFCSemantics = "dense" | "frozen";

export class HostRows {
  readonly numRows: number;
  readonly dim: number;
  private w: Float32Array;
  private m: Float32Array;
  /** The step each row's (w, m) is up to date with. */
  private readonly last: Int32Array;
  /** The learning rate of every step taken, [0] unused: the catch-up replays them. */
  private lrLog: number[] = [0];
  private scratch = new Float32Array(0);

  constructor(
    numRows: number,
    dim: number,
    init: Float32Array,
    readonly semantics: PartialFCSemantics,
    readonly momentum: number,
    readonly weightDecay: number,
  ) {
    this.numRows = numRows;
    this.dim = dim;
    this.w = init;
    // zero-filled and written row by row: the OS maps momentum pages only for rows that were ever active
    this.m = new Float32Array(numRows * dim);
    this.last = new Int32Array(numRows);
  }

  /**
   * The gather buffer, reused from step to step (a fresh 200 MB array per step at K = 100,000 costs its page
   * faults). Safe because TensorFlow copies a tensor's values at its first use, which follows `read` at once.
   */
  private gatherBuffer(size: number): Float32Array {
    if (this.scratch.length !== size) this.scratch = new Float32Array(size);
    return this.scratch;
  }

  /** Steps taken. */
  get steps(): number {
    return this.lrLog.length - 1;
  }

  /**
   * W of the given rows [K, D] as a tensor (caller disposes), the rows brought up to date in place first.
   * Every row read at once (K = C) is handed over without a host copy.
   */
  read(index: Int32Array): Tensor2D {
    const d = this.dim;
    const k = index.length;
    const gathered = k === this.numRows ? null : this.gatherBuffer(k * d);
    this.catchUp(index, gathered);
    if (!gathered) return tf.tensor2d(this.w, [k, d]);
    return tf.tensor2d(gathered, [k, d]);
  }

  /**
   * One SGD step on the rows read by `read` (up to date), in place: `grad` [K * D] is dLoss/dW_a before the
   * per-row decay `rowDecay` [K] (the normalisation's projection, -k). Counts the step.
   */
  update(index: Int32Array, grad: Float32Array, rowDecay: ArrayLike<number>, lr: number): void {
    const rule: SgdRule = { lr, momentum: this.momentum, weightDecay: this.weightDecay };
    sgdUpdateRows(this.w, this.m, index, grad, this.dim, rule, rowDecay);
    this.lrLog.push(lr);
    const t = this.steps;
    for (let k = 0; k < index.length; k++) this.last[index[k]] = t;
  }

  /** Brings every row up to date ("dense"; a no-op for "frozen"). */
  flush(): void {
    this.catchUp(range(0, this.numRows), null);
  }

  /** An up-to-date copy of W or of the momentum, [C * D] or of the given rows [K * D]. */
  values(which: "weight" | "momentum", rows?: ArrayLike<number>): Float32Array {
    const index = rows === undefined ? range(0, this.numRows) : Int32Array.from(rows);
    this.catchUp(index, null);
    const src = which === "weight" ? this.w : this.m;
    if (rows === undefined) return src.slice();
    const d = this.dim;
    const out = new Float32Array(index.length * d);
    for (let j = 0; j < index.length; j++) out.set(src.subarray(index[j] * d, index[j] * d + d), j * d);
    return out;
  }

  /** The raw state: rows as they are (not brought up to date), their last steps and the learning rates. */
  state(): { w: Float32Array; m: Float32Array; last: Int32Array; learningRates: number[] } {
    return { w: this.w, m: this.m, last: this.last, learningRates: [...this.lrLog] };
  }

  /** Restores a raw state (arrays copied; the sizes were checked by the caller). */
  restore(w: ArrayLike<number>, m: ArrayLike<number>, last: ArrayLike<number>, learningRates: number[]): void {
    this.w.set(w);
    this.m.set(m);
    this.last.set(last);
    this.lrLog = [...learningRates];
  }

  /** Drops the host arrays (4 GB at C = 1M, D = 512) without waiting for the object to be collected. */
  release(): void {
    this.w = new Float32Array(0);
    this.m = new Float32Array(0);
    this.scratch = new Float32Array(0);
  }

  /**
   * "dense": brings the given rows up to date in place, each with the product A_t ... A_{s+1} of the
   * zero-gradient step maps from its last step s to now, formed once per group of rows with the same s
   * (latest first, so that each group extends the previous product). When `gathered` [K * D] is given,
   * row j of W is copied into it in the same pass. "frozen": only the copy.
   */
  private catchUp(index: Int32Array, gathered: Float32Array | null): void {
    const now = this.steps;
    const d = this.dim;
    const { w, m } = this;
    const groups = new Map<number, number[]>();
    for (let j = 0; j < index.length; j++) {
      const s = this.last[index[j]];
      if (this.semantics === "dense" && s < now) {
        const list = groups.get(s);
        if (list) list.push(j);
        else groups.set(s, [j]);
      } else if (gathered) {
        gathered.set(w.subarray(index[j] * d, index[j] * d + d), j * d);
      }
    }
    const mu = this.momentum;
    const wd = this.weightDecay;
    let [p00, p01, p10, p11] = [1, 0, 0, 1];
    let t = now;
    for (const s of [...groups.keys()].sort((x, y) => y - x)) {
      for (; t > s; t--) {
        const lr = this.lrLog[t];
        const [a00, a01, a10, a11] = [1 - lr * wd, -lr * mu, wd, mu];
        [p00, p01, p10, p11] = [
          p00 * a00 + p01 * a10,
          p00 * a01 + p01 * a11,
          p10 * a00 + p11 * a10,
          p10 * a01 + p11 * a11,
        ];
      }
      for (const j of groups.get(s) as number[]) {
        const o = index[j] * d;
        const end = o + d;
        for (let i = o; i < end; i++) {
          const wv = w[i];
          const mv = m[i];
          w[i] = p00 * wv + p01 * mv;
          m[i] = p10 * wv + p11 * mv;
        }
        if (gathered) gathered.set(w.subarray(o, end), j * d);
        this.last[index[j]] = now;
      }
    }
  }
}

function range(from: number, to: number): Int32Array {
  const out = new Int32Array(to - from);
  for (let i = 0; i < out.length; i++) out[i] = from + i;
  return out;
}

/**
 * N(0, std^2) by Marsaglia's polar method on an inline xorshift32 stream seeded from `seed` (a call-free
 * inner loop: 512M values at C = 1,000,000, D = 512).
 */
export function normalInit(size: number, std: number, seed: number): Float32Array {
  const w = new Float32Array(size);
  let x = (seed ^ 0x5bd1e995) >>> 0 || 1;
  const scale = 2 / 4294967296;
  for (let i = 0; i < w.length; ) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const u = (x >>> 0) * scale - 1;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const v = (x >>> 0) * scale - 1;
    const q = u * u + v * v;
    if (q === 0 || q >= 1) continue;
    const f = std * Math.sqrt((-2 * Math.log(q)) / q);
    w[i++] = u * f;
    if (i < w.length) w[i++] = v * f;
  }
  return w;
}
