"""Numerical faults: adversarial targets and exploding learning rates drive losses and
updates to inf/NaN. The network's non-finite guard rejects exactly those steps (the
model's bytes unchanged, the rejection counted and explained), weights stay finite,
and the engine keeps training afterwards.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _scenarios import TARGETS, drain, finite_state, interaction, quiet_livelearn, state_bytes

from livelearn import (
    Engine,
    HashedFeatureEncoder,
    InteractionData,
    Network,
    StepResult,
    StepStatus,
)

WAIT = 60.0
F32_MAX = float(np.finfo(np.float32).max)


def results(engine: Engine, items: list[InteractionData]) -> list[StepResult]:
    out = drain(engine.train_many(items), WAIT)
    assert all(isinstance(r, StepResult) for r in out), out
    return out  # type: ignore[return-value]


@pytest.mark.parametrize(("optimizer", "momentum"), [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)])
def test_adversarial_targets_are_rejected_and_change_nothing(
    optimizer: str, momentum: float
) -> None:
    """Every 7th interaction carries a target of +-3.4e38 (the edge of float32) for
    an mse engine: the gradient of its loss, 2 (p - y), overflows (the loss itself,
    in double, does not) and the step is rejected as a non-finite loss. Those steps,
    and only those, are rejected;
    the final model is bit-identical to a fresh network trained on the normal
    steps alone -- so a rejected step changed nothing, not even the optimizer
    state. (For bce such targets are out of range: see
    test_bce_rejects_targets_outside_0_1.)"""
    engine = Engine(
        targets=TARGETS, loss="mse", optimizer=optimizer, momentum=momentum, log_every=0,
        batch_size=16,
    )  # fmt: skip
    initial = engine.network.get_state()
    items = []
    for i in range(700):
        if i % 7 == 3:
            items.append(interaction(i, label=F32_MAX if i % 2 else -F32_MAX))
        else:
            items.append(interaction(i))
    with engine, quiet_livelearn():
        out = results(engine, items)
        adversarial = [r for i, r in enumerate(out) if i % 7 == 3]
        normal = [r for i, r in enumerate(out) if i % 7 != 3]
        assert all(r.status is StepStatus.REJECTED for r in adversarial)
        assert all(r.reason == "rejected by the network: non-finite loss" for r in adversarial)
        assert all(r.step is None and r.prediction is None for r in adversarial)
        assert [r.step for r in normal] == list(range(1, len(normal) + 1))
        assert all(math.isfinite(r.loss) for r in normal)  # type: ignore[arg-type]
        s = engine.stats()
        assert (s.steps, s.rejected, engine.network.rejected_steps) == (600, 100, 100)
        assert s.mean_loss is not None and math.isfinite(s.mean_loss)
        state = engine.network.get_state()
    assert finite_state(state)
    replay = Network.from_config(engine.network.get_config())
    replay.set_state(initial)
    plain = [x for i, x in enumerate(items) if i % 7 != 3]
    Y, _ = engine.targets.targets_many(plain)
    replay.train_batch(engine.features.encode_many(plain), Y)
    expected = replay.get_state()
    for name, value in state.items():
        if name != "counters.rejected_steps":
            assert value.tobytes() == expected[name].tobytes(), name


@pytest.mark.parametrize(("optimizer", "momentum"), [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)])
def test_exploding_learning_rate_keeps_weights_finite_and_training_resumes(
    optimizer: str, momentum: float
) -> None:
    engine = Engine(
        targets=TARGETS, optimizer=optimizer, momentum=momentum, log_every=0, batch_size=8
    )
    with engine, quiet_livelearn():
        assert all(r.trained for r in results(engine, [interaction(i) for i in range(300)]))
        engine.network.learning_rate = 1e30
        statuses: set[StepStatus] = set()
        for start in range(300, 800, 50):
            chunk = results(engine, [interaction(i) for i in range(start, start + 50)])
            statuses |= {r.status for r in chunk}
            for r in chunk:
                assert (r.status is StepStatus.TRAINED and math.isfinite(r.loss)) or (  # type: ignore[arg-type]
                    r.status is StepStatus.REJECTED and r.reason
                )
            assert finite_state(engine.network.get_state())
            s = engine.stats()
            assert s.steps + s.rejected == s.interactions == start + 50
        engine.network.learning_rate = 0.05
        after = results(engine, [interaction(i) for i in range(800, 1300)])
        assert all(r.trained for r in after), {r.status for r in after}
        assert finite_state(engine.network.get_state())
    assert statuses <= {StepStatus.TRAINED, StepStatus.REJECTED}


def test_mse_training_resumes_after_an_exploding_learning_rate() -> None:
    """Steps accepted at learning_rate=1e30 (finite, so the guard lets them through)
    leave weights near 1e28: |prediction - target| exceeds 1.8e19, so the squared
    error overflows float32, and the saturated tanh units turn sum_o W d into
    inf * 0. The loss is computed in double and a saturated unit passes exactly zero
    gradient, so with a sane learning rate again the steps (finite gradient) train;
    the weights stay finite throughout."""
    engine = Engine(targets=TARGETS, loss="mse", log_every=0)
    with engine, quiet_livelearn():
        results(engine, [interaction(i) for i in range(300)])
        engine.network.learning_rate = 1e30
        results(engine, [interaction(i) for i in range(300, 800)])
        assert finite_state(engine.network.get_state())
        engine.network.learning_rate = 0.05
        after = results(engine, [interaction(i) for i in range(800, 1800)])
        assert finite_state(engine.network.get_state())
    assert any(r.trained for r in after), "no step trained after the learning rate was restored"
    assert all(r.loss is not None and math.isfinite(r.loss) for r in after if r.trained)


def test_extreme_numeric_features_never_make_weights_non_finite() -> None:
    """Context values at the edge of float32 reach the network through numeric
    slots; whatever the guard decides per step, the weights stay finite and a
    rejected step changes nothing."""
    engine = Engine(
        features=HashedFeatureEncoder(n_buckets=128, numeric_keys=("x",)),
        targets=TARGETS,
        optimizer="adam",
        log_every=0,
        batch_size=1,
    )
    values = [F32_MAX, -F32_MAX, 1e30, 1e-45, 0.0, 1.0]
    with engine, quiet_livelearn():
        for i in range(120):
            x = InteractionData("click" if i % 3 else "skip", 1.7e9 + i, f"u{i % 5}",
                                {"x": values[i % len(values)]})  # fmt: skip
            before = state_bytes(engine.network, skip=("counters.rejected_steps",))
            (r,) = results(engine, [x])
            after = state_bytes(engine.network, skip=("counters.rejected_steps",))
            if r.status is StepStatus.REJECTED:
                assert after == before
            else:
                assert r.trained and math.isfinite(r.loss)  # type: ignore[arg-type]
            assert finite_state(engine.network.get_state())
        s = engine.stats()
        assert s.steps + s.rejected == s.interactions == 120
        assert s.steps > 0


@pytest.mark.parametrize("label", [-1e30, 2.0, -1.0])
def test_bce_rejects_targets_outside_0_1(label: float) -> None:
    """With loss='bce' the output is a probability: a target outside [0, 1] (which
    would train with a negative loss, or at -1e30 wreck the weights) is rejected by
    the network and changes nothing but the rejected counter."""
    engine = Engine(targets=TARGETS, log_every=0)
    with engine, quiet_livelearn():
        results(engine, [interaction(i) for i in range(100)])
        before = state_bytes(engine.network)
        (outcome,) = drain([engine.train_step(interaction(100, label=label))], WAIT)
        after = state_bytes(engine.network, skip=())
    assert not (isinstance(outcome, StepResult) and outcome.trained), outcome
    assert {k: v for k, v in after.items() if k != "counters.rejected_steps"} == {
        k: v for k, v in before.items() if k != "counters.rejected_steps"
    }
