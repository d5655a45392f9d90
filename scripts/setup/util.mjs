// Small helpers shared by the set-up steps. Plain Node (no TypeScript): this runs before anything is built.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** An error that names the step that failed and what the user can do about it. */
export class SetupError extends Error {
  constructor(step, message, fix) {
    super(message);
    this.step = step;
    this.fix = fix;
  }
}

export function log(message) {
  process.stdout.write(`[marginlab setup] ${message}\n`);
}

/** Runs a command, returns { status, stdout, stderr }. Never throws for a non-zero exit. */
export function run(command, args, options = {}) {
  const result = spawnSync(command, args, {
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    ...options,
  });
  return {
    status: result.error ? -1 : result.status,
    stdout: result.stdout ?? "",
    stderr: result.error ? String(result.error.message) : (result.stderr ?? ""),
  };
}

export function lastLines(text, n = 15) {
  return text.trim().split("\n").slice(-n).join("\n");
}

export function sha256OfFile(file) {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

/** node_modules/.bin first on PATH, so node-pre-gyp, node-gyp and tslab resolve. */
export function envWithLocalBin(extra = {}) {
  const bin = path.join(root, "node_modules", ".bin");
  return { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ""}`, ...extra };
}

/** Where Node's own headers live (node-gyp would otherwise download them, which fails offline). */
export function nodeHeadersDir() {
  const candidates = [
    process.env.npm_config_nodedir,
    path.resolve(path.dirname(process.execPath), ".."),
    "/usr",
    "/usr/local",
  ].filter(Boolean);
  return candidates.find((dir) => existsSync(path.join(dir, "include", "node", "node_api.h")));
}
