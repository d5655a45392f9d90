/**
 * The one batcher: fills log-batch requests up to MLflow's limits (validation.py: 1000 metrics, 100
 * params, 100 tags, 1000 entities, 1 MB of JSON per request). Sizes are the exact bytes each entity
 * adds to the compact JSON body, so a full batch is as large as the server allows and never larger.
 * The sender fills one request from its queue with it; MlflowClient.logBatch splits a payload with it.
 */
import type { BatchPayload, KeyValue, Metric } from "./client";
import { LIMITS } from "./validate";

export type BatchEntity = { kind: "metric"; metric: Metric } | { kind: "param" | "tag"; kv: KeyValue };

// `{"run_id":"<id>","metrics":[],"params":[],"tags":[]}` with room for a run id of up to 64 characters.
const ENVELOPE_BYTES = 128;

/** The bytes an entity adds to a request body: its JSON plus a separating comma. */
function entityBytes(entity: BatchEntity): number {
  return Buffer.byteLength(JSON.stringify(entity.kind === "metric" ? entity.metric : entity.kv)) + 1;
}

export class BatchBuilder {
  readonly metrics: Metric[] = [];
  readonly params: KeyValue[] = [];
  readonly tags: KeyValue[] = [];
  private bytes = ENVELOPE_BYTES;

  get count(): number {
    return this.metrics.length + this.params.length + this.tags.length;
  }

  /** Adds the entity when the request still has room for it; false when it is full for this entity. */
  add(entity: BatchEntity): boolean {
    if (this.count >= LIMITS.entitiesPerBatch) return false;
    if (entity.kind === "metric" && this.metrics.length >= LIMITS.metricsPerBatch) return false;
    if (entity.kind === "param" && this.params.length >= LIMITS.paramsPerBatch) return false;
    if (entity.kind === "tag" && this.tags.length >= LIMITS.tagsPerBatch) return false;
    const size = entityBytes(entity);
    if (this.bytes + size > LIMITS.batchBytes && this.count > 0) return false;
    this.bytes += size;
    if (entity.kind === "metric") this.metrics.push(entity.metric);
    else if (entity.kind === "param") this.params.push(entity.kv);
    else this.tags.push(entity.kv);
    return true;
  }

  payload(): BatchPayload {
    return { metrics: this.metrics, params: this.params, tags: this.tags };
  }
}

/** Splits a payload into as few requests as MLflow's limits allow; order within each kind is kept. */
export function splitBatch(payload: BatchPayload): BatchPayload[] {
  const entities: BatchEntity[] = [
    ...(payload.params ?? []).map((kv) => ({ kind: "param" as const, kv })),
    ...(payload.tags ?? []).map((kv) => ({ kind: "tag" as const, kv })),
    ...(payload.metrics ?? []).map((metric) => ({ kind: "metric" as const, metric })),
  ];
  const batches: BatchPayload[] = [];
  let current = new BatchBuilder();
  for (const entity of entities) {
    if (current.add(entity)) continue;
    batches.push(current.payload());
    current = new BatchBuilder();
    current.add(entity);
  }
  if (current.count > 0) batches.push(current.payload());
  return batches;
}
