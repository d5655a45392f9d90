// Headless Chromium for PNG figures and the browser checks (src/plots/html.ts drives it through
// playwright-core). Playwright's own browser download is not reachable from every machine, so this
// is Debian's package, installed with apt-get as root through scripts/cluster/lib.sh (the one place
// Debian packages are installed). Without root or apt-get, figures stay HTML only and the step says how.
import { existsSync } from "node:fs";
import path from "node:path";
import { log, root, run, SetupError } from "./util.mjs";

const DEFAULT_CHROMIUM = "/usr/bin/chromium"; // src/plots/html.ts DEFAULT_CHROMIUM

export function setupChromium() {
  const given = process.env.MARGINLAB_CHROMIUM;
  if (given) {
    if (!existsSync(given))
      throw new SetupError(
        "chromium",
        `MARGINLAB_CHROMIUM = ${given} does not exist`,
        "point it at a Chromium binary, or unset it",
      );
    log(`chromium: ${given} (MARGINLAB_CHROMIUM)`);
    return;
  }
  if (existsSync(DEFAULT_CHROMIUM)) {
    log(`chromium: ${DEFAULT_CHROMIUM} present`);
    return;
  }
  if (process.env.MARGINLAB_SKIP_CHROMIUM === "1") {
    log("chromium: skipped (MARGINLAB_SKIP_CHROMIUM=1); figures are HTML only, the browser checks fail");
    return;
  }
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (!isRoot || run("sh", ["-c", "command -v apt-get"]).status !== 0) {
    log(
      `chromium: not installed (${DEFAULT_CHROMIUM} missing) and this is ${isRoot ? "not a Debian-like system" : "not root"}; ` +
        "figures are HTML only. Install Debian's chromium (apt-get install chromium) or set MARGINLAB_CHROMIUM",
    );
    return;
  }
  log("chromium: installing Debian's chromium with apt-get (a minute the first time)");
  const lib = path.join(root, "scripts", "cluster", "lib.sh");
  const r = run("bash", ["-c", `. "${lib}" && apt_install chromium`], { stdio: ["ignore", "inherit", "pipe"] });
  if (r.status !== 0 || !existsSync(DEFAULT_CHROMIUM))
    throw new SetupError(
      "chromium",
      `apt-get install chromium failed: ${r.stderr.trim().split("\n").slice(-5).join("\n")}`,
      "install it by hand (apt-get update && apt-get install -y chromium), set MARGINLAB_CHROMIUM, or MARGINLAB_SKIP_CHROMIUM=1",
    );
  log(`chromium: installed at ${DEFAULT_CHROMIUM}`);
}
