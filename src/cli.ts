/**
 * `marginlab <command>`: the headless entry point. Each command lives in src/cli/<name>.ts and
 * exports `run(args): Promise<number>` (the exit code) and a one-line `summary`.
 */
import { reportInterrupts } from "./cli/interrupt";
import { onServerStart } from "./tracking/embedded";
import { onTrackingOffline } from "./tracking/reachability";
import { setCommandSource } from "./tracking/system-tags";

// Library code never prints: the one warning that the tracking server is unreachable is printed here.
onTrackingOffline((event) => console.error(`marginlab: ${event.message}`));
// ... and so is the line that says the project's MLflow server is starting (about 6 s, otherwise silent).
onServerStart((event) => console.error(`marginlab: ${event.message}`));
interface Command {
  summary: string;
  run(args: string[]): Promise<number>;
}

/** Commands that train and track: Ctrl-C ends their runs KILLED and says what was saved. */
const TRACKED = new Set(["ablate", "summarize", "train"]);

const commands: Record<string, () => Promise<Command>> = {
  doctor: () => import("./cli/doctor"),
  bench: () => import("./cli/bench"),
  sync: () => import("./cli/sync"),
  ui: () => import("./cli/ui"),
  ablate: () => import("./cli/ablate"),
  summarize: () => import("./cli/summarize"),
  list: () => import("./cli/list"),
  train: () => import("./cli/train"),
};

function usage(): string {
  const lines = ["usage: marginlab <command> [options]", "", "commands:"];
  for (const name of Object.keys(commands)) lines.push(`  ${name}`);
  return lines.join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name ? 0 : 1;
  }
  const load = commands[name];
  if (!load) {
    console.error(`marginlab: unknown command "${name}". Commands: ${Object.keys(commands).join(", ")}.`);
    return 2;
  }
  // Runs started here name the command as their source; a command is never a notebook, even when
  // a kernel started it.
  setCommandSource(["marginlab", ...argv].join(" "));
  delete process.env.JPY_SESSION_NAME;
  delete process.env.MARGINLAB_IN_NOTEBOOK;
  if (TRACKED.has(name)) reportInterrupts(name);
  const command = await load();
  return command.run(args);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`marginlab: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
