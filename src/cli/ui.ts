/** `marginlab ui`: the MLflow UI's URL, starting the embedded server when needed (--stop stops it). */
import { trackingConfigFromEnv } from "../tracking/config";
import { embeddedDir, ensureEmbeddedServer, stopEmbeddedServer } from "../tracking/embedded";

export const summary = "start the project's MLflow server if needed and print its URL (--stop: stop it)";

export async function run(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(`usage: marginlab ui [--stop]\n\n${summary}\nData: ${embeddedDir()}`);
    return 0;
  }
  const unknown = args.filter((a) => a !== "--stop");
  if (unknown.length > 0) {
    console.error(`marginlab ui: unknown option "${unknown[0]}" (allowed: --stop)`);
    return 2;
  }
  if (args.includes("--stop")) {
    const stopped = await stopEmbeddedServer();
    console.log(stopped ? "stopped the embedded MLflow server" : "no embedded MLflow server was running");
    return 0;
  }
  const configured = trackingConfigFromEnv().trackingUri;
  if (configured) {
    console.log(`${configured}  (MLFLOW_TRACKING_URI; unset it to use the project's own server)`);
    return 0;
  }
  const server = await ensureEmbeddedServer();
  console.log(server.url);
  console.error(
    server.started
      ? `started the MLflow server (pid ${server.pid}; data in ${server.dir}); it keeps running: \`marginlab ui --stop\` stops it`
      : `the MLflow server was already running (pid ${server.pid})`,
  );
  return 0;
}
