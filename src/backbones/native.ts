/**
 * TensorFlow ops the tfjs kernels do not expose, called by name through the native backend's generic
 * op runner (tfjs-node and tfjs-node-gpu). The caller wraps them in tf.customGrad: a direct call is
 * not recorded on tfjs' gradient tape.
 */
import { tf } from "../backend";

type Tensor = import("@tensorflow/tfjs-node").Tensor;

export interface NativeBackend {
  binding: {
    TF_ATTR_TYPE: number;
    TF_ATTR_FLOAT: number;
    TF_ATTR_STRING: number;
    TF_ATTR_BOOL: number;
    TF_FLOAT: number;
  };
  executeSingleOutput(name: string, attrs: unknown[], inputs: Tensor[]): Tensor;
  executeMultipleOutputs(name: string, attrs: unknown[], inputs: Tensor[], numOutputs: number): Tensor[];
}

/** The native backend when it can run arbitrary TensorFlow ops, else undefined. */
export function nativeBackend(): NativeBackend | undefined {
  const be = tf.backend() as unknown as Partial<NativeBackend>;
  return tf.getBackend() === "tensorflow" && typeof be.executeMultipleOutputs === "function" && be.binding
    ? (be as NativeBackend)
    : undefined;
}

/** The float32 type attribute most ops take ("T"). */
export function floatAttr(be: NativeBackend, name = "T") {
  return { name, type: be.binding.TF_ATTR_TYPE, value: be.binding.TF_FLOAT };
}

/**
 * cond ? a : b elementwise, all three of one shape: TensorFlow's Select (measured faster than SelectV2,
 * which broadcasts, and than tfjs' where, which tiles).
 */
export function select(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  const be = nativeBackend();
  return be ? be.executeSingleOutput("Select", [floatAttr(be)], [cond, a, b]) : tf.where(cond, a, b);
}
