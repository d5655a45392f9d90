import { createBackbone } from "../src/backbones";
import { tf } from "../src/backend";
import { ArcFace } from "../src/losses/arcface";
const bb = createBackbone({ name: "iresnet", layers: [1,1,1,1], widths: [16,32,64,128], inputShape: [32,32,1], embeddingDim: 64 });
const head = new ArcFace({ numClasses: 1000, embeddingDim: 64, s: 64, m: 0.5, validateLabels: false });
const x = tf.randomNormal([64, 32, 32, 1]) as any;
const labels = tf.tensor1d(Array.from({length:64},(_, i)=> (i*7919)%1000), "int32") as any;
const vars = [...bb.trainableVariables(), ...head.trainableVariables()];
function t(name: string, f: () => void, n = 8) {
  for (let i = 0; i < 2; i++) f();
  const ts: number[] = [];
  for (let i = 0; i < n; i++) { const s = performance.now(); f(); ts.push(performance.now() - s); }
  ts.sort((a,b)=>a-b);
  console.log(name.padEnd(30), ts[n>>1].toFixed(1), "ms");
}
t("forward eval", () => tf.tidy(() => { bb.apply(x, false).dataSync(); }));
t("forward train", () => tf.tidy(() => { bb.apply(x, true).dataSync(); }));
t("fwd+head train", () => tf.tidy(() => { head.loss(bb.apply(x, true), labels).dataSync(); }));
t("variableGrads", () => tf.tidy(() => { const {value, grads} = tf.variableGrads(() => head.loss(bb.apply(x, true), labels) as any, vars as any); value.dataSync(); }));
console.log("tensors", tf.memory().numTensors);
