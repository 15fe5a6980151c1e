"""Benchmark of ``livelearn.Engine`` (issue 3): throughput, call latency, predict
latency under load, memory growth.

Usage::

    python benchmarks/engine_bench.py [--events N] [--repeat R] [--quick] [--profile]

Every run uses the default engine (4-16-8-1, tanh, BCE, SGD 0.05, default
``FeatureEncoder``, batch_size 64, one dispatcher) with a mapping target, fed
from a pool of prebuilt ``InteractionData`` (construction excluded, feature
engineering included). "End to end" means the clock stops when every Future
of the run has resolved.

Measured:

* ``train_step`` throughput from 1 producer thread and from 4 producer threads;
* ``train_many`` throughput (chunks of 1,000, and one call with everything);
* ``train_step`` call latency (time until it returns) p50/p99/p99.9, saturated
  (one producer at full speed) and paced (10,000 events/s);
* ``predict`` latency p50/p99/p99.9, idle and while one producer trains at full speed;
* RSS growth over 1,000,000 events (``/proc/self/statm``; callers keep no Futures).

Results go to ``benchmarks/results/engine.json``; a table is printed. Throughput
is the best of ``--repeat`` runs (the median is recorded too): the machine is
shared, so the best run is the least disturbed one. ``--profile`` adds cProfile
tables of the dispatcher thread and of the producer.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import livelearn
    from livelearn import Engine, HashedFeatureEncoder, InteractionData, StepFuture, StepResult
except ImportError:  # a source checkout with the extension built in place
    sys.path.insert(0, str(ROOT / "python"))
    import livelearn
    from livelearn import Engine, HashedFeatureEncoder, InteractionData, StepFuture, StepResult

RESULTS = ROOT / "benchmarks" / "results" / "engine.json"
WORKERS_RESULTS = ROOT / "benchmarks" / "results" / "engine_workers.json"
ACTION_TARGETS = {"click": 1.0, "purchase": 1.0, "like": 1.0, "view": 0.0, "skip": 0.0}
T0 = 1_700_000_000.0

# What issue 3 asks for.
TARGETS: dict[str, tuple[str, float]] = {
    "train_step_1_producer_events_per_s": (">=", 200_000.0),
    "train_step_4_producers_events_per_s": (">=", 200_000.0),
    "train_step_latency_p50_us": ("<=", 3.0),
    "train_step_latency_p99_us": ("<=", 20.0),
    "predict_under_training_p99_us": ("<=", 50.0),
    "rss_growth_mb_per_1m_events": ("<=", 10.0),
}


# ---------------------------------------------------------------------- inputs


def make_pool(n: int, seed: int = 0) -> list[InteractionData]:
    """Varied, valid interactions: 5 action types, 10,000 users, contexts on 70 %."""
    rng = np.random.default_rng(seed)
    actions = list(ACTION_TARGETS)
    action = rng.choice(len(actions), size=n, p=[0.2, 0.02, 0.08, 0.6, 0.1]).tolist()
    user = rng.integers(0, 10_000, n).tolist()
    ts = (T0 + np.cumsum(rng.exponential(0.01, n))).tolist()
    has_ctx = (rng.random(n) < 0.7).tolist()
    page = rng.integers(0, 50, n).tolist()
    pool = []
    for a, u, t, c, p in zip(action, user, ts, has_ctx, page, strict=True):
        context = {"page": f"page-{p}", "device": "mobile" if p % 3 else "desktop"} if c else None
        pool.append(InteractionData(actions[a], t, f"user-{u}", context))
    return pool


def cycle(pool: Sequence[InteractionData], n: int, offset: int = 0) -> list[InteractionData]:
    """``n`` interactions taken round-robin from the pool (the list itself is cheap)."""
    reps = (offset + n) // len(pool) + 1
    return (list(pool) * reps)[offset : offset + n]


def new_engine(**kwargs: Any) -> Engine:
    return Engine(targets=ACTION_TARGETS, **kwargs).initialize()


# ---------------------------------------------------------------------- helpers


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: peak RSS is the best we have
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def percentiles_us(ns: np.ndarray) -> dict[str, float]:
    p50, p99, p999 = np.percentile(ns, [50, 99, 99.9])
    return {
        "p50_us": round(float(p50) / 1e3, 3),
        "p99_us": round(float(p99) / 1e3, 3),
        "p99_9_us": round(float(p999) / 1e3, 3),
        "max_us": round(float(ns.max()) / 1e3, 1),
        "mean_us": round(float(ns.mean()) / 1e3, 3),
        "n": len(ns),
    }


def timer_overhead_ns() -> float:
    clock = time.perf_counter_ns
    samples = np.empty(100_000, dtype=np.int64)
    for i in range(len(samples)):
        t = clock()
        samples[i] = clock() - t
    return float(np.median(samples))


class GcMeter:
    """Time spent in the cyclic garbage collector (any thread) while active."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcMeter:
        gc.collect()  # start from a clean heap, not the previous run's garbage
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def report(self, elapsed: float) -> dict[str, Any]:
        total = sum(self.seconds)
        return {
            "gc_seconds": round(total, 3),
            "gc_share": round(total / elapsed, 3),
            "gc_seconds_by_generation": [round(x, 3) for x in self.seconds],
            "gc_collections_by_generation": self.collections,
        }


def check_engine(engine: Engine, expected_steps: int) -> None:
    stats = engine.stats()
    if stats.steps != expected_steps or stats.pending or stats.rejected or stats.failed:
        raise RuntimeError(f"unexpected engine state after the run: {stats}")


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ---------------------------------------------------------------------- measurements


def throughput_train_step(
    pool: Sequence[InteractionData], events: int, producers: int, gc_enabled: bool = True
) -> dict[str, Any]:
    """Events/s from ``producers`` threads calling train_step, until all resolved.
    ``gc_enabled=False`` is a diagnostic: the same run with the cyclic GC off."""
    engine = new_engine()
    share = events // producers
    inputs = [cycle(pool, share, offset=k * share) for k in range(producers)]
    outputs: list[list[StepFuture[StepResult]]] = [[] for _ in range(producers)]
    submitted_at = [0.0] * producers
    barrier = threading.Barrier(producers + 1)

    def produce(k: int) -> None:
        items, out = inputs[k], outputs[k]
        submit, append = engine.train_step, out.append
        barrier.wait()
        for x in items:
            append(submit(x))
        submitted_at[k] = time.perf_counter()

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
    for t in threads:
        t.start()
    with GcMeter() as meter:
        if not gc_enabled:
            gc.disable()
        try:
            barrier.wait()
            start = time.perf_counter()
            for t in threads:
                t.join()
            for out in outputs:  # FIFO: a producer's last Future resolves after its others
                out[-1].result()
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
    submit_elapsed = max(submitted_at) - start
    if not all(f.done() for out in outputs for f in out):
        raise RuntimeError("a Future was not resolved")
    engine.close()
    check_engine(engine, share * producers)
    n = share * producers
    return {
        "events": n,
        "seconds": round(elapsed, 4),
        "events_per_s": round(n / elapsed),
        "submit_events_per_s": round(n / submit_elapsed),
        **meter.report(elapsed),
    }


def throughput_train_many(
    pool: Sequence[InteractionData], events: int, chunk: int | None, **engine_kwargs: Any
) -> dict[str, Any]:
    engine = new_engine(**engine_kwargs)
    items = cycle(pool, events)
    futures: list[StepFuture[StepResult]] = []
    with GcMeter() as meter:
        start = time.perf_counter()
        if chunk is None:
            futures = engine.train_many(items)
        else:
            for i in range(0, events, chunk):
                futures.extend(engine.train_many(items[i : i + chunk]))
        futures[-1].result()
        elapsed = time.perf_counter() - start
    if not all(f.done() for f in futures):
        raise RuntimeError("a Future was not resolved")
    engine.close()
    check_engine(engine, events)
    return {"events": events, "chunk": chunk, "seconds": round(elapsed, 4),
            "events_per_s": round(events / elapsed), **meter.report(elapsed)}  # fmt: skip


def latency_train_step(
    pool: Sequence[InteractionData], calls: int, rate: float | None
) -> dict[str, Any]:
    """Duration of each train_step call. ``rate=None``: back to back (saturated)."""
    engine = new_engine()
    items = cycle(pool, calls)
    samples = np.empty(calls, dtype=np.int64)
    futures: list[StepFuture[StepResult]] = []
    clock, submit, keep = time.perf_counter_ns, engine.train_step, futures.append
    if rate is None:
        for i, x in enumerate(items):
            t = clock()
            f = submit(x)
            samples[i] = clock() - t
            keep(f)
    else:
        gap = int(1e9 / rate)
        next_at = clock()
        for i, x in enumerate(items):
            while (now := clock()) < next_at:
                if next_at - now > 200_000:
                    time.sleep((next_at - now - 100_000) / 1e9)
            next_at += gap
            t = clock()
            f = submit(x)
            samples[i] = clock() - t
            keep(f)
    futures[-1].result()
    engine.close()
    check_engine(engine, calls)
    return {"rate_per_s": rate, **percentiles_us(samples)}


def _windowed_producer(engine: Engine, items: Sequence[InteractionData], stop: threading.Event,
                       window: int = 4096) -> int:  # fmt: skip
    """train_step at full speed, holding at most ``window`` unresolved Futures."""
    pending: deque[StepFuture[StepResult]] = deque()
    submit, push, pop = engine.train_step, pending.append, pending.popleft
    n = 0
    while not stop.is_set():
        for x in items:
            push(submit(x))
            if len(pending) > window:
                pop().result()
        n += len(items)
    for f in pending:
        f.result()
    return n


def latency_predict(
    pool: Sequence[InteractionData], calls: int, under_training: bool
) -> dict[str, Any]:
    engine = new_engine()
    # A trained model, so predict does real work on a realistic state.
    for f in engine.train_many(cycle(pool, 20_000)):
        f.result()
    stop = threading.Event()
    produced: list[int] = []
    trainer = None
    if under_training:
        chunk = cycle(pool, 50_000, offset=20_000)
        trainer = threading.Thread(
            target=lambda: produced.append(_windowed_producer(engine, chunk, stop))
        )
        trainer.start()
        time.sleep(0.2)  # let training reach its steady state
    queries = cycle(pool, calls, offset=70_000)
    samples = np.empty(calls, dtype=np.int64)
    clock, predict = time.perf_counter_ns, engine.predict
    steps_before = engine.stats().steps
    start = time.perf_counter()
    for i, x in enumerate(queries):
        t = clock()
        predict(x)
        samples[i] = clock() - t
    elapsed = time.perf_counter() - start
    steps_during = engine.stats().steps - steps_before
    stop.set()
    if trainer is not None:
        trainer.join()
    engine.close()
    out = {"under_training": under_training, **percentiles_us(samples)}
    if under_training:
        out["training_events_per_s_meanwhile"] = round(steps_during / elapsed)
    return out


def rss_growth(pool: Sequence[InteractionData], events: int, warmup: int) -> dict[str, Any]:
    """RSS after ``events`` more events minus RSS after a warm-up (history full,
    hash caches and allocator pools populated). The caller keeps at most 4,096
    unresolved Futures, so its ``events_per_s`` is also the end-to-end
    throughput of a caller that drops each Future once resolved."""
    engine = new_engine()
    chunk = 100_000
    items = cycle(pool, chunk)
    done = 0
    while done < warmup:
        _windowed_producer_once(engine, items)
        done += chunk
    gc.collect()
    before = rss_bytes()
    trace = []
    done = 0
    start = time.perf_counter()
    while done < events:
        _windowed_producer_once(engine, items)
        done += chunk
        trace.append(round((rss_bytes() - before) / 2**20, 2))
    elapsed = time.perf_counter() - start
    gc.collect()
    after = rss_bytes()
    engine.close()
    check_engine(engine, warmup + events)
    growth_mb = (after - before) / 2**20
    return {
        "events": events,
        "warmup_events": warmup,
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "growth_mb": round(growth_mb, 2),
        "growth_mb_per_1m_events": round(growth_mb * 1e6 / events, 2),
        "trace_mb_every_100k": trace,
        "events_per_s": round(events / elapsed),
    }


def _windowed_producer_once(engine: Engine, items: Sequence[InteractionData]) -> None:
    """One pass of train_step over ``items``, holding at most 4,096 unresolved Futures."""
    pending: deque[StepFuture[StepResult]] = deque()
    submit, push, pop = engine.train_step, pending.append, pending.popleft
    for x in items:
        push(submit(x))
        if len(pending) > 4096:
            pop().result()
    for f in pending:
        f.result()


def profile_run(pool: Sequence[InteractionData], events: int) -> dict[str, str]:
    """cProfile of the dispatcher thread and of the producer (1 producer)."""
    engine = Engine(targets=ACTION_TARGETS)
    dispatcher = cProfile.Profile()
    run_batch = engine._dispatcher.run_batch  # an attribute: the dispatcher calls this

    def profiled() -> None:
        dispatcher.enable()
        try:
            run_batch()
        finally:
            dispatcher.disable()

    engine._dispatcher.run_batch = profiled
    engine.initialize()
    items = cycle(pool, events)
    producer = cProfile.Profile()
    producer.enable()
    futures = [engine.train_step(x) for x in items]
    producer.disable()
    futures[-1].result()
    engine.close()
    out = {}
    for name, prof in (("dispatcher", dispatcher), ("producer", producer)):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
        out[name] = buf.getvalue()
    return out


def workers_comparison(pool: Sequence[InteractionData], events: int, repeat: int) -> dict[str, Any]:
    """``Engine(features=HashedFeatureEncoder(), workers=w)``, ``train_many`` in
    chunks of 1,000, for w = 1 and 2 alternately in the same run (so both see the
    same machine load). ``ratio`` is best(workers=2) / best(workers=1): above 1,
    a second dispatcher pays."""
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for _ in range(repeat):
        for workers in (1, 2):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # workers > 1 warns
                runs[workers].append(
                    throughput_train_many(
                        pool, events, 1_000, features=HashedFeatureEncoder(), workers=workers
                    )
                )
    one, two = best_of(runs[1]), best_of(runs[2])
    return {
        "encoder": "HashedFeatureEncoder()",
        "workers_1": one,
        "workers_2": two,
        "ratio_workers_2_over_1": round(two["events_per_s"] / one["events_per_s"], 3),
        "median_ratio": round(two["median_events_per_s"] / one["median_events_per_s"], 3),
        "cpus": os.cpu_count(),
        "load_average": load_average(),
    }


# ---------------------------------------------------------------------- configurations vs River

# The configurations users run (issue 14): the seed's dense default and the
# default sparse model (a HashedFeatureEncoder picks the field model).
CONFIGS: dict[str, Callable[[], dict[str, Any]]] = {
    "dense_default": lambda: {},
    "hashed_default": lambda: {"features": HashedFeatureEncoder()},
}


def raw_rows(pool: Sequence[InteractionData]) -> list[tuple[Any, ...]]:
    """The fields an InteractionData is built from (for the "building" runs)."""
    return [(x.action_type, x.timestamp, x.user_id, x.context) for x in pool]


def one_hot(x: InteractionData) -> dict[str, float]:
    """River's input: the same raw fields, one-hot (targets derived from the
    action, so, as in the engine, the action type is not an input)."""
    out = {f"user={x.user_id}": 1.0}
    if x.context:
        for key, value in x.context.items():
            out[f"{key}={value}"] = 1.0
    return out


def _engine_train(kwargs: dict[str, Any], pool: Sequence[InteractionData], n: int,
                  producers: int, build: bool) -> float:  # fmt: skip
    """Seconds per event, end to end (every Future resolved), Futures kept."""
    engine = new_engine(**kwargs)
    share = n // producers
    items = [cycle(pool, share, offset=k * share) for k in range(producers)]
    rows = [raw_rows(chunk) for chunk in items]
    outs: list[list[StepFuture[StepResult]]] = [[] for _ in range(producers)]
    barrier = threading.Barrier(producers + 1)

    def produce(k: int) -> None:
        submit, keep = engine.train_step, outs[k].append
        barrier.wait()
        if build:
            for a, t, u, c in rows[k]:
                keep(submit(InteractionData(a, t, u, c)))
        else:
            for x in items[k]:
                keep(submit(x))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    for out in outs:
        out[-1].result()
    elapsed = time.perf_counter() - start
    engine.close()
    check_engine(engine, share * producers)
    return elapsed / (share * producers)


def _river_train(pool: Sequence[InteractionData], n: int, build: bool) -> float:
    """River LR, predict_proba_one + learn_one per event; seconds per event."""
    from river import linear_model, optim

    model = linear_model.LogisticRegression(optimizer=optim.SGD(0.05), intercept_lr=0.05, l2=0.0)
    items = cycle(pool, n)
    labels = [ACTION_TARGETS[x.action_type] == 1.0 for x in items]
    rows = raw_rows(items)
    dicts = [one_hot(x) for x in items]
    predict, learn = model.predict_proba_one, model.learn_one
    start = time.perf_counter()
    if build:
        for (a, t, u, c), y in zip(rows, labels, strict=True):
            x = one_hot(InteractionData(a, t, u, c))
            predict(x)
            learn(x, y)
    else:
        for x, y in zip(dicts, labels, strict=True):
            predict(x)
            learn(x, y)
    return (time.perf_counter() - start) / n


def _predict_latency(kwargs: dict[str, Any], pool: Sequence[InteractionData], calls: int,
                     producers: int) -> dict[str, Any]:  # fmt: skip
    """One thread calling predict in a loop, ``producers`` threads training meanwhile."""
    engine = new_engine(**kwargs)
    for f in engine.train_many(cycle(pool, 5_000)):
        f.result()
    stop = threading.Event()
    chunk = cycle(pool, 20_000, offset=5_000)
    trainers = [
        threading.Thread(target=_windowed_producer, args=(engine, chunk, stop))
        for _ in range(producers)
    ]
    for t in trainers:
        t.start()
    if trainers:
        time.sleep(0.2)
    queries = cycle(pool, calls, offset=25_000)
    samples = np.empty(calls, dtype=np.int64)
    clock, predict = time.perf_counter_ns, engine.predict
    steps_before = engine.stats().steps
    start = time.perf_counter()
    for i, x in enumerate(queries):
        t = clock()
        predict(x)
        samples[i] = clock() - t
    elapsed = time.perf_counter() - start
    steps = engine.stats().steps - steps_before
    stop.set()
    for t in trainers:
        t.join()
    engine.close()
    return {**percentiles_us(samples), "training_events_per_s": round(steps / elapsed)}


def _training_alone(kwargs: dict[str, Any], pool: Sequence[InteractionData], seconds: float,
                    producers: int) -> float:  # fmt: skip
    """Training events/s of ``producers`` windowed producers, nobody predicting."""
    engine = new_engine(**kwargs)
    stop = threading.Event()
    chunk = cycle(pool, 20_000, offset=5_000)
    trainers = [
        threading.Thread(target=_windowed_producer, args=(engine, chunk, stop))
        for _ in range(producers)
    ]
    for t in trainers:
        t.start()
    time.sleep(0.2)
    before, start = engine.stats().steps, time.perf_counter()
    time.sleep(seconds)
    rate = (engine.stats().steps - before) / (time.perf_counter() - start)
    stop.set()
    for t in trainers:
        t.join()
    engine.close()
    return rate


def _river_predict(pool: Sequence[InteractionData], calls: int) -> float:
    from river import linear_model, optim

    model = linear_model.LogisticRegression(optimizer=optim.SGD(0.05), intercept_lr=0.05, l2=0.0)
    for x in cycle(pool, 5_000):
        model.learn_one(one_hot(x), ACTION_TARGETS[x.action_type] == 1.0)
    dicts = [one_hot(x) for x in cycle(pool, calls, offset=25_000)]
    predict = model.predict_proba_one
    start = time.perf_counter()
    for x in dicts:
        predict(x)
    return (time.perf_counter() - start) / calls


def configurations_vs_river(pool: Sequence[InteractionData], events: int, calls: int,
                            repeat: int) -> dict[str, Any]:  # fmt: skip
    """Each configuration against River LR (one-hot dicts) in the same run, as
    ratios ``river_us / engine_us`` (above 1: the engine is faster), medians of
    ``repeat`` alternated runs."""
    try:
        import river  # noqa: F401
    except ImportError:
        return {"skipped": "river is not installed"}
    out: dict[str, Any] = {}
    river_runs: dict[str, list[float]] = {"prebuilt": [], "building": [], "predict": []}
    engine_runs: dict[str, dict[str, list[float]]] = {name: {} for name in CONFIGS}
    for _ in range(repeat):
        for build in (False, True):
            river_runs["building" if build else "prebuilt"].append(
                _river_train(pool, events, build)
            )
        river_runs["predict"].append(_river_predict(pool, calls))
        for name, kwargs_of in CONFIGS.items():
            runs = engine_runs[name]
            cases = (("prebuilt_1", 1, False), ("building_1", 1, True),
                     ("prebuilt_4", 4, False), ("building_4", 4, True))  # fmt: skip
            for key, producers, build in cases:
                runs.setdefault(key, []).append(
                    _engine_train(kwargs_of(), pool, events, producers, build)
                )
            idle = _predict_latency(kwargs_of(), pool, calls, 0)
            runs.setdefault("predict_idle_p50", []).append(idle["p50_us"] / 1e6)
    med = lambda xs: float(np.median(xs))  # noqa: E731
    river_us = {k: round(med(v) * 1e6, 3) for k, v in river_runs.items()}
    out["river_lr_us"] = {
        "predict_learn_prebuilt_dicts": river_us["prebuilt"],
        "predict_learn_building_dicts": river_us["building"],
        "predict_proba_one": river_us["predict"],
    }
    for name, kwargs_of in CONFIGS.items():
        runs = engine_runs[name]
        us = {k: round(med(v) * 1e6, 3) for k, v in runs.items()}
        under = _predict_latency(kwargs_of(), pool, calls, 2)
        alone = _training_alone(kwargs_of(), pool, 1.0, 2)
        idle_p50 = us["predict_idle_p50"]
        out[name] = {
            "train_step_us_per_event": us,
            "ratio_vs_river": {
                "train_step_1_producer_prebuilt": round(river_us["prebuilt"] / us["prebuilt_1"], 3),
                "train_step_1_producer_building": round(river_us["building"] / us["building_1"], 3),
                "train_step_4_producers_prebuilt": round(
                    river_us["prebuilt"] / us["prebuilt_4"], 3
                ),
                "train_step_4_producers_building": round(
                    river_us["building"] / us["building_4"], 3
                ),
                "predict_idle_p50": round(river_us["predict"] / idle_p50, 3),
            },
            "predict_under_training_2_producers": under,
            "predict_p99_over_idle_p50": round(under["p99_us"] / idle_p50, 2),
            "training_alone_2_producers_events_per_s": round(alone),
            "training_while_predicting_over_alone": round(
                under["training_events_per_s"] / alone, 3
            ),
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    """A short Markdown page of a run (written beside the JSON)."""
    env = report["environment"]
    lines = [
        "# Engine benchmark (`benchmarks/engine_bench.py`)",
        "",
        f"`{report['command']}` at git {env['git']}, Python {env['python']}, "
        f"{env['cpus']} CPUs, load average {env['load_average_start']} -> "
        f"{env['load_average_end']} (a shared machine: compare ratios of one run).",
        "",
        "| metric | measured | target | met |",
        "|---|---|---|---|",
    ]
    for key, value in report["summary"].items():
        v = report["targets"].get(key)
        lines.append(
            f"| {key} | {value:,} | {v['target'] if v else ''} | "
            f"{('yes' if v['met'] else 'no') if v else ''} |"
        )
    configs = report["details"].get("configurations_vs_river", {})
    if "river_lr_us" in configs:
        lines += [
            "",
            "## The configurations users run, against River LR (one-hot dicts), same run",
            "",
            f"River LR, us per event: {configs['river_lr_us']}.",
            "Ratios are River's time / the engine's (above 1: the engine is faster).",
            "",
            "| configuration | ratio | value |",
            "|---|---|---|",
        ]
        for name in CONFIGS:
            r = configs[name]
            for key, ratio in r["ratio_vs_river"].items():
                lines.append(f"| {name} | {key} | {ratio} |")
            under = r["predict_under_training_2_producers"]
            lines.append(
                f"| {name} | predict under training (2 producers) p50 / p99 / max us "
                f"| {under['p50_us']} / {under['p99_us']} / {under['max_us']} |"
            )
            lines.append(
                f"| {name} | predict p99 under training / idle p50 | "
                f"{r['predict_p99_over_idle_p50']} |"
            )
            lines.append(
                f"| {name} | training throughput while predicting / alone | "
                f"{r['training_while_predicting_over_alone']} |"
            )
    return "\n".join(lines) + "\n"


def print_configurations(report: dict[str, Any]) -> None:
    if "skipped" in report:
        print(f"\nconfigurations vs River: skipped ({report['skipped']})")
        return
    print("\nconfigurations vs River LR (one-hot dicts), ratio river_us / engine_us (> 1: faster)")
    print(f"  River LR us: {report['river_lr_us']}")
    for name in CONFIGS:
        r = report[name]
        under = r["predict_under_training_2_producers"]
        print(f"  {name}: us/event {r['train_step_us_per_event']}")
        print(f"    ratios {r['ratio_vs_river']}")
        print(f"    predict under training (2 producers): p50 {under['p50_us']}"
              f" p99 {under['p99_us']} max {under['max_us']} us;"
              f" p99/idle p50 {r['predict_p99_over_idle_p50']}; training meanwhile"
              f" / alone {r['training_while_predicting_over_alone']}")  # fmt: skip


# ---------------------------------------------------------------------- driver


def best_of(runs: list[dict[str, Any]], key: str = "events_per_s") -> dict[str, Any]:
    values = sorted(r[key] for r in runs)
    best = max(runs, key=lambda r: r[key])
    return {**best, "median_events_per_s": values[len(values) // 2],
            "all_events_per_s": [r[key] for r in runs]}  # fmt: skip


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10, check=True)  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "python/livelearn/engine"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10)  # fmt: skip
        return out.stdout.strip() + ("+dirty-engine" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def verdicts(summary: dict[str, float]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, (op, target) in TARGETS.items():
        value = summary[key]
        ok = value >= target if op == ">=" else value <= target
        out[key] = {"value": value, "target": f"{op} {target:g}", "met": ok}
    return out


def print_table(summary: dict[str, float], verdict: dict[str, dict[str, Any]]) -> None:
    rows = [
        ("train_step, 1 producer, end to end", "train_step_1_producer_events_per_s", "ev/s"),
        ("train_step, 4 producers, end to end", "train_step_4_producers_events_per_s", "ev/s"),
        ("  (diagnostic: same, cyclic GC disabled)", "diagnostic_gc_disabled_events_per_s", "ev/s"),
        (
            "train_step, 1 producer, Futures not kept",
            "train_step_futures_dropped_events_per_s",
            "ev/s",
        ),
        ("train_many, chunks of 1,000", "train_many_chunk_1000_events_per_s", "ev/s"),
        ("train_many, one call", "train_many_one_call_events_per_s", "ev/s"),
        ("train_step call latency p50 (saturated)", "train_step_latency_p50_us", "us"),
        ("train_step call latency p99 (saturated)", "train_step_latency_p99_us", "us"),
        ("train_step call latency p99.9 (saturated)", "train_step_latency_p99_9_us", "us"),
        ("train_step call latency p50 (10k ev/s)", "train_step_paced_latency_p50_us", "us"),
        ("train_step call latency p99 (10k ev/s)", "train_step_paced_latency_p99_us", "us"),
        ("predict p50 (idle)", "predict_idle_p50_us", "us"),
        ("predict p99 (idle)", "predict_idle_p99_us", "us"),
        ("predict p50 (while training)", "predict_under_training_p50_us", "us"),
        ("predict p99 (while training)", "predict_under_training_p99_us", "us"),
        ("RSS growth per 1M events", "rss_growth_mb_per_1m_events", "MB"),
    ]
    print(f"\n{'metric':<44} {'measured':>14} {'target':>12}  met")
    print("-" * 78)
    for label, key, unit in rows:
        value = summary[key]
        shown = f"{value:,.0f} {unit}" if unit == "ev/s" else f"{value:,.2f} {unit}"
        v = verdict.get(key)
        target = v["target"] if v else ""
        met = ("yes" if v["met"] else "NO") if v else ""
        print(f"{label:<44} {shown:>14} {target:>12}  {met}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help="events per throughput run (default 400,000; --quick 100,000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="throughput runs per case, best reported (default 3; --quick 1)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (about 10 s)")
    parser.add_argument("--profile", action="store_true", help="also print cProfile tables")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON output path")
    parser.add_argument(
        "--workers-only",
        action="store_true",
        help=f"only compare workers=1 and 2 on the hashed encoder ({WORKERS_RESULTS.name})",
    )
    args = parser.parse_args(argv)  # fmt: skip
    events = args.events or (100_000 if args.quick else 400_000)
    repeat = args.repeat or (1 if args.quick else 3)
    if args.workers_only:
        pool = make_pool(100_000)
        comparison = workers_comparison(pool, events, max(repeat, 2))
        comparison["command"] = " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        )
        comparison["git"] = git_commit()
        out = WORKERS_RESULTS if args.output == RESULTS else args.output
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(comparison, indent=2) + "\n")
        print(
            f"hashed encoder, train_many: workers=1 {comparison['workers_1']['all_events_per_s']}"
            f" ev/s, workers=2 {comparison['workers_2']['all_events_per_s']} ev/s, ratio"
            f" {comparison['ratio_workers_2_over_1']} (median {comparison['median_ratio']})"
        )
        print(f"written to {out}")
        return 0
    rss_events = 200_000 if args.quick else 1_000_000
    latency_calls = 50_000 if args.quick else 200_000
    predict_calls = 10_000 if args.quick else 50_000

    started = time.perf_counter()
    load_start = load_average()
    pool = make_pool(100_000)
    overhead = timer_overhead_ns()
    log: Callable[[str], None] = lambda msg: print(  # noqa: E731
        f"[{time.perf_counter() - started:6.1f}s] {msg}", flush=True
    )
    log(f"pool built; timer overhead {overhead:.0f} ns per perf_counter_ns pair")

    results: dict[str, Any] = {}
    runs1 = [throughput_train_step(pool, events, 1) for _ in range(repeat)]
    results["train_step_1_producer"] = best_of(runs1)
    log(f"train_step 1 producer: {results['train_step_1_producer']['all_events_per_s']}")
    runs4 = [throughput_train_step(pool, events, 4) for _ in range(repeat)]
    results["train_step_4_producers"] = best_of(runs4)
    log(f"train_step 4 producers: {results['train_step_4_producers']['all_events_per_s']}")
    results["diagnostic_train_step_1_producer_gc_disabled"] = best_of(
        [throughput_train_step(pool, events, 1, gc_enabled=False) for _ in range(repeat)]
    )
    log("diagnostic run without the cyclic GC done")
    results["train_many_chunk_1000"] = best_of(
        [throughput_train_many(pool, events, 1_000) for _ in range(repeat)]
    )
    results["train_many_one_call"] = best_of(
        [throughput_train_many(pool, events, None) for _ in range(repeat)]
    )
    log("train_many done")
    results["train_step_latency_saturated"] = latency_train_step(pool, latency_calls, None)
    results["train_step_latency_paced"] = latency_train_step(pool, latency_calls // 4, 10_000.0)
    log("train_step latency done")
    results["predict_idle"] = latency_predict(pool, predict_calls, under_training=False)
    results["predict_under_training"] = latency_predict(pool, predict_calls, under_training=True)
    log("predict latency done")
    results["rss"] = rss_growth(pool, rss_events, warmup=200_000)
    log("RSS done")
    results["configurations_vs_river"] = configurations_vs_river(
        pool, 20_000 if args.quick else 100_000, predict_calls, repeat
    )
    log("configurations vs River done")

    lat, paced = results["train_step_latency_saturated"], results["train_step_latency_paced"]
    summary = {
        "train_step_1_producer_events_per_s": results["train_step_1_producer"]["events_per_s"],
        "train_step_4_producers_events_per_s": results["train_step_4_producers"]["events_per_s"],
        "diagnostic_gc_disabled_events_per_s": results[
            "diagnostic_train_step_1_producer_gc_disabled"
        ]["events_per_s"],
        "train_step_futures_dropped_events_per_s": results["rss"]["events_per_s"],
        "train_many_chunk_1000_events_per_s": results["train_many_chunk_1000"]["events_per_s"],
        "train_many_one_call_events_per_s": results["train_many_one_call"]["events_per_s"],
        "train_step_latency_p50_us": lat["p50_us"],
        "train_step_latency_p99_us": lat["p99_us"],
        "train_step_latency_p99_9_us": lat["p99_9_us"],
        "train_step_paced_latency_p50_us": paced["p50_us"],
        "train_step_paced_latency_p99_us": paced["p99_us"],
        "predict_idle_p50_us": results["predict_idle"]["p50_us"],
        "predict_idle_p99_us": results["predict_idle"]["p99_us"],
        "predict_under_training_p50_us": results["predict_under_training"]["p50_us"],
        "predict_under_training_p99_us": results["predict_under_training"]["p99_us"],
        "rss_growth_mb_per_1m_events": results["rss"]["growth_mb_per_1m_events"],
    }
    verdict = verdicts(summary)
    report = {
        "benchmark": "engine",
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "quick": args.quick,
        "engine_config": "default: layers [4, 16, 8, 1], tanh, bce, sgd 0.05, FeatureEncoder, "
        "batch_size 64, workers 1, max_pending 100000, overload block",
        "environment": {
            "livelearn": livelearn.__version__,
            "git": git_commit(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "cpus": os.cpu_count(),
            "load_average_start": load_start,
            "load_average_end": load_average(),
            "timer_overhead_ns": round(overhead),
            "gil_switch_interval_s": sys.getswitchinterval(),
        },
        "summary": summary,
        "targets": verdict,
        "details": results,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if args.profile:
        report["profile"] = profile_run(pool, min(events, 200_000))
        for name, text in report["profile"].items():
            print(f"\n=== cProfile: {name} ===\n{text}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(markdown(report))
    print_table(summary, verdict)
    print_configurations(results["configurations_vs_river"])
    print(f"\nwritten to {args.output} in {report['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
