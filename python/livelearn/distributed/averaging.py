"""Arithmetic on parameter dictionaries: FedAvg-style weighted averages, differences, sums.

A *parameter dictionary* maps tensor names to arrays, as returned by
:meth:`livelearn.Network.parameters` (``layers.<i>.weight`` / ``layers.<i>.bias``),
:meth:`~livelearn.Network.delta_since` or :meth:`~livelearn.Network.get_state` (which
adds ``optimizer.*`` buffers and ``counters.*``). Every function here validates that
its inputs hold the same names with the same shapes, accumulates in float64 and
returns fresh float32 arrays (integer counters keep their dtype), so results can be
handed to :meth:`~livelearn.Network.apply_delta` or :meth:`~livelearn.Network.set_state`
directly.

FedAvg (McMahan et al., 2017) weights each replica by the number of examples it
trained on; here that is the number of training *steps* it contributed::

    average = sum_i w_i * x_i / sum_i w_i

Example:
    >>> import numpy as np
    >>> a = {"w": np.array([1.0, 0.0], np.float32)}
    >>> b = {"w": np.array([0.0, 4.0], np.float32)}
    >>> average_deltas([a, b], weights=[300, 100])["w"].tolist()
    [0.75, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

# The element-wise operations live one layer down (Network.delta_since uses
# subtract too); they are part of this module's public API as well.
from livelearn.params import Params, add_scaled, check_finite, check_same_layout, subtract

__all__ = [
    "Params",
    "add_scaled",
    "average_deltas",
    "average_states",
    "check_finite",
    "subtract",
]


def _check_weights(weights: Sequence[float] | None, n: int) -> NDArray[np.float64]:
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights: expected {n} values, got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights: must be finite and >= 0")
    if not w.sum() > 0:
        raise ValueError("weights: at least one must be > 0 (nothing to average)")
    return w


def average_deltas(
    deltas: Sequence[Params], weights: Sequence[float] | None = None, *, sparse: bool = False
) -> dict[str, NDArray[np.float32]]:
    """The weighted mean ``sum_i w_i * delta_i / sum_i w_i`` of several deltas.

    ``weights`` are usually the training steps each delta holds (FedAvg); None
    weighs every delta equally. A zero weight leaves that delta out. The sum runs
    in float64, the result is float32.

    With ``sparse=True`` each element is averaged over the deltas that changed
    it only (non-zero), ``sum_i w_i d_i / sum_{i: d_i != 0} w_i``: a weight that
    one replica alone trained (the input row of a hashed feature only its users
    have) keeps that replica's full change instead of ``1/n`` of it, while
    weights every replica trained get the plain FedAvg mean. Measured on the
    simulator with a hashed encoder and disjoint user shards, this tracks a
    single engine far more closely than the plain mean (see
    :mod:`livelearn.distributed.coordinator`).

    Applying the result with ``server_lr`` (``net.apply_delta(avg, server_lr)``)
    moves the global model by the FedAvg update; ``server_lr = len(deltas)``
    with equal weights is the plain sum of the deltas.

    Raises:
        ValueError: no delta, names or shapes that differ, or invalid weights.

    Example:
        >>> import numpy as np
        >>> d1 = {"layers.0.bias": np.array([0.2], np.float32)}
        >>> d2 = {"layers.0.bias": np.array([-0.1], np.float32)}
        >>> round(float(average_deltas([d1, d2], [1, 2])["layers.0.bias"][0]), 6)
        0.0
        >>> a = {"w": np.array([0.3, 0.2], np.float32)}
        >>> b = {"w": np.array([0.0, 0.4], np.float32)}  # b never touched w[0]
        >>> average_deltas([a, b], sparse=True)["w"].tolist()
        [0.30000001192092896, 0.30000001192092896]
    """
    names = check_same_layout(deltas, "deltas")
    w = _check_weights(weights, len(deltas))
    total = float(w.sum())
    out: dict[str, NDArray[np.float32]] = {}
    for name in names:
        acc = np.zeros(np.shape(deltas[0][name]), dtype=np.float64)
        norm = np.zeros_like(acc) if sparse else None
        for wi, delta in zip(w.tolist(), deltas, strict=True):
            if wi:
                d = np.asarray(delta[name], dtype=np.float64)
                acc += wi * d
                if norm is not None:
                    norm += wi * (d != 0.0)
        if norm is None:
            out[name] = (acc / total).astype(np.float32)
        else:
            out[name] = np.divide(acc, norm, out=np.zeros_like(acc), where=norm > 0).astype(
                np.float32
            )
    return out


def average_states(
    states: Sequence[Params], weights: Sequence[float] | None = None
) -> dict[str, NDArray[Any]]:
    """Weighted mean of full states (parameters *and* optimizer buffers).

    Floating-point tensors (``layers.*``, ``optimizer.*``) are averaged with
    ``weights`` like :func:`average_deltas`. Integer tensors (``counters.steps``,
    ``counters.rejected_steps``) are not averages of anything meaningful: they
    take the maximum, so Adam's bias correction, which depends on the step
    count, never goes back in time.

    This is "optimizer state averaged like the parameters"; compare
    :mod:`livelearn.distributed` for the measured alternatives.

    Example:
        >>> import numpy as np
        >>> from livelearn import Network
        >>> a, b = Network(layers=[2, 1], seed=1), Network(layers=[2, 1], seed=2)
        >>> avg = average_states([a.get_state(), b.get_state()])
        >>> c = Network(layers=[2, 1]); c.set_state(avg)
        >>> w = (a.get_state()["layers.0.weight"] + b.get_state()["layers.0.weight"]) / 2
        >>> bool(np.allclose(c.get_state()["layers.0.weight"], w))
        True
    """
    names = check_same_layout(states, "states")
    w = _check_weights(weights, len(states))
    total = float(w.sum())
    out: dict[str, NDArray[Any]] = {}
    for name in names:
        first = np.asarray(states[0][name])
        if np.issubdtype(first.dtype, np.integer):
            out[name] = np.max(np.stack([np.asarray(s[name]) for s in states]), axis=0).astype(
                first.dtype
            )
            continue
        acc = np.zeros(first.shape, dtype=np.float64)
        for wi, state in zip(w.tolist(), states, strict=True):
            if wi:
                acc += wi * np.asarray(state[name], dtype=np.float64)
        out[name] = (acc / total).astype(np.float32)
    return out
