// `marginlab ui` options and the team server's input checks (no server is started here; the
// servers themselves are tested by the opt-in cluster-postgres and cluster-slurm suites).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { run } from "../src/cli/ui";
import { ensureTeamServer } from "../src/tracking/embedded";
import { removeTempDirs, tempDir } from "./tracking-helpers";

async function errorsOf(args: string[]): Promise<{ code: number; stderr: string }> {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...parts: unknown[]) => lines.push(parts.join(" "));
  try {
    return { code: await run(args), stderr: lines.join("\n") };
  } finally {
    console.error = original;
  }
}

test.after(() => removeTempDirs());

test("ui: bad options are refused with what is allowed, before anything starts", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["--bogus"], /unknown option "--bogus" \(allowed: --stop, --postgres/],
    [["--port", "5000"], /--port applies to the team server only: add --postgres/],
    [["--artifacts", "/srv/a"], /--artifacts applies to the team server only/],
    [["--", "--allowed-hosts", "x"], /-- applies to the team server only/],
    [["--postgres", "--workers", "0"], /--workers needs a whole number between 1 and 65535 \(got "0"\)/],
    [["--postgres", "--port", "http"], /--port needs a whole number/],
    [["--postgres", "--host"], /--host needs a value/],
  ];
  for (const [args, expected] of cases) {
    const { code, stderr } = await errorsOf(args);
    assert.is(code, 2, args.join(" "));
    assert.match(stderr, expected);
  }
});

test("team server: a backend store that is not PostgreSQL is refused, naming it without its password", async () => {
  const dir = tempDir("team");
  try {
    await ensureTeamServer({ dir, backendStoreUri: "mysql://me:secret@db/mlflow" });
    assert.unreachable("should have thrown");
  } catch (error) {
    const message = (error as Error).message;
    assert.match(message, /is not a PostgreSQL URI; use postgresql:\/\/user@host:port\/database/);
    assert.match(message, /mysql:\/\/me:\*\*\*@db\/mlflow/);
    assert.not.match(message, /secret/);
  }
});

test.run();
