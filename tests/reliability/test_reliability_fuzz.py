"""Bad input, fuzzed (hypothesis): ``InteractionData`` fields through two engines, and
arrays of every dtype, shape, layout and content through ``Network``. The contract
and the strategies are in ``_fuzz.py``; the counts below only make sure both the
accepting and the refusing paths were reached.
"""

from __future__ import annotations

import numpy as np
import pytest
from _fuzz import run_interaction_fuzz, run_network_fuzz
from _scenarios import state_bytes

from livelearn import Engine, Network, StepRejected


def test_interaction_fields_through_two_engines() -> None:
    seen = run_interaction_fuzz(400)
    print(f"\ninteraction outcomes (dense/hashed engine): {dict(seen)}")
    assert sum(seen.values()) >= 300
    outcomes = {part for key in seen for part in key.split("/")}
    assert {"trained", "invalid"} <= outcomes


def test_network_arrays() -> None:
    seen = run_network_fuzz(700)
    print(f"\nnetwork outcomes: {dict(seen)}")
    assert sum(seen.values()) >= 500
    assert {"TypeError", "ValueError", "trained", "batch", "predicted"} <= set(seen)


# Python ints beyond the float range, pinned here as well as fuzzed (see _fuzz.py):


@pytest.mark.parametrize("y", [10**400, -(10**400)], ids=["+10**400", "-10**400"])
def test_a_huge_int_target_is_rejected_like_a_huge_float(y: int) -> None:
    """An int target beyond the double range is +-inf, like the float 1e300 in
    float32: rejected as non-finite input, the model unchanged."""
    net = Network(layers=[3, 4, 1])
    before = state_bytes(net, skip=("counters.rejected_steps",))
    with pytest.raises((StepRejected, ValueError)):
        net.train_step(np.ones(3, np.float32), y)
    assert state_bytes(net, skip=("counters.rejected_steps",)) == before


@pytest.mark.parametrize("where", ["constructor", "setter", "apply_delta"])
def test_a_huge_int_hyperparameter_raises_value_error(where: str) -> None:
    """An int beyond the float range as a learning rate or apply_delta weight raises
    a ValueError naming the argument, as the float 1e300 does."""
    net = Network(layers=[3, 4, 1])
    with pytest.raises(ValueError, match=r"learning_rate|weight"):
        if where == "constructor":
            Network(layers=[3, 4, 1], learning_rate=10**400)
        elif where == "setter":
            net.learning_rate = 10**400
        else:
            net.apply_delta({k: np.zeros_like(v) for k, v in net.parameters().items()}, 10**400)


@pytest.mark.parametrize(
    "kwargs",
    [{"activation": 1.5}, {"loss": None}, {"optimizer": "\ud800"}],
    ids=["activation", "loss", "optimizer"],
)
def test_engine_rejects_non_string_names_with_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError) as info:
        Engine(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value) and next(iter(kwargs)) in str(info.value)
