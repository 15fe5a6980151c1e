"""Benchmark of ``Engine(share=...)`` (issue 16): many processes, one model.

Usage::

    python benchmarks/share_bench.py [--events N] [--rounds R] [--quality-events M] [--quick]

Measured, with the default engine (4-16-8-1 MLP, ``FeatureEncoder``, a mapping
target, batch_size 64), forked worker processes fed from prebuilt
``InteractionData`` (construction excluded, encoding included):

* **throughput**: 1 process training N events on a share, then 2 processes
  training N events each on one share (wall clock from a common start to the
  last Future), alternated for ``--rounds`` rounds; the ratio 2 / 1 per round
  and its median. The encoding runs in parallel; the native steps take turns
  on the segment's lock.
* **predict latency** p50/p99/p99.9 of ``engine.predict`` in one worker while
  another worker trains the same share at full speed.
* **quality**: 4 processes x M events on one share (M = 50,000 by default):
  the shared step counter (exactly 4 M), every process's predictions on the
  same probes (bit-identical), and the progressive log loss of the shared run
  next to the same 4 M events trained by one in-process engine, in the same
  interleaving of the 4 streams (round robin per batch of 64).

Results go to ``benchmarks/results/share.json``; a summary is printed. The
machine is shared: read the ratios, measured in the same run, with the load
average recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    from livelearn import Engine, InteractionData
except ImportError:  # a source checkout with the extension built in place
    sys.path.insert(0, str(ROOT / "python"))
    from livelearn import Engine, InteractionData

TARGETS = {"click": 1.0, "skip": 0.0}
WAIT_S = 600.0


def events(seed: int, n: int) -> list[InteractionData]:
    """A stream with learnable structure: users 0-9 click more, hours matter."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 100, n)
    hours = rng.integers(0, 24, n)
    p = 0.15 + 0.5 * (users < 10) + 0.2 * (hours > 17)
    clicks = rng.random(n) < p
    return [
        InteractionData(
            "click" if c else "skip",
            1_700_000_000.0 + i,
            f"user-{u}",
            context={"hour": float(h)},
        )
        for i, (u, h, c) in enumerate(zip(users, hours, clicks, strict=True))
    ]


PROBES = [InteractionData("click", 1_700_000_000.0, f"user-{u}") for u in range(20)]


def engine(share: str | None) -> Engine:
    return Engine(targets=TARGETS, share=share, log_every=0).initialize()


def train_worker(share: str | None, seed: int, n: int, barrier: Any, out: Any) -> None:
    e = engine(share)
    stream = events(seed, n)
    barrier.wait(WAIT_S)
    t0 = time.perf_counter()
    futures = []
    for i in range(0, n, 1000):
        futures.extend(e.train_many(stream[i : i + 1000]))
    losses = [f.result(timeout=WAIT_S).loss for f in futures]
    t1 = time.perf_counter()
    barrier.wait(WAIT_S)
    out.put(
        {
            "seed": seed,
            "start": t0,
            "end": t1,
            "local_steps": e.stats().steps,
            "shared_steps": e.network.steps,
            "loss_sum": float(np.nansum(np.asarray(losses, dtype=np.float64))),
            "predictions": e.predict_many(PROBES).tobytes().hex(),
        }
    )
    barrier.wait(WAIT_S)
    e.close()


def predict_worker(share: str, duration: float, barrier: Any, out: Any) -> None:
    e = engine(share)
    barrier.wait(WAIT_S)
    lat = []
    probe = PROBES[0]
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        e.predict(probe)
        lat.append(time.perf_counter() - t0)
    barrier.wait(WAIT_S)
    us = np.asarray(lat) * 1e6
    out.put(
        {
            "predictions": len(lat),
            "p50_us": float(np.percentile(us, 50)),
            "p99_us": float(np.percentile(us, 99)),
            "p999_us": float(np.percentile(us, 99.9)),
        }
    )
    barrier.wait(WAIT_S)
    e.close()


def run_trainers(n_procs: int, n: int, seed0: int = 0, shared: bool = True) -> list[dict[str, Any]]:
    ctx = mp.get_context("fork")
    share = f"bench-{uuid.uuid4().hex[:8]}" if shared else None
    barrier, out = ctx.Barrier(n_procs), ctx.Queue()
    procs = [
        ctx.Process(target=train_worker, args=(share, seed0 + k, n, barrier, out))
        for k in range(n_procs)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=WAIT_S) for _ in procs]
    for p in procs:
        p.join(WAIT_S)
    return results


def throughput(results: list[dict[str, Any]]) -> float:
    start = min(r["start"] for r in results)
    end = max(r["end"] for r in results)
    return sum(r["local_steps"] for r in results) / (end - start)


def predict_under_training(n: int, duration: float) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    share = f"bench-{uuid.uuid4().hex[:8]}"
    barrier, out = ctx.Barrier(2), ctx.Queue()
    trainer = ctx.Process(target=train_worker, args=(share, 1, n, barrier, out))
    predictor = ctx.Process(target=predict_worker, args=(share, duration, barrier, out))
    trainer.start()
    predictor.start()
    # The predictor's second barrier waits for the trainer to finish: it
    # predicts for `duration` and then until the trainer is done.
    results = [out.get(timeout=WAIT_S) for _ in range(2)]
    trainer.join(WAIT_S)
    predictor.join(WAIT_S)
    return next(r for r in results if "p50_us" in r)


def reference_loss(seeds: list[int], n: int) -> tuple[float, int]:
    """The same streams trained by one in-process engine, round robin per 64."""
    streams = [events(s, n) for s in seeds]
    merged: list[InteractionData] = []
    for i in range(0, n, 64):
        for s in streams:
            merged.extend(s[i : i + 64])
    e = engine(None)
    futures = []
    for i in range(0, len(merged), 1000):
        futures.extend(e.train_many(merged[i : i + 1000]))
    losses = np.asarray([f.result(timeout=WAIT_S).loss for f in futures], dtype=np.float64)
    e.close()
    return float(np.nansum(losses)), len(losses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000, help="events per process (throughput)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--quality-events", type=int, default=50_000, help="events per process, 4 procs"
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "share.json")
    args = ap.parse_args()
    if args.quick:
        args.events, args.rounds, args.quality_events = 3000, 2, 3000

    load_before = os.getloadavg()
    rounds = []
    for r in range(args.rounds):
        one = throughput(run_trainers(1, args.events, seed0=10 * r))
        two = throughput(run_trainers(2, args.events, seed0=10 * r))
        # The machine's own ceiling in the same round: 2 processes, 2 models.
        free = throughput(run_trainers(2, args.events, seed0=10 * r, shared=False))
        rounds.append(
            {
                "one_process": one,
                "two_processes": two,
                "two_unshared_processes": free,
                "ratio": two / one,
                "unshared_ratio": free / one,
                "load_average": os.getloadavg()[0],
            }
        )
        print(
            f"round {r}: 1 process {one:,.0f} ev/s, 2 on one share {two:,.0f} ev/s "
            f"(ratio {two / one:.2f}), 2 unshared {free:,.0f} ev/s (ratio {free / one:.2f})"
            f"  load {os.getloadavg()[0]:.1f}"
        )
    ratios = [x["ratio"] for x in rounds]

    latency = predict_under_training(args.events, duration=2.0)
    print(
        f"predict while another process trains: p50 {latency['p50_us']:.1f} us, "
        f"p99 {latency['p99_us']:.1f} us, p99.9 {latency['p999_us']:.1f} us"
    )

    m = args.quality_events
    quality = run_trainers(4, m, seed0=100)
    shared_steps = {r["shared_steps"] for r in quality}
    identical = len({r["predictions"] for r in quality}) == 1
    shared_loss = sum(r["loss_sum"] for r in quality) / (4 * m)
    ref_sum, ref_n = reference_loss([100, 101, 102, 103], m)
    ref_loss = ref_sum / ref_n
    print(
        f"4 x {m}: shared steps {sorted(shared_steps)}, identical predictions {identical}, "
        f"progressive log loss shared {shared_loss:.5f} vs in-process {ref_loss:.5f} "
        f"({100 * (shared_loss / ref_loss - 1):+.2f} %)"
    )

    result = {
        "benchmark": "share_bench",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "events_per_process": args.events,
        "throughput_rounds": rounds,
        "ratio_two_over_one_median": statistics.median(ratios),
        "ratio_two_over_one_best": max(ratios),
        "unshared_ratio_median": statistics.median(x["unshared_ratio"] for x in rounds),
        "predict_latency_while_training": latency,
        "quality": {
            "processes": 4,
            "events_per_process": m,
            "shared_steps": sorted(shared_steps),
            "expected_steps": 4 * m,
            "identical_predictions": identical,
            "progressive_log_loss_shared": shared_loss,
            "progressive_log_loss_in_process": ref_loss,
            "relative_difference": shared_loss / ref_loss - 1,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median ratio 2/1 processes: {statistics.median(ratios):.2f}; wrote {args.out}")


if __name__ == "__main__":
    main()
