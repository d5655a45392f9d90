/** Where the project's own folders are. MARGINLAB_ROOT (set by the kernel spec) wins over the source location. */
import path from "node:path";

export const projectRoot: string = process.env.MARGINLAB_ROOT ?? path.resolve(__dirname, "..");

/** The project-local Python environment; MARGINLAB_VENV points elsewhere (or at nothing, to test). */
export function venvDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.MARGINLAB_VENV ?? path.join(projectRoot, ".venv");
}

/** A tool from the project venv when it exists there, else the bare name (found on PATH). */
export function venvTool(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(venvDir(env), "bin", name);
}
