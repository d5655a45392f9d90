#!/usr/bin/env node
// `npm run setup:peers`: the optional .venv-peers with PyTorch (CPU) and pytorch-metric-learning,
// used to regenerate reference fixtures and to run the benchmarks' PyTorch peers.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { lastLines, log, root, run, sha256OfFile } from "./setup/util.mjs";

const venv = path.join(root, ".venv-peers");
const python = path.join(venv, "bin", "python");
const requirements = path.join(root, "requirements-peers.txt");
const stamp = path.join(venv, ".marginlab-requirements.sha256");

if (!existsSync(python)) {
  const base = process.env.MARGINLAB_PYTHON ?? "python3";
  log(`peers: creating .venv-peers with ${base}`);
  const created = run(base, ["-m", "venv", venv]);
  if (created.status !== 0) {
    process.stderr.write(
      `peers: python -m venv failed:\n${lastLines(created.stderr)}\nInstall Python 3.10+ with venv.\n`,
    );
    process.exit(1);
  }
}
const wanted = sha256OfFile(requirements);
if (existsSync(stamp) && readFileSync(stamp, "utf8").trim() === wanted) {
  log("peers: .venv-peers is up to date");
} else {
  log("peers: installing requirements-peers.txt (PyTorch CPU, pytorch-metric-learning)");
  const install = run(python, ["-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", requirements], {
    timeout: 45 * 60 * 1000,
  });
  if (install.status !== 0) {
    process.stderr.write(`peers: pip install failed:\n${lastLines(install.stdout + install.stderr, 10)}\n`);
    process.exit(1);
  }
  writeFileSync(stamp, `${wanted}\n`);
}
log(`peers: ready at ${python}`);
