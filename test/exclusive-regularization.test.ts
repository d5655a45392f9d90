import { test } from "uvu";
import * as assert from "uvu/assert";
import { tf } from "../src/backend";
import {
  exclusiveDense,
  exclusiveRegularization,
  exclusiveStochastic,
  exclusiveTiled,
  nearestOtherRows,
} from "../src/losses/exclusive";
import { normalizeRows } from "../src/losses/tensor-helpers";
import fixture from "./fixtures/exclusive-pml.json";
import pmlVectors from "./fixtures/vectors/pml_losses.json";

type T2 = import("@tensorflow/tfjs-node").Tensor2D;
type Fn = (w: T2) => import("@tensorflow/tfjs-node").Scalar;

function valueAndGrad(f: Fn, w: number[][] | T2): { value: number; grad: Float32Array } {
  return tf.tidy(() => {
    const wt = Array.isArray(w) ? tf.tensor2d(w) : w;
    const { value, grads } = tf.valueAndGrads((x) => f(x as T2))([wt]);
    return { value: value.dataSync()[0], grad: grads[0].dataSync() as Float32Array };
  });
}

/** max |a - b| / (atol + rtol |b|) <= 1 */
function close(a: ArrayLike<number>, b: ArrayLike<number>, rtol: number, atol: number, what: string): void {
  assert.is(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    const ok = Math.abs(a[i] - b[i]) <= atol + rtol * Math.abs(b[i]);
    if (!ok) assert.unreachable(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

function randomRows(c: number, d: number, seed: number): T2 {
  return tf.randomNormal([c, d], 0, 1, "float32", seed) as T2;
}

const dense: Fn = (w) => exclusiveDense(w);

test("dense form matches pytorch-metric-learning's RegularFaceRegularizer (research vector)", () => {
  const r = pmlVectors.RegularFaceRegularizer_alone_on_W_t;
  const got = valueAndGrad(dense, r.input_rows_are_classes);
  close([got.value], [r.value], 1e-5, 1e-7, "value");
  close(got.grad, r.grad.flat(), 1e-5, 1e-7, "grad");
});

test("dense and tiled forms match PML on random, duplicate and zero rows (scripts/reference/exclusive_pml.py)", () => {
  for (const c of fixture.cases) {
    const want = c.grad.flat();
    for (const [name, f] of [
      ["dense", dense],
      ["tiled/3", (w: T2) => exclusiveTiled(w, 3)],
      ["tiled/64", (w: T2) => exclusiveTiled(w, 64)],
    ] as [string, Fn][]) {
      const got = valueAndGrad(f, c.weight);
      close([got.value], [c.value], 1e-5, 1e-6, `${c.name} ${name} value`);
      // the zero row's gradient is G / 1e-12 (as F.normalize's): compare it relatively
      close(got.grad, want, 1e-4, 1e-5, `${c.name} ${name} grad`);
      for (const g of got.grad) assert.ok(Number.isFinite(g), `${c.name} ${name}: finite gradient`);
    }
  }
});

test("tiled form: same partners, value and gradient as dense for every tile size", () => {
  const w = randomRows(37, 16, 7);
  const ref = valueAndGrad(dense, w);
  const wn = normalizeRows(w);
  const cos = tf.matMul(wn, wn, false, true).arraySync() as number[][];
  const near = nearestOtherRows(wn, 5);
  for (let i = 0; i < 37; i++) {
    let best = -1;
    for (let j = 0; j < 37; j++) if (j !== i && (best < 0 || cos[i][j] > cos[i][best])) best = j;
    assert.is(near.index[i], best, `partner of row ${i}`);
  }
  for (const tile of [1, 4, 5, 16, 36, 37, 100]) {
    const got = valueAndGrad((x) => exclusiveTiled(x, tile), w);
    close([got.value], [ref.value], 1e-6, 1e-7, `tile ${tile} value`);
    close(got.grad, ref.grad, 1e-5, 1e-7, `tile ${tile} grad`);
  }
  // default options go to the tiled form
  close([valueAndGrad((x) => exclusiveRegularization(x), w).value], [ref.value], 1e-6, 1e-7, "default form");
  tf.dispose([w, wn]);
});

test("gradients agree with central finite differences (dense and tiled)", () => {
  const w = randomRows(7, 5, 3);
  const base = w.arraySync();
  for (const [name, f] of [
    ["dense", dense],
    ["tiled", (x: T2) => exclusiveTiled(x, 2)],
  ] as [string, Fn][]) {
    const { grad } = valueAndGrad(f, w);
    const h = 1e-2;
    for (let i = 0; i < 7; i++) {
      for (let k = 0; k < 5; k++) {
        const plus = base.map((r) => r.slice());
        const minus = base.map((r) => r.slice());
        plus[i][k] += h;
        minus[i][k] -= h;
        const fd = (valueAndGrad(f, plus).value - valueAndGrad(f, minus).value) / (2 * h);
        close([grad[i * 5 + k]], [fd], 2e-2, 2e-4, `${name} d/dW[${i}][${k}]`);
      }
    }
  }
  w.dispose();
});

test("stochastic form: all classes against all centres equals the exact form; subsets match brute force", () => {
  const w = randomRows(30, 8, 11);
  const all = Array.from({ length: 30 }, (_, i) => i);
  const exact = valueAndGrad(dense, w);
  const stoch = valueAndGrad((x) => exclusiveStochastic(x, all, undefined, 7), w);
  close([stoch.value], [exact.value], 1e-6, 1e-7, "value");
  close(stoch.grad, exact.grad, 1e-5, 1e-7, "grad");

  const classes = [3, 17, 17, 29];
  const candidates = [0, 3, 5, 8, 17, 21];
  const cos = tf.tidy(() => {
    const wn = normalizeRows(w);
    return tf.matMul(wn, wn, false, true).arraySync() as number[][];
  });
  let sum = 0;
  const distinct = [3, 17, 29];
  const touched = new Set<number>();
  for (const c of distinct) {
    let best = -1;
    for (const j of candidates) if (j !== c && (best < 0 || cos[c][j] > cos[c][best])) best = j;
    sum += cos[c][best];
    touched.add(c).add(best);
  }
  const got = valueAndGrad(
    (x) => exclusiveRegularization(x, { form: "stochastic", classes, candidates, tileSize: 4 }),
    w,
  );
  close([got.value], [sum / distinct.length], 1e-6, 1e-7, "subset value");
  for (let r = 0; r < 30; r++) {
    const rowNorm = Math.hypot(...got.grad.subarray(r * 8, r * 8 + 8));
    if (touched.has(r)) assert.ok(rowNorm > 0, `row ${r} in a pair gets gradient`);
    else assert.is(rowNorm, 0, `row ${r} outside the pairs gets exactly zero gradient`);
  }
  w.dispose();
});

test("no NaN or Inf: duplicate rows, zero rows, all-identical rows, all-zero rows", () => {
  const cases: number[][][] = [
    [
      [1, 2, 3],
      [1, 2, 3],
      [0, 0, 0],
      [-1, 0, 2],
    ],
    Array.from({ length: 5 }, () => [0.5, -0.5, 1]),
    Array.from({ length: 4 }, () => [0, 0, 0]),
  ];
  for (const w of cases) {
    for (const f of [
      dense,
      (x: T2) => exclusiveTiled(x, 2),
      (x: T2) => exclusiveStochastic(x, [0, 1, 2], undefined, 2),
    ] as Fn[]) {
      const got = valueAndGrad(f, w);
      assert.ok(Number.isFinite(got.value), "finite value");
      assert.ok(got.value <= 1 && got.value >= -1, "value in [-1, 1]");
      for (const g of got.grad) assert.ok(Number.isFinite(g), "finite gradient");
    }
  }
  // identical rows: every nearest cosine is 1
  assert.ok(Math.abs(valueAndGrad((x) => exclusiveTiled(x, 2), cases[1]).value - 1) < 1e-6);
});

test("bad configuration names the field, the value and what is allowed", () => {
  const w = tf.ones([4, 3]) as T2;
  assert.throws(
    () => exclusiveRegularization(w, { form: "full" as never }),
    /form = "full".*"dense", "tiled", "stochastic"/,
  );
  assert.throws(() => exclusiveRegularization(w, { tileSize: 0 }), /tileSize = 0.*integer >= 1/);
  assert.throws(() => exclusiveRegularization(w, { form: "stochastic" }), /classes = undefined.*required/);
  assert.throws(
    () => exclusiveRegularization(w, { form: "stochastic", classes: [1, 4] }),
    /classes\[1\] = 4.*\[0, 4\)/,
  );
  assert.throws(() => exclusiveRegularization(w, { form: "stochastic", classes: [1.5] }), /classes\[0\] = 1.5/);
  assert.throws(() => exclusiveRegularization(tf.ones([1, 3]) as T2), /weight.shape = \[1,3\].*at least 2/);
  w.dispose();
});

test("no tensor leak across repeated value-and-gradient evaluations", () => {
  const w = tf.variable(randomRows(20, 6, 5));
  const initial = exclusiveDense(w as unknown as T2).dataSync()[0];
  const opt = tf.train.sgd(0.1);
  const step = () =>
    tf.tidy(() => {
      opt.minimize(() => exclusiveTiled(w as unknown as T2, 6));
      opt.minimize(() => exclusiveStochastic(w as unknown as T2, [1, 2, 3]));
    });
  step();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) step();
  assert.is(tf.memory().numTensors, before);
  // the regulariser pushes centres apart: the exact value went down
  const after = exclusiveDense(w as unknown as T2);
  assert.ok(after.dataSync()[0] < initial - 1e-3, `${after.dataSync()[0]} < ${initial}`);
  tf.dispose([w, after]);
  opt.dispose();
});

test.run();
