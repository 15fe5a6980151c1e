"""The engine over the field-aware model: the default for a HashedFeatureEncoder
(issue 13, item 4)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livelearn import (
    Engine,
    FieldNetwork,
    HashedFeatureEncoder,
    InteractionData,
    InvalidInteraction,
    Network,
)
from livelearn.results import SparseFeatures, StepStatus

WAIT = 60.0  # seconds: only bounds a hang
N_USERS, N_ITEMS = 100, 20


def parity_events(n: int, labelled: bool, seed: int = 0) -> list[InteractionData]:
    """A user clicks with probability 0.8 when user and item share parity, else never."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        u, i = int(rng.integers(N_USERS)), int(rng.integers(N_ITEMS))
        click = u % 2 == i % 2 and rng.random() < 0.8
        ctx = {"item": f"i{i}"}
        if labelled:
            out.append(InteractionData("view", float(t), f"u{u}", ctx, label=float(click)))
        else:
            out.append(InteractionData("click" if click else "view", float(t), f"u{u}", ctx))
    return out


def pair_accuracy(engine: Engine, action: str) -> float:
    queries = [
        InteractionData(action, 0.0, f"u{u}", {"item": f"i{i}"})
        for u in range(N_USERS)
        for i in range(N_ITEMS)
    ]
    p = engine.predict_many(queries)[:, 0]
    truth = np.array([u % 2 == i % 2 for u in range(N_USERS) for i in range(N_ITEMS)])
    return float(np.mean((p > 0.4) == truth))


def test_defaults_pick_the_field_model_and_engine_keeps_the_mlp() -> None:
    with Engine(features=HashedFeatureEncoder(n_buckets=1024)) as engine:
        assert isinstance(engine.network, FieldNetwork)
        assert engine.config["model"] == "field"
        assert engine.network.get_config()["optimizer"] == "adagrad"
    with Engine() as engine:
        assert isinstance(engine.network, Network) and engine.config["model"] == "mlp"
    # An MLP argument given: the MLP, as before.
    with Engine(features=HashedFeatureEncoder(n_buckets=64), optimizer="adam") as engine:
        assert isinstance(engine.network, Network)
    with pytest.raises(ValueError, match="model"):
        Engine(model="field")
    with pytest.raises(ValueError, match="model"):
        Engine(model="deep")


@pytest.mark.parametrize("labelled", [True, False], ids=["label", "targets"])
def test_the_parity_task_is_learned_through_predict(labelled: bool) -> None:
    targets = None if labelled else {"click": 1.0, "view": 0.0}
    events = parity_events(30_000, labelled)
    with Engine(features=HashedFeatureEncoder(context_keys=["item"]), targets=targets) as engine:
        results = [f.result(WAIT) for f in engine.train_many(events)]
        assert all(r.status is StepStatus.TRAINED for r in results)
        assert [r.step for r in results] == list(range(1, len(events) + 1))
        accuracy = pair_accuracy(engine, "view")
        if not labelled:  # the action type of the query does not matter
            assert pair_accuracy(engine, "click") == accuracy
    assert accuracy >= 0.95


def test_predictions_before_update_history_stats_and_nan_guard() -> None:
    enc = HashedFeatureEncoder(n_buckets=512)
    with Engine(features=enc, targets={"click": 1.0, "view": 0.0}, history_size=10) as engine:
        x = InteractionData("click", 1.0, "u1", {"item": "i1"})
        p0 = engine.predict(x)
        r = engine.train_step(x).result(WAIT)
        assert r.prediction is not None and math.isclose(
            float(np.ravel(r.prediction)[0]), p0, rel_tol=1e-6
        )
        before = engine.network.get_state()
        with pytest.raises(InvalidInteraction):  # a NaN label never reaches the model
            InteractionData("view", 2.0, "u1", label=math.nan)
        # A bce target outside [0, 1] is refused by the model's guard.
        bad = engine.train_step(InteractionData("view", 2.0, "u1", label=2.0)).result(WAIT)
        assert bad.status is StepStatus.REJECTED and bad.step is None
        after = engine.network.get_state()
        assert after.pop("counters.rejected_steps") == before.pop("counters.rejected_steps") + 1
        for k in before:  # every parameter and accumulator unchanged
            np.testing.assert_array_equal(before[k], after[k])
        stats = engine.stats()
        assert stats.steps == 1 and stats.steps + stats.rejected == 2
        (example,) = engine.history
        assert isinstance(example.features, SparseFeatures)
        idx, val = engine.features.encode_sparse(x)
        np.testing.assert_array_equal(example.features.indices, idx)
        np.testing.assert_allclose(example.features.values, val)


def _run(engine: Engine, events: list[InteractionData]) -> list[float]:
    return [float(f.result(WAIT).loss or 0.0) for f in engine.train_many(events)]


def test_save_load_resumes_bit_identically(tmp_path: Path) -> None:
    events = parity_events(600, labelled=False, seed=3)
    kwargs: dict[str, Any] = {
        "features": HashedFeatureEncoder(n_buckets=2048, context_keys=["item"]),
        "targets": {"click": 1.0, "view": 0.0},
    }
    with Engine(**kwargs) as straight:
        expected = _run(straight, events)
        final = straight.network.get_state()
    path = tmp_path / "field.ckpt"
    with Engine(**kwargs) as first:
        head = _run(first, events[:250])
        first.save(path)
    resumed = Engine.load(path)
    try:
        assert isinstance(resumed.network, FieldNetwork)
        assert resumed.config == first.config
        assert resumed.stats().steps == 250
        tail = _run(resumed, events[250:])
        assert head + tail == expected
        state = resumed.network.get_state()
        for k, v in final.items():
            np.testing.assert_array_equal(state[k], v)
        tensors, meta = resumed.export_state()
        assert "network.optimizer.embedding.G" in tensors
        assert meta["network"]["n_fields"] == resumed.network.get_config()["n_fields"]
    finally:
        resumed.close()


def test_inspect_describes_a_field_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from livelearn.cli import inspect

    path = tmp_path / "f.ckpt"
    with Engine(features=HashedFeatureEncoder(n_buckets=256)) as engine:
        engine.train_many(parity_events(20, labelled=True))[-1].result(WAIT)
        engine.save(path)
        n_parameters = engine.network.n_parameters  # type: ignore[union-attr]
    assert inspect.run(argparse.Namespace(checkpoint=str(path), json=False)) == 0
    out = capsys.readouterr().out
    assert "field model" in out and f"{n_parameters:,}" in out
