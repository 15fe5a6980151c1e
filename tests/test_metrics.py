"""livelearn.metrics: Prometheus exposition of engine statistics."""

from __future__ import annotations

import doctest
import math

import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from livelearn import Engine, InteractionData  # noqa: E402
from livelearn.metrics import register  # noqa: E402


def _scrape(registry: CollectorRegistry) -> dict[str, float]:
    """Every sample of the text exposition, by name (plus ``{le=...}`` for buckets)."""
    text = generate_latest(registry).decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            le = sample.labels.get("le")
            samples[sample.name if le is None else f"{sample.name}{{le={le}}}"] = sample.value
    return samples


def _events(n: int) -> list[InteractionData]:
    return [InteractionData("click" if i % 3 else "skip", 1.7e9 + i, f"u{i % 5}") for i in range(n)]


def test_counters_and_gauges_follow_engine_stats() -> None:
    registry = CollectorRegistry()
    engine = Engine(targets={"click": 1.0, "skip": 0.0}, log_every=0)
    register(engine, registry)
    before = _scrape(registry)
    assert before["livelearn_steps_total"] == 0.0
    assert math.isnan(before["livelearn_loss"]) and math.isnan(before["livelearn_mean_loss"])
    engine.initialize()
    futures = [engine.train_step(event) for event in _events(30)]
    futures.append(engine.train_step(InteractionData("view", 1.7e9, "u1")))  # no target
    for future in futures[:-1]:
        assert future.result(timeout=30).trained
    with pytest.raises(ValueError):
        futures[-1].result(timeout=30)
    engine.close()
    after = _scrape(registry)
    stats = engine.stats()
    assert after["livelearn_steps_total"] == 30.0
    assert after["livelearn_interactions_total"] == 31.0
    assert after["livelearn_rejected_total"] == 1.0
    assert after["livelearn_skipped_total"] == 0.0
    assert after["livelearn_failed_total"] == 0.0
    assert after["livelearn_pending"] == 0.0
    assert after["livelearn_loss"] == pytest.approx(stats.last_loss)
    assert after["livelearn_mean_loss"] == pytest.approx(stats.mean_loss)
    assert after["livelearn_recent_loss"] == pytest.approx(stats.recent_loss)
    assert after["livelearn_last_example_timestamp"] == pytest.approx(1.7e9 + 29)
    # Sampling is off by default: the histogram exists, empty, and train_step is untouched.
    assert after["livelearn_step_latency_seconds_count"] == 0.0
    assert "train_step" not in vars(engine)


def test_latency_histogram_samples_one_submission_in_n() -> None:
    registry = CollectorRegistry()
    with Engine(targets={"click": 1.0, "skip": 0.0}, log_every=0) as engine:
        collector = register(engine, registry, latency_sample_every=4)
        futures = [engine.train_step(event) for event in _events(40)]
        for future in futures:
            future.result(timeout=30)
    # close() joined the dispatcher, which ran every done-callback.
    samples = _scrape(registry)
    assert samples["livelearn_step_latency_seconds_count"] == 10.0  # submissions 0, 4, ... 36
    assert samples["livelearn_step_latency_seconds_bucket{le=+Inf}"] == 10.0
    assert samples["livelearn_step_latency_seconds_sum"] > 0.0
    buckets = [
        v for k, v in samples.items() if k.startswith("livelearn_step_latency_seconds_bucket{")
    ]
    assert len(buckets) == 16 and buckets == sorted(buckets)  # cumulative, +Inf last
    collector.unregister()
    assert "train_step" not in vars(engine)
    assert list(registry.collect()) == []


def test_one_engine_per_registry_and_argument_checks() -> None:
    registry = CollectorRegistry()
    first = Engine(targets={"click": 1.0}, log_every=0)
    second = Engine(targets={"click": 1.0}, log_every=0)
    register(first, registry)
    with pytest.raises(ValueError, match="Duplicated"):
        register(second, registry, latency_sample_every=8)
    assert "train_step" not in vars(second)  # the failed registration left no hook
    assert second._submit_hooks == []
    with pytest.raises(ValueError, match="latency_sample_every"):
        register(second, CollectorRegistry(), latency_sample_every=-1)
    with pytest.raises(ValueError, match="buckets"):
        register(second, CollectorRegistry(), buckets=[-1.0])


def test_docstring_examples() -> None:
    import livelearn.metrics

    assert doctest.testmod(livelearn.metrics).failed == 0


def test_latency_histogram_times_train_many_submissions_too() -> None:
    registry = CollectorRegistry()
    with Engine(targets={"click": 1.0, "skip": 0.0}, log_every=0) as engine:
        collector = register(engine, registry, latency_sample_every=4)
        futures = engine.train_many(_events(10))  # steps 0, 4, 8
        futures += [engine.train_step(event) for event in _events(6)]  # steps 10..15: 12
        futures += engine.train_many(_events(5))  # steps 16..20: 16, 20
        for future in futures:
            future.result(timeout=30)
    samples = _scrape(registry)
    assert samples["livelearn_step_latency_seconds_count"] == 6.0
    collector.unregister()
    assert engine._submit_hooks == []  # the hook is gone, nothing else is installed
    assert list(registry.collect()) == []
