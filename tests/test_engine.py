"""``livelearn.Engine``: every stage of one training step and every error path.

A step goes: validation -> preprocessing (features) -> target generation ->
forward prediction -> backward/update -> bookkeeping (counters, history, loss
log) -> resolution of its Future. Each stage is checked against an
independent computation (the encoder, a shadow ``Network`` fed the same
examples, the BCE formula), never against the engine's own numbers.

Tests that need the dispatcher parked at a known point use :class:`Gate`: a
target callable that blocks while it computes the target of a "gate"
interaction, so everything submitted afterwards stays queued until the test
releases it. No test has a timing threshold; ``WAIT`` only bounds how long a
broken engine can hang the suite.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

import livelearn
from livelearn import (
    Engine,
    EngineClosed,
    EngineNotInitialized,
    EngineOverloaded,
    FeatureEncoder,
    HashedFeatureEncoder,
    InteractionData,
    InvalidInteraction,
    Network,
    SparseFeatures,
    StepFuture,
    StepResult,
    StepStatus,
)

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
WAIT = 30.0  # seconds: only bounds a hang, never a performance expectation
TARGETS = {"click": 1.0, "skip": 0.0}

EngineFactory = Callable[..., Engine]


def item(
    i: int = 0,
    action: str = "click",
    *,
    user: str | int = "u1",
    context: dict[str, Any] | None = None,
    label: float | tuple[float, ...] | None = None,
) -> InteractionData:
    """One interaction; ``i`` spreads timestamps (37 s apart) and nothing else."""
    return InteractionData(action, T0 + 37.0 * i, user, context, label)


def stream(n: int, start: int = 0) -> list[InteractionData]:
    """``n`` varied interactions whose targets come from :data:`TARGETS`."""
    return [
        item(
            i,
            "click" if i % 3 else "skip",
            user=f"user-{i % 11}",
            context={"page": "home"} if i % 2 else None,
        )
        for i in range(start, start + n)
    ]


def target_of(x: InteractionData) -> float:
    if isinstance(x.label, float):
        return x.label
    return TARGETS[x.action_type]


def weights(network: Network) -> dict[str, NDArray[Any]]:
    """Copies of the weights and biases only (no counters)."""
    return {k: v.copy() for k, v in network.get_state().items() if k.startswith("layers.")}


def full_state(network: Network) -> dict[str, NDArray[Any]]:
    return {k: np.array(v, copy=True) for k, v in network.get_state().items()}


def assert_same_arrays(a: dict[str, NDArray[Any]], b: dict[str, NDArray[Any]]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def dispatcher_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("livelearn-dispatcher")}


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1.0 - y) * math.log(1.0 - p))


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "livelearn" and r.levelno == level]


class Gate:
    """Target callable that parks the dispatcher inside the batch of a "gate" step."""

    ACTION = "gate"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self, x: InteractionData) -> float:
        if x.action_type == self.ACTION:
            self.entered.set()
            if not self.released.wait(WAIT):
                raise RuntimeError("the test never released the gate")
            return 1.0
        return TARGETS.get(x.action_type, 1.0)

    def hold(self, engine: Engine) -> StepFuture[StepResult]:
        """Submit the gate step and return once the dispatcher is stuck on it."""
        future = engine.train_step(InteractionData(self.ACTION, T0, "gatekeeper"))
        assert self.entered.wait(WAIT), "the dispatcher never picked up the gate step"
        return future

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def engines() -> Iterator[EngineFactory]:
    """Build engines (initialised unless ``start=False``); all are closed afterwards."""
    made: list[Engine] = []

    def make(*, start: bool = True, **kwargs: Any) -> Engine:
        kwargs.setdefault("targets", TARGETS)
        engine = Engine(**kwargs)
        made.append(engine)
        return engine.initialize() if start else engine

    yield make
    for engine in made:
        engine.close(wait=True, timeout=WAIT)


@pytest.fixture
def gate(engines: EngineFactory) -> Iterator[Gate]:
    # Depends on `engines` so that it is released before the engines are closed.
    g = Gate()
    yield g
    g.release()


# ---------------------------------------------------------------------- validation


def test_uninitialized_train_step_is_a_completed_noop(
    engines: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="livelearn")
    threads_before = dispatcher_threads()
    engine = engines(start=False)
    state = full_state(engine.network)

    future = engine.train_step(item(label=1.0))

    assert isinstance(future, StepFuture)
    assert future.done()  # already completed when returned
    result = future.result(timeout=0)
    assert result.status is StepStatus.SKIPPED
    assert not result.trained
    assert result.reason is not None and "initialize" in result.reason
    assert (result.step, result.loss, result.prediction) == (None, None, None)
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "not initialised" in warnings[0].getMessage()
    # Nothing else touched: network, history, other counters, threads.
    assert_same_arrays(full_state(engine.network), state)
    assert engine.network.steps == 0
    assert engine.history == []
    stats = engine.stats()
    assert stats.skipped == 1
    assert stats.interactions == 1  # skipped + ... + pending == interactions holds
    assert (stats.steps, stats.rejected, stats.failed, stats.pending) == (0, 0, 0, 0)
    assert (stats.last_loss, stats.mean_loss, stats.recent_loss) == (None, None, None)
    assert (stats.last_example_time, stats.started_at) == (None, None)
    assert not engine.is_initialized
    assert not dispatcher_threads() - threads_before  # no dispatcher was started


def test_uninitialized_train_many_skips_every_step(
    engines: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="livelearn")
    engine = engines(start=False)
    futures = engine.train_many(stream(5))
    assert len(futures) == 5
    assert all(f.done() and f.result().status is StepStatus.SKIPPED for f in futures)
    assert engine.stats().skipped == 5
    assert engine.network.steps == 0
    assert records(caplog, logging.WARNING)
    # The engine still starts normally afterwards.
    engine.initialize()
    assert engine.train_step(item()).result(WAIT).step == 1


def test_predict_before_initialize_raises(engines: EngineFactory) -> None:
    engine = engines(start=False)
    with pytest.raises(EngineNotInitialized):
        engine.predict(item())
    with pytest.raises(EngineNotInitialized):
        engine.predict_many([item()])


def test_initialize_is_idempotent_and_returns_the_engine(engines: EngineFactory) -> None:
    before = dispatcher_threads()
    engine = engines(start=False, workers=2)
    assert engine.initialize() is engine
    assert engine.initialize() is engine
    assert engine.is_initialized
    started = dispatcher_threads() - before
    assert len(started) == 2
    engine.close()
    assert not any(t.is_alive() for t in started)


@pytest.mark.parametrize(
    "bad",
    [
        "click",
        None,
        42,
        {"action_type": "click", "timestamp": T0, "user_id": "u1"},
        ("click", T0, "u1"),
    ],
    ids=["str", "None", "int", "dict", "tuple"],
)
def test_non_interaction_input_makes_the_future_raise(engines: EngineFactory, bad: object) -> None:
    engine = engines()
    before = weights(engine.network)
    future = engine.train_step(bad)  # type: ignore[arg-type]
    error = future.exception(timeout=WAIT)
    assert isinstance(error, InvalidInteraction)
    assert error.field == "interaction"
    assert type(bad).__name__ in str(error)
    with pytest.raises(InvalidInteraction):
        future.result()
    assert_same_arrays(weights(engine.network), before)
    stats = engine.stats()
    assert (stats.rejected, stats.steps, stats.interactions, stats.pending) == (1, 0, 1, 0)


def test_invalid_items_in_a_batch_leave_the_valid_ones_alone(engines: EngineFactory) -> None:
    engine = engines(batch_size=64)
    valid = stream(6)
    mixed: list[object] = [valid[0], "bad", valid[1], valid[2], None, item(9, "view"), *valid[3:]]
    futures = engine.train_many(mixed)  # type: ignore[arg-type]
    wait(futures, timeout=WAIT)
    outcomes = [
        f.result().step if f.exception() is None else type(f.exception()).__name__ for f in futures
    ]
    # Valid items train in submission order; the invalid ones do not consume a step.
    assert outcomes == [1, "InvalidInteraction", 2, 3, "InvalidInteraction",
                        "InvalidInteraction", 4, 5, 6]  # fmt: skip
    assert [h.timestamp for h in engine.history] == [x.timestamp for x in valid]


# ---------------------------------------------------------------------- preprocessing


def test_network_sees_exactly_the_encoder_output(engines: EngineFactory) -> None:
    """A shadow network trained on ``features.encode(x)`` ends bit-identical."""
    engine = engines(batch_size=7)
    shadow = Network(**engine.network.get_config())
    assert_same_arrays(full_state(shadow), full_state(engine.network))
    items = stream(60)
    for f in engine.train_many(items):
        assert f.result(WAIT).trained
    for x in items:
        shadow.train_step(engine.features.encode(x), target_of(x))
    assert_same_arrays(full_state(engine.network), full_state(shadow))


def test_network_sees_exactly_the_sparse_encoder_output(engines: EngineFactory) -> None:
    # The MLP over sparse inputs (a HashedFeatureEncoder alone now picks the field model).
    engine = engines(features=HashedFeatureEncoder(n_buckets=512), batch_size=7, model="mlp")
    shadow = Network(**engine.network.get_config())
    items = stream(60)
    for f in engine.train_many(items):
        assert f.result(WAIT).trained
    for x in items:
        indices, values = engine.features.encode_sparse(x)
        shadow.train_step_sparse(indices, values, target_of(x))
    assert_same_arrays(full_state(engine.network), full_state(shadow))


def test_history_features_equal_the_encoder_output(engines: EngineFactory) -> None:
    engine = engines()
    items = stream(20)
    wait(engine.train_many(items), timeout=WAIT)
    history = engine.history
    assert len(history) == 20
    for example, x in zip(history, items, strict=True):
        assert isinstance(example.features, np.ndarray)
        assert example.features.dtype == np.float32
        np.testing.assert_array_equal(example.features, engine.features.encode(x))


def test_sparse_history_features_equal_the_encoder_output(engines: EngineFactory) -> None:
    encoder = HashedFeatureEncoder(n_buckets=4096)
    engine = engines(features=encoder)
    items = stream(20)
    wait(engine.train_many(items), timeout=WAIT)
    seen = encoder.without_action()  # the targets are derived from the action type
    assert seen.get_config() == engine.features.get_config()
    for example, x in zip(engine.history, items, strict=True):
        assert isinstance(example.features, SparseFeatures)
        indices, values = seen.encode_sparse(x)
        np.testing.assert_array_equal(example.features.indices, indices)
        np.testing.assert_array_equal(example.features.values, values)
        assert example.features.n_inputs == encoder.n_inputs
        np.testing.assert_array_equal(example.features.to_dense(), seen.encode(x))


# ---------------------------------------------------------------------- targets


def test_label_wins_over_the_mapping(engines: EngineFactory) -> None:
    engine = engines()
    r_label = engine.train_step(item(0, "click", label=0.0)).result(WAIT)
    r_mapped = engine.train_step(item(1, "click")).result(WAIT)
    r_skip = engine.train_step(item(2, "skip", label=0.75)).result(WAIT)
    targets = [float(h.target[0]) for h in engine.history]
    assert targets == [0.0, 1.0, 0.75]
    assert r_label.loss == pytest.approx(bce(r_label.prediction, 0.0), rel=1e-5)  # type: ignore[arg-type]
    assert r_mapped.loss == pytest.approx(bce(r_mapped.prediction, 1.0), rel=1e-5)  # type: ignore[arg-type]
    assert r_skip.loss == pytest.approx(bce(r_skip.prediction, 0.75), rel=1e-5)  # type: ignore[arg-type]


def test_mapping_targets(engines: EngineFactory) -> None:
    engine = engines(targets={"click": 1.0, "skip": 0.0, "like": 0.5})
    for f in engine.train_many([item(0, "skip"), item(1, "like"), item(2, "click")]):
        assert f.result(WAIT).trained
    assert [float(h.target[0]) for h in engine.history] == [0.0, 0.5, 1.0]


def test_callable_targets(engines: EngineFactory) -> None:
    seen: list[InteractionData] = []

    def rule(x: InteractionData) -> float | None:
        seen.append(x)
        if x.action_type == "boom":
            raise KeyError("no rule")
        if x.action_type == "ignore":
            return None
        return 1.0 if x.context and x.context.get("liked") else 0.25

    engine = engines(targets=rule)
    liked = item(0, "view", context={"liked": True})
    plain = item(1, "view")
    futures = engine.train_many([liked, plain, item(2, "ignore"), item(3, "boom")])
    assert futures[0].result(WAIT).trained and futures[1].result(WAIT).trained
    assert [float(h.target[0]) for h in engine.history] == [1.0, 0.25]
    ignored = futures[2].exception(WAIT)
    assert isinstance(ignored, InvalidInteraction) and ignored.field == "label"
    boom = futures[3].exception(WAIT)
    assert isinstance(boom, InvalidInteraction) and "KeyError" in str(boom)
    assert seen[:2] == [liked, plain]
    # An explicit label never calls the function.
    n_calls = len(seen)
    assert engine.train_step(item(4, "view", label=0.0)).result(WAIT).trained
    assert len(seen) == n_calls
    assert engine.stats().rejected == 2


@pytest.mark.parametrize("targets", [None, {"click": 1.0}], ids=["no-targets", "unmapped"])
def test_no_label_and_no_target_raises_invalid_interaction(
    engines: EngineFactory, targets: dict[str, float] | None
) -> None:
    engine = engines(targets=targets)
    before = weights(engine.network)
    future = engine.train_step(item(0, "view"))
    error = future.exception(WAIT)
    assert isinstance(error, InvalidInteraction)
    assert error.field == "label" and "view" in str(error)
    assert_same_arrays(weights(engine.network), before)
    assert engine.stats().rejected == 1 and engine.history == []
    assert engine.train_step(item(1, "view", label=1.0)).result(WAIT).trained


@pytest.mark.parametrize("label", [1e39, (1.0, 0.0)], ids=["beyond-float32", "two-values"])
def test_unusable_label_raises_invalid_interaction(engines: EngineFactory, label: Any) -> None:
    engine = engines()
    error = engine.train_step(item(label=label)).exception(WAIT)
    assert isinstance(error, InvalidInteraction) and error.field == "label"
    assert engine.network.steps == 0 and engine.network.rejected_steps == 0


def test_multi_output_targets(engines: EngineFactory) -> None:
    engine = engines(targets={"buy": [1.0, 0.5], "view": [0.0, 0.25]}, n_outputs=2, loss="mse")
    assert engine.network.n_outputs == 2
    buy = item(0, "buy")
    expected = engine.network.predict(engine.features.encode(buy)[np.newaxis])[0]
    futures = engine.train_many(
        [buy, item(1, "view"), item(2, "buy", label=(0.0, 2.0)), item(3, "buy", label=1.0)]
    )
    r0 = futures[0].result(WAIT)
    assert isinstance(r0.prediction, np.ndarray) and r0.prediction.shape == (2,)
    np.testing.assert_array_equal(r0.prediction, expected)
    assert r0.loss == pytest.approx(float(np.mean((expected - [1.0, 0.5]) ** 2)), rel=1e-5)
    assert futures[1].result(WAIT).trained and futures[2].result(WAIT).trained
    wrong = futures[3].exception(WAIT)  # a scalar label for two outputs
    assert isinstance(wrong, InvalidInteraction)
    assert [h.target.tolist() for h in engine.history] == [[1.0, 0.5], [0.0, 0.25], [0.0, 2.0]]
    assert all(h.prediction.shape == (2,) for h in engine.history)
    out = engine.predict(buy)
    assert isinstance(out, np.ndarray) and out.shape == (2,)
    assert engine.predict_many([buy, buy]).shape == (2, 2)


def test_n_outputs_must_match_the_targets() -> None:
    with pytest.raises(ValueError, match="n_outputs"):
        Engine(targets={"buy": [1.0, 0.5]}, n_outputs=3)
    with pytest.raises(ValueError, match="targets"):
        Engine(targets={"buy": [1.0, 0.5]})  # a 2-vector for the default single output


# ---------------------------------------------------------------------- forward / update


def test_prediction_is_made_before_the_update(engines: EngineFactory) -> None:
    engine = engines(workers=1)
    for x in stream(40):
        features = engine.features.encode(x)[np.newaxis]
        before = float(engine.network.predict(features)[0, 0])
        result = engine.train_step(x).result(WAIT)
        after = float(engine.network.predict(features)[0, 0])
        assert result.prediction == before  # bit-identical: the same forward pass
        assert isinstance(result.prediction, float)
        # ... and the update moved this very example's output towards its target.
        y = target_of(x)
        assert abs(after - y) < abs(before - y)
        assert result.loss == pytest.approx(bce(before, y), rel=1e-5)
        assert engine.history[-1].prediction[0] == np.float32(before)


def test_a_trained_step_updates_the_weights_and_the_step_count(engines: EngineFactory) -> None:
    engine = engines()
    before = weights(engine.network)
    steps = []
    for i, x in enumerate(stream(5)):
        result = engine.train_step(x).result(WAIT)
        assert result.status is StepStatus.TRAINED and result.reason is None
        assert result.step == engine.network.steps == i + 1
        steps.append(result.step)
        now = weights(engine.network)
        assert all(not np.array_equal(before[k], now[k]) for k in now), "every layer learns"
        before = now
    assert steps == [1, 2, 3, 4, 5]
    assert engine.network.rejected_steps == 0


# ---------------------------------------------------------------------- bookkeeping


def test_counters_after_a_mixed_stream(engines: EngineFactory) -> None:
    before_start = time.time()
    engine = engines(batch_size=8)
    after_start = time.time()
    valid = stream(37)
    mixed: list[object] = list(valid)
    mixed.insert(5, "bad")
    mixed.insert(20, item(99, "view"))  # no target
    mixed.insert(30, 3.5)
    futures = engine.train_many(mixed)  # type: ignore[arg-type]
    _, not_done = wait(futures, timeout=WAIT)
    assert not not_done
    results = [f.result() for f in futures if f.exception() is None]
    losses = [r.loss for r in results]
    assert all(r.trained for r in results) and len(results) == 37

    stats = engine.stats()
    assert stats.steps == 37 and engine.network.steps == 37
    assert stats.interactions == 40
    assert (stats.rejected, stats.skipped, stats.failed, stats.pending) == (3, 0, 0, 0)
    assert stats.last_loss == losses[-1]
    assert stats.mean_loss == pytest.approx(sum(losses) / 37, rel=1e-9)  # type: ignore[arg-type]
    ema = losses[0]
    for value in losses[1:]:
        ema += 0.01 * (value - ema)  # type: ignore[operator]
    assert stats.recent_loss == pytest.approx(ema, rel=1e-9)
    assert stats.last_example_time == valid[-1].timestamp  # the event's time, not the clock
    assert stats.started_at is not None
    assert before_start <= stats.started_at <= after_start


def test_pending_counts_queued_steps(engines: EngineFactory, gate: Gate) -> None:
    engine = engines(targets=gate)
    held = gate.hold(engine)
    queued = engine.train_many(stream(10))
    stats = engine.stats()
    assert (stats.interactions, stats.pending, stats.steps) == (11, 11, 0)
    assert not held.done() and not any(f.done() for f in queued)
    gate.release()
    wait(queued, timeout=WAIT)
    stats = engine.stats()
    assert (stats.interactions, stats.pending, stats.steps) == (11, 0, 11)


def test_recent_loss_is_the_per_step_ema_for_large_batches(
    engines: EngineFactory, gate: Gate
) -> None:
    engine = engines(targets=gate, batch_size=1000)
    held = gate.hold(engine)
    queued = engine.train_many(stream(500))  # one batch of 500 once the gate opens
    gate.release()
    losses = [held.result(WAIT).loss] + [f.result(WAIT).loss for f in queued]
    ema = losses[0]
    for value in losses[1:]:
        ema += 0.01 * (value - ema)  # type: ignore[operator]
    assert engine.stats().recent_loss == pytest.approx(ema, rel=1e-6)


# ---------------------------------------------------------------------- history


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_history_keeps_the_newest_examples_in_exact_order(
    engines: EngineFactory, batch_size: int
) -> None:
    engine = engines(history_size=5, batch_size=batch_size)
    items = stream(23)
    results = [f.result(WAIT) for f in engine.train_many(items)]
    history = engine.history
    assert [h.step for h in history] == [19, 20, 21, 22, 23]
    for example, x, r in zip(history, items[-5:], results[-5:], strict=True):
        assert example.step == r.step
        assert example.timestamp == x.timestamp
        np.testing.assert_array_equal(example.features, engine.features.encode(x))
        assert example.target.tolist() == [target_of(x)]
        assert example.loss == r.loss
        assert example.prediction.tolist() == [r.prediction]


def test_history_grows_one_step_at_a_time_up_to_its_bound(engines: EngineFactory) -> None:
    engine = engines(history_size=4)
    for i, x in enumerate(stream(9), start=1):
        engine.train_step(x).result(WAIT)
        history = engine.history
        assert len(history) == min(i, 4)
        assert [h.step for h in history] == list(range(max(1, i - 3), i + 1))
        assert history[-1].timestamp == x.timestamp


def test_history_size_zero_keeps_nothing(engines: EngineFactory) -> None:
    engine = engines(history_size=0)
    wait(engine.train_many(stream(10)), timeout=WAIT)
    assert engine.history == []
    assert engine.stats().steps == 10


def test_history_returns_copies(engines: EngineFactory) -> None:
    engine = engines()
    engine.train_step(item()).result(WAIT)
    first = engine.history[0]
    assert isinstance(first.features, np.ndarray)
    first.features[:] = 123.0
    first.target[:] = 5.0
    np.testing.assert_array_equal(engine.history[0].features, engine.features.encode(item()))
    assert engine.history[0].target.tolist() == [1.0]


# ---------------------------------------------------------------------- errors and lifecycle


def test_engine_closed_after_close(engines: EngineFactory) -> None:
    engine = engines()
    future = engine.train_step(item())
    engine.close()
    assert future.done()
    assert engine.closed and not engine.is_initialized
    with pytest.raises(EngineClosed):
        engine.train_step(item())
    with pytest.raises(EngineClosed):
        engine.train_many([item()])
    with pytest.raises(EngineClosed):
        engine.initialize()
    engine.close()  # idempotent
    assert engine.stats().interactions == 1
    # Reading the model still works after close.
    assert 0.0 < engine.predict(item()) < 1.0  # type: ignore[operator]


def test_closing_a_never_started_engine(engines: EngineFactory) -> None:
    engine = engines(start=False)
    engine.close()
    with pytest.raises(EngineClosed):
        engine.train_step(item())
    with pytest.raises(EngineClosed):
        engine.initialize()


def test_overload_raise(engines: EngineFactory, gate: Gate) -> None:
    engine = engines(targets=gate, max_pending=3, overload="raise")
    held = gate.hold(engine)
    queued = [engine.train_step(x) for x in stream(3)]
    with pytest.raises(EngineOverloaded):
        engine.train_step(item(50))
    stats = engine.stats()
    assert (stats.interactions, stats.pending) == (4, 4)  # the refused one is not counted
    gate.release()
    assert held.result(WAIT).step == 1
    assert [f.result(WAIT).step for f in queued] == [2, 3, 4]
    assert engine.train_step(item(51)).result(WAIT).step == 5  # room again


def test_overload_drop_oldest(
    engines: EngineFactory, gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="livelearn")
    engine = engines(targets=gate, max_pending=2, overload="drop_oldest")
    held = gate.hold(engine)
    a, b, c, d = (engine.train_step(x) for x in stream(4))
    # a and b were dropped (resolved at once, in the producer's thread); c and d wait.
    for dropped in (a, b):
        assert dropped.done()
        result = dropped.result(timeout=0)
        assert result.status is StepStatus.SKIPPED
        assert result.reason is not None and "drop_oldest" in result.reason
        assert (result.step, result.loss, result.prediction) == (None, None, None)
    assert not c.done() and not d.done()
    stats = engine.stats()
    assert (stats.interactions, stats.skipped, stats.pending) == (5, 2, 3)
    skipped_logs = [r for r in records(caplog, logging.WARNING) if "drop_oldest" in r.getMessage()]
    assert len(skipped_logs) == 2
    gate.release()
    assert [f.result(WAIT).step for f in (held, c, d)] == [1, 2, 3]
    stats = engine.stats()
    assert (stats.steps, stats.skipped, stats.pending) == (3, 2, 0)


def test_overload_drop_oldest_in_train_many(engines: EngineFactory, gate: Gate) -> None:
    engine = engines(targets=gate, max_pending=4, overload="drop_oldest")
    held = gate.hold(engine)
    futures = engine.train_many(stream(10))
    assert all(f.result(timeout=0).status is StepStatus.SKIPPED for f in futures[:6])
    assert not any(f.done() for f in futures[6:])
    gate.release()
    assert held.result(WAIT).trained
    assert [f.result(WAIT).step for f in futures[6:]] == [2, 3, 4, 5]
    assert engine.stats().skipped == 6


def test_overload_block_waits_for_room(engines: EngineFactory, gate: Gate) -> None:
    engine = engines(targets=gate, max_pending=2, overload="block")
    held = gate.hold(engine)
    first = [engine.train_step(x) for x in stream(2)]
    box: dict[str, Any] = {}

    def produce() -> None:
        box["future"] = engine.train_step(item(7))

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    producer.join(0.3)
    assert producer.is_alive(), "train_step returned although the queue was full"
    assert engine.stats().interactions == 3
    gate.release()
    producer.join(WAIT)
    assert not producer.is_alive()
    assert [f.result(WAIT).step for f in (held, *first)] == [1, 2, 3]
    assert box["future"].result(WAIT).step == 4


def test_close_unblocks_a_blocked_producer(engines: EngineFactory, gate: Gate) -> None:
    engine = engines(targets=gate, max_pending=1, overload="block")
    held = gate.hold(engine)
    queued = engine.train_step(item(1))
    box: dict[str, Any] = {}

    def produce() -> None:
        try:
            box["future"] = engine.train_step(item(2))
        except BaseException as exc:
            box["error"] = exc

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    producer.join(0.2)
    assert producer.is_alive()
    engine.close(wait=False)
    producer.join(WAIT)
    assert not producer.is_alive()
    assert isinstance(box.get("error"), EngineClosed)
    gate.release()
    engine.close(wait=True, timeout=WAIT)
    assert held.result(timeout=0).trained and queued.result(timeout=0).trained
    assert engine.stats().interactions == 2


class _WidthBreakingEncoder(FeatureEncoder):
    """Returns one column too few while ``broken``: the native call refuses the batch."""

    __slots__ = ("broken",)

    def __init__(self) -> None:
        super().__init__(action=False)  # the engine derives targets from the action type
        self.broken = False

    def encode_many(self, interactions: Sequence[InteractionData]) -> NDArray[np.float32]:
        out = super().encode_many(interactions)
        return out[:, :3] if self.broken else out


def test_an_unexpected_error_fails_the_batch_and_the_engine_goes_on(
    engines: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="livelearn")
    encoder = _WidthBreakingEncoder()
    engine = engines(features=encoder)
    before = weights(engine.network)
    encoder.broken = True
    futures = engine.train_many(stream(3))
    errors = [f.exception(WAIT) for f in futures]
    # Not the data's fault: the Futures raise the error itself, counted as failed.
    assert all(isinstance(e, ValueError) and not isinstance(e, InvalidInteraction) for e in errors)
    stats = engine.stats()
    assert (stats.failed, stats.steps, stats.rejected, stats.pending) == (3, 0, 0, 0)
    assert stats.interactions == 3
    assert_same_arrays(weights(engine.network), before)
    assert any("failed" in r.getMessage() for r in records(caplog, logging.ERROR))
    encoder.broken = False
    assert engine.train_step(item()).result(WAIT).step == 1
    assert engine.stats().failed == 3


@pytest.mark.parametrize(
    ("learning_rate", "label", "why"),
    # label 3e38: the loss's gradient 2 (p - y) overflows float32 (1e30 would train: the
    # loss, 1e60, is computed in double and its gradient is finite).
    [(0.05, 3e38, "non-finite loss"), (1e30, 1e15, "non-finite gradient or update")],
    ids=["loss", "update"],
)
def test_non_finite_step_is_rejected_and_the_model_unchanged(
    engines: EngineFactory,
    caplog: pytest.LogCaptureFixture,
    learning_rate: float,
    label: float,
    why: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="livelearn")
    engine = engines(loss="mse", learning_rate=learning_rate, targets=None)
    before = full_state(engine.network)
    result = engine.train_step(item(label=label)).result(WAIT)
    assert result.status is StepStatus.REJECTED and not result.trained
    assert result.reason is not None and why in result.reason
    assert (result.step, result.prediction) == (None, None)
    after = full_state(engine.network)
    assert_same_arrays(
        {k: v for k, v in after.items() if k != "counters.rejected_steps"},
        {k: v for k, v in before.items() if k != "counters.rejected_steps"},
    )
    assert engine.network.rejected_steps == 1 and engine.network.steps == 0
    stats = engine.stats()
    assert (stats.rejected, stats.steps, stats.last_loss, stats.mean_loss) == (1, 0, None, None)
    assert engine.history == []
    # The engine keeps training afterwards.
    ok = engine.train_step(item(1, label=0.0)).result(WAIT)
    assert ok.trained and ok.step == 1 and math.isfinite(ok.loss)  # type: ignore[arg-type]
    engine.close()  # rejection warnings are logged after the Future resolves
    warnings = [r.getMessage() for r in records(caplog, logging.WARNING)]
    assert len(warnings) == 1 and why in warnings[0]


def test_close_drains_and_resolves_every_pending_future(engines: EngineFactory, gate: Gate) -> None:
    engine = engines(targets=gate)
    held = gate.hold(engine)
    futures = engine.train_many(stream(500))
    closer = threading.Thread(target=engine.close, daemon=True)
    closer.start()
    assert wait_until(lambda: engine.closed)
    with pytest.raises(EngineClosed):
        engine.train_step(item())
    assert closer.is_alive()  # close(wait=True) is draining, blocked by the gate
    gate.release()
    closer.join(WAIT)
    assert not closer.is_alive()
    # Resolved by the time close() returned, without waiting.
    assert all(f.done() for f in (held, *futures))
    assert [f.result(timeout=0).step for f in futures] == list(range(2, 502))
    stats = engine.stats()
    assert (stats.steps, stats.pending) == (501, 0)


def test_close_drains_a_long_queue(engines: EngineFactory) -> None:
    engine = engines(log_every=0)
    futures = engine.train_many(stream(20_000))
    engine.close()
    assert all(f.done() for f in futures)
    stats = engine.stats()
    assert (stats.steps, stats.pending, stats.interactions) == (20_000, 0, 20_000)


def test_context_manager() -> None:
    with Engine(targets=TARGETS) as engine:
        assert engine.is_initialized
        futures = engine.train_many(stream(100))
    assert engine.closed and not engine.is_initialized
    assert all(f.done() and f.result().trained for f in futures)
    with pytest.raises(EngineClosed):
        engine.train_step(item())


def test_context_manager_drains_when_the_body_raises() -> None:
    futures: list[StepFuture[StepResult]] = []
    with pytest.raises(RuntimeError, match="body failed"), Engine(targets=TARGETS) as engine:
        futures.extend(engine.train_many(stream(100)))
        raise RuntimeError("body failed")
    assert engine.closed
    assert all(f.done() and f.result().trained for f in futures)


def test_train_many_returns_one_future_per_interaction_in_order(engines: EngineFactory) -> None:
    engine = engines(batch_size=16)
    items = stream(100)
    futures = engine.train_many(iter(items))  # any iterable
    assert len(futures) == 100 and len({id(f) for f in futures}) == 100
    assert all(isinstance(f, StepFuture) for f in futures)
    results = [f.result(WAIT) for f in futures]
    assert [r.step for r in results] == list(range(1, 101))
    assert [h.timestamp for h in engine.history] == [x.timestamp for x in items]
    assert engine.train_many([]) == []


def test_predict_returns_the_network_output(engines: EngineFactory) -> None:
    engine = engines()
    wait(engine.train_many(stream(50)), timeout=WAIT)
    x = item(3, "skip", context={"a": 1})
    p = engine.predict(x)
    assert type(p) is float and 0.0 < p < 1.0
    assert p == float(engine.network.predict(engine.features.encode(x)[np.newaxis])[0, 0])
    items = stream(10)
    many = engine.predict_many(items)
    assert many.shape == (10, 1) and many.dtype == np.float32
    np.testing.assert_array_equal(many, engine.network.predict(engine.features.encode_many(items)))
    assert engine.predict_many([]).shape == (0, 1)
    assert engine.network.steps == 50  # predicting does not train


def test_predict_with_a_sparse_encoder(engines: EngineFactory) -> None:
    engine = engines(features=HashedFeatureEncoder(n_buckets=256), model="mlp")
    wait(engine.train_many(stream(30)), timeout=WAIT)
    x = item(5)
    p = engine.predict(x)
    assert type(p) is float
    assert p == float(engine.network.predict(engine.features.encode(x)[np.newaxis])[0, 0])


@pytest.mark.parametrize("bad", ["click", None, 1.0])
def test_predict_rejects_non_interactions(engines: EngineFactory, bad: object) -> None:
    engine = engines()
    with pytest.raises(InvalidInteraction):
        engine.predict(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInteraction):
        engine.predict_many([item(), bad])  # type: ignore[list-item]


def test_invalid_constructor_arguments() -> None:
    for kwargs in (
        {"overload": "wait"},
        {"workers": 0},
        {"max_pending": 0},
        {"batch_size": 0},
        {"history_size": -1},
        {"log_every": -1},
        {"hidden_layers": "16"},
        {"features": object()},
    ):
        with pytest.raises(ValueError):
            Engine(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- logging

_LOSS_LINE = re.compile(r"step (\d+) loss (\S+) mean_loss (\S+)")


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_loss_is_logged_every_10_steps(
    engines: EngineFactory, caplog: pytest.LogCaptureFixture, batch_size: int
) -> None:
    caplog.set_level(logging.INFO, logger="livelearn")
    engine = engines(log_every=10, batch_size=batch_size)
    results = [f.result(WAIT) for f in engine.train_many(stream(35))]
    lines = [r.getMessage() for r in records(caplog, logging.INFO)]
    matches = [_LOSS_LINE.search(line) for line in lines]
    assert all(matches), lines
    assert [int(m[1]) for m in matches if m] == [10, 20, 30]
    for m in matches:
        assert m is not None
        step = int(m[1])
        assert float(m[2]) == pytest.approx(results[step - 1].loss, abs=1e-6)
    for m in matches:
        assert m is not None
        step = int(m[1])
        mean = sum(r.loss for r in results[:step]) / step  # type: ignore[misc]
        assert float(m[3]) == pytest.approx(mean, abs=1e-6)


def test_logged_mean_loss_is_the_mean_up_to_that_step(
    engines: EngineFactory, gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="livelearn")
    engine = engines(targets=gate, log_every=10, batch_size=64)
    held = gate.hold(engine)
    queued = engine.train_many(stream(34))  # one batch of 34 once the gate opens
    gate.release()
    losses = [held.result(WAIT).loss] + [f.result(WAIT).loss for f in queued]
    lines = [_LOSS_LINE.search(r.getMessage()) for r in records(caplog, logging.INFO)]
    assert [int(m[1]) for m in lines if m] == [10, 20, 30]
    for m in lines:
        assert m is not None
        step = int(m[1])
        mean = sum(losses[:step]) / step  # type: ignore[arg-type]
        assert float(m[3]) == pytest.approx(mean, abs=1e-6)


def test_no_loss_log_when_log_every_is_zero(
    engines: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="livelearn")
    engine = engines(log_every=0)
    wait(engine.train_many(stream(50)), timeout=WAIT)
    engine.close()
    assert records(caplog, logging.INFO) == []


def test_a_warning_for_every_rejected_step(
    engines: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="livelearn")
    engine = engines(loss="mse")
    bad: list[object] = ["not an interaction", item(1, "view"), item(2, label=3e38), 7]
    futures = engine.train_many([*stream(5), *bad])  # type: ignore[list-item]
    wait(futures, timeout=WAIT)
    engine.close()
    warnings = [r.getMessage() for r in records(caplog, logging.WARNING)]
    assert len(warnings) == 4, warnings
    assert "expected InteractionData, got str" in warnings[0]
    assert "no label and no target" in warnings[1] and "view" in warnings[1]
    assert "non-finite loss" in warnings[2]
    assert "expected InteractionData, got int" in warnings[3]


# ---------------------------------------------------------------------- hashing

KNOWN = [
    InteractionData("click", 1_700_000_000.0, "user-1"),
    InteractionData("purchase", 1_700_043_200.5, 42, {"page": "home"}),
    InteractionData("skip", 0.0, "Zoë", {"device": "mobile", "position": 2}),
]
# FeatureEncoder(): [unit_hash(action), time of day, unit_hash(user), has_context],
# computed once with BLAKE2b and frozen here: a change means saved models break.
KNOWN_DENSE = [
    [-0.6528509259223938, 0.9259259104728699, 0.06939436495304108, 0.0],
    [-0.1615765541791916, 0.4259317219257355, -0.04368899390101433, 1.0],
    [0.7727647423744202, 0.0, 0.2073344737291336, 1.0],
]
# HashedFeatureEncoder(n_buckets=1024): (indices, values).
KNOWN_SPARSE = [
    (
        [0, 1, 2, 3, 4, 382, 446, 1008],
        [1.0, -0.448799192905426, 0.8936326503753662, 0.9875580072402954,
         -0.15725529193878174, 1.0, 1.0, 1.0],
    ),
    (
        [0, 1, 2, 3, 4, 72, 466, 848, 1025],
        [1.0, 0.44876667857170105, -0.8936489820480347, 0.821525514125824,
         -0.5701717138290405, 1.0, 1.0, 1.0, 1.0],
    ),
    (
        [0, 1, 2, 3, 4, 58, 532, 652, 676, 932],
        [1.0, 0.0, 1.0, 0.4338837265968323, -0.9009688496589661, 1.0, 1.0, 1.0, 1.0, 1.0],
    ),
]  # fmt: skip

_HASH_SCRIPT = """
import json
from livelearn import Engine, FeatureEncoder, HashedFeatureEncoder, InteractionData
known = [
    InteractionData("click", 1_700_000_000.0, "user-1"),
    InteractionData("purchase", 1_700_043_200.5, 42, {"page": "home"}),
    InteractionData("skip", 0.0, "Zo\\u00eb", {"device": "mobile", "position": 2}),
]
dense = FeatureEncoder()
hashed = HashedFeatureEncoder(n_buckets=1024)
stream = [
    InteractionData(f"a{i % 5}", 1_700_000_000.0 + 37.0 * i, f"user-{i % 13}",
                    {"page": f"p{i % 3}"}, label=float(i % 3 == 0))
    for i in range(200)
]
out = {
    "dense": [dense.encode(x).tolist() for x in known],
    "sparse": [[a.tolist() for a in hashed.encode_sparse(x)] for x in known],
}
for name, encoder in (("engine_dense", None), ("engine_sparse", HashedFeatureEncoder(2048))):
    with Engine(features=encoder, log_every=0) as engine:
        steps = [f.result().prediction for f in engine.train_many(stream)]
        out[name] = steps + [engine.predict(x) for x in known]
print(json.dumps(out))
"""


def _run_hash_script(hash_seed: str) -> dict[str, Any]:
    package_root = str(Path(livelearn.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = hash_seed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", _HASH_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_encoder_outputs_are_fixed() -> None:
    dense = FeatureEncoder()
    hashed = HashedFeatureEncoder(n_buckets=1024)
    for x, expected_dense, (expected_idx, expected_val) in zip(
        KNOWN, KNOWN_DENSE, KNOWN_SPARSE, strict=True
    ):
        assert dense.encode(x).tolist() == expected_dense
        indices, values = hashed.encode_sparse(x)
        assert indices.tolist() == expected_idx
        assert values.tolist() == expected_val


def test_features_and_training_identical_across_processes_and_hash_seeds() -> None:
    runs = [_run_hash_script(seed) for seed in ("0", "4242")]
    for run in runs:
        assert run["dense"] == KNOWN_DENSE
        assert run["sparse"] == [[i, v] for i, v in KNOWN_SPARSE]
    assert runs[0] == runs[1]
    assert len(runs[0]["engine_dense"]) == len(runs[0]["engine_sparse"]) == 203
    # ... and identical to this process, whatever its own PYTHONHASHSEED.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_HASH_SCRIPT, "<hash-script>", "exec"), {})
    assert json.loads(printed.getvalue()) == runs[0]
