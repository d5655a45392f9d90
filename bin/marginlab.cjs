#!/usr/bin/env node
// The `marginlab` command: TypeScript sources run directly through tsx (no build step).
// With the GPU build on a machine with a CUDA device, the command first restarts itself with the CUDA library
// folders on LD_LIBRARY_PATH: the dynamic loader reads that variable only when a process starts.
const path = require("node:path");
const gpuEnv = require("../scripts/setup/gpu-env.cjs");

const root = path.resolve(__dirname, "..");

if (gpuEnv.needsLoaderRestart(root)) {
  const { spawn } = require("node:child_process");
  const child = spawn(process.execPath, [...process.execArgv, __filename, ...process.argv.slice(2)], {
    stdio: "inherit",
    env: { ...process.env, LD_LIBRARY_PATH: gpuEnv.loaderPathWithCuda(root) },
  });
  // Ctrl-C reaches the child from the terminal; a signal sent to this process only is passed on.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(signal, () => {
      if (signal !== "SIGINT") child.kill(signal);
    });
  }
  child.on("exit", (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
} else {
  // Both hooks: require() of .ts files, and import() of them (the CLI loads commands lazily).
  require("tsx/cjs/api").register();
  require("tsx/esm/api").register();
  require("../src/cli.ts");
}
