"""Live quality over a window: known answers, bounds, the drift alarm, threads."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading

import numpy as np
import pytest

from livelearn.metrics_offline import log_losses
from livelearn.monitoring import InvalidObservation, MonitorSnapshot, PageHinkley, QualityMonitor


def brute_force_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos = scores[labels > 0.5]
    neg = scores[labels <= 0.5]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def stream(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, n)
    y = (rng.random(n) < p).astype(np.float64)
    return p, y


def feed(m: QualityMonitor, p: np.ndarray, y: np.ndarray) -> None:
    for a, b in zip(p, y, strict=True):
        m.update(float(a), float(b))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_window_metrics_match_known_answers(seed: int) -> None:
    p, y = stream(seed, 700)
    p = np.round(p, 2)  # ties, so the tie rule is checked too
    m = QualityMonitor(window=300, drift=PageHinkley(threshold=1e9))
    feed(m, p, y)
    snap = m.snapshot()
    wp, wy = p[-300:], y[-300:]
    assert (snap.count, snap.window_count) == (700, 300)
    assert snap.log_loss == pytest.approx(float(log_losses(wy, wp).mean()), rel=1e-12)
    assert snap.auc == pytest.approx(brute_force_auc(wy, wp), rel=1e-12)
    assert snap.calibration == pytest.approx(wp.mean() / wy.mean(), rel=1e-12)
    assert snap.mean_prediction == pytest.approx(wp.mean(), rel=1e-12)


def test_running_sums_do_not_drift_over_many_windows() -> None:
    p, y = stream(5, 20_000)
    m = QualityMonitor(window=64)
    feed(m, p, y)
    assert m.snapshot().log_loss == pytest.approx(
        float(log_losses(y[-64:], p[-64:]).mean()), rel=1e-12
    )


def test_undefined_values_are_none() -> None:
    m = QualityMonitor(window=10)
    empty = m.snapshot()
    assert (empty.log_loss, empty.auc, empty.calibration, empty.delay_p50) == (None,) * 4
    m.update(0.3, 0.0)
    m.update(0.4, 0.0)
    snap = m.snapshot()
    assert snap.auc is None and snap.calibration is None  # one class, mean label 0
    assert snap.log_loss is not None


def test_percentiles_of_delay_and_lag_over_their_window() -> None:
    m = QualityMonitor(window=10, delay_window=100)
    for d in range(1000):
        m.record_delay(float(d))
        m.record_train_lag(float(d) / 10)
    snap = m.snapshot()
    recent = np.arange(900, 1000, dtype=np.float64)
    assert snap.delay_count == 1000
    assert (snap.delay_p50, snap.delay_p90, snap.delay_p99) == tuple(
        np.percentile(recent, [50, 90, 99]).tolist()
    )
    assert snap.train_lag_p99 == pytest.approx(float(np.percentile(recent / 10, 99)))


def test_memory_is_fixed_by_the_window() -> None:
    m = QualityMonitor(window=50, delay_window=20)
    feed(m, *stream(0, 5000))
    for _ in range(5000):
        m.record_delay(1.0)
    assert len(m._loss.data) == 50 and len(m._delay.data) == 20
    assert m.snapshot().window_count == 50


def test_snapshot_is_a_frozen_dataclass() -> None:
    snap = QualityMonitor().snapshot()
    assert isinstance(snap, MonitorSnapshot)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.count = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("call", "value"),
    [
        ("prediction", float("nan")),
        ("prediction", 1.5),
        ("label", -0.1),
        ("label", "1"),
        ("delay", -1.0),
        ("delay", float("inf")),
    ],
)
def test_bad_values_raise_and_record_nothing(call: str, value: object) -> None:
    m = QualityMonitor(window=10)
    m.update(0.5, 1.0)
    before = m.snapshot()
    with pytest.raises(InvalidObservation):
        if call == "prediction":
            m.update(value, 1.0)  # type: ignore[arg-type]
        elif call == "label":
            m.update(0.5, value)  # type: ignore[arg-type]
        else:
            m.record_delay(value)  # type: ignore[arg-type]
    assert m.snapshot() == before


def test_bad_configuration_is_refused() -> None:
    for kw in ({"window": 0}, {"delay_window": 0}, {"window": 2.5}):
        with pytest.raises(InvalidObservation):
            QualityMonitor(**kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidObservation):
        PageHinkley(delta=-1.0)


# ------------------------------------------------------------------ drift
@pytest.mark.parametrize("seed", range(4))
def test_page_hinkley_is_quiet_on_a_stationary_stream(seed: int) -> None:
    m = QualityMonitor(window=1000)
    feed(m, *stream(seed, 20_000))
    assert m.drift_alarms == 0


@pytest.mark.parametrize("seed", range(4))
def test_page_hinkley_fires_once_on_a_planted_loss_shift(
    seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    p, y = stream(seed, 6000)
    m = QualityMonitor(window=1000)
    with caplog.at_level(logging.WARNING, logger="livelearn"):
        feed(m, p[:5000], y[:5000])
        assert m.drift_alarms == 0
        feed(m, 1.0 - p[5000:5300], y[5000:5300])  # the model turns wrong
    assert m.drift_alarms >= 1
    snap = m.snapshot()
    assert snap.last_alarm_at is not None and 5000 < snap.last_alarm_at <= 5300
    alarms = [r for r in caplog.records if "drift alarm" in r.getMessage()]
    assert len(alarms) == m.drift_alarms and alarms[0].levelno == logging.WARNING


def test_page_hinkley_known_statistic() -> None:
    ph = PageHinkley(delta=0.0, threshold=100.0, min_instances=1, alpha=1.0)
    for x in [1.0, 1.0, 1.0]:
        assert not ph.update(x)
    assert ph.statistic == 0.0
    ph.update(5.0)  # mean 2, cumulative 3
    assert ph.statistic == pytest.approx(3.0)


# ------------------------------------------------------------------ threads
def test_concurrent_updates_are_all_counted() -> None:
    m = QualityMonitor(window=100_000, drift=PageHinkley(threshold=1e9))
    p, y = stream(0, 8000)
    start = threading.Barrier(9)

    def work(k: int) -> None:
        start.wait(timeout=30)
        feed(m, p[k * 1000 : (k + 1) * 1000], y[k * 1000 : (k + 1) * 1000])
        m.record_delay(float(k))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    start.wait(timeout=30)
    for _ in range(20):
        m.snapshot()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    snap = m.snapshot()
    assert (snap.count, snap.delay_count) == (8000, 8)
    assert snap.log_loss == pytest.approx(float(log_losses(y, p).mean()), rel=1e-9)
