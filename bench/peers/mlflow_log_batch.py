"""Peer for bench/tracking.ts: logs KEYS x STEPS metric points through MLflow's Python client
(MlflowClient.log_batch, BATCH metrics per request, step-major order) and prints one JSON line:
{"seconds": wall time of the logging, "requests": HTTP requests it made, "points": points logged}.

usage: python mlflow_log_batch.py EXPERIMENT KEYS STEPS BATCH   (MLFLOW_TRACKING_URI names the server)
"""

import json
import sys
import time

import requests
from mlflow import MlflowClient
from mlflow.entities import Metric

experiment, keys, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

requests_made = 0
_original = requests.Session.request


def counting(self, *args, **kwargs):
    global requests_made
    requests_made += 1
    return _original(self, *args, **kwargs)


requests.Session.request = counting

client = MlflowClient()
exp = client.get_experiment_by_name(experiment)
experiment_id = exp.experiment_id if exp else client.create_experiment(experiment)
run = client.create_run(experiment_id, run_name="python-log_batch")
now = int(time.time() * 1000)
metrics = [
    Metric(key=f"metric_{k}", value=1.0 / (s + 1) + k, timestamp=now, step=s) for s in range(steps) for k in range(keys)
]
requests_made = 0
start = time.perf_counter()
for i in range(0, len(metrics), batch):
    client.log_batch(run.info.run_id, metrics=metrics[i : i + batch], synchronous=True)
seconds = time.perf_counter() - start
count = requests_made
client.set_terminated(run.info.run_id)
print(json.dumps({"seconds": seconds, "requests": count, "points": len(metrics), "run_id": run.info.run_id}))
