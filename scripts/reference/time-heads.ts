/**
 * Indicative timings of the loss heads' core (the benchmark owner's `bench/heads.ts` is the real benchmark):
 *   node --require tsx/cjs scripts/reference/time-heads.ts [classes=100000] [repeats=4]
 * Prints medians of: an ArcFace training step (head.loss + tf.train.momentum), loss + gradient wrt W through
 * the fused core, the same through an autograd-normalised W and the generic core, and the three matmuls.
 * Compare with `cd bench/peers && ../../.venv-peers/bin/python heads.py --variant insightface` run in the same minutes.
 */
import type { Tensor1D, Tensor2D } from "@tensorflow/tfjs-node";
import { tf } from "../../src/backend";
import { ArcFace, arcFaceTarget } from "../../src/losses/arcface";
import { marginSoftmaxCrossEntropy } from "../../src/losses/margin-softmax";
import { l2NormalizeRows } from "../../src/losses/tensor-helpers";

const B = 256;
const D = 512;
const C = Number(process.argv[2] ?? 100000);
const R = Number(process.argv[3] ?? 4);

const head = new ArcFace({ numClasses: C, embeddingDim: D, seed: 1, validateLabels: false });
const W = head.weight as unknown as Tensor2D;
const x = tf.randomNormal([B, D], 0, 1, "float32", 1) as Tensor2D;
const y = tf.tensor1d(
  Array.from({ length: B }, (_, i) => (i * 7919 + 13) % C),
  "int32",
) as Tensor1D;
const T = arcFaceTarget(0.5, "fallback", "exact");
const opt = tf.train.momentum(0.1, 0.9);

const cases: [string, () => void][] = [
  [
    "ArcFace step (loss + momentum update)",
    () => {
      const l = opt.minimize(() => head.loss(x, y), true, [head.weight]);
      l?.dataSync();
      l?.dispose();
    },
  ],
  [
    "loss + dW, fused core",
    () => {
      const g = tf.variableGrads(() => head.loss(x, y), [head.weight]);
      g.value.dataSync();
      tf.dispose([g.value, ...Object.values(g.grads)]);
    },
  ],
  [
    "loss + dW, normalised W + generic core",
    () => {
      const g = tf.variableGrads(
        () =>
          tf.tidy(() =>
            marginSoftmaxCrossEntropy(tf.matMul(l2NormalizeRows(x, true), l2NormalizeRows(W), false, true), y, 64, T),
          ),
        [head.weight],
      );
      g.value.dataSync();
      tf.dispose([g.value, ...Object.values(g.grads)]);
    },
  ],
  [
    "three matmuls (x W^T, H W, H^T x)",
    () => {
      const a = tf.matMul(x, W, false, true);
      const b = tf.matMul(a, W);
      const c = tf.matMul(a, x, true, false);
      c.dataSync();
      tf.dispose([a, b, c]);
    },
  ],
];

const times = new Map<string, number[]>();
for (const [name, f] of cases) {
  f();
  times.set(name, []);
}
for (let r = 0; r < R; r++) {
  for (const [name, f] of cases) {
    const t0 = performance.now();
    f();
    times.get(name)?.push(performance.now() - t0);
  }
}
console.log(`B=${B} D=${D} C=${C}, ${R} repeats, interleaved; tensors alive: ${tf.memory().numTensors}`);
for (const [name, ts] of times) {
  ts.sort((a, b) => a - b);
  const mid = ts.length % 2 ? ts[(ts.length - 1) / 2] : (ts[ts.length / 2 - 1] + ts[ts.length / 2]) / 2;
  console.log(`${name.padEnd(42)} median ${mid.toFixed(0)} ms  (${ts.map((t) => t.toFixed(0)).join(", ")})`);
}
