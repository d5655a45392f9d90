// Registers tslab as the project's Jupyter kernel "marginlab" ("TypeScript (marginlab)"). The argv
// names node and the kernel launcher (scripts/kernel.cjs: tslab started in the project root) by
// absolute path, so the kernel starts without node_modules/.bin on PATH. With the GPU build, the kernel's
// LD_LIBRARY_PATH starts with the CUDA library folders (Jupyter fills in ${LD_LIBRARY_PATH} from its own).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { root, SetupError } from "./util.mjs";

const gpuEnv = createRequire(import.meta.url)("./gpu-env.cjs");

export const KERNEL_NAME = "marginlab";

export function kernelSpec() {
  const launcher = path.join(root, "scripts", "kernel.cjs");
  if (!existsSync(path.join(root, "node_modules", "tslab")))
    throw new SetupError("kernel spec", "node_modules/tslab is missing", "run `npm install`");
  const cudaDirs = gpuEnv.gpuBuildInstalled(root) ? gpuEnv.cudaLibraryDirs(root) : [];
  // biome-ignore lint/suspicious/noTemplateCurlyInString: Jupyter's own substitution syntax, filled in by Jupyter.
  const gpu = cudaDirs.length > 0 ? { LD_LIBRARY_PATH: [...cudaDirs, "${LD_LIBRARY_PATH}"].join(path.delimiter) } : {};
  return {
    argv: [process.execPath, launcher, "kernel", "--config-path", "{connection_file}"],
    display_name: "TypeScript (marginlab)",
    language: "typescript",
    env: {
      // Errors only (src/backend.ts filters libtensorflow's start-up lines at this level too).
      TF_CPP_MIN_LOG_LEVEL: "2",
      MARGINLAB_ROOT: root,
      MARGINLAB_IN_NOTEBOOK: "1",
      ...gpu,
    },
    metadata: { marginlab: { root } },
  };
}

/** Writes kernels/marginlab/kernel.json under a Jupyter data dir; returns whether it changed. */
export function writeKernelSpec(jupyterDataDir) {
  const dir = path.join(jupyterDataDir, "kernels", KERNEL_NAME);
  const file = path.join(dir, "kernel.json");
  const text = `${JSON.stringify(kernelSpec(), null, 2)}\n`;
  if (existsSync(file) && readFileSync(file, "utf8") === text) return { file, changed: false };
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, text);
  return { file, changed: true };
}
