"""Decide what the network should learn from each interaction.

Example:
    >>> from livelearn.interaction import InteractionData
    >>> mapper = TargetMapper({"click": 1.0, "skip": 0.0})
    >>> mapper.target(InteractionData("click", 0, "u1")).tolist()
    [1.0]
    >>> mapper.target(InteractionData("skip", 0, "u1", label=0.5)).tolist()  # label wins
    [0.5]
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from livelearn.interaction import (
    MAX_LABEL_LEN,
    InteractionData,
    InvalidInteraction,
)

__all__ = ["TargetFn", "TargetMapper", "TargetValue"]

#: A target: a scalar (when n_outputs == 1) or n_outputs numbers.
TargetValue: TypeAlias = "float | Sequence[float] | NDArray[Any]"
#: A user function deciding the target; None means "no target for this interaction".
TargetFn: TypeAlias = "Callable[[InteractionData], TargetValue | None]"

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _vector(value: object, n_outputs: int) -> NDArray[np.float32] | str:
    """``value`` as a float32 vector of length ``n_outputs``, or why it cannot be."""
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return f"must be a number or a sequence of numbers, got {type(value).__name__}"
    if isinstance(value, (numbers.Real, np.bool_)) or (
        isinstance(value, np.ndarray) and value.ndim == 0
    ):
        if n_outputs != 1:
            return f"got a scalar but n_outputs is {n_outputs}; give a sequence of {n_outputs}"
        items: list[object] = [value.item() if isinstance(value, np.ndarray) else value]
    elif isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "biuf":
            return f"array must be 1-D and numeric, got shape {value.shape} dtype {value.dtype}"
        items = value.tolist()
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        return f"must be a number or a sequence of numbers, got {type(value).__name__}"
    if len(items) != n_outputs:
        return f"must have length n_outputs={n_outputs}, got {len(items)}"
    out = np.empty(n_outputs, dtype=np.float32)
    for i, item in enumerate(items):
        if not isinstance(item, (numbers.Real, np.bool_)):
            return f"item {i} must be a real number, got {type(item).__name__}"
        try:
            number = float(item)
        except (OverflowError, TypeError, ValueError):
            number = math.inf
        # float32 is what the network stores; 1e39 would silently become inf.
        if not -_FLOAT32_MAX <= number <= _FLOAT32_MAX:
            where = "" if n_outputs == 1 else f"item {i} "
            return f"{where}must be finite and within float32 range, got {number}"
        out[i] = number
    return out


class TargetMapper:
    """Map an interaction to the float32 target vector the network trains on.

    Precedence: the interaction's explicit ``label`` wins; otherwise ``targets``
    decides -- a mapping looked up by ``action_type``, or a callable
    ``f(interaction)`` whose ``None`` means "no target".  Without any target,
    :meth:`target` raises :class:`InvalidInteraction` (field ``"label"``).

    Args:
        targets: ``{"click": 1.0, "purchase": [1.0, 5.0]}``, a callable, or None
            (explicit labels only).  A scalar is allowed when ``n_outputs == 1``;
            sequences must have exactly ``n_outputs`` items.  Values must fit float32.
        n_outputs: width of the network's output layer (1..1024).

    Raises:
        ValueError: bad ``n_outputs`` or a bad mapping entry (named ``targets[...]``).

    Example:
        >>> from livelearn.interaction import InteractionData
        >>> mapper = TargetMapper(lambda it: 1.0 if it.action_type == "buy" else None)
        >>> mapper.target_or_none(InteractionData("view", 0, "u1")) is None
        True
    """

    __slots__ = ("_fn", "_mapping", "_n_outputs")

    _n_outputs: int
    _mapping: dict[str, NDArray[np.float32]] | None
    _fn: TargetFn | None

    def __init__(
        self,
        targets: Mapping[str, TargetValue] | TargetFn | None = None,
        n_outputs: int = 1,
    ) -> None:
        if isinstance(n_outputs, (bool, np.bool_)) or not isinstance(n_outputs, numbers.Integral):
            raise ValueError(f"n_outputs: must be an int, got {type(n_outputs).__name__}")
        n = operator.index(n_outputs)
        if not 1 <= n <= MAX_LABEL_LEN:
            raise ValueError(f"n_outputs: must be in [1, {MAX_LABEL_LEN}], got {n}")
        self._n_outputs = n
        self._mapping = None
        self._fn = None
        if targets is None:
            return
        if isinstance(targets, Mapping):
            mapping: dict[str, NDArray[np.float32]] = {}
            for key, value in targets.items():
                if not isinstance(key, str) or not key:
                    raise ValueError(f"targets[{key!r}]: keys must be non-empty action types")
                vec = _vector(value, n)
                if isinstance(vec, str):
                    raise ValueError(f"targets[{key!r}]: {vec}")
                vec.flags.writeable = False
                mapping[str.__str__(key)] = vec
            self._mapping = mapping
        elif callable(targets):
            self._fn = targets
        else:
            raise ValueError(
                f"targets: must be a mapping, a callable or None, got {type(targets).__name__}"
            )

    def __repr__(self) -> str:
        if self._mapping is not None:
            what = repr(self._mapping_config())
        elif self._fn is not None:
            what = getattr(self._fn, "__qualname__", repr(self._fn))
        else:
            what = "None"
        return f"TargetMapper({what}, n_outputs={self._n_outputs})"

    @property
    def n_outputs(self) -> int:
        """Length of every target vector."""
        return self._n_outputs

    @property
    def derived(self) -> bool:
        """True if targets are derived from the interaction (a mapping on the action
        type or a callable), not only read from explicit labels."""
        return self._mapping is not None or self._fn is not None

    def target_or_none(self, interaction: InteractionData) -> NDArray[np.float32] | None:
        """Like :meth:`target` but returns None instead of raising when there is no target.

        Invalid targets (wrong length, non-finite, a failing callable) still raise.
        """
        label = interaction.label
        n = self._n_outputs
        if label is not None:
            # The common case skips the generic path.
            if n == 1 and type(label) is float and -_FLOAT32_MAX <= label <= _FLOAT32_MAX:
                return np.array((label,), dtype=np.float32)
            return self._checked(label, "")
        mapping = self._mapping
        if mapping is not None:
            vec = mapping.get(interaction.action_type)
            return None if vec is None else vec.copy()
        fn = self._fn
        if fn is None:
            return None
        try:
            value = fn(interaction)
        except InvalidInteraction:
            raise
        except Exception as exc:
            name = getattr(fn, "__qualname__", type(fn).__name__)
            raise InvalidInteraction(
                "label", f"target callable {name} raised {type(exc).__name__}: {exc}"
            ) from exc
        if value is None:
            return None
        return self._checked(value, "target callable result ")

    def _checked(self, value: object, what: str) -> NDArray[np.float32]:
        vec = _vector(value, self._n_outputs)
        if isinstance(vec, str):
            raise InvalidInteraction("label", what + vec)
        return vec

    def target(self, interaction: InteractionData) -> NDArray[np.float32]:
        """The float32 target vector of shape ``(n_outputs,)`` for ``interaction``.

        Raises:
            InvalidInteraction: no label and no target, or an invalid one.

        Example:
            >>> from livelearn.interaction import InteractionData
            >>> TargetMapper({"buy": [1, 2]}, n_outputs=2).target(
            ...     InteractionData("buy", 0, "u1")).tolist()
            [1.0, 2.0]
        """
        vec = self.target_or_none(interaction)
        if vec is None:
            raise InvalidInteraction(
                "label", f"no label and no target for action type {interaction.action_type!r}"
            )
        return vec

    def targets_many(
        self, interactions: Sequence[InteractionData]
    ) -> tuple[NDArray[np.float32], list[InvalidInteraction | None]]:
        """Targets of a batch: a ``(n, n_outputs)`` float32 matrix and, per row,
        the reason it has none (``None`` where the row is valid; such rows hold 0).

        The engine's hot path: one matrix for the batch instead of one small
        array per interaction.

        Example:
            >>> from livelearn.interaction import InteractionData
            >>> Y, errors = TargetMapper({"click": 1.0}).targets_many(
            ...     [InteractionData("click", 0, "u"), InteractionData("view", 0, "u")])
            >>> Y.ravel().tolist(), [e is None for e in errors]
            ([1.0, 0.0], [True, False])
        """
        n, k = len(interactions), self._n_outputs
        errors: list[InvalidInteraction | None] = [None] * n
        if k == 1:
            values: list[float] = [0.0] * n
            mapping = self._mapping
            for i, it in enumerate(interactions):
                label = it.label
                if type(label) is float and -_FLOAT32_MAX <= label <= _FLOAT32_MAX:
                    values[i] = label
                    continue
                if label is None and mapping is not None:
                    vec = mapping.get(it.action_type)
                    if vec is not None:
                        values[i] = float(vec[0])
                        continue
                try:
                    values[i] = float(self.target(it)[0])
                except InvalidInteraction as exc:
                    errors[i] = exc
            return np.array(values, dtype=np.float32).reshape(n, 1), errors
        out = np.zeros((n, k), dtype=np.float32)
        for i, it in enumerate(interactions):
            try:
                out[i] = self.target(it)
            except InvalidInteraction as exc:
                errors[i] = exc
        return out, errors

    def _mapping_config(self) -> dict[str, float | list[float]]:
        assert self._mapping is not None
        return {
            key: float(vec[0]) if self._n_outputs == 1 else [float(x) for x in vec]
            for key, vec in self._mapping.items()
        }

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable description; a callable itself is not serialised.

        Example:
            >>> TargetMapper({"click": 1}).get_config()
            {'type': 'mapping', 'mapping': {'click': 1.0}, 'n_outputs': 1}
        """
        if self._mapping is not None:
            return {
                "type": "mapping",
                "mapping": self._mapping_config(),
                "n_outputs": self._n_outputs,
            }
        if self._fn is not None:
            name = getattr(self._fn, "__qualname__", type(self._fn).__name__)
            return {"type": "callable", "name": name, "n_outputs": self._n_outputs}
        return {"type": "none", "n_outputs": self._n_outputs}

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], callable: TargetFn | None = None
    ) -> TargetMapper:
        """Rebuild from :meth:`get_config`; ``callable`` supplies the function for
        ``"type": "callable"`` configs (functions cannot be stored in JSON).

        Raises:
            ValueError: malformed config, or ``callable`` missing/unexpected.

        Example:
            >>> TargetMapper.from_config({"type": "none", "n_outputs": 2}).n_outputs
            2
        """
        if not isinstance(config, Mapping):
            raise ValueError(f"target config must be a mapping, got {type(config).__name__}")
        kind = config.get("type")
        allowed = {
            "mapping": {"type", "mapping", "n_outputs"},
            "callable": {"type", "name", "n_outputs"},
            "none": {"type", "n_outputs"},
        }
        # isinstance first: an unhashable type (a list from JSON) must not raise TypeError.
        if not isinstance(kind, str) or kind not in allowed:
            raise ValueError(
                f"target config: unknown type {kind!r}; expected 'mapping', 'callable' or 'none'"
            )
        unknown = sorted(str(k) for k in set(config) - allowed[kind])
        if unknown:
            raise ValueError(f"target config: unknown keys for type {kind!r}: {unknown}")
        n_outputs = config.get("n_outputs", 1)
        if kind == "callable":
            if callable is None:
                raise ValueError(
                    "target config: type 'callable' needs the function: "
                    "TargetMapper.from_config(config, callable=fn)"
                )
            return cls(callable, n_outputs)
        if callable is not None:
            raise ValueError(f"target config: got a callable but the config type is {kind!r}")
        if kind == "none":
            return cls(None, n_outputs)
        mapping = config.get("mapping")
        if not isinstance(mapping, Mapping):
            raise ValueError(
                f"target config: 'mapping' must be a mapping, got {type(mapping).__name__}"
            )
        return cls(mapping, n_outputs)
