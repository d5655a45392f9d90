// The Python side: a project-local .venv with JupyterLab, nbconvert and the MLflow server, from the
// pinned requirements.txt. Re-installs only when requirements.txt changes (a hash stamp in .venv).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { lastLines, log, root, run, SetupError, sha256OfFile } from "./util.mjs";

export const venvDir = path.join(root, ".venv");
export const venvPython = path.join(venvDir, "bin", "python");
const requirements = path.join(root, "requirements.txt");
const stamp = path.join(venvDir, ".marginlab-requirements.sha256");

const PYTHON_FIX =
  "install Python 3.10 or newer with venv (Debian/Ubuntu: apt-get install python3 python3-venv; or pyenv), or point MARGINLAB_PYTHON at one; or set MARGINLAB_SKIP_PYTHON=1 to use your own Jupyter and MLflow";

/** The first Python >= 3.10 whose venv module works. */
function findBasePython() {
  const candidates = [
    process.env.MARGINLAB_PYTHON,
    "python3.13",
    "python3.12",
    "python3.11",
    "python3.10",
    "python3",
    "python",
  ];
  for (const candidate of candidates.filter(Boolean)) {
    const probe = run(candidate, [
      "-c",
      "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2]); sys.exit(0 if sys.version_info >= (3, 10) else 3)",
    ]);
    if (probe.status === 0) return { python: candidate, version: probe.stdout.trim() };
  }
  return undefined;
}

/** Creates .venv when it is missing (also used alone by the GPU build under MARGINLAB_SKIP_PYTHON=1). */
export function ensureVenv() {
  if (!existsSync(venvPython)) {
    const base = findBasePython();
    if (!base)
      throw new SetupError(
        "python environment",
        "no Python >= 3.10 with the venv and ensurepip modules was found",
        PYTHON_FIX,
      );
    log(`python environment: creating .venv with ${base.python} (Python ${base.version})`);
    const created = run(base.python, ["-m", "venv", venvDir]);
    if (created.status !== 0) {
      throw new SetupError("python environment: creating .venv", lastLines(created.stderr, 6), PYTHON_FIX);
    }
  }
}

export function setupPythonEnv() {
  ensureVenv();
  const wanted = sha256OfFile(requirements);
  if (existsSync(stamp) && readFileSync(stamp, "utf8").trim() === wanted) {
    log("python environment: .venv is up to date with requirements.txt, nothing to do");
    return;
  }
  log(
    "python environment: installing requirements.txt into .venv (JupyterLab, nbconvert, MLflow; a few minutes the first time)",
  );
  const install = run(venvPython, ["-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", requirements], {
    timeout: 45 * 60 * 1000,
  });
  if (install.status !== 0) {
    throw new SetupError(
      "python environment: pip install -r requirements.txt",
      lastLines(install.stdout + install.stderr, 10),
      "check that pip reaches the Python package index (a proxy or PIP_INDEX_URL for a mirror), then run `npm run setup` again",
    );
  }
  writeFileSync(stamp, `${wanted}\n`);
}
