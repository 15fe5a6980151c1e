"""Element-wise arithmetic on parameter dictionaries (tensor name -> array).

A *parameter dictionary* is what :meth:`livelearn.Network.parameters`,
:meth:`~livelearn.Network.delta_since` or :meth:`~livelearn.Network.get_state`
return. Every function checks that its operands hold the same names with the
same shapes and returns fresh float32 arrays. The averages built on them are in
:mod:`livelearn.distributed.averaging`, which re-exports these.

This module imports nothing from livelearn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Params", "add_scaled", "check_finite", "check_same_layout", "subtract"]

#: A parameter (or full state) dictionary: tensor name -> array.
Params = Mapping[str, NDArray[Any]]


def check_same_layout(items: Sequence[Params], what: str) -> list[str]:
    """The (sorted) names shared by every item; ValueError on any mismatch.

    Example:
        >>> import numpy as np
        >>> check_same_layout([{"w": np.zeros(2)}, {"w": np.ones(3)}], "deltas")
        Traceback (most recent call last):
        ...
        ValueError: deltas[1]: tensor 'w' has shape (3,), expected (2,)
    """
    if not items:
        raise ValueError(f"{what}: need at least one")
    names = sorted(items[0])
    shapes = {n: np.shape(items[0][n]) for n in names}
    for i, item in enumerate(items[1:], start=1):
        if sorted(item) != names:
            extra = sorted(set(item) ^ set(names))
            raise ValueError(f"{what}[{i}]: tensor names differ from {what}[0] ({extra})")
        for n in names:
            if np.shape(item[n]) != shapes[n]:
                raise ValueError(
                    f"{what}[{i}]: tensor {n!r} has shape {np.shape(item[n])}, expected {shapes[n]}"
                )
    return names


def subtract(a: Params, b: Params) -> dict[str, NDArray[np.float32]]:
    """``a - b`` tensor by tensor (float32); the names and shapes must match.

    Example:
        >>> import numpy as np
        >>> subtract({"w": np.array([3.0])}, {"w": np.array([1.0])})["w"].tolist()
        [2.0]
    """
    names = check_same_layout([a, b], "operands")
    return {
        n: (np.asarray(a[n], dtype=np.float32) - np.asarray(b[n], dtype=np.float32)).astype(
            np.float32, copy=False
        )
        for n in names
    }


def add_scaled(a: Params, b: Params, scale: float = 1.0) -> dict[str, NDArray[np.float32]]:
    """``a + scale * b`` tensor by tensor (float32); the names and shapes must match.

    Example:
        >>> import numpy as np
        >>> add_scaled({"w": np.array([1.0])}, {"w": np.array([2.0])}, 0.5)["w"].tolist()
        [2.0]
    """
    if not math.isfinite(scale):
        raise ValueError(f"scale: must be finite, got {scale}")
    names = check_same_layout([a, b], "operands")
    s = np.float32(scale)
    return {
        n: (np.asarray(a[n], dtype=np.float32) + s * np.asarray(b[n], dtype=np.float32)).astype(
            np.float32, copy=False
        )
        for n in names
    }


def check_finite(params: Params, what: str = "delta") -> None:
    """Raise ValueError if any tensor holds NaN or an infinity.

    Example:
        >>> import numpy as np
        >>> check_finite({"w": np.array([np.nan])})
        Traceback (most recent call last):
        ...
        ValueError: delta: tensor 'w' holds NaN or infinite values
    """
    for name, value in params.items():
        if not np.isfinite(np.asarray(value)).all():
            raise ValueError(f"{what}: tensor {name!r} holds NaN or infinite values")
