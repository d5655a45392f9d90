// The one SGD rule (src/train/optimizers.ts), against torch.optim.SGD's trajectories
// (test/fixtures/sgd-torch.json, scripts/reference/sgd_torch.py): sgdUpdate on tensors (FusedHeadStep),
// sgdUpdateRows on the rows of a host store (PartialFC), and Optimizer.apply on one variable and on two
// small ones (updated as one flat vector).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { tf } from "../src/backend";
import { Optimizer, sgdUpdate, sgdUpdateRows } from "../src/train/optimizers";
import fixture from "./fixtures/sgd-torch.json";

type Case = (typeof fixture.cases)[number];

function close(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  assert.is(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++)
    if (!(Math.abs(a[i] - b[i]) <= 1e-6 + 1e-5 * Math.abs(b[i])))
      assert.unreachable(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

for (const c of fixture.cases as Case[]) {
  test(`sgdUpdate follows torch.optim.SGD: ${c.name}`, () => {
    let p = tf.tensor2d(c.p0, [3, 4]);
    let buf: import("@tensorflow/tfjs-node").Tensor | null = c.momentum > 0 ? tf.zeros([3, 4]) : null;
    const rowDecay = c.rowDecay ? tf.tensor2d(c.rowDecay, [3, 1]) : undefined;
    c.grads.forEach((g, t) => {
      const grad = tf.tensor2d(g, [3, 4]);
      const rule = { lr: c.lrs[t], momentum: c.momentum, weightDecay: c.weightDecay, nesterov: c.nesterov };
      const next = sgdUpdate(p, grad, buf, rule, rowDecay);
      tf.dispose([p, grad, buf ?? []]);
      p = next.param as typeof p;
      buf = next.buffer;
      close(p.dataSync(), c.params[t], `${c.name} step ${t} param`);
      if (c.buffers[t])
        close(
          (buf as import("@tensorflow/tfjs-node").Tensor).dataSync(),
          c.buffers[t] as number[],
          `${c.name} step ${t} buffer`,
        );
    });
    tf.dispose([p, buf ?? [], rowDecay ?? []]);
  });
}

for (const c of fixture.cases as Case[]) {
  test(`sgdUpdateRows follows torch.optim.SGD on scattered rows of a store: ${c.name}`, () => {
    // the case's 3 rows live at rows 4, 0, 2 of a 5-row store; rows 1 and 3 must stay as they are
    const at = [4, 0, 2];
    const dim = 4;
    const store = Float32Array.from({ length: 5 * dim }, (_, i) => 100 + i);
    const untouched = store.slice();
    const buf = c.momentum > 0 ? new Float32Array(5 * dim) : null;
    at.forEach((r, j) => {
      store.set(c.p0.slice(j * dim, j * dim + dim), r * dim);
    });
    const rowOf = (a: Float32Array, j: number) => Array.from(a.subarray(at[j] * dim, at[j] * dim + dim));
    c.grads.forEach((g, t) => {
      const rule = { lr: c.lrs[t], momentum: c.momentum, weightDecay: c.weightDecay, nesterov: c.nesterov };
      sgdUpdateRows(store, buf, at, Float32Array.from(g), dim, rule, c.rowDecay ?? undefined);
      close(
        at.flatMap((_, j) => rowOf(store, j)),
        c.params[t],
        `${c.name} step ${t} param`,
      );
      if (c.buffers[t] && buf)
        close(
          at.flatMap((_, j) => rowOf(buf, j)),
          c.buffers[t] as number[],
          `${c.name} step ${t} buffer`,
        );
    });
    for (const r of [1, 3])
      for (let i = 0; i < dim; i++) assert.is(store[r * dim + i], untouched[r * dim + i], `row ${r} untouched`);
  });
}

test("Optimizer.apply (SGD) takes the same trajectory, alone and with its variables updated as one flat vector", () => {
  for (const c of (fixture.cases as Case[]).filter((k) => !k.rowDecay)) {
    // one variable: its own ops; two small ones in a group: the flat path (both follow the same trajectory)
    for (const n of [1, 2]) {
      const vs = Array.from({ length: n }, () => tf.variable(tf.tensor2d(c.p0, [3, 4])));
      const opt = new Optimizer(
        { type: "sgd", lr: c.lrs[0], momentum: c.momentum, nesterov: c.nesterov, weightDecay: c.weightDecay },
        [{ variables: vs, weightDecay: c.weightDecay }],
      );
      c.grads.forEach((g, t) => {
        const grad = tf.tensor2d(g, [3, 4]);
        opt.apply(
          vs.map(() => grad),
          c.lrs[t],
        );
        grad.dispose();
        const state = opt.saveState();
        vs.forEach((v, k) => {
          close(v.dataSync(), c.params[t], `${c.name} (${n} variables) step ${t} param ${k}`);
          if (c.buffers[t])
            close(state[k].data, c.buffers[t] as number[], `${c.name} (${n} variables) step ${t} buffer ${k}`);
        });
      });
      opt.dispose();
      tf.dispose(vs);
    }
  }
});

test.run();
