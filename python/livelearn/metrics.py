"""Prometheus metrics for an :class:`~livelearn.Engine` (optional extra ``metrics``).

:func:`register` adds a collector to a ``prometheus_client`` registry. Counters and
gauges are read from :meth:`Engine.stats` *at scrape time*, so they cost the
training path nothing:

=====================================  =======  ==========================================
metric                                 type     value
=====================================  =======  ==========================================
``livelearn_interactions_total``       counter  interactions submitted
``livelearn_steps_total``              counter  interactions trained
``livelearn_skipped_total``            counter  skipped (engine not started, dropped)
``livelearn_rejected_total``           counter  rejected (invalid, or non-finite step)
``livelearn_failed_total``             counter  failed (unexpected error)
``livelearn_pending``                  gauge    submitted, not yet resolved
``livelearn_loss``                     gauge    loss of the last trained step
``livelearn_mean_loss``                gauge    mean loss of all trained steps
``livelearn_recent_loss``              gauge    moving average of the loss (weight 0.01)
``livelearn_last_example_timestamp``   gauge    timestamp of the newest trained interaction
``livelearn_step_latency_seconds``     histo.   submit-to-resolution latency (opt-in)
=====================================  =======  ==========================================

An engine with delayed feedback (``Engine(feedback_timeout=...)``) also exports
its loop and live quality, from :attr:`EngineStats.feedback
<livelearn.results.EngineStats>`: counters ``livelearn_feedback_<name>_total``
for ``predictions``, ``joined``, ``expired_trained``, ``expired_dropped``,
``evicted_trained``, ``evicted_dropped``, ``feedbacks``, ``duplicate``,
``late``, ``unknown``, ``invalid``, ``corrections``, ``sampled_out`` and
``drift_alarms``; gauges ``livelearn_feedback_awaiting``, ``_join_rate``,
``_window_log_loss``, ``_auc``, ``_calibration`` and the percentiles
``_delay_seconds{quantile=...}`` and ``_train_lag_seconds{quantile=...}``
(``0.5``, ``0.9``, ``0.99``); ``NaN`` while undefined.

Losses are ``NaN`` until the first trained step.

The latency histogram is opt-in: with ``latency_sample_every=N`` :func:`register`
installs a submit hook (:meth:`Engine.add_submit_hook`) that timestamps one
submitted step in ``N``, whether it came from ``train_step``, ``train_step_async``
or ``train_many``, and observes its latency from an ``add_done_callback`` when the
step resolves. The hook is a Python call on the hot path: measured with
``benchmarks/metrics_overhead.py`` on a shared 2-core development machine
(4-16-8-1 network, default encoder, 100,000 ``train_step`` calls, best of 5),
submitting and training cost about 2.5 µs per event unregistered or with
sampling off, 2.7 µs (+10 %) with ``N=64`` and 4.4 µs (+80 %) with ``N=1`` (numbers
of the earlier wrapper around ``train_step``; the hook does the same work). The
default, ``N=0``, installs nothing and leaves the histogram empty;
:meth:`EngineCollector.unregister` removes the hook.

Example:
    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> from livelearn import Engine, InteractionData
    >>> from livelearn.metrics import register
    >>> registry = CollectorRegistry()
    >>> with Engine(targets={"click": 1.0}) as engine:
    ...     collector = register(engine, registry)
    ...     _ = engine.train_step(InteractionData("click", 0.0, "u1")).result()
    >>> "livelearn_steps_total 1.0" in generate_latest(registry).decode()
    True
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from livelearn.engine import Engine

__all__ = ["DEFAULT_BUCKETS", "EngineCollector", "register"]

#: Histogram bucket upper bounds in seconds (``+Inf`` is added).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

_LATENCY = "livelearn_step_latency_seconds"
_COUNTERS = (
    ("interactions", "Interactions submitted to the engine."),
    ("steps", "Interactions trained (one native training step each)."),
    ("skipped", "Interactions skipped (engine not started, or dropped on overload)."),
    ("rejected", "Interactions rejected (invalid input or a non-finite step)."),
    ("failed", "Interactions that failed with an unexpected error."),
)
_GAUGES = (
    ("pending", "pending", "Interactions submitted but not yet resolved."),
    ("loss", "last_loss", "Loss of the last trained step (NaN before the first)."),
    ("mean_loss", "mean_loss", "Mean loss of all trained steps (NaN before the first)."),
    ("recent_loss", "recent_loss", "Exponential moving average of the loss (weight 0.01)."),
    (
        "last_example_timestamp",
        "last_example_time",
        "Timestamp (POSIX seconds) of the newest trained interaction.",
    ),
)


_FEEDBACK_COUNTERS = (
    ("predictions", "Predictions made with an event_id (awaiting an outcome)."),
    ("joined", "Examples that left with their outcome (joined)."),
    ("expired_trained", "Examples whose window closed: trained with the default label."),
    ("expired_dropped", "Examples whose window closed: dropped (no default label)."),
    ("evicted_trained", "Examples evicted early (max_awaiting) and trained."),
    ("evicted_dropped", "Examples evicted early (max_awaiting) and dropped."),
    ("feedbacks", "Feedback calls counted by the join (matched + duplicate + late + unknown)."),
    ("duplicate", "Feedback for an id whose outcome was already taken, or aggregated."),
    ("late", "Feedback after the id's window closed."),
    ("unknown", "Feedback for an unknown or forgotten id."),
    ("invalid", "Feedback calls refused as invalid (label, id or time)."),
    ("corrections", "Late outcomes trained as corrections (late_policy='correct')."),
    ("sampled_out", "Negatives left out by negative sampling."),
    ("drift_alarms", "Page-Hinkley drift alarms on the live log loss."),
)
_FEEDBACK_GAUGES = (
    ("awaiting", "awaiting", "Examples awaiting their outcome."),
    ("join_rate", "join_rate", "Share of the examples that left with their outcome."),
    ("window_log_loss", "log_loss", "Log loss of the served predictions over the window."),
    ("auc", "auc", "ROC AUC of the served predictions over the window."),
    ("calibration", "calibration", "Mean prediction / mean label over the window."),
)
_FEEDBACK_QUANTILES = (
    ("delay_seconds", "delay", "Feedback delay percentiles (outcome time - prediction time)."),
    ("train_lag_seconds", "train_lag", "Seconds from a labelled example queued to applied."),
)


def _feedback_metrics(f: Any) -> Iterator[Metric]:
    """The delayed-feedback families of one :class:`~livelearn.results.FeedbackStats`
    (families without samples when ``f`` is None)."""
    for name, doc in _FEEDBACK_COUNTERS:
        family = CounterMetricFamily(f"livelearn_feedback_{name}", doc)
        if f is not None:
            family.add_metric([], float(getattr(f, name)))
        yield family
    for name, field, doc in _FEEDBACK_GAUGES:
        gauge = GaugeMetricFamily(f"livelearn_feedback_{name}", doc)
        if f is not None:
            value = getattr(f, field)
            gauge.add_metric([], math.nan if value is None else float(value))
        yield gauge
    for name, field, doc in _FEEDBACK_QUANTILES:
        gauge = GaugeMetricFamily(f"livelearn_feedback_{name}", doc, labels=["quantile"])
        if f is not None:
            for q, suffix in (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99")):
                value = getattr(f, f"{field}_{suffix}")
                gauge.add_metric([q], math.nan if value is None else float(value))
        yield gauge


class _Histogram:
    """Bucket counts and sum, updated from done-callbacks (any thread)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or any(not b > 0 or math.isnan(b) for b in bounds):
            raise ValueError(f"buckets: must be positive numbers, got {list(buckets)!r}")
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0
        self.lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(self.bounds, seconds)
        with self.lock:
            self.counts[i] += 1
            self.total += seconds

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        with self.lock:
            counts = list(self.counts)
            total = self.total
        cumulative = list(itertools.accumulate(counts))
        labels = ["+Inf" if b == math.inf else repr(b) for b in self.bounds]
        return list(zip(labels, map(float, cumulative), strict=True)), total


class EngineCollector(Collector):
    """A Prometheus collector for one engine; build it with :func:`register`.

    Holds the engine weakly: once the engine is garbage, the collector reports
    nothing. Metric names are fixed, so a registry holds one engine's collector;
    give each engine its own :class:`~prometheus_client.CollectorRegistry`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        latency_sample_every: int = 0,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        if isinstance(latency_sample_every, bool) or not isinstance(latency_sample_every, int):
            raise ValueError("latency_sample_every: must be an int >= 0")
        if latency_sample_every < 0:
            raise ValueError("latency_sample_every: must be an int >= 0")
        self._engine = weakref.ref(engine)
        self._every = latency_sample_every
        self._histogram = _Histogram(buckets)
        self._registry: CollectorRegistry | None = None
        self._hook: Callable[[Sequence[Future[Any]]], None] | None = None
        if latency_sample_every:
            self._install(engine)

    @property
    def latency_sample_every(self) -> int:
        """One submission in this many is timed (0: none)."""
        return self._every

    def _install(self, engine: Engine) -> None:
        every = self._every
        position = [0]  # steps submitted so far
        observe = self._histogram.observe
        clock = time.perf_counter

        def on_submit(futures: Sequence[Future[Any]]) -> None:
            # One step in ``every``, counted across calls (train_many included).
            # Unlocked: concurrent producers may only shift which step is sampled.
            k, n = position[0], len(futures)
            position[0] = k + n
            offset = (-k) % every
            if offset >= n:
                return
            start = clock()
            done: Callable[[Future[Any]], None] = lambda _: observe(clock() - start)  # noqa: E731
            for future in futures[offset::every]:
                future.add_done_callback(done)

        engine.add_submit_hook(on_submit)
        self._hook = on_submit

    def unregister(self) -> None:
        """Remove the collector from its registry and the latency hook from the engine."""
        if self._registry is not None:
            self._registry.unregister(self)
            self._registry = None
        engine = self._engine()
        if self._hook is not None and engine is not None:
            engine.remove_submit_hook(self._hook)
        self._hook = None

    def collect(self) -> Iterator[Metric]:
        """The metric families, read from :meth:`Engine.stats` now."""
        engine = self._engine()
        if engine is None:
            return
        stats = engine.stats()
        for name, doc in _COUNTERS:
            yield CounterMetricFamily(f"livelearn_{name}", doc, value=float(getattr(stats, name)))
        for name, field, doc in _GAUGES:
            value = getattr(stats, field)
            yield GaugeMetricFamily(
                f"livelearn_{name}", doc, value=math.nan if value is None else float(value)
            )
        buckets, total = self._histogram.snapshot()
        yield HistogramMetricFamily(_LATENCY, self._latency_doc(), buckets=buckets, sum_value=total)
        if stats.feedback is not None:
            yield from _feedback_metrics(stats.feedback)

    def _latency_doc(self) -> str:
        sampled = f"one submission in {self._every}" if self._every else "none: sampling is off"
        return f"Seconds from submission to the resolution of its Future (sampled: {sampled})."

    def describe(self) -> Iterator[Metric]:
        """The metric families without samples (lets the registry detect duplicates)."""
        for name, doc in _COUNTERS:
            yield CounterMetricFamily(f"livelearn_{name}", doc)
        for name, _, doc in _GAUGES:
            yield GaugeMetricFamily(f"livelearn_{name}", doc)
        yield HistogramMetricFamily(_LATENCY, self._latency_doc())
        engine = self._engine()
        if engine is not None and engine.stats().feedback is not None:
            yield from _feedback_metrics(None)


def register(
    engine: Engine,
    registry: CollectorRegistry | None = None,
    *,
    latency_sample_every: int = 0,
    buckets: Sequence[float] = DEFAULT_BUCKETS,
) -> EngineCollector:
    """Expose ``engine``'s statistics as ``livelearn_*`` metrics in ``registry``.

    Args:
        engine: the engine to observe.
        registry: where to register (default: ``prometheus_client.REGISTRY``).
        latency_sample_every: time one submitted step in this many for
            ``livelearn_step_latency_seconds``; 0 (default) installs no hook and
            leaves the histogram empty (see the module docs for the cost).
        buckets: latency histogram bucket bounds in seconds.

    Returns:
        The collector; call :meth:`EngineCollector.unregister` to undo.

    Raises:
        ValueError: the registry already has ``livelearn_*`` metrics (one engine
            per registry), or an argument is invalid.
    """
    collector = EngineCollector(engine, latency_sample_every=latency_sample_every, buckets=buckets)
    target = REGISTRY if registry is None else registry
    try:
        target.register(collector)
    except BaseException:
        collector.unregister()
        raise
    collector._registry = target
    return collector
