/** `marginlab list`: the ablations, their presets and settings. */
import { ABLATIONS } from "../../experiments/registry";
import { PRESETS } from "../../experiments/types";

export const summary = "list the ablations, their presets and the settings --set can change";

function show(v: unknown): string {
  return Array.isArray(v) ? v.join(",") : String(v);
}

export async function run(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(`usage: marginlab list [--verbose]\n\n${summary}`);
    return 0;
  }
  const unknown = args.filter((a) => a !== "--verbose" && a !== "-v");
  if (unknown.length > 0) {
    console.error(`marginlab list: unknown option "${unknown[0]}" (allowed: --verbose)`);
    return 2;
  }
  const verbose = args.includes("--verbose") || args.includes("-v");
  for (const a of ABLATIONS) {
    console.log(`${a.name.padEnd(14)} ${a.title}`);
    console.log(
      `${"".padEnd(14)} presets: ${PRESETS.join(", ")}; settings: ${Object.keys(a.presets.smoke).join(", ")}`,
    );
    if (verbose) {
      for (const key of Object.keys(a.presets.smoke)) {
        console.log(
          `${"".padEnd(16)}${key} = ${show(a.presets.smoke[key])} (smoke) / ${show(a.presets.full[key])} (full): ${a.describe[key] ?? ""}`,
        );
      }
    }
  }
  console.log("\nrun one: marginlab ablate <name> [--preset smoke|full] [--set key=value ...]");
  return 0;
}
