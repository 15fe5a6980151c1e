"""Cost of livelearn.metrics' latency sampling on the training hot path.

Submits 100,000 interactions with ``Engine.train_step`` and drains the engine, with
no collector, a collector without sampling, and sampling 1 in 64 and 1 in 1; prints
the best of ``--repeat`` runs in nanoseconds per event.

Run: ``PYTHONPATH=python python3 benchmarks/metrics_overhead.py``
"""

from __future__ import annotations

import argparse
import gc
import time

from prometheus_client import CollectorRegistry

from livelearn import Engine, InteractionData
from livelearn.metrics import register


def run(events: list[InteractionData], every: int | None) -> tuple[float, float]:
    """(submit, submit + drain) nanoseconds per event."""
    engine = Engine(targets={"click": 1.0, "skip": 0.0}, log_every=0).initialize()
    if every is not None:
        register(engine, CollectorRegistry(), latency_sample_every=every)
    gc.collect()
    start = time.perf_counter()
    submit = engine.train_step
    for event in events:
        submit(event)
    submitted = time.perf_counter()
    engine.close()
    done = time.perf_counter()
    n = len(events)
    return (submitted - start) / n * 1e9, (done - start) / n * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    events = [
        InteractionData("click" if i % 3 else "skip", float(i), f"u{i % 100}")
        for i in range(args.events)
    ]
    results: dict[int | None, list[tuple[float, float]]] = {}
    for _ in range(args.repeat):
        for every in (None, 0, 64, 1):
            results.setdefault(every, []).append(run(events, every))
    for every, runs in results.items():
        label = "no collector" if every is None else f"latency_sample_every={every}"
        print(
            f"{label:26s} submit {min(r[0] for r in runs):6.0f} ns/event, "
            f"submit+train {min(r[1] for r in runs):6.0f} ns/event"
        )


if __name__ == "__main__":
    main()
