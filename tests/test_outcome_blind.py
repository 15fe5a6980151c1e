"""The outcome is never an input: with ``targets`` given the network does not see
the action type (issue 13, item 1)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from livelearn import Engine, FeatureEncoder, HashedFeatureEncoder, InteractionData
from livelearn.features import encoder_from_config

WAIT = 60.0  # seconds: only bounds a hang
TARGETS = {"click": 1.0, "view": 0.0}


def leakage_stream(n_users: int, n_items: int, n: int, seed: int = 0) -> list[InteractionData]:
    """The issue's leakage case, small: the outcome *is* the action type."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        u, i = int(rng.integers(n_users)), int(rng.integers(n_items))
        click = u % 2 == i % 2 and rng.random() < 0.8
        action = "click" if click else "view"
        out.append(InteractionData(action, float(t), f"u{u}", {"item": f"i{i}"}))
    return out


@pytest.mark.parametrize(
    "features",
    [None, HashedFeatureEncoder(n_buckets=4096)],
    ids=["FeatureEncoder", "HashedFeatureEncoder"],
)
def test_a_model_cannot_read_the_outcome_from_the_action_type(
    features: HashedFeatureEncoder | None,
) -> None:
    events = leakage_stream(20, 10, 3000)
    with Engine(features=features, targets=TARGETS, optimizer="adam", seed=1) as engine:
        futures = engine.train_many(events)
        losses = [f.result(WAIT).loss for f in futures]
        queries = [
            InteractionData(a, 5.0, f"u{u}", {"item": f"i{i}"})
            for u in range(4)
            for i in range(4)
            for a in ("click", "view")
        ]
        out = engine.predict_many(queries)
    # With the action type as an input the late loss falls to ~0 (the issue: 0.0002).
    late = float(np.mean([x for x in losses[-1000:] if x is not None]))
    assert late > 0.3
    np.testing.assert_array_equal(out[0::2], out[1::2])  # click vs view query


def test_feature_encoder_keeps_four_slots_with_slot_zero_at_zero() -> None:
    it = InteractionData("click", 43200.0, "u1", {"page": "home"})
    full = FeatureEncoder().encode(it)
    with Engine(targets=TARGETS) as engine:
        enc = engine.features
        assert enc.n_inputs == 4 and enc.get_config()["action"] is False
        seen = enc.encode(it)
        assert seen[0] == 0.0
        np.testing.assert_array_equal(seen[1:], full[1:])
        assert "0.0" in enc.describe()[0]
        engine.train_step(it).result(WAIT)
        assert np.asarray(engine.history[-1].features)[0] == 0.0


def test_hashed_encoder_drops_action_and_its_crosses_keeping_other_hashes() -> None:
    enc = HashedFeatureEncoder(
        n_buckets=1 << 16, crosses=[("user", "action"), ("user", "context:item")]
    )
    blind = enc.without_action()
    cfg = blind.get_config()
    assert cfg["action"] is False and cfg["crosses"] == [["user", "context:item"]]
    assert not blind.uses_action and enc.uses_action
    a = InteractionData("click", 0.0, "u1", {"item": "i1"})
    b = InteractionData("view", 0.0, "u1", {"item": "i1"})
    ia, _ = blind.encode_sparse(a)
    ib, _ = blind.encode_sparse(b)
    np.testing.assert_array_equal(ia, ib)
    full, _ = enc.encode_sparse(a)
    assert set(ia.tolist()) < set(full.tolist())  # the other hashes are unchanged
    with Engine(features=enc, targets=TARGETS) as engine:
        assert engine.features.get_config() == cfg


def test_explicit_labels_without_targets_keep_the_action_type() -> None:
    enc = HashedFeatureEncoder(n_buckets=256)
    with Engine(features=enc) as engine:
        assert engine.features is enc
    with Engine() as engine:
        assert "action" not in engine.features.get_config()


class _LeakyEncoder(FeatureEncoder):
    """A custom encoder that reads the action type."""

    def encode_many(self, interactions: Sequence[InteractionData]) -> NDArray[np.float32]:
        out = super().encode_many(interactions)
        out[:, 3] = [len(it.action_type) for it in interactions]
        return out


class _BlindEncoder(FeatureEncoder):
    def __init__(self) -> None:
        super().__init__(action=False)


def test_a_custom_encoder_that_uses_the_action_type_is_refused() -> None:
    with pytest.raises(ValueError, match="encodes the action type"):
        Engine(features=_LeakyEncoder(action=False), targets=TARGETS)
    Engine(features=_LeakyEncoder(action=False)).close()  # labels only: allowed
    engine = Engine(features=_BlindEncoder(), targets=TARGETS)
    engine.close()


class _NeedsContext(FeatureEncoder):
    def encode_many(self, interactions: Sequence[InteractionData]) -> NDArray[np.float32]:
        if any(it.context is None for it in interactions):
            raise ValueError("needs a context")
        return super().encode_many(interactions)


def test_an_encoder_that_cannot_be_probed_is_accepted_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="livelearn")
    Engine(features=_NeedsContext(action=False), targets=TARGETS).close()
    assert any("could not check" in r.getMessage() for r in caplog.records)


def test_a_saved_engine_keeps_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "e.ckpt"
    with Engine(features=HashedFeatureEncoder(n_buckets=512), targets=TARGETS) as engine:
        engine.train_many(leakage_stream(4, 4, 50))[-1].result(WAIT)
        engine.save(path)
        cfg = engine.features.get_config()
    loaded = Engine.load(path)
    try:
        assert loaded.features.get_config() == cfg
        assert encoder_from_config(cfg).get_config() == cfg
        q = [InteractionData(a, 0.0, "u1", {"item": "i1"}) for a in ("click", "view")]
        out = loaded.predict_many(q)
        assert out[0, 0] == out[1, 0]
    finally:
        loaded.close()
