"""Helpers shared by the River and scikit-learn adapters."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from livelearn.field_network import FieldNetwork
from livelearn.network import Network

__all__ = ["MODELS", "class_probabilities", "network_from_state", "network_state"]

#: The adapters' ``model=`` choices: the MLP, or the field-aware FM model.
MODELS = ("mlp", "field")


def network_state(network: Network | FieldNetwork) -> dict[str, Any]:
    """A picklable snapshot of ``network``: its (exact) config and its tensors."""
    kind = "field" if isinstance(network, FieldNetwork) else "mlp"
    return {"kind": kind, "config": network.get_config(), "state": network.get_state()}


def network_from_state(saved: dict[str, Any]) -> Network | FieldNetwork:
    """Rebuild the network of :func:`network_state`, bit for bit (either kind).

    Example:
        >>> net = Network(layers=[3, 2, 1], optimizer="adam", seed=4)
        >>> copy = network_from_state(network_state(net))
        >>> bool((copy.get_state()["layers.0.weight"] == net.get_state()["layers.0.weight"]).all())
        True
    """
    network: Network | FieldNetwork
    if saved.get("kind") == "field":
        network = FieldNetwork.from_config(saved["config"])
    else:
        network = Network.from_config(saved["config"])
    network.set_state(saved["state"])
    return network


def class_probabilities(out: NDArray[np.floating]) -> NDArray[np.float64]:
    """Per-class probabilities, rows summing to 1, from ``(n, k)`` sigmoid outputs.

    One output (``k == 1``) is a binary classifier's probability of the second
    class: ``[1 - p, p]``. Several outputs are one-vs-rest sigmoids, normalised to
    sum to 1 (as scikit-learn's one-vs-rest logistic regression does); a row whose
    sigmoids all underflowed to 0 gets the uniform distribution.

    Example:
        >>> class_probabilities(np.array([[0.25]])).tolist()
        [[0.75, 0.25]]
        >>> class_probabilities(np.array([[0.2, 0.6, 0.2], [0.0, 0.0, 0.0]])).round(2).tolist()
        [[0.2, 0.6, 0.2], [0.33, 0.33, 0.33]]
    """
    p = np.asarray(out, dtype=np.float64)
    if p.shape[1] == 1:
        return np.column_stack([1.0 - p[:, 0], p[:, 0]])
    total = p.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        proba: NDArray[np.float64] = p / total
    proba[~(total[:, 0] > 0)] = 1.0 / p.shape[1]
    return proba
