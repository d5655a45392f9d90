/** The one client resolver: the given URL, else MLFLOW_TRACKING_URI, else the embedded server (started if needed). */
import { MlflowClient } from "./client";
import { trackingConfigFromEnv } from "./config";
import { ensureEmbeddedServer } from "./embedded";

const shared = new Map<string, MlflowClient>();

export interface TrackingClientOptions {
  trackingUri?: string;
  env?: NodeJS.ProcessEnv;
  /** One client per URL for the whole process (runs share its connections; nobody closes it). Default false: the caller closes it. */
  shared?: boolean;
}

export async function trackingClient(options: TrackingClientOptions = {}): Promise<MlflowClient> {
  const uri =
    options.trackingUri ?? trackingConfigFromEnv(options.env).trackingUri ?? (await ensureEmbeddedServer()).url;
  if (!options.shared) return new MlflowClient({ trackingUri: uri });
  let client = shared.get(uri);
  if (!client) {
    client = new MlflowClient({ trackingUri: uri });
    shared.set(uri, client);
  }
  return client;
}
