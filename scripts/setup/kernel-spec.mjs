// Registers tslab as the project's Jupyter kernel "marginlab" ("TypeScript (marginlab)"). The argv
// names node and the kernel launcher (scripts/kernel.cjs: tslab started in the project root) by
// absolute path, so the kernel starts without node_modules/.bin on PATH.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { root, SetupError } from "./util.mjs";

export const KERNEL_NAME = "marginlab";

export function kernelSpec() {
  const launcher = path.join(root, "scripts", "kernel.cjs");
  if (!existsSync(path.join(root, "node_modules", "tslab")))
    throw new SetupError("kernel spec", "node_modules/tslab is missing", "run `npm install`");
  return {
    argv: [process.execPath, launcher, "kernel", "--config-path", "{connection_file}"],
    display_name: "TypeScript (marginlab)",
    language: "typescript",
    env: {
      // libtensorflow's C++ start-up chatter would otherwise land in every notebook's first output.
      TF_CPP_MIN_LOG_LEVEL: "2",
      MARGINLAB_ROOT: root,
      MARGINLAB_IN_NOTEBOOK: "1",
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
