"""Hash feature dicts (River's ``{name: value}`` convention) into sparse network inputs.

:class:`DictHasher` is what :mod:`livelearn.river` feeds the network: every feature
lands in one of ``n_features`` columns chosen by a stable hash (BLAKE2b, see
:mod:`livelearn.hashing`), so a model keeps its meaning across processes and new
features need no schema change.

* a number ``v`` (``int``, ``float``, ``bool``, numpy scalars) under key ``k`` adds
  ``v`` at column ``stable_hash64(k) % n_features``;
* a string ``s`` under key ``k`` adds ``1.0`` at column
  ``stable_hash64(f"{k}={s}") % n_features`` (a hashed one-hot encoding);
* ``None`` and NaN mean "missing" and add nothing;
* anything else (or an infinite number, or one beyond float32 range) raises.

Keys that are not strings are hashed via their decimal text (``int``) or ``repr``
(anything else, e.g. tuples). Colliding entries are summed, in a fixed order, so
the output never depends on the order of the dict.

Example:
    >>> hasher = DictHasher(n_features=1024)
    >>> indices, values = hasher.encode_one({"price": 9.5, "colour": "red", "note": None})
    >>> len(indices), sorted(values.tolist())
    (2, [1.0, 9.5])
    >>> hasher.column("price") == int(indices[values == 9.5][0])
    True
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livelearn.hashing import HashCache, int_to_decimal, stable_hash64

__all__ = ["MAX_FEATURES", "DictHasher"]

#: Largest ``n_features`` (the native core indexes inputs with int32).
MAX_FEATURES = 2**26
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _key_text(key: Hashable) -> str:
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return int_to_decimal(key)
    return repr(key)


class DictHasher:
    """Turn ``{name: value}`` dicts into sorted, unique sparse ``(indices, values)``.

    Args:
        n_features: number of hashed columns (the network's input width), in
            ``[1, 2**26]``.

    Stateless apart from a bounded cache of hashes; safe to share between threads.
    Pickles as its configuration only.

    Example:
        >>> hasher = DictHasher(n_features=8)
        >>> indptr, indices, values = hasher.encode_many([{"a": 1.0}, {}, {"b": "x"}])
        >>> indptr.tolist()
        [0, 1, 1, 2]
    """

    __slots__ = ("_n", "_num_cols", "_str_cols")

    _n: int
    _num_cols: HashCache[Hashable, int]
    _str_cols: HashCache[tuple[Hashable, str], int]

    def __init__(self, n_features: int = 2**18) -> None:
        if isinstance(n_features, bool) or not isinstance(n_features, numbers.Integral):
            raise ValueError(f"n_features: must be an int, got {type(n_features).__name__}")
        n = int(n_features)
        if not 1 <= n <= MAX_FEATURES:
            raise ValueError(f"n_features: must be in [1, 2**26], got {n}")
        self._n = n
        self._num_cols = HashCache(lambda k: stable_hash64(_key_text(k)) % n)
        self._str_cols = HashCache(lambda kv: stable_hash64(f"{_key_text(kv[0])}={kv[1]}") % n)

    @property
    def n_features(self) -> int:
        """Number of hashed columns."""
        return self._n

    def __repr__(self) -> str:
        return f"DictHasher(n_features={self._n})"

    def __getstate__(self) -> dict[str, int]:
        return {"n_features": self._n}

    def __setstate__(self, state: dict[str, int]) -> None:
        DictHasher.__init__(self, state["n_features"])

    def column(self, key: Hashable, value: str | None = None) -> int:
        """The column of numeric feature ``key``, or of string value ``value`` of ``key``.

        Example:
            >>> DictHasher(16).column("colour", "red") == DictHasher(16).column("colour", "red")
            True
        """
        return self._num_cols(key) if value is None else self._str_cols((key, value))

    def _pairs(self, x: Mapping[Any, Any]) -> list[tuple[int, float]]:
        num_cols = self._num_cols
        str_cols = self._str_cols
        pairs: list[tuple[int, float]] = []
        for key, value in x.items():
            kind = type(value)
            if kind is float:
                if value != value:  # NaN: missing
                    continue
                number: float = value
            elif kind is str:
                pairs.append((str_cols((key, value)), 1.0))
                continue
            elif kind is int or kind is bool:
                number = _as_float(key, value)
            elif value is None:
                continue
            elif isinstance(value, str):
                pairs.append((str_cols((key, str.__str__(value))), 1.0))
                continue
            elif isinstance(value, (numbers.Real, np.bool_)):
                number = _as_float(key, value)
                if number != number:
                    continue
            else:
                raise TypeError(
                    f"feature {key!r}: unsupported value type {type(value).__name__}; "
                    "use a number, a string or None"
                )
            if not -_FLOAT32_MAX <= number <= _FLOAT32_MAX:
                raise ValueError(f"feature {key!r}: {value!r} is not finite in float32")
            pairs.append((num_cols(key), number))
        return pairs

    def _merge(self, x: Mapping[Any, Any], indices: list[int], values: list[float]) -> None:
        pairs = self._pairs(x)
        # Sorting by (column, value) fixes the summation order of collisions.
        pairs.sort()
        prev = -1
        for col, value in pairs:
            if col == prev:
                values[-1] += value
            else:
                indices.append(col)
                values.append(value)
                prev = col

    def encode_one(self, x: Mapping[Any, Any]) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """``(indices int32, values float32)`` of one dict; indices sorted and unique.

        Raises:
            TypeError: a value is neither a number, a string nor None.
            ValueError: a number is infinite or beyond float32 range.
        """
        indices: list[int] = []
        values: list[float] = []
        self._merge(x, indices, values)
        return np.array(indices, dtype=np.int32), np.array(values, dtype=np.float32)

    def encode_many(
        self, rows: Iterable[Mapping[Any, Any]]
    ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.float32]]:
        """CSR ``(indptr int64, indices int32, values float32)`` of several dicts.

        Row ``i`` is exactly :meth:`encode_one` of ``rows[i]``.
        """
        indptr = [0]
        indices: list[int] = []
        values: list[float] = []
        for x in rows:
            self._merge(x, indices, values)
            indptr.append(len(indices))
        return (
            np.array(indptr, dtype=np.int64),
            np.array(indices, dtype=np.int32),
            np.array(values, dtype=np.float32),
        )

    def encode_fields_many(
        self, rows: Iterable[Mapping[Any, Any]], n_fields: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32], NDArray[np.int32]]:
        """CSR with field ids, for a field-aware model (:class:`livelearn.FieldNetwork`):
        ``(indptr, indices int64, values float32, fields int32)``.

        The entries of row ``i`` are those of :meth:`encode_one` before collisions are
        summed (one per present feature, in the dict's order), and each feature's
        field is ``stable_hash64(key) % n_fields``: a key keeps its field everywhere.

        Example:
            >>> hasher = DictHasher(n_features=64)
            >>> indptr, indices, values, fields = hasher.encode_fields_many(
            ...     [{"user": "u1", "price": 2.0}], n_fields=4)
            >>> indptr.tolist(), values.tolist(), bool((fields < 4).all())
            ([0, 2], [1.0, 2.0], True)
        """
        if isinstance(n_fields, bool) or not isinstance(n_fields, numbers.Integral):
            raise ValueError(f"n_fields: must be an int, got {type(n_fields).__name__}")
        if not 1 <= int(n_fields) <= 2**20:
            raise ValueError(f"n_fields: must be in [1, 2**20], got {n_fields}")
        field_of: dict[Hashable, int] = {}
        indptr = [0]
        indices: list[int] = []
        values: list[float] = []
        fields: list[int] = []
        for x in rows:
            for key, value in x.items():
                pairs = self._pairs({key: value})
                if not pairs:
                    continue
                f = field_of.get(key)
                if f is None:
                    f = field_of[key] = stable_hash64(_key_text(key)) % int(n_fields)
                for col, number in pairs:
                    indices.append(col)
                    values.append(number)
                    fields.append(f)
            indptr.append(len(indices))
        return (
            np.array(indptr, dtype=np.int64),
            np.array(indices, dtype=np.int64),
            np.array(values, dtype=np.float32),
            np.array(fields, dtype=np.int32),
        )


def _as_float(key: object, value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"feature {key!r}: {value!r} is not finite in float32") from None
