"""Shared helpers for the PyTorch peers of `marginlab bench`: timing and peak RSS, JSON on stdout."""

import json
import statistics
import time


def peak_rss_mb():
    """VmHWM of this process (peak resident set size), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def time_steps(step, warmup, repeats):
    """Milliseconds per call of step() after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def report(name, steps_ms, **extra):
    import torch

    print(
        json.dumps(
            {
                "name": name,
                "impl": "pytorch",
                "medianMs": statistics.median(steps_ms),
                "stepsMs": steps_ms,
                "peakRssMB": peak_rss_mb(),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                **extra,
            }
        )
    )
