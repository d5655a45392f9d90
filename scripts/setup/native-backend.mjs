// Makes a tfjs native package usable: @tensorflow/tfjs-node with its own libtensorflow download first and,
// when that host is unreachable, the libtensorflow inside the pinned `tensorflow-cpu` Python wheel (see README,
// "How the native backend is installed"); @tensorflow/tfjs-node-gpu always with the `tensorflow` GPU wheel's
// (its own download is libtensorflow 2.9.1 for CUDA 11.2, see docs/gpu.md). Idempotent: a working binding is
// left alone.
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { envWithLocalBin, lastLines, log, nodeHeadersDir, root, run, SetupError } from "./util.mjs";

const TF_VERSION = "2.21.0";
const WHEEL_TAGS = { python: "311", platform: "manylinux_2_27_x86_64" };

/**
 * The two builds. Each caches what it takes from its wheel outside node_modules (so a fresh `node_modules`
 * only rebuilds the binding and downloads nothing).
 */
export const CPU_BUILD = {
  label: "native backend",
  pkg: "@tensorflow/tfjs-node",
  dir: path.join(root, "node_modules", "@tensorflow", "tfjs-node"),
  wheel: { name: "tensorflow-cpu", version: TF_VERSION, ...WHEEL_TAGS, size: "about 275 MB", unpacked: "900 MB" },
  cache: path.join(root, ".cache", `libtensorflow-${TF_VERSION}`),
  tryOwnDownload: true,
};
export const GPU_BUILD = {
  label: "GPU build",
  pkg: "@tensorflow/tfjs-node-gpu",
  dir: path.join(root, "node_modules", "@tensorflow", "tfjs-node-gpu"),
  wheel: { name: "tensorflow", version: TF_VERSION, ...WHEEL_TAGS, size: "about 575 MB", unpacked: "1.3 GB" },
  cache: path.join(root, ".cache", `libtensorflow-gpu-${TF_VERSION}`),
  tryOwnDownload: false,
};

// The libraries the binding links, and the headers its two .cc files include (measured from the
// compiler's dependency files; the prefixes below cover them with margin).
const LIBRARIES = ["libtensorflow_cc.so.2", "libtensorflow_framework.so.2"];
const HEADER_PREFIXES = ["tensorflow/c/", "tensorflow/core/platform/ctstring", "tsl/platform/ctstring", "xla/tsl/c/"];

function bindingLoads(build, env = process.env) {
  const probe = run(
    process.execPath,
    ["-e", `const tf=require('${build.pkg}');process.stdout.write(tf.getBackend())`],
    {
      cwd: root,
      env: { ...env, TF_CPP_MIN_LOG_LEVEL: "3" },
    },
  );
  return probe.status === 0 && probe.stdout.trim() === "tensorflow" ? true : probe.stderr;
}

function tryPackageDownload(build) {
  if (process.env.MARGINLAB_SKIP_TFJS_DOWNLOAD === "1") return "skipped (MARGINLAB_SKIP_TFJS_DOWNLOAD=1)";
  log(`${build.label}: trying ${build.pkg}'s own libtensorflow download`);
  const result = run(process.execPath, ["scripts/install.js"], {
    cwd: build.dir,
    env: envWithLocalBin(nodeEnv()),
    timeout: 15 * 60 * 1000,
  });
  if (result.status === 0 && bindingLoads(build) === true) return true;
  const output = `${result.stdout}\n${result.stderr}`;
  const reason = output.split("\n").find((line) => /getaddrinfo|ENOTFOUND|ECONNREFUSED|ETIMEDOUT|Error:/.test(line));
  return (reason ?? lastLines(output, 1)).trim();
}

function nodeEnv() {
  const nodedir = nodeHeadersDir();
  return nodedir ? { npm_config_nodedir: nodedir } : {};
}

export function findPython() {
  for (const candidate of [process.env.MARGINLAB_PYTHON, "python3", "python"].filter(Boolean)) {
    const probe = run(candidate, ["-c", "import sys; print(sys.version_info >= (3, 8))"]);
    if (probe.status === 0 && probe.stdout.trim() === "True") return candidate;
  }
  return undefined;
}

/**
 * Downloads the wheel (pip's cache and configured mirrors apply) and extracts only what the binding needs,
 * plus the wheel's METADATA (the GPU build reads its CUDA requirements there).
 */
function fetchLibtensorflowFromWheel(build) {
  const { wheel: TF_WHEEL, cache: libtensorflowCache } = build;
  const marker = path.join(libtensorflowCache, "COMPLETE");
  if (existsSync(marker)) return;
  const python = findPython();
  if (!python) {
    throw new SetupError(
      `${build.label}: libtensorflow from the TensorFlow wheel`,
      `no python3 with pip found to download the ${TF_WHEEL.name} wheel`,
      "install Python 3.10+ with pip (Debian: apt-get install python3 python3-pip python3-venv), or set TFJS_NODE_CDN_STORAGE to a mirror of Google's libtensorflow storage",
    );
  }
  const spec = `${TF_WHEEL.name}==${TF_WHEEL.version}`;
  const downloadDir = path.join(tmpdir(), `marginlab-tf-wheel-${process.pid}`);
  log(`${build.label}: downloading ${spec} (${TF_WHEEL.size}) to take libtensorflow from it`);
  const download = run(
    python,
    [
      "-m",
      "pip",
      "download",
      "--no-deps",
      "--only-binary=:all:",
      "--python-version",
      TF_WHEEL.python,
      "--platform",
      TF_WHEEL.platform,
      "-d",
      downloadDir,
      spec,
    ],
    { timeout: 30 * 60 * 1000 },
  );
  const wheel = existsSync(downloadDir) ? readdirSync(downloadDir).find((f) => f.endsWith(".whl")) : undefined;
  if (download.status !== 0 || !wheel) {
    throw new SetupError(
      `${build.label}: downloading the ${TF_WHEEL.name} wheel`,
      `pip download ${spec} failed:\n${lastLines(download.stdout + download.stderr, 6)}`,
      "check that pip reaches the Python package index (pip config list; a proxy or mirror via PIP_INDEX_URL), then run `npm run setup` again",
    );
  }
  rmSync(libtensorflowCache, { recursive: true, force: true });
  mkdirSync(libtensorflowCache, { recursive: true });
  // Python's zipfile, so no `unzip` binary is needed. Only the two libraries and a few headers are kept.
  const extract = run(
    python,
    [
      "-c",
      `import sys, zipfile, os, shutil
wheel, out = sys.argv[1], sys.argv[2]
libs = set(sys.argv[3].split(','))
prefixes = tuple(sys.argv[4].split(','))
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if info.is_dir():
            continue
        if name.endswith('.dist-info/METADATA') and name.count('/') == 1:
            dest = os.path.join(out, 'METADATA')
        elif name.startswith('tensorflow/') and name.count('/') == 1 and os.path.basename(name) in libs:
            dest = os.path.join(out, 'lib', os.path.basename(name))
        elif name.startswith('tensorflow/include/') and name[len('tensorflow/include/'):].startswith(prefixes):
            dest = os.path.join(out, 'include', name[len('tensorflow/include/'):])
        else:
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(info) as src, open(dest, 'wb') as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
`,
      path.join(downloadDir, wheel),
      libtensorflowCache,
      LIBRARIES.join(","),
      HEADER_PREFIXES.join(","),
    ],
    { timeout: 10 * 60 * 1000 },
  );
  rmSync(downloadDir, { recursive: true, force: true });
  const missing = LIBRARIES.filter((lib) => !existsSync(path.join(libtensorflowCache, "lib", lib)));
  if (extract.status !== 0 || missing.length > 0) {
    throw new SetupError(
      `${build.label}: extracting libtensorflow from the wheel`,
      `extraction failed${missing.length ? ` (missing ${missing.join(", ")})` : ""}:\n${lastLines(extract.stderr, 6)}`,
      `check the error above and free disk space (about ${TF_WHEEL.unpacked} is needed under ${libtensorflowCache}), then run \`npm run setup\` again`,
    );
  }
  writeFileSync(marker, `${TF_WHEEL.name} ${TF_WHEEL.version}\n`);
}

/** Points the package's deps/ at the cached libtensorflow under the names its build and loader expect. */
function linkDeps(build) {
  const libtensorflowCache = build.cache;
  const deps = path.join(build.dir, "deps");
  rmSync(deps, { recursive: true, force: true });
  mkdirSync(path.join(deps, "lib"), { recursive: true });
  const lib = (name) => path.join(libtensorflowCache, "lib", name);
  const links = {
    // install.js checks for this file to skip its download; -ltensorflow needs the unversioned names;
    // the loader looks for the sonames recorded in the binding.
    "libtensorflow.so.2.9.1": lib("libtensorflow_cc.so.2"),
    "libtensorflow_framework.so.2.9.1": lib("libtensorflow_framework.so.2"),
    "libtensorflow.so": lib("libtensorflow_cc.so.2"),
    "libtensorflow_framework.so": lib("libtensorflow_framework.so.2"),
    "libtensorflow_cc.so.2": lib("libtensorflow_cc.so.2"),
    "libtensorflow_framework.so.2": lib("libtensorflow_framework.so.2"),
  };
  for (const [name, target] of Object.entries(links)) symlinkSync(target, path.join(deps, "lib", name));
  symlinkSync(path.join(libtensorflowCache, "include"), path.join(deps, "include"));
}

function buildBinding(build) {
  const nodedir = nodeHeadersDir();
  if (!nodedir) {
    throw new SetupError(
      `${build.label}: building the binding`,
      "Node's C headers (include/node/node_api.h) were not found, and node-gyp cannot download them offline",
      "install Node's headers (Debian: apt-get install libnode-dev, or use the official Node.js tarball) or set npm_config_nodedir to the folder holding include/node",
    );
  }
  log(`${build.label}: building the ${build.pkg} binding against libtensorflow (about a minute)`);
  const result = run("node-pre-gyp", ["install", "--build-from-source"], {
    cwd: build.dir,
    env: envWithLocalBin({ npm_config_nodedir: nodedir }),
    timeout: 20 * 60 * 1000,
  });
  if (result.status !== 0) {
    throw new SetupError(
      `${build.label}: building the binding`,
      `node-pre-gyp install --build-from-source failed:\n${lastLines(result.stdout + result.stderr, 12)}`,
      "a C++ compiler, make and python3 are needed (Debian: apt-get install build-essential python3)",
    );
  }
  rmSync(path.join(build.dir, "build-tmp-napi-v8"), { recursive: true, force: true });
}

/** Returns true when it built the binding, false when a working one was already there. */
export function setupNativeBackend(build = CPU_BUILD) {
  if (!existsSync(build.dir)) {
    throw new SetupError(
      build.label,
      `node_modules/${build.pkg} is missing`,
      build === CPU_BUILD ? "run `npm install` first" : "run `MARGINLAB_GPU=1 npm run setup` again",
    );
  }
  if (bindingLoads(build) === true) {
    log(`${build.label}: ${build.pkg} loads (backend 'tensorflow'), nothing to do`);
    return false;
  }
  const hasDeps = existsSync(path.join(build.dir, "deps", "lib", "libtensorflow.so.2.9.1"));
  if (build.tryOwnDownload && !hasDeps && !existsSync(path.join(build.cache, "COMPLETE"))) {
    const downloaded = tryPackageDownload(build);
    if (downloaded === true) {
      log(`${build.label}: installed by the package's own download`);
      return true;
    }
    log(
      `${build.label}: the package's own download did not work (${downloaded}); using the ${build.wheel.name} wheel instead`,
    );
  }
  fetchLibtensorflowFromWheel(build);
  linkDeps(build);
  buildBinding(build);
  const loads = bindingLoads(build);
  if (loads !== true) {
    throw new SetupError(
      `${build.label}: loading the built binding`,
      `the binding was built but does not load:\n${lastLines(String(loads), 8)}`,
      `remove node_modules/${build.pkg}/lib and ${path.relative(root, build.cache)}, then run \`npm run setup\` again; if it persists, report the message above`,
    );
  }
  log(`${build.label}: ${build.pkg} loads (backend 'tensorflow')`);
  return true;
}
