/**
 * marginlab's public API: re-exports only. Importing it loads the native TensorFlow backend
 * (src/backend.ts) and fails with the fix if none loads.
 */
export { backendInfo, tf } from "./backend";
export type { BackendInfo } from "./backend";
export type { Head, HeadOptions } from "./losses/head";

// --- losses (src/losses/) ---

// --- tracking (src/tracking/) ---

// --- data, backbones, training, evaluation (src/data, src/backbones, src/train, src/eval) ---
