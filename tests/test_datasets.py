"""Tests for ``livelearn.datasets``: the embedded Open Bandit sample and the simulator.

The loader tests use only the file embedded in the package; the tests that compare it with
the original CSVs (and rebuild it) are skipped when ``../shared/data/open-bandit-sample``
is not available.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import math
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from livelearn.datasets import (
    CAMPAIGNS,
    SAMPLE_COLUMNS,
    SimulatedStream,
    load_sample,
    load_sample_frame,
    log_loss,
    simulate_interactions,
)
from livelearn.interaction import ContextValue, InteractionData

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = REPO_ROOT / ".." / "shared" / "data" / "open-bandit-sample"
MAKE_SAMPLE = REPO_ROOT / "benchmarks" / "make_sample.py"
CLICKS = {"all": 38, "men": 46, "women": 46}
N_PER_CAMPAIGN = 10_000

needs_source = pytest.mark.skipif(
    not all((SOURCE_DIR / f"random-{c}.csv").is_file() for c in CAMPAIGNS),
    reason=f"original Open Bandit CSVs not found in {SOURCE_DIR}",
)


def ctx(record: InteractionData) -> Mapping[str, ContextValue]:
    """The record's context; every record built by livelearn.datasets has one."""
    assert record.context is not None
    return record.context


def label(record: InteractionData) -> float:
    """The record's label; every record built by livelearn.datasets has a scalar one."""
    assert isinstance(record.label, float)
    return record.label


def micros(timestamp: float) -> int:
    """POSIX seconds -> integer microseconds; rounding absorbs float representation error."""
    return round(timestamp * 1_000_000)


# ---------------------------------------------------------------------------------------
# Embedded Open Bandit sample
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> list[InteractionData]:
    return load_sample()


def test_sample_has_all_records_in_timestamp_order(sample: list[InteractionData]) -> None:
    assert len(sample) == len(CAMPAIGNS) * N_PER_CAMPAIGN
    assert all(isinstance(record, InteractionData) for record in sample)
    timestamps = [record.timestamp for record in sample]
    assert timestamps == sorted(timestamps)
    # 24-30 November 2019, UTC.
    first = datetime.fromtimestamp(timestamps[0], tz=timezone.utc)
    last = datetime.fromtimestamp(timestamps[-1], tz=timezone.utc)
    assert (first.year, first.month, first.day) == (2019, 11, 24)
    assert (last.year, last.month, last.day) == (2019, 11, 30)


def test_sample_click_counts(sample: list[InteractionData]) -> None:
    labels = [label(record) for record in sample]
    assert set(labels) == {0.0, 1.0}
    assert sum(labels) == sum(CLICKS.values()) == 130  # about 0.43 % of 30,000
    per_campaign = Counter(ctx(r)["campaign"] for r in sample if label(r) == 1.0)
    assert per_campaign == CLICKS


def test_sample_record_mapping(sample: list[InteractionData]) -> None:
    for record in sample[:200]:
        campaign = ctx(record)["campaign"]
        features = [str(ctx(record)[f"user_feature_{k}"]) for k in range(4)]
        assert all(isinstance(ctx(record)[f"user_feature_{k}"], str) for k in range(4))
        assert campaign in CAMPAIGNS
        assert record.action_type.startswith(f"{campaign}:item_")
        assert int(record.action_type.split("_")[-1]) >= 0
        assert record.user_id == "-".join(features)
        assert all(len(f) == 8 and int(f, 16) >= 0 for f in features)
        assert ctx(record)["position"] in (1, 2, 3)
        assert set(ctx(record)) == {"position", "campaign", *SAMPLE_COLUMNS[6:]}


def test_sample_known_first_record() -> None:
    # First row of random-men.csv: 2019-11-24 00:03:13.442536+00:00, item 14, position 3.
    record = load_sample("men", limit=1)[0]
    assert record.action_type == "men:item_14"
    assert micros(record.timestamp) == 1_574_553_793_442_536
    assert ctx(record)["position"] == 3
    assert record.user_id == "cef3390e-03a5648a-7bc94a2d-9bde591f"
    assert record.label == 0.0


@pytest.mark.parametrize("campaign", CAMPAIGNS)
def test_sample_single_campaign(campaign: str, sample: list[InteractionData]) -> None:
    records = load_sample(campaign)
    assert len(records) == N_PER_CAMPAIGN
    assert {ctx(r)["campaign"] for r in records} == {campaign}
    assert sum(label(r) for r in records) == CLICKS[campaign]
    # Same records, same order, as the campaign's slice of the merged stream.
    merged = [r for r in sample if ctx(r)["campaign"] == campaign]
    assert [r.timestamp for r in records] == [r.timestamp for r in merged]
    assert [r.action_type for r in records] == [r.action_type for r in merged]


def test_sample_limit(sample: list[InteractionData]) -> None:
    head = load_sample(limit=25)
    assert [(r.timestamp, r.action_type) for r in head] == [
        (r.timestamp, r.action_type) for r in sample[:25]
    ]
    assert load_sample(limit=0) == []
    assert len(load_sample("women", limit=7)) == 7
    assert len(load_sample("all", limit=10**9)) == N_PER_CAMPAIGN
    with pytest.raises(ValueError, match="limit"):
        load_sample(limit=-1)


def test_sample_returns_fresh_objects() -> None:
    first, second = load_sample(limit=3), load_sample(limit=3)
    assert all(a is not b for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("bad", ["ALL", "kids", "", "men "])
def test_sample_bad_campaign(bad: str) -> None:
    with pytest.raises(ValueError, match="'all', 'men', 'women'"):
        load_sample(bad)
    with pytest.raises(ValueError, match="unknown campaign"):
        load_sample_frame(bad)


def test_sample_file_is_compact() -> None:
    resource = resources.files("livelearn.datasets").joinpath("data/open_bandit_sample.csv.gz")
    size = len(resource.read_bytes())
    assert 100_000 < size <= 600_000
    readme = resources.files("livelearn.datasets").joinpath("data/README.md").read_text("utf-8")
    assert "CC BY 4.0" in readme
    assert "https://creativecommons.org/licenses/by/4.0/" in readme


def test_sample_frame_matches_records(sample: list[InteractionData]) -> None:
    frame = load_sample_frame()
    assert tuple(frame) == SAMPLE_COLUMNS
    assert all(len(column) == len(sample) for column in frame.values())
    assert frame["timestamp"].dtype == np.float64
    assert frame["click"].dtype == np.int64
    assert int(frame["click"].sum()) == 130
    assert np.all(np.diff(frame["timestamp"]) >= 0)
    assert frame["timestamp"].tolist() == [r.timestamp for r in sample]
    assert frame["position"].tolist() == [ctx(r)["position"] for r in sample]
    actions = [f"{c}:item_{i}" for c, i in zip(frame["campaign"], frame["item_id"], strict=True)]
    assert actions == [r.action_type for r in sample]
    # Hash prefixes: per-column cardinalities of the merged sample (see data/README.md).
    assert [len(set(frame[f"user_feature_{k}"].tolist())) for k in range(4)] == [3, 5, 9, 8]
    # Uniform-random logging policy: one propensity per campaign, 1 / number of items.
    for campaign, n_items in (("all", 80), ("men", 34), ("women", 46)):
        mask = frame["campaign"] == campaign
        assert np.allclose(frame["propensity_score"][mask], 1.0 / n_items)
        assert len(set(frame["item_id"][mask].tolist())) == n_items


def test_sample_frame_filters() -> None:
    frame = load_sample_frame("men", limit=100)
    assert all(len(column) == 100 for column in frame.values())
    assert set(frame["campaign"].tolist()) == {"men"}


def _source_rows(campaign: str) -> list[tuple[int, int, int, int, float, tuple[str, ...]]]:
    """Rows of an original CSV as comparable tuples (hashes cut to 8 hex digits)."""
    with (SOURCE_DIR / f"random-{campaign}.csv").open(newline="", encoding="utf-8") as handle:
        return [
            (
                round(datetime.fromisoformat(row["timestamp"]).timestamp() * 1_000_000),
                int(row["item_id"]),
                int(row["position"]),
                int(row["click"]),
                float(row["propensity_score"]),
                tuple(row[f"user_feature_{k}"][:8] for k in range(4)),
            )
            for row in csv.DictReader(handle)
        ]


@needs_source
@pytest.mark.parametrize("campaign", CAMPAIGNS)
def test_sample_matches_source_csv(campaign: str) -> None:
    frame = load_sample_frame(campaign)
    embedded = list(
        zip(
            [micros(t) for t in frame["timestamp"].tolist()],
            frame["item_id"].tolist(),
            frame["position"].tolist(),
            frame["click"].tolist(),
            frame["propensity_score"].tolist(),
            zip(*(frame[f"user_feature_{k}"].tolist() for k in range(4)), strict=True),
            strict=True,
        )
    )
    assert embedded == _source_rows(campaign)


def _load_make_sample() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample", MAKE_SAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_source
def test_make_sample_reproduces_embedded_file(tmp_path: Path) -> None:
    output = tmp_path / "sample.csv.gz"
    _load_make_sample().main([str(SOURCE_DIR), "-o", str(output)])
    embedded = resources.files("livelearn.datasets").joinpath("data/open_bandit_sample.csv.gz")
    assert output.read_bytes() == embedded.read_bytes()


# ---------------------------------------------------------------------------------------
# Simulator
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream() -> SimulatedStream:
    return simulate_interactions()


def _fingerprint(s: SimulatedStream) -> list[tuple[object, ...]]:
    return [
        (r.action_type, r.timestamp, r.user_id, tuple(sorted(ctx(r).items())), label(r))
        for r in s.interactions
    ]


def test_simulator_shapes_and_types(stream: SimulatedStream) -> None:
    n = 20_000
    assert len(stream) == len(stream.interactions) == n
    assert stream.probabilities.shape == stream.labels.shape == (n,)
    assert stream.probabilities.dtype == stream.labels.dtype == np.float64
    assert all(isinstance(r, InteractionData) for r in stream.interactions)
    assert {r.action_type for r in stream.interactions} == {f"video_{a}" for a in range(20)}
    assert {r.user_id for r in stream.interactions} <= {f"user_{u}" for u in range(200)}
    assert [label(r) for r in stream.interactions] == stream.labels.tolist()
    assert set(stream.labels.tolist()) == {0.0, 1.0}
    for record in stream.interactions[:100]:
        assert set(ctx(record)) == {"device", "position"}
        assert ctx(record)["device"] in ("mobile", "desktop")
        assert ctx(record)["position"] in (1, 2, 3)


def test_simulator_is_deterministic_by_seed(stream: SimulatedStream) -> None:
    again = simulate_interactions(seed=0)
    assert np.array_equal(again.probabilities, stream.probabilities)
    assert np.array_equal(again.labels, stream.labels)
    assert _fingerprint(again) == _fingerprint(stream)
    other = simulate_interactions(seed=1)
    assert not np.array_equal(other.probabilities, stream.probabilities)


def test_simulator_arrays_are_read_only(stream: SimulatedStream) -> None:
    with pytest.raises(ValueError):
        stream.probabilities[0] = 0.5
    with pytest.raises(ValueError):
        stream.labels[0] = 1.0


def test_simulator_probabilities_in_open_interval(stream: SimulatedStream) -> None:
    p = stream.probabilities
    assert np.all((p > 0.0) & (p < 1.0))
    assert 0.10 <= float(p.mean()) <= 0.20
    assert math.isclose(float(p.mean()), 0.15, abs_tol=1e-9)  # b0 solved to the target
    assert float(p.std()) > 0.05  # real structure, not a constant


def test_simulator_click_rate_matches_probabilities(stream: SimulatedStream) -> None:
    p = stream.probabilities
    # Sum of independent Bernoullis: allow 4 standard deviations.
    tolerance = 4.0 * math.sqrt(float(np.sum(p * (1.0 - p)))) / len(p)
    assert abs(stream.click_rate - float(p.mean())) < tolerance


def test_simulator_bayes_beats_base_rate(stream: SimulatedStream) -> None:
    bayes, base = stream.bayes_log_loss(), stream.base_rate_log_loss()
    assert 0.0 < bayes < base - 0.05
    assert stream.log_loss(stream.probabilities) == bayes


def test_simulator_device_and_position_effects(stream: SimulatedStream) -> None:
    device = np.array([ctx(r)["device"] for r in stream.interactions])
    position = np.array([ctx(r)["position"] for r in stream.interactions])
    p = stream.probabilities
    assert p[device == "mobile"].mean() > p[device == "desktop"].mean() + 0.02
    assert stream.labels[device == "mobile"].mean() > stream.labels[device == "desktop"].mean()
    assert p[position == 1].mean() > p[position == 2].mean() > p[position == 3].mean()


def test_simulator_timestamps(stream: SimulatedStream) -> None:
    timestamps = np.array([r.timestamp for r in stream.interactions])
    assert np.all(np.diff(timestamps) >= 0)
    assert timestamps[0] > 1_700_000_000.0
    span_days = (timestamps[-1] - timestamps[0]) / 86_400
    assert 6.5 < span_days < 7.5


def test_simulator_options() -> None:
    small = simulate_interactions(500, n_users=5, n_actions=3, seed=9, start=0.0, days=1.0)
    assert len(small) == 500
    assert {r.user_id for r in small.interactions} <= {f"user_{u}" for u in range(5)}
    assert {r.action_type for r in small.interactions} <= {"video_0", "video_1", "video_2"}
    assert 0.0 < small.interactions[0].timestamp < small.interactions[-1].timestamp < 86_400
    noise = simulate_interactions(2_000, signal=0.0, click_rate=0.3)
    assert np.allclose(noise.probabilities, 0.3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_events": 0},
        {"n_users": 0},
        {"n_actions": -1},
        {"n_factors": 0},
        {"click_rate": 0.0},
        {"click_rate": 1.0},
        {"days": 0.0},
        {"signal": -1.0},
    ],
)
def test_simulator_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        simulate_interactions(**kwargs)  # type: ignore[arg-type]


def test_log_loss() -> None:
    assert math.isclose(log_loss([1.0, 0.0], [0.5, 0.5]), math.log(2.0))
    assert math.isfinite(log_loss([1.0], [0.0]))  # clipped, not infinite
    with pytest.raises(ValueError, match="shape"):
        log_loss([1.0, 0.0], [0.5])


def _python_calls(action: Callable[[], object]) -> int:
    """How many Python functions and builtins ``action`` calls (in this thread).

    A count of the interpreter's work that, unlike a clock, no other process on
    the machine can change: the same call always gives the same number.
    """
    calls = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.slow
def test_simulator_is_fast_enough() -> None:
    """The simulator costs a constant (the vectorised draws) plus a small, fixed
    amount of Python per event (one InteractionData), so 200k events take about
    3 s. Measured in calls, not seconds: a wall-clock bound (once ``< 10 s``)
    failed on a busy machine (12-21 s beside CPU-bound processes)."""
    simulate_interactions(100)  # imports and first-call caches stay out of the counts
    sizes = (5_000, 10_000, 20_000)
    calls = [_python_calls(functools.partial(simulate_interactions, n)) for n in sizes]
    first, second = calls[1] - calls[0], calls[2] - calls[1]
    per_event = first / (sizes[1] - sizes[0])
    # Linear: events 10k-20k cost twice what events 5k-10k did (no per-event
    # cost grows with the stream, as re-sorting or copying per event would).
    assert second == pytest.approx(2 * first, rel=0.02), calls
    # About 16 calls per event today (InteractionData's checks); at most twice that.
    assert per_event <= 32, calls
    fixed = calls[0] - per_event * sizes[0]
    assert fixed <= 5_000, calls  # the draws are vectorised, not one call per event
    assert len(simulate_interactions(200_000)) == 200_000
