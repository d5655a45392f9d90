/**
 * Partial FC's sparse row store: the full W [C, D] and its SGD-momentum buffer on the host (Float32Arrays:
 * 2 GB each at C = 1,000,000, D = 512), of which each step moves only the active rows into TensorFlow
 * (`read`) and back (`write`).
 *
 * "dense" semantics (InsightFace PartialFC_V2 with torch.optim.SGD) update every row every step: an
 * unsampled row has zero gradient, but weight decay and momentum still move it, linearly:
 * (w, m) <- [[1 - lr wd, -lr mu], [wd, mu]] (w, m). The store does this lazily and exactly: each row
 * remembers the step it is up to date with, and `read` brings it forward with the product of those 2x2
 * maps (one per step missed, each with that step's learning rate), formed once per group of rows and
 * applied while the rows are gathered (the gather reads w and m anyway: the catch-up costs no extra pass
 * over memory, where separate TensorFlow ops on the gathered rows cost six). "frozen" (the removed
 * PartialFC V1): unsampled rows stay as they are.
 */
import { tf } from "../backend";
import type { Tensor2D } from "./head";

export type PartialFCSemantics = "dense" | "frozen";

/** Rows moved per TensorFlow call when every row is read or written (flush, copies of all of W). */
const CHUNK_ROWS = 65536;

export class HostRows {
  readonly numRows: number;
  readonly dim: number;
  private w: Float32Array;
  private m: Float32Array;
  /** The step each row's (w, m) is up to date with. */
  private readonly last: Int32Array;
  /** The learning rate of every step taken, [0] unused: the catch-up replays them. */
  private lrLog: number[] = [0];

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

  /** Steps taken. */
  get steps(): number {
    return this.lrLog.length - 1;
  }

  /** Records one step taken with learning rate `lr` (after its rows were written). */
  recordStep(lr: number): void {
    this.lrLog.push(lr);
  }

  /**
   * W and momentum of the given rows [K, D], as tensors (caller disposes), brought up to date with the
   * steps taken. Every row read at once (K = C) is handed over without a host copy.
   */
  read(index: Int32Array): { w: Tensor2D; m: Tensor2D } {
    const coef = this.semantics === "dense" ? this.catchUpCoefficients(index) : null;
    const d = this.dim;
    const k = index.length;
    if (!coef && k === this.numRows) return { w: tf.tensor2d(this.w, [k, d]), m: tf.tensor2d(this.m, [k, d]) };
    const bw = new Float32Array(k * d);
    const bm = new Float32Array(k * d);
    const { w, m } = this;
    for (let j = 0; j < k; j++) {
      const o = index[j] * d;
      const c = 4 * j;
      if (!coef || (coef[c] === 1 && coef[c + 1] === 0 && coef[c + 2] === 0 && coef[c + 3] === 1)) {
        bw.set(w.subarray(o, o + d), j * d);
        bm.set(m.subarray(o, o + d), j * d);
        continue;
      }
      const [p00, p01, p10, p11] = [coef[c], coef[c + 1], coef[c + 2], coef[c + 3]];
      for (let i = 0, q = j * d; i < d; i++, q++) {
        const wv = w[o + i];
        const mv = m[o + i];
        bw[q] = p00 * wv + p01 * mv;
        bm[q] = p10 * wv + p11 * mv;
      }
    }
    return { w: tf.tensor2d(bw, [k, d]), m: tf.tensor2d(bm, [k, d]) };
  }

  /** Writes rows read by `read` and updated (w, m [K, D]) back, up to date with the current step count. */
  write(index: Int32Array, w: Tensor2D, m: Tensor2D): void {
    const wv = w.dataSync() as Float32Array;
    const mv = m.dataSync() as Float32Array;
    if (index.length === this.numRows) {
      // every row in order (r = 1): the downloaded arrays become the store
      this.w = wv;
      this.m = mv;
    } else {
      const d = this.dim;
      for (let k = 0; k < index.length; k++) {
        const o = index[k] * d;
        this.w.set(wv.subarray(k * d, k * d + d), o);
        this.m.set(mv.subarray(k * d, k * d + d), o);
      }
    }
    const t = this.steps;
    for (let k = 0; k < index.length; k++) this.last[index[k]] = t;
  }

  /** Brings every row up to date ("dense"; a no-op for "frozen"). */
  flush(): void {
    if (this.semantics !== "dense") return;
    for (let start = 0; start < this.numRows; start += CHUNK_ROWS) {
      const index = range(start, Math.min(start + CHUNK_ROWS, this.numRows));
      const { w, m } = this.read(index);
      this.write(index, w, m);
      tf.dispose([w, m]);
    }
  }

  /** An up-to-date copy of W or of the momentum, [C * D] or of the given rows [K * D]. */
  values(which: "weight" | "momentum", rows?: ArrayLike<number>): Float32Array {
    if (rows === undefined) {
      this.flush();
      return (which === "weight" ? this.w : this.m).slice();
    }
    const r = this.read(Int32Array.from(rows));
    // a copy: a tensor made from the store itself may hand back the store's own array
    const out = ((which === "weight" ? r.w : r.m).dataSync() as Float32Array).slice();
    tf.dispose([r.w, r.m]);
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
  }

  /**
   * Per row [K * 4], the 2x2 map (p00, p01, p10, p11) from its last step to now: the product A_t ... A_{s+1}
   * of the zero-gradient step maps, formed once per group of rows with the same last step s (latest first,
   * so that each group extends the previous product). null when every row is up to date.
   */
  private catchUpCoefficients(index: Int32Array): Float64Array | null {
    const now = this.steps;
    const groups = new Map<number, number[]>();
    for (let k = 0; k < index.length; k++) {
      const s = this.last[index[k]];
      if (s >= now) continue;
      const list = groups.get(s);
      if (list) list.push(k);
      else groups.set(s, [k]);
    }
    if (groups.size === 0) return null;
    const coef = new Float64Array(index.length * 4);
    for (let k = 0; k < index.length; k++) {
      coef[4 * k] = 1;
      coef[4 * k + 3] = 1;
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
      for (const k of groups.get(s) as number[]) coef.set([p00, p01, p10, p11], 4 * k);
    }
    return coef;
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
