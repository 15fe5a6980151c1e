"""Reliability scenarios, shared by ``tests/reliability`` and ``benchmarks/reliability_report.py``.

Each scenario runs the public API under stress and returns a result object with
its figures and a list of ``problems`` (empty when every property held). The
tests assert on the result; the report prints it. No timing threshold is ever
asserted: the only clocks here are deadlock watchdogs.
"""

from __future__ import annotations

import faulthandler
import functools
import gc
import logging
import os
import random
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import livelearn
from livelearn import (
    CheckpointError,
    Engine,
    HashedFeatureEncoder,
    InteractionData,
    InvalidInteraction,
    Network,
    StepFuture,
    StepResult,
    StepStatus,
)
from livelearn.checkpoint import read_checkpoint

T0 = 1_700_000_000.0
TARGETS = {"click": 1.0, "skip": 0.0}
OVERLOAD_CHUNK = 3  # run_overload's producers send every tenth step as a train_many of this size
#: Where the tested ``livelearn`` package lives, for subprocesses (installed or in-tree).
PACKAGE_ROOT = str(Path(livelearn.__file__).resolve().parent.parent)
_PAGE = os.sysconf("SC_PAGE_SIZE")


# ----------------------------------------------------------------------------- probes
def rss_bytes() -> int:
    """Resident set size of this process (``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def open_fds() -> int:
    """Number of open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def subprocess_env() -> dict[str, str]:
    """Environment for a child ``python`` that imports the tested package."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": PACKAGE_ROOT + (os.pathsep + path if path else "")}


@contextmanager
def quiet_livelearn() -> Iterator[None]:
    """Silence the (expected, numerous) rejection warnings of a scenario."""
    logger = logging.getLogger("livelearn")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class Watchdog:
    """Turns a deadlock into a failure that shows where every thread was.

    After ``seconds`` a watchdog thread dumps every thread's stack to stderr,
    sets :attr:`expired` and calls ``on_expire`` (for example
    ``engine.close(wait=False)``, which unblocks producers). If the process is
    still stuck ``grace`` seconds later (say, the main thread inside a native
    call), ``faulthandler.dump_traceback_later`` dumps again and exits the
    process: a hard timeout, never a hang of the whole test run.
    """

    def __init__(
        self, seconds: float, on_expire: Callable[[], None] | None = None, grace: float = 60.0
    ) -> None:
        self.seconds = seconds
        self.on_expire = on_expire
        self.grace = grace
        self.expired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="reliability-watchdog", daemon=True
        )

    def _watch(self) -> None:
        if self._stop.wait(self.seconds):
            return
        self.expired = True
        sys.stderr.write(f"\n*** watchdog: still running after {self.seconds:.0f} s ***\n")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        if self.on_expire is not None:
            try:
                self.on_expire()
            except Exception as exc:  # report, never mask the deadlock itself
                sys.stderr.write(f"watchdog on_expire failed: {exc!r}\n")

    def remaining(self) -> float:
        """Seconds left before the watchdog fires (for ``join``/``wait`` timeouts)."""
        return max(0.0, self._deadline - time.monotonic())

    def __enter__(self) -> Watchdog:
        self._deadline = time.monotonic() + self.seconds
        faulthandler.dump_traceback_later(self.seconds + self.grace, exit=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        faulthandler.cancel_dump_traceback_later()
        self._thread.join()


# ----------------------------------------------------------------------------- streams
_USERS = [f"user-{u}" for u in range(50)]
_PAGES = ["home", "search", "cart", "item"]


def interaction(i: int, action: str | None = None, label: float | None = None) -> InteractionData:
    """A deterministic valid interaction: about 1/3 skips, some with context."""
    act = action if action is not None else ("skip" if i % 3 == 0 else "click")
    ctx = {"page": _PAGES[i % 4], "position": i % 7} if i % 2 else None
    return InteractionData(act, T0 + 37.0 * i, _USERS[i % 50], ctx, label)


def interaction_pool(n: int, invalid_every: int = 0) -> list[object]:
    """``n`` items; every ``invalid_every``-th is invalid: alternately not an
    interaction at all, or an interaction without any target (``"view"``)."""
    out: list[object] = []
    for i in range(n):
        if invalid_every and i % invalid_every == invalid_every - 1:
            if (i // invalid_every) % 2:
                out.append(f"not an interaction #{i}")
            else:
                out.append(interaction(i, "view"))
        else:
            out.append(interaction(i))
    return out


def is_valid(item: object) -> bool:
    return isinstance(item, InteractionData) and item.action_type in TARGETS


def state_bytes(net: Network, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every tensor of ``net.get_state()`` as raw bytes (comparable bit for bit)."""
    return {k: v.tobytes() for k, v in net.get_state().items() if k not in skip}


# ----------------------------------------------------------------------------- 1. load
_TRAINED, _INVALID, _REJECTED, _SKIPPED, _FAILED = 1, 2, 3, 4, 5


@dataclass
class LoadResult:
    threads: int
    per_thread: int
    submitted: int = 0
    resolved_once: int = 0
    resolved_more_than_once: int = 0
    unresolved: int = 0
    trained: int = 0
    rejected: int = 0
    skipped: int = 0
    failed: int = 0
    expected_rejected: int = 0
    stats_snapshots: int = 0
    predictions: int = 0
    predictions_checked: int = 0
    saves: int = 0
    saves_checked: int = 0
    replay_bit_identical: bool = False
    step_outputs_identical: bool = False
    duration_s: float = 0.0
    replay_s: float = 0.0
    problems: list[str] = field(default_factory=list)


def run_load(
    folder: Path,
    *,
    threads: int = 8,
    per_thread: int = 50_000,
    workers: int = 1,
    save_every: int = 5_000,
    max_predictions: int = 1_500,
    timeout: float = 300.0,
) -> LoadResult:
    """``threads`` producers (half ``train_step``, half ``train_many`` in chunks)
    against a predicting thread, a ``stats()`` thread and a thread saving a
    checkpoint every ``save_every`` steps; then a sequential replay.

    Checked: every Future resolves exactly once (done callbacks count), the
    counters add up in every snapshot and at the end, the trained steps are
    numbered 1..n without gap, and a fresh Network fed the same examples in
    step order ends bit-identical to the engine's, with bit-identical
    per-step losses and pre-update predictions. Every checkpoint equals the
    replay at its step count; every concurrent ``predict`` equals the
    replay's prediction after one of the steps that were done while it ran
    (so no prediction came from a half-updated network).
    """
    res = LoadResult(threads=threads, per_thread=per_thread)
    problems = res.problems
    pool = interaction_pool(4096, invalid_every=53)
    n_pool = len(pool)
    n = threads * per_thread
    res.submitted = n
    res.expected_rejected = sum(not is_valid(pool[i % n_pool]) for i in range(n))
    engine = Engine(
        targets=TARGETS, log_every=0, history_size=256, workers=workers, max_pending=20_000
    ).initialize()
    initial = engine.network.get_state()
    probe = next(x for x in pool if is_valid(x))
    assert isinstance(probe, InteractionData)

    counts = bytearray(n)
    kinds = bytearray(n)
    steps = np.zeros(n, dtype=np.int64)
    step_preds = np.full(n, np.nan)
    step_losses = np.full(n, np.nan)

    def record(i: int, future: StepFuture[StepResult]) -> None:
        counts[i] += 1
        exc = future.exception(timeout=0)
        if exc is None:
            r = future.result(timeout=0)
            if r.status is StepStatus.TRAINED:
                kinds[i] = _TRAINED
                steps[i] = r.step
                step_preds[i] = r.prediction
                step_losses[i] = r.loss
            else:
                kinds[i] = _REJECTED if r.status is StepStatus.REJECTED else _SKIPPED
        else:
            kinds[i] = _INVALID if isinstance(exc, InvalidInteraction) else _FAILED

    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def produce(t: int) -> None:
        base = t * per_thread
        items = [pool[(base + j) % n_pool] for j in range(per_thread)]
        try:
            barrier.wait()
            if t % 2:
                for start in range(0, per_thread, 250):
                    futures = engine.train_many(items[start : start + 250])  # type: ignore[arg-type]
                    for j, f in enumerate(futures, base + start):
                        f.add_done_callback(functools.partial(record, j))
            else:
                submit = engine.train_step
                for j, x in enumerate(items, base):
                    submit(x).add_done_callback(functools.partial(record, j))  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    running = threading.Event()
    running.set()
    predictions: list[tuple[int, int, float]] = []
    checkpoints: list[tuple[int, dict[str, NDArray[Any]]]] = []

    def watch_stats() -> None:
        last = 0
        while running.is_set():
            s = engine.stats()
            total = s.steps + s.skipped + s.rejected + s.failed + s.pending
            negative = min(s.steps, s.skipped, s.rejected, s.failed, s.pending) < 0
            if total != s.interactions or negative or s.steps < last:
                problems.append(f"inconsistent stats snapshot {s} (previous steps {last})")
            last = s.steps
            res.stats_snapshots += 1
            time.sleep(0.0005)

    def predict() -> None:
        net = engine.network
        while running.is_set() and len(predictions) < max_predictions:
            s0 = net.steps
            p = engine.predict(probe)
            s1 = net.steps
            predictions.append((s0, s1, float(p)))  # type: ignore[arg-type]
            time.sleep(0.002)

    def save() -> None:
        path = folder / "load.safetensors"
        next_save = save_every
        while running.is_set():
            if engine.stats().steps < next_save:
                time.sleep(0.002)
                continue
            engine.save(path)
            ckpt = read_checkpoint(path)
            c = ckpt.meta["counters"]
            hist = ckpt.tensors["history.steps"].tolist()
            trained = c["trained"]
            if int(ckpt.tensors["network.counters.steps"]) != trained or hist != list(
                range(trained - len(hist) + 1, trained + 1)
            ):
                problems.append(f"checkpoint at {trained} steps is inconsistent: {c}")
            tensors = {k[8:]: v for k, v in ckpt.tensors.items() if k.startswith("network.")}
            checkpoints.append((trained, tensors))
            next_save = trained + save_every

    helpers = [
        threading.Thread(target=fn, name=f"load-{fn.__name__}", daemon=True)
        for fn in (watch_stats, predict, save)
    ]
    producers = [
        threading.Thread(target=produce, args=(t,), name=f"producer-{t}", daemon=True)
        for t in range(threads)
    ]
    with quiet_livelearn(), Watchdog(timeout, on_expire=lambda: engine.close(wait=False)) as dog:
        for th in producers + helpers:
            th.start()
        barrier.wait()
        started = time.perf_counter()
        for th in producers:
            th.join(dog.remaining())
        while counts.count(0) and not dog.expired:
            time.sleep(0.005)
        res.duration_s = time.perf_counter() - started
        running.clear()
        for th in helpers:
            th.join(dog.remaining())
        engine.close(wait=True, timeout=dog.remaining())
    if dog.expired or any(th.is_alive() for th in producers + helpers):
        problems.append("deadlock: the watchdog fired or a thread never finished")
    problems.extend(f"producer raised {e!r}" for e in errors)

    res.unresolved = counts.count(0)
    res.resolved_once = counts.count(1)
    res.resolved_more_than_once = n - res.unresolved - res.resolved_once
    if res.unresolved or res.resolved_more_than_once:
        problems.append(
            f"{res.unresolved} Futures never resolved, "
            f"{res.resolved_more_than_once} resolved more than once"
        )
    outcome = Counter(kinds)
    res.trained = outcome[_TRAINED]
    res.rejected = outcome[_INVALID] + outcome[_REJECTED]
    res.skipped = outcome[_SKIPPED]
    res.failed = outcome[_FAILED]
    stats = engine.stats()
    if (stats.steps, stats.rejected, stats.skipped, stats.failed, stats.pending) != (
        res.trained,
        res.rejected,
        res.skipped,
        res.failed,
        0,
    ) or stats.interactions != n:
        problems.append(f"final stats {stats} disagree with the Futures {dict(outcome)}")
    if res.rejected != res.expected_rejected or res.trained != n - res.expected_rejected:
        problems.append(
            f"{res.rejected} rejected / {res.trained} trained, expected "
            f"{res.expected_rejected} / {n - res.expected_rejected}"
        )
    res.predictions = len(predictions)
    res.saves = len(checkpoints)

    # -- sequential replay in step order -------------------------------------------------
    t_replay = time.perf_counter()
    trained_ids = np.flatnonzero(np.frombuffer(bytes(kinds), dtype=np.uint8) == _TRAINED)
    order = trained_ids[np.argsort(steps[trained_ids], kind="stable")]
    m = len(order)
    if not np.array_equal(steps[order], np.arange(1, m + 1)):
        problems.append("trained step numbers are not exactly 1..n")
        return res
    valid_pool = [x for x in pool if is_valid(x)]
    row_of = {id(x): r for r, x in enumerate(valid_pool)}
    pool_rows = np.array([row_of.get(id(x), -1) for x in pool], dtype=np.int64)
    X_pool = engine.features.encode_many(valid_pool)  # type: ignore[arg-type]
    Y_pool, _ = engine.targets.targets_many(valid_pool)  # type: ignore[arg-type]
    rows = pool_rows[order % n_pool]
    X, Y = X_pool[rows], Y_pool[rows]
    x_probe = engine.features.encode_many([probe])

    replay = Network.from_config(engine.network.get_config())
    replay.set_state(initial)
    need = np.zeros(m + 1, dtype=bool)
    for s0, s1, _ in predictions:
        need[s0 : s1 + 1] = True
    by_step: dict[int, list[dict[str, NDArray[Any]]]] = {}
    for s, tensors in checkpoints:
        by_step.setdefault(s, []).append(tensors)
    events = sorted(set(np.flatnonzero(need).tolist()) | set(by_step) | {m})
    out_losses = np.empty(m, dtype=np.float64)  # the network reports losses in double
    out_preds = np.empty(m, dtype=np.float32)
    pred_at: dict[int, float] = {}
    done = 0
    for target in events:
        if target > done:
            losses, preds, status = replay.train_batch_detailed(X[done:target], Y[done:target])
            if status.any():
                problems.append(f"the replay rejected a step between {done} and {target}")
            out_losses[done:target] = losses
            out_preds[done:target] = preds[:, 0]
            done = target
        if need[target]:
            pred_at[target] = float(replay.predict(x_probe)[0, 0])
        for tensors in by_step.get(target, []):
            state = replay.get_state()
            if any(not np.array_equal(state[k], v) for k, v in tensors.items()):
                problems.append(f"checkpoint at step {target} differs from the replay")
            else:
                res.saves_checked += 1
    final = engine.network.get_state()
    res.replay_bit_identical = all(
        final[k].tobytes() == v.tobytes() for k, v in replay.get_state().items()
    )
    if not res.replay_bit_identical:
        problems.append("the engine's final state differs from the sequential replay")
    res.step_outputs_identical = bool(
        np.array_equal(out_losses.astype(np.float64), step_losses[order])
        and np.array_equal(out_preds.astype(np.float64), step_preds[order])
    )
    if not res.step_outputs_identical:
        problems.append("per-step losses or predictions differ from the replay")
    for s0, s1, p in predictions:
        if any(pred_at[k] == p for k in range(s0, s1 + 1)):
            res.predictions_checked += 1
        else:
            problems.append(f"predict() = {p!r} during steps {s0}..{s1} matches no replayed step")
            break
    res.replay_s = time.perf_counter() - t_replay
    return res


# ----------------------------------------------------------------------------- 2. overload
@dataclass
class OverloadResult:
    policy: str
    producers: int
    max_pending: int
    attempts: int = 0
    accepted: int = 0
    overloaded: int = 0
    trained: int = 0
    skipped: int = 0
    unresolved: int = 0
    resolved_more_than_once: int = 0
    max_pending_seen: int = 0
    max_queued_seen: int = 0
    rss_growth_bytes: int = 0
    problems: list[str] = field(default_factory=list)


def run_overload(
    policy: str,
    *,
    producers: int = 4,
    per_producer: int = 25_000,
    max_pending: int = 4,
    batch_size: int = 2,
    timeout: float = 240.0,
) -> OverloadResult:
    """Sustained overload: ``producers`` threads flood an engine whose queue
    holds ``max_pending`` steps (tiny batches keep the dispatcher slower than
    the producers). Futures are not kept (done callbacks record the outcome),
    so the resident memory measures the engine alone."""
    from livelearn import EngineOverloaded

    res = OverloadResult(policy=policy, producers=producers, max_pending=max_pending)
    problems = res.problems
    engine = Engine(
        targets=TARGETS,
        log_every=0,
        history_size=64,
        max_pending=max_pending,
        batch_size=batch_size,
        overload=policy,  # type: ignore[arg-type]
    ).initialize()
    pool = [interaction(i) for i in range(1000)]
    n = producers * per_producer
    res.attempts = n
    counts = bytearray(n)
    kinds = bytearray(n)
    steps = np.zeros(n, dtype=np.int64)
    overloaded = [0] * producers
    errors: list[BaseException] = []
    warm = threading.Barrier(producers + 1)
    resume = threading.Event()

    def record(i: int, future: StepFuture[StepResult]) -> None:
        counts[i] += 1
        exc = future.exception(timeout=0)
        if exc is not None:
            kinds[i] = _FAILED
            return
        r = future.result(timeout=0)
        if r.status is StepStatus.TRAINED:
            kinds[i] = _TRAINED
            steps[i] = r.step
        elif r.status is StepStatus.SKIPPED and r.reason and "drop_oldest" in r.reason:
            kinds[i] = _SKIPPED
        else:
            kinds[i] = _FAILED

    def produce(t: int) -> None:
        base = t * per_producer
        j = 0
        warmed = False
        try:
            while j < per_producer:
                if not warmed and j >= per_producer // 5:  # warm-up done: measure memory
                    warmed = True
                    warm.wait()
                    resume.wait()
                if j % 10 == 9 and j + OVERLOAD_CHUNK <= per_producer:  # now and then a train_many
                    try:
                        fs = engine.train_many(
                            [pool[(base + j + k) % 1000] for k in range(OVERLOAD_CHUNK)]
                        )
                    except EngineOverloaded:
                        overloaded[t] += OVERLOAD_CHUNK
                        for k in range(OVERLOAD_CHUNK):
                            counts[base + j + k] = 1  # refused as a whole: nothing to resolve
                        time.sleep(0.0001)  # a client backs off (and lets the dispatcher run)
                    else:
                        for k, f in enumerate(fs):
                            f.add_done_callback(functools.partial(record, base + j + k))
                    j += OVERLOAD_CHUNK
                    continue
                try:
                    f = engine.train_step(pool[(base + j) % 1000])
                except EngineOverloaded:
                    overloaded[t] += 1
                    counts[base + j] = 1
                    time.sleep(0.0001)
                else:
                    f.add_done_callback(functools.partial(record, base + j))
                j += 1
        except BaseException as exc:
            errors.append(exc)

    running = threading.Event()
    running.set()

    def watch() -> None:
        while running.is_set():
            s = engine.stats()
            res.max_pending_seen = max(res.max_pending_seen, s.pending)
            res.max_queued_seen = max(res.max_queued_seen, len(engine._queue.items))
            if s.steps + s.skipped + s.rejected + s.failed + s.pending != s.interactions:
                problems.append(f"inconsistent stats snapshot {s}")
            time.sleep(0.0002)

    threads = [
        threading.Thread(target=produce, args=(t,), name=f"producer-{t}", daemon=True)
        for t in range(producers)
    ]
    watcher = threading.Thread(target=watch, daemon=True)
    with quiet_livelearn(), Watchdog(timeout, on_expire=lambda: engine.close(wait=False)) as dog:
        for th in threads:
            th.start()
        watcher.start()
        warm.wait(dog.remaining())
        gc.collect()
        rss0 = rss_bytes()
        resume.set()
        for th in threads:
            th.join(dog.remaining())
        while counts.count(0) and not dog.expired:
            time.sleep(0.005)
        gc.collect()
        res.rss_growth_bytes = rss_bytes() - rss0
        running.clear()
        watcher.join(dog.remaining())
        engine.close(wait=True, timeout=dog.remaining())
    if dog.expired or any(th.is_alive() for th in threads):
        problems.append("deadlock: the watchdog fired or a producer never finished")
    problems.extend(f"producer raised {e!r}" for e in errors)
    res.overloaded = sum(overloaded)
    res.accepted = n - res.overloaded
    res.unresolved = counts.count(0)
    res.resolved_more_than_once = n - res.unresolved - counts.count(1)
    outcome = Counter(kinds[i] for i in range(n) if kinds[i])
    res.trained, res.skipped = outcome[_TRAINED], outcome[_SKIPPED]
    if outcome[_FAILED] or res.unresolved or res.resolved_more_than_once:
        problems.append(
            f"{outcome[_FAILED]} unexpected outcomes, {res.unresolved} unresolved, "
            f"{res.resolved_more_than_once} resolved more than once"
        )
    for t in range(producers):  # one dispatcher: each producer's steps train in its order
        own = steps[t * per_producer : (t + 1) * per_producer]
        own = own[own > 0]
        if not (np.diff(own) > 0).all():
            problems.append(f"producer {t}: trained steps are out of submission order")
    s = engine.stats()
    if (s.interactions, s.steps, s.skipped, s.rejected, s.failed, s.pending) != (
        res.accepted,
        res.trained,
        res.skipped,
        0,
        0,
        0,
    ):
        problems.append(f"final stats {s} disagree: accepted {res.accepted}, {dict(outcome)}")
    return res


# ----------------------------------------------------------------------------- 3. soak
@dataclass
class SoakResult:
    events: int
    chunk: int
    warmup: int
    history_size: int
    duration_s: float = 0.0
    trained: int = 0
    rejected: int = 0
    rss_after_warmup: int = 0
    rss_end: int = 0
    rss_max: int = 0
    threads_after_warmup: int = 0
    threads_end: int = 0
    fds_after_warmup: int = 0
    fds_end: int = 0
    history_len: int = 0
    autosaved_steps: int = 0
    predictions: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def rss_growth(self) -> int:
        return self.rss_end - self.rss_after_warmup


def run_soak(
    folder: Path,
    *,
    events: int = 2_000_000,
    chunk: int = 10_000,
    warmup: int = 400_000,
    history_size: int = 1_000,
    timeout: float = 400.0,
) -> SoakResult:
    """``events`` interactions through ``train_many`` in chunks (1 % invalid),
    Futures dropped, an autosave every 250,000 steps and a prediction per chunk.
    Memory, threads and file descriptors are measured after ``warmup`` events
    and at the end."""
    res = SoakResult(events=events, chunk=chunk, warmup=warmup, history_size=history_size)
    problems = res.problems
    pool = interaction_pool(chunk, invalid_every=100)
    n_invalid_chunk = sum(not is_valid(x) for x in pool)
    engine = Engine(
        targets=TARGETS,
        log_every=0,
        history_size=history_size,
        checkpoint_path=folder / "soak.safetensors",
        checkpoint_every=250_000,
    ).initialize()
    probe = pool[0]
    assert isinstance(probe, InteractionData)
    with quiet_livelearn(), Watchdog(timeout, on_expire=lambda: engine.close(wait=False)) as dog:
        started = time.perf_counter()
        previous: StepFuture[StepResult] | None = None
        submitted = 0
        while submitted < events and not dog.expired:
            last = engine.train_many(pool)[-1]  # type: ignore[arg-type]
            submitted += chunk
            if previous is not None:  # at most two chunks in flight
                previous.exception(timeout=dog.remaining())
            previous = last
            engine.predict(probe)
            res.predictions += 1
            if submitted == warmup:
                last.exception(timeout=dog.remaining())
                gc.collect()
                res.rss_after_warmup = rss_bytes()
                res.threads_after_warmup = threading.active_count()
                res.fds_after_warmup = open_fds()
            if submitted % (10 * chunk) == 0:
                res.rss_max = max(res.rss_max, rss_bytes())
        if previous is not None:
            previous.exception(timeout=dog.remaining())
        res.duration_s = time.perf_counter() - started
        for th in threading.enumerate():  # a background save may still be writing
            if th.name == "livelearn-autosave":
                th.join(dog.remaining())
        gc.collect()
        res.rss_end = rss_bytes()
        res.rss_max = max(res.rss_max, res.rss_end)
        res.threads_end = threading.active_count()
        res.fds_end = open_fds()
        stats = engine.stats()
        history = engine.history
        engine.close(wait=True, timeout=dog.remaining())
    if dog.expired:
        problems.append("deadlock: the soak did not finish in time")
    res.trained, res.rejected = stats.steps, stats.rejected
    expected_rejected = n_invalid_chunk * (events // chunk)
    if (stats.interactions, stats.rejected, stats.pending, stats.skipped, stats.failed) != (
        events,
        expected_rejected,
        0,
        0,
        0,
    ) or stats.steps != events - expected_rejected:
        problems.append(f"counters do not add up: {stats}")
    res.history_len = len(history)
    if [h.step for h in history] != list(range(stats.steps - history_size + 1, stats.steps + 1)):
        problems.append(f"history is not the newest {history_size} steps in order")
    if res.rss_growth > 10 * 2**20:
        problems.append(f"RSS grew by {res.rss_growth / 2**20:.1f} MiB after warm-up")
    if res.threads_end > res.threads_after_warmup:
        problems.append(f"threads: {res.threads_after_warmup} -> {res.threads_end}")
    if res.fds_end > res.fds_after_warmup:
        problems.append(f"file descriptors: {res.fds_after_warmup} -> {res.fds_end}")
    try:
        with Engine.load(folder / "soak.safetensors", initialize=False) as saved:
            res.autosaved_steps = saved.stats().steps
    except Exception as exc:
        problems.append(f"the autosaved checkpoint does not load: {exc!r}")
    if res.autosaved_steps < 250_000:
        problems.append(f"the last autosave holds {res.autosaved_steps} steps")
    return res


# ----------------------------------------------------------------------------- 6. checkpoints
MUTATIONS = (
    "flip_bits",
    "set_bytes",
    "truncate",
    "extend",
    "delete_span",
    "insert_span",
    "duplicate_span",
    "zero_span",
    "swap_spans",
    "header_length",
    "splice",
)


def mutate(data: bytes, other: bytes, kind: str, rng: random.Random) -> bytes:
    """One random damage of kind ``kind`` to a checkpoint's bytes."""
    b = bytearray(data)
    size = len(b)
    span = rng.choice((1, 2, 8, 64, 512))
    at = rng.randrange(size)
    if kind == "flip_bits":
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(size)] ^= 1 << rng.randrange(8)
    elif kind == "set_bytes":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(size)] = rng.randrange(256)
    elif kind == "truncate":
        del b[rng.randrange(size) :]
    elif kind == "extend":
        b += bytes(rng.randrange(256) for _ in range(span))
    elif kind == "delete_span":
        del b[at : at + span]
    elif kind == "insert_span":
        b[at:at] = bytes(rng.randrange(256) for _ in range(span))
    elif kind == "duplicate_span":
        b[at:at] = b[at : at + span]
    elif kind == "zero_span":
        b[at : at + span] = bytes(len(b[at : at + span]))
    elif kind == "swap_spans":
        other_at = rng.randrange(size)
        first, second = bytes(b[at : at + span]), bytes(b[other_at : other_at + span])
        if len(first) == len(second):
            b[at : at + span], b[other_at : other_at + span] = second, first
        else:
            b[at : at + span] = second
    elif kind == "header_length":
        header = struct.unpack("<Q", data[:8])[0]
        b[:8] = struct.pack(
            "<Q",
            rng.choice((0, 1, header - 1, header + 1, header + 8, size, size - 8, 2**63, 2**64 - 1))
            % 2**64,
        )
    elif kind == "splice":  # the start of one checkpoint, the end of another
        # Cut after their first difference: a shorter prefix would give `other`
        # itself, a valid file (Network.load reads an engine checkpoint's network).
        n = min(size, len(other))
        first = next((i for i in range(n) if data[i] != other[i]), n)
        cut = rng.randrange(first + 1, n) if first + 1 < n else n
        b = bytearray(data[:cut] + other[cut:])
    else:
        raise ValueError(kind)
    return bytes(b)


@dataclass
class CheckpointFuzzResult:
    cases: int = 0
    per_mutation: dict[str, int] = field(default_factory=dict)
    checkpoint_errors: int = 0
    loaded_unchanged: int = 0
    problems: list[str] = field(default_factory=list)


def _engine_fingerprint(engine: Engine) -> tuple[Any, ...]:
    stats = engine.stats()._replace(started_at=None)
    return (state_bytes(engine.network), stats, [h.step for h in engine.history], engine.config)


def run_checkpoint_fuzz(folder: Path, *, cases: int = 2_000, seed: int = 0) -> CheckpointFuzzResult:
    """Random byte mutations and truncations of real checkpoints (a dense SGD
    engine, a hashed Adam engine, a network): loading each must raise
    :class:`CheckpointError` or give exactly the original (a mutation can be a
    no-op, e.g. a byte set to its own value). Any other exception or a changed
    model is a problem."""
    res = CheckpointFuzzResult()
    rng = random.Random(seed)
    originals: list[tuple[str, bytes, tuple[Any, ...] | None]] = []
    dense = Engine(hidden_layers=(8,), history_size=16, targets=TARGETS, log_every=0)
    hashed = Engine(
        hidden_layers=(4,),
        features=HashedFeatureEncoder(n_buckets=64, numeric_keys=("position",)),
        optimizer="adam",
        history_size=16,
        targets=TARGETS,
        log_every=0,
    )
    for name, engine in (("dense", dense), ("hashed", hashed)):
        with engine:
            for f in engine.train_many([interaction(i) for i in range(40)]):
                f.result(30)
            path = folder / f"{name}.safetensors"
            engine.save(path)
        with Engine.load(path, initialize=False) as loaded:
            originals.append((name, path.read_bytes(), _engine_fingerprint(loaded)))
    net = Network(layers=[3, 5, 2], optimizer="adam", seed=3)
    net.train_batch(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32))
    net.save(folder / "net.safetensors")
    originals.append(("network", (folder / "net.safetensors").read_bytes(), None))
    net_state = state_bytes(net)

    target = folder / "fuzzed.safetensors"
    for case in range(cases):
        name, data, fingerprint = originals[case % len(originals)]
        other = originals[(case + 1) % len(originals)][1]
        kind = MUTATIONS[rng.randrange(len(MUTATIONS))]
        res.per_mutation[kind] = res.per_mutation.get(kind, 0) + 1
        bad = mutate(data, other, kind, rng)
        target.write_bytes(bad)
        res.cases += 1
        try:
            if fingerprint is None:
                loaded_net = Network.load(target)
                same = state_bytes(loaded_net) == net_state
            else:
                with Engine.load(target, initialize=False) as loaded:
                    same = _engine_fingerprint(loaded) == fingerprint
        except CheckpointError as exc:
            res.checkpoint_errors += 1
            message = str(exc)
            if str(target) not in message or "\n" in message:
                res.problems.append(f"{kind} on {name}: unclear message {message!r}")
            continue
        except Exception as exc:
            res.problems.append(f"{kind} on {name}: {type(exc).__name__}: {exc}")
            continue
        if same:
            res.loaded_unchanged += 1
        else:
            res.problems.append(f"{kind} on {name}: loaded a different model without an error")
    return res


# ----------------------------------------------------------------------------- misc
def drain(futures: list[StepFuture[StepResult]], timeout: float) -> list[object]:
    """Each Future's result, or its exception (waiting at most ``timeout`` in all)."""
    deadline = time.monotonic() + timeout
    out: list[object] = []
    for f in futures:
        exc = f.exception(timeout=max(0.0, deadline - time.monotonic()))
        out.append(exc if exc is not None else f.result(timeout=0))
    return out


def counters_add_up(engine: Engine) -> bool:
    s = engine.stats()
    return s.steps + s.skipped + s.rejected + s.failed + s.pending == s.interactions


def finite_state(state: Mapping[str, NDArray[Any]]) -> bool:
    return all(np.isfinite(v).all() for v in state.values() if v.dtype.kind == "f")


# ----------------------------------------------------------------------------- 6b. edits
_ST_CODES = {
    "float32": "F32",
    "float64": "F64",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}
_JSON_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    7,
    2**31,
    2**63,
    10**30,
    -(10**30),
    0.5,
    -0.0,
    1e-45,
    3.4e38,
    1e308,
    "",
    "x",
    "UTC",
    "Mars/Olympus_Mons",
    "\ud800",
    "tanh",
    "adam",
    [],
    [1],
    [4, 1],
    [[1]],
    ["click"],
    {},
    {"a": 1},
    {"click": 1.0},
)


def rehashed(metadata: dict[str, str], tensors: dict[str, NDArray[Any]]) -> bytes:
    """A checkpoint file with this metadata and these tensors and a *valid* checksum:
    what a hand edit (or a buggy writer) that recomputes the checksum produces."""
    from safetensors.numpy import save as st_save

    from livelearn.checkpoint_format import digest

    described = {
        k: (
            _ST_CODES.get(str(v.dtype), "F32"),
            list(v.shape),
            np.asarray(v, order="C").reshape(-1).view(np.uint8),
        )
        for k, v in tensors.items()
    }
    metadata = dict(metadata)
    metadata["sha256"] = digest(metadata, described)
    # np.asarray keeps 0-d counters 0-d (ascontiguousarray would make them 1-d).
    return st_save({k: np.asarray(v, order="C") for k, v in tensors.items()}, metadata=metadata)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _edit_meta(meta: dict[str, Any], rng: random.Random) -> str:
    paths = [p for p in _paths(meta) if p]
    path = rng.choice(paths)
    parent: Any = meta
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    action = rng.random()
    if action < 0.15 and isinstance(parent, dict):
        del parent[last]
        return f"delete {'.'.join(map(str, path))}"
    if action < 0.25 and isinstance(parent, dict):
        parent[rng.choice(("extra", "bogus", "__class__"))] = rng.choice(_JSON_VALUES)
        return f"add a key next to {'.'.join(map(str, path))}"
    old = parent[last]
    if isinstance(old, (int, float)) and not isinstance(old, bool) and rng.random() < 0.5:
        new: Any = rng.choice((old + 1, old - 1, old * 2, -old, old * 1e6, float(old)))
    else:
        new = rng.choice(_JSON_VALUES)
    parent[last] = new
    return f"set {'.'.join(map(str, path))} = {new!r}"


def _edit_tensors(tensors: dict[str, NDArray[Any]], rng: random.Random) -> str:
    name = rng.choice(sorted(tensors))
    t = tensors[name]
    action = rng.randrange(6)
    if action == 0:
        del tensors[name]
        return f"drop {name}"
    if action == 1:
        tensors[rng.choice(("extra", "network.layers.9.weight", "history.extra"))] = np.zeros(
            3, np.float32
        )
        return "add a tensor"
    if action == 2:
        dtype = rng.choice(("float64", "float16", "int64", "int32", "int8", "float32"))
        with np.errstate(all="ignore"):
            tensors[name] = t.astype(dtype)
        return f"{name} as {dtype}"
    if action == 3:
        shape = list(t.shape)
        if shape and rng.random() < 0.5:
            shape[rng.randrange(len(shape))] += rng.choice((-1, 1))
            shape = [max(0, s) for s in shape]
        else:
            shape = [*shape, 1] if rng.random() < 0.5 else shape[1:]
        tensors[name] = np.zeros(shape, dtype=t.dtype)
        return f"{name} with shape {shape}"
    if t.size == 0:
        return "no-op"
    values = t.copy().reshape(-1)
    bad = (
        (np.nan, np.inf, -np.inf, 3.4e38, -1.0)
        if t.dtype.kind == "f"
        else (-1, 2**31 - 1, 0, -(2**31))
    )
    values[rng.randrange(values.size)] = rng.choice(bad)
    tensors[name] = values.reshape(t.shape)
    return f"one value of {name}"


@dataclass
class CheckpointEditResult:
    cases: int = 0
    checkpoint_errors: int = 0
    loaded: int = 0
    problems: list[str] = field(default_factory=list)


def run_checkpoint_edit_fuzz(
    folder: Path, *, cases: int = 400, seed: int = 0
) -> CheckpointEditResult:
    """Random edits of a checkpoint's metadata and tensors *with a recomputed
    checksum*: the loader's validation alone must catch them. Each load raises
    :class:`CheckpointError`, or gives an engine that works (counters add up,
    finite weights, trains, predicts, closes). Anything else is a problem."""
    res = CheckpointEditResult()
    rng = random.Random(seed)
    bases: list[bytes] = []
    for features, optimizer in ((None, "sgd"), (HashedFeatureEncoder(n_buckets=32), "adam")):
        engine = Engine(
            hidden_layers=(5,),
            features=features,
            optimizer=optimizer,
            history_size=8,
            targets=TARGETS,
            log_every=0,
            checkpoint_path=folder / "autosave.safetensors",  # edits may make it save: here
            checkpoint_every=10**9,
        )
        with engine:
            drain(engine.train_many([interaction(i) for i in range(20)]), 30)
            engine.save(folder / "base.safetensors")
        bases.append((folder / "base.safetensors").read_bytes())
    target = folder / "edited.safetensors"
    probe = interaction(1)
    with quiet_livelearn():
        for case in range(cases):
            _edit_case(res, rng, bases[case % len(bases)], target, probe)
    return res


def _edit_case(
    res: CheckpointEditResult,
    rng: random.Random,
    base: bytes,
    target: Path,
    probe: InteractionData,
) -> None:
    import json

    metadata, tensors = read_checkpoint_bytes(base)
    meta = json.loads(metadata["livelearn"])
    what = _edit_tensors(tensors, rng) if rng.random() < 0.3 else _edit_meta(meta, rng)
    metadata["livelearn"] = json.dumps(meta)
    target.write_bytes(rehashed(metadata, tensors))
    res.cases += 1
    try:
        engine = Engine.load(target, initialize=False)
    except CheckpointError as exc:
        res.checkpoint_errors += 1
        if str(target) not in str(exc) or "\n" in str(exc):
            res.problems.append(f"{what}: unclear message {exc}")
        return
    except Exception as exc:
        res.problems.append(f"{what}: {type(exc).__name__}: {exc}")
        return
    res.loaded += 1
    try:
        with engine:
            if not counters_add_up(engine) or not finite_state(engine.network.get_state()):
                res.problems.append(f"{what}: loaded an inconsistent engine")
            outcome = drain([engine.train_step(probe)], 30)[0]
            if not isinstance(outcome, (StepResult, InvalidInteraction)):
                res.problems.append(f"{what}: a step after loading gave {outcome!r}")
            engine.predict(probe)
    except Exception as exc:
        res.problems.append(f"{what}: the loaded engine failed: {type(exc).__name__}: {exc}")


def read_checkpoint_bytes(data: bytes) -> tuple[dict[str, str], dict[str, NDArray[Any]]]:
    """The raw metadata strings and tensors of a (valid) checkpoint file's bytes."""
    import json

    from safetensors.numpy import load as st_load

    n = struct.unpack("<Q", data[:8])[0]
    metadata = json.loads(data[8 : 8 + n])["__metadata__"]
    return metadata, dict(st_load(data))


class Gate:
    """A target callable that parks the dispatcher inside the batch of a "gate"
    step until :meth:`release`: a deterministic way to hold the queue full."""

    ACTION = "gate"

    def __init__(self, wait: float = 30.0) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.wait = wait

    def __call__(self, x: InteractionData) -> float:
        if x.action_type == self.ACTION:
            self.entered.set()
            if not self.released.wait(self.wait):
                raise RuntimeError("the test never released the gate")
            return 1.0
        return TARGETS.get(x.action_type, 1.0)

    def hold(self, engine: Engine) -> StepFuture[StepResult]:
        future = engine.train_step(InteractionData(self.ACTION, T0, "gatekeeper"))
        if not self.entered.wait(self.wait):
            raise RuntimeError("the dispatcher never picked up the gate step")
        return future

    def release(self) -> None:
        self.released.set()
