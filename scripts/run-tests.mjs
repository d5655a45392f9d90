#!/usr/bin/env node
// `npm test`: the type-check, the linter, then the uvu suite (test/**/*.test.ts through tsx); ends with
// one line "N passed, N failed" (the type-check and the lint count as one check each).
// Usage: node scripts/run-tests.mjs [--only-unit] [pattern]   e.g. `npm run test:unit -- losses`
// Each test file runs in its own process, so one crash (or a native abort) fails that file, not the run.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const onlyUnit = args.includes("--only-unit");
const patternArg = args.find((a) => !a.startsWith("--"));
const pattern = patternArg ? new RegExp(patternArg) : null;

function testFiles(dir) {
  return readdirSync(dir)
    .flatMap((name) => {
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) return name === "fixtures" ? [] : testFiles(full);
      return name.endsWith(".test.ts") ? [full] : [];
    })
    .sort();
}

/** The static checks, each counted as one test. */
function staticChecks() {
  const checks = [
    ["typecheck (tsc --noEmit)", ["node_modules/typescript/bin/tsc", "--noEmit", "-p", "."]],
    ["lint (biome check)", ["node_modules/@biomejs/biome/bin/biome", "check", "."]],
  ];
  let ok = 0;
  let bad = 0;
  for (const [name, argv] of checks) {
    const t0 = Date.now();
    const result = spawnSync(process.execPath, argv, { cwd: root, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    if (result.status === 0) {
      ok++;
      process.stdout.write(`ok   ${name}  (${secs} s)\n`);
    } else {
      bad++;
      process.stdout.write(
        `FAIL ${name}  (${secs} s)\n${`${result.stdout}${result.stderr}`.trim().split("\n").slice(0, 80).join("\n")}\n\n`,
      );
    }
  }
  return [ok, bad];
}

// Opt-in suites (README, "Tests"): they install system packages (PostgreSQL, Slurm) and take minutes, so
// `npm test` leaves them out; `npm run test:cluster` (MARGINLAB_CLUSTER_TESTS=1) runs them.
const OPT_IN = /^test\/cluster-(postgres|slurm)\.test\.ts$/;
const optIn = process.env.MARGINLAB_CLUSTER_TESTS === "1";
const files = testFiles(path.join(root, "test"))
  .filter((f) => !pattern || pattern.test(path.relative(root, f)))
  .filter((f) => optIn || !OPT_IN.test(path.relative(root, f)));
let passed = 0;
let failed = 0;
const failedFiles = [];
const started = Date.now();
if (!onlyUnit && !pattern) {
  const [ok, bad] = staticChecks();
  passed += ok;
  failed += bad;
}
for (const file of files) {
  const rel = path.relative(root, file);
  const t0 = Date.now();
  const result = spawnSync(process.execPath, ["--require", "tsx/cjs", file], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: process.env.TF_CPP_MIN_LOG_LEVEL ?? "2", FORCE_COLOR: "0" },
    maxBuffer: 256 * 1024 * 1024,
  });
  const out = `${result.stdout}${result.stderr}`;
  const total = /Total:\s+(\d+)/.exec(out);
  const ok = /Passed:\s+(\d+)/.exec(out);
  const filePassed = ok ? Number(ok[1]) : 0;
  const fileFailed = total ? Number(total[1]) - filePassed : 0;
  // A file that crashed before uvu's summary counts as one failure.
  const crashed = result.status !== 0 && fileFailed === 0;
  passed += filePassed;
  failed += fileFailed + (crashed ? 1 : 0);
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  const status = result.status === 0 ? "ok  " : "FAIL";
  process.stdout.write(
    `${status} ${rel}  (${filePassed} passed, ${fileFailed + (crashed ? 1 : 0)} failed, ${secs} s)\n`,
  );
  if (result.status !== 0) {
    failedFiles.push(rel);
    process.stdout.write(`${out.trim().split("\n").slice(-60).join("\n")}\n\n`);
  }
}
process.stdout.write(`\n${files.length} test files in ${((Date.now() - started) / 1000).toFixed(0)} s`);
process.stdout.write(failedFiles.length ? `; failing: ${failedFiles.join(", ")}\n` : "\n");
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exit(failed > 0 || files.length === 0 ? 1 : 0);
