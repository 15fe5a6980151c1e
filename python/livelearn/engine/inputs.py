"""The outcome is never an input: what the network may see when targets are derived.

When an engine derives its targets from the interaction (``targets`` given: a
mapping on the action type or a callable), the action type *is* the outcome, so
a model that sees it learns to read the answer instead of the user's
preference (loss near zero, nothing learned). Then:

* the built-in encoders leave the action type out (:meth:`FeatureEncoder.
  without_action` keeps the 4-slot layout with ``input[0] = 0.0``;
  :meth:`HashedFeatureEncoder.without_action` drops ``action=`` and every cross
  with the action);
* any other encoder must not depend on the action type: two probe interactions
  that differ only in it must encode identically, else ``ValueError``.

With explicit labels only (no ``targets``) the action type may stay an input.
"""

from __future__ import annotations

import logging

import numpy as np

from livelearn.features import Encoder, FeatureEncoder, HashedFeatureEncoder
from livelearn.interaction import InteractionData
from livelearn.targets import TargetMapper

__all__ = ["outcome_blind"]

logger = logging.getLogger("livelearn")

# Two interactions that differ only in the action type (different lengths too,
# so an encoder reading any property of it is caught).
_PROBES = (
    InteractionData("click", 0.0, "livelearn-probe-user"),
    InteractionData("livelearn-probe-action", 0.0, "livelearn-probe-user"),
)


def outcome_blind(encoder: Encoder, targets: TargetMapper) -> Encoder:
    """``encoder``, or the form of it that leaves the action type out when
    ``targets`` derives the outcome from the interaction.

    Raises:
        ValueError: a custom encoder whose output depends on the action type.
    """
    if not targets.derived:
        return encoder
    if type(encoder) in (FeatureEncoder, HashedFeatureEncoder):
        builtin = encoder
        assert isinstance(builtin, (FeatureEncoder, HashedFeatureEncoder))
        return builtin.without_action() if builtin.uses_action else builtin
    _refuse_if_action_dependent(encoder)
    return encoder


def _refuse_if_action_dependent(encoder: Encoder) -> None:
    try:
        if encoder.sparse:
            a, b = (encoder.encode_sparse_many([p]) for p in _PROBES)
            same = all(np.array_equal(a[i], b[i]) for i in range(3))
        else:
            same = np.array_equal(
                encoder.encode_many([_PROBES[0]]), encoder.encode_many([_PROBES[1]])
            )
    except Exception as exc:  # an encoder that needs context cannot be probed
        logger.warning(
            "features: could not check that %s ignores the action type (%s: %s); "
            "with targets given it must not use it",
            type(encoder).__name__,
            type(exc).__name__,
            exc,
        )
        return
    if not same:
        raise ValueError(
            f"features: {type(encoder).__name__} encodes the action type, but the targets "
            "are derived from it (targets given): the outcome would be an input and the "
            "model would learn nothing. Leave the action type out of the encoder, or pass "
            "the outcome as each interaction's label and no targets"
        )
