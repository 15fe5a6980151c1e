"""Tests of :mod:`livelearn.evaluate`: progressive validation as a library call."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from livelearn import Engine, HashedFeatureEncoder, InteractionData, TargetMapper
from livelearn.evaluate import ProgressiveResult, progressive_val_score, score_predictions
from livelearn.metrics_offline import log_losses, roc_auc, running_base_rate, running_mean

TARGETS = {"click": 1.0, "view": 0.0}


def stream(n: int) -> list[InteractionData]:
    # Rejected: every 7th event has no target ("scroll"), every 11th a non-number under a
    # numeric key.
    out = []
    for i in range(n):
        action = "scroll" if i % 7 == 3 else ("click" if i % 3 == 0 else "view")
        price: object = "free" if i % 11 == 5 else float(i % 4)
        out.append(InteractionData(action, 1.6e9 + 60.0 * i, f"u{i % 9}", {"price": price}))
    return out


def engine() -> Engine:
    return Engine(
        features=HashedFeatureEncoder(n_buckets=64, numeric_keys=["price"]),
        targets=TARGETS,
        seed=1,
        log_every=0,
    )


def test_counts_arrays_and_scores_agree_with_the_stream() -> None:
    xs = stream(400)
    with engine() as e:
        result = progressive_val_score(e, xs, chunk_size=64)
        stats = e.stats()
    assert isinstance(result, ProgressiveResult)
    assert result.events == 400
    assert result.trained + result.skipped + result.rejected + result.failed == 400
    assert (result.trained, result.skipped, result.rejected) == (
        stats.steps,
        stats.skipped,
        stats.rejected,
    )
    bad = [i for i in range(400) if i % 11 == 5 or i % 7 == 3]
    assert (result.rejected, result.skipped, result.failed) == (len(bad), 0, 0)
    # One entry per trained event, pointing back into the stream.
    n = result.trained
    assert result.targets.shape == result.predictions.shape == result.positions.shape == (n,)
    assert result.positions.dtype == np.int64 and (np.diff(result.positions) > 0).all()
    expected = [TARGETS[xs[i].action_type] for i in result.positions]
    assert result.targets.tolist() == expected
    assert ((result.predictions > 0) & (result.predictions < 1)).all()
    # Rejections name the event and say why.
    assert [i for i, _ in result.rejections] == bad
    for i, reason in result.rejections:
        assert ("price" if i % 11 == 5 else "no target for action type 'scroll'") in reason
    # Scores are the offline metrics of exactly these arrays.
    s = result.scores
    assert s.metric == "log loss"
    y, p = result.targets, result.predictions
    assert s.model == pytest.approx(float(log_losses(y, p).mean()))
    assert s.baseline == pytest.approx(float(log_losses(y, running_base_rate(y)).mean()))
    assert s.model_auc == roc_auc(y, p)
    assert s.baseline_auc == roc_auc(y, running_base_rate(y))
    assert result.seconds > 0 and result.events_per_second == result.events / result.seconds


def test_any_iterable_is_consumed_once() -> None:
    xs = stream(150)
    consumed: list[int] = []

    def generate() -> Iterator[InteractionData]:
        for i, x in enumerate(xs):
            consumed.append(i)
            yield x

    with engine() as e:
        from_generator = progressive_val_score(e, generate(), chunk_size=32)
    with engine() as e:
        from_list = progressive_val_score(e, xs, chunk_size=32)
    assert consumed == list(range(150))
    for name in ("events", "trained", "skipped", "rejected", "failed"):
        assert getattr(from_generator, name) == getattr(from_list, name)
    assert from_generator.positions.tolist() == from_list.positions.tolist()
    assert from_generator.targets.tolist() == from_list.targets.tolist()


def test_on_every_runs_at_chunk_boundaries_with_earlier_steps_finished() -> None:
    xs = [InteractionData("click" if i % 2 else "view", 1e9 + i, i % 5) for i in range(1000)]
    seen: list[tuple[int, int]] = []
    with Engine(targets=TARGETS, log_every=0) as e:

        def save() -> None:
            stats = e.stats()
            seen.append((stats.steps, stats.pending))

        progressive_val_score(e, xs, chunk_size=100, every=250, on_every=save)
    assert seen == [(300, 0), (600, 0), (900, 0)]


def test_regression_scores_use_squared_error() -> None:
    xs = [InteractionData("rate", 1e9 + i, i % 3, label=float(i % 5)) for i in range(200)]
    with Engine(loss="mse", log_every=0) as e:
        result = progressive_val_score(e, xs)
    s = result.scores
    assert s.metric == "MSE" and s.model_auc is None and s.baseline_auc is None
    y = result.targets
    assert s.baseline == pytest.approx(float(((y - running_mean(y)) ** 2).mean()))


def test_multi_output_engine_counts_but_keeps_no_arrays() -> None:
    mapper = TargetMapper({"click": [1.0, 0.0], "view": [0.0, 1.0]}, n_outputs=2)
    xs = [InteractionData("click" if i % 2 else "view", 1e9 + i, i) for i in range(50)]
    with Engine(targets=mapper, log_every=0) as e:
        result = progressive_val_score(e, xs)
    assert result.trained == 50 and result.targets.size == 0 and result.scores.model is None


def test_an_uninitialised_engine_skips_every_step() -> None:
    e = engine()
    try:
        result = progressive_val_score(e, stream(20))
    finally:
        e.close()
    assert (result.skipped, result.trained, result.targets.size) == (20, 0, 0)


def test_empty_stream() -> None:
    with engine() as e:
        result = progressive_val_score(e, [])
    assert (result.events, result.trained) == (0, 0)
    assert result.scores.model is None and result.scores.model_auc is None


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": True}, "chunk_size"),
        ({"chunk_size": 2.0}, "chunk_size"),
        ({"every": 0}, "every"),
        ({"loss": "hinge"}, "loss"),
    ],
)
def test_bad_arguments_raise_before_training(kwargs: dict[str, object], needle: str) -> None:
    with engine() as e:
        with pytest.raises(ValueError, match=needle):
            progressive_val_score(e, stream(10), **kwargs)  # type: ignore[arg-type]
        assert e.stats().interactions == 0


def test_score_predictions_by_hand() -> None:
    s = score_predictions([1.0, 0.0], [0.5, 0.25])
    assert s.metric == "log loss"
    assert s.model == pytest.approx((math.log(2) - math.log(0.75)) / 2)
    # Base rate before each label: 0.5, then (1 + 0.5) / (1 + 1) = 0.75.
    assert s.baseline == pytest.approx((math.log(2) - math.log(0.25)) / 2)
    assert s.model_auc == 1.0 and s.baseline_auc == 0.0
    assert s.model_curve.tolist() == pytest.approx([math.log(2), -math.log(0.75)])
    # Targets outside [0, 1] cannot be scored by log loss: squared error instead.
    assert score_predictions([2.0, 0.0], [1.0, 0.0]).metric == "MSE"
    assert score_predictions([0.3, 0.6], [0.3, 0.6]).model_auc is None  # not 0/1 labels
    empty = score_predictions([], [])
    assert empty.model is None and empty.baseline is None and empty.model_curve.size == 0


def test_score_predictions_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        score_predictions([1.0, 0.0], [0.5])
    with pytest.raises(ValueError, match="loss"):
        score_predictions([1.0], [0.5], loss="hinge")
