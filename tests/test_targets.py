"""Tests for livelearn.targets."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from livelearn.interaction import InteractionData, InvalidInteraction
from livelearn.targets import TargetMapper


def it(action: str = "click", label: Any = None, **context: Any) -> InteractionData:
    return InteractionData(action, 1.7e9, "u1", context or None, label)


def test_mapping_lookup() -> None:
    mapper = TargetMapper({"click": 1.0, "skip": 0, "like": True})
    for action, expected in (("click", 1.0), ("skip", 0.0), ("like", 1.0)):
        out = mapper.target(it(action))
        assert out.dtype == np.float32 and out.shape == (1,)
        assert out.tolist() == [expected]


def test_explicit_label_wins() -> None:
    assert TargetMapper({"click": 1.0}).target(it("click", label=0.25)).tolist() == [0.25]
    mapper = TargetMapper(lambda _: 1.0)
    assert mapper.target(it(label=-3)).tolist() == [-3.0]
    assert TargetMapper().target(it(label=[2.5])).tolist() == [2.5]


def test_multi_output() -> None:
    mapper = TargetMapper({"buy": [1, 5.5], "view": np.array([0.0, 1.0])}, n_outputs=2)
    assert mapper.n_outputs == 2
    assert mapper.target(it("buy")).tolist() == [1.0, 5.5]
    assert mapper.target(it("view")).tolist() == [0.0, 1.0]
    assert mapper.target(it("buy", label=(3, 4))).tolist() == [3.0, 4.0]


def test_returned_arrays_are_independent() -> None:
    mapper = TargetMapper({"click": 1.0})
    first = mapper.target(it())
    first[0] = 99.0
    assert mapper.target(it()).tolist() == [1.0]


def test_no_target_raises() -> None:
    for mapper in (TargetMapper(), TargetMapper({"click": 1.0}), TargetMapper(lambda _: None)):
        with pytest.raises(InvalidInteraction) as info:
            mapper.target(it("view"))
        assert info.value.field == "label"
        assert info.value.reason == "no label and no target for action type 'view'"
        assert mapper.target_or_none(it("view")) is None


def test_callable_targets() -> None:
    def reward(interaction: InteractionData) -> float | None:
        dwell = (interaction.context or {}).get("dwell")
        return None if not isinstance(dwell, int) else min(dwell / 60.0, 1.0)

    mapper = TargetMapper(reward)
    assert mapper.target(it(dwell=30)).tolist() == [0.5]
    assert mapper.target_or_none(it()) is None
    vec = TargetMapper(lambda _: (1, 2, 3), n_outputs=3).target(it())
    assert vec.tolist() == [1.0, 2.0, 3.0]
    assert TargetMapper(lambda _: np.float64(0.5)).target(it()).tolist() == [0.5]
    assert TargetMapper(lambda _: np.array([1, 2]), n_outputs=2).target(it()).tolist() == [1, 2]


def test_callable_exceptions_are_wrapped() -> None:
    def broken(_: InteractionData) -> float:
        raise KeyError("score")

    with pytest.raises(InvalidInteraction) as info:
        TargetMapper(broken).target(it())
    assert info.value.field == "label"
    assert "KeyError" in info.value.reason and "broken" in info.value.reason
    assert isinstance(info.value.__cause__, KeyError)

    own = InvalidInteraction("context['x']", "missing")

    def strict(_: InteractionData) -> float:
        raise own

    with pytest.raises(InvalidInteraction) as info:
        TargetMapper(strict).target(it())
    assert info.value is own


@pytest.mark.parametrize(
    ("value", "n_outputs", "words"),
    [
        (float("nan"), 1, "finite"),
        (float("inf"), 1, "finite"),
        (1e39, 1, "float32"),
        ([1.0, 1e39], 2, "item 1"),
        ("1.0", 1, "got str"),
        (b"1", 1, "got bytes"),
        ([1.0], 2, "length"),
        ([1.0, 2.0, 3.0], 2, "length"),
        (1.0, 2, "scalar"),
        ([1.0, "x"], 2, "item 1"),
        ([[1.0], [2.0]], 2, "item 0"),
        (np.zeros((2, 1)), 2, "1-D"),
        ({"a": 1.0}, 1, "got dict"),
        (object(), 1, "got object"),
        (1j, 1, "got complex"),
    ],
)
def test_invalid_callable_results(value: Any, n_outputs: int, words: str) -> None:
    mapper = TargetMapper(lambda _: value, n_outputs=n_outputs)
    with pytest.raises(InvalidInteraction) as info:
        mapper.target(it())
    assert info.value.field == "label"
    assert words in info.value.reason


@pytest.mark.parametrize(
    ("label", "n_outputs", "words"),
    [
        (1.0, 2, "scalar"),
        ([1.0, 2.0], 1, "length"),
        ([1.0, 2.0], 3, "length"),
        (1e39, 1, "float32"),
        ([0.0, -1e39], 2, "float32"),
    ],
)
def test_invalid_explicit_labels(label: Any, n_outputs: int, words: str) -> None:
    with pytest.raises(InvalidInteraction) as info:
        TargetMapper(n_outputs=n_outputs).target(it(label=label))
    assert info.value.field == "label"
    assert words in info.value.reason


@pytest.mark.parametrize(
    ("targets", "n_outputs", "words"),
    [
        ({"click": float("nan")}, 1, "targets['click']"),
        ({"click": 1e39}, 1, "targets['click']"),
        ({"click": [1.0]}, 2, "targets['click']"),
        ({"click": 1.0}, 2, "targets['click']"),
        ({"click": "1"}, 1, "targets['click']"),
        ({"click": None}, 1, "targets['click']"),
        ({"": 1.0}, 1, "targets['']"),
        ({3: 1.0}, 1, "targets[3]"),
        (5, 1, "targets"),
        ("click", 1, "targets"),
        (None, 0, "n_outputs"),
        (None, 1025, "n_outputs"),
        (None, True, "n_outputs"),
        (None, 1.0, "n_outputs"),
    ],
)
def test_construction_errors(targets: Any, n_outputs: Any, words: str) -> None:
    with pytest.raises(ValueError) as info:
        TargetMapper(targets, n_outputs)
    assert not isinstance(info.value, InvalidInteraction)
    assert str(info.value).startswith(words)


def test_config_mapping_round_trip() -> None:
    mapper = TargetMapper({"buy": [1, 5.5], "view": [0, 0]}, n_outputs=2)
    cfg = mapper.get_config()
    assert cfg == {
        "type": "mapping",
        "mapping": {"buy": [1.0, 5.5], "view": [0.0, 0.0]},
        "n_outputs": 2,
    }
    clone = TargetMapper.from_config(json.loads(json.dumps(cfg)))
    assert clone.get_config() == cfg
    assert clone.target(it("buy")).tolist() == [1.0, 5.5]
    scalar = TargetMapper({"click": 1})
    assert scalar.get_config() == {"type": "mapping", "mapping": {"click": 1.0}, "n_outputs": 1}


def test_config_callable_and_none() -> None:
    def reward(_: InteractionData) -> float:
        return 0.5

    cfg = TargetMapper(reward, n_outputs=1).get_config()
    assert cfg["type"] == "callable" and cfg["n_outputs"] == 1
    json.dumps(cfg)
    clone = TargetMapper.from_config(cfg, callable=reward)
    assert clone.target(it()).tolist() == [0.5]
    none_cfg = TargetMapper(n_outputs=3).get_config()
    assert none_cfg == {"type": "none", "n_outputs": 3}
    assert TargetMapper.from_config(none_cfg).n_outputs == 3


@pytest.mark.parametrize(
    ("config", "fn", "words"),
    [
        ([("type", "none")], None, "mapping"),
        ({"type": "table"}, None, "unknown type"),
        ({}, None, "unknown type"),
        ({"type": "callable", "n_outputs": 1}, None, "needs the function"),
        ({"type": "none", "n_outputs": 1}, lambda _: 1.0, "got a callable"),
        ({"type": "none", "n_outputs": 0}, None, "n_outputs"),
        ({"type": "none", "extra": 1}, None, "unknown keys"),
        ({"type": "mapping", "n_outputs": 1}, None, "'mapping' must be a mapping"),
        ({"type": "mapping", "mapping": {"a": "x"}}, None, "targets['a']"),
        ({"type": "callable"}, 5, "targets"),
    ],
)
def test_bad_configs(config: Any, fn: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[")):
        TargetMapper.from_config(config, callable=fn)


def test_repr() -> None:
    assert repr(TargetMapper({"a": 1})) == "TargetMapper({'a': 1.0}, n_outputs=1)"
    assert repr(TargetMapper()) == "TargetMapper(None, n_outputs=1)"
