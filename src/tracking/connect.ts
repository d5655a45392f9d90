/** The client for "the" tracking server: MLFLOW_TRACKING_URI, else the embedded one (started if needed). */
import { MlflowClient } from "./client";
import { trackingConfigFromEnv } from "./config";
import { ensureEmbeddedServer } from "./embedded";

export async function trackingClient(
  options: { trackingUri?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<MlflowClient> {
  const uri =
    options.trackingUri ?? trackingConfigFromEnv(options.env).trackingUri ?? (await ensureEmbeddedServer()).url;
  return new MlflowClient({ trackingUri: uri });
}
