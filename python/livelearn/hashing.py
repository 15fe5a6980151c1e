"""Stable 64-bit hashing for categorical features.

Python's builtin ``hash()`` is salted per process (``PYTHONHASHSEED``), so a model
trained in one process would see different inputs in the next.  Everything here is
defined purely in terms of BLAKE2b, so values are identical across processes,
machines, platforms and Python versions, and a saved model keeps working.

Example:
    >>> stable_hash64("click")
    3201885008413916684
    >>> unit_hash("click")
    -0.6528509317828866
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["HASH_NAME", "HashCache", "int_to_decimal", "stable_hash64", "unit_hash"]

#: The hash's name, recorded in encoder configs (and so in checkpoints). The native
#: core (``livelearn._core.stable_hash64``) computes the same function.
HASH_NAME = "blake2b-64"

_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes
_CHUNK_DIGITS = 1000
_CHUNK = 10**_CHUNK_DIGITS


def int_to_decimal(value: int) -> str:
    """Return the decimal string of ``value``, whatever its size.

    ``str(int)`` refuses integers longer than ``sys.get_int_max_str_digits()``
    (4300 digits by default); user ids of "any size" must still hash, so fall back
    to converting in chunks.

    Example:
        >>> int_to_decimal(-42)
        '-42'
        >>> len(int_to_decimal(10**5000))
        5001
    """
    try:
        # int.__repr__ rather than str(): IntEnum and other subclasses may override __str__.
        return int.__repr__(value)
    except ValueError:
        pass
    sign = "-" if value < 0 else ""
    rest = -value if value < 0 else value
    chunks: list[int] = []
    while rest:
        rest, low = divmod(rest, _CHUNK)
        chunks.append(low)
    parts = [str(chunks[-1])]
    parts.extend(str(c).zfill(_CHUNK_DIGITS) for c in reversed(chunks[:-1]))
    return sign + "".join(parts)


def stable_hash64(value: str | int) -> int:
    """Hash a str or int to an unsigned 64-bit integer, stably.

    The hash is BLAKE2b with ``digest_size=8`` over the UTF-8 bytes of the string,
    read as a little-endian integer.  An ``int`` is hashed via its decimal string,
    so ``stable_hash64(7) == stable_hash64("7")``.  ``bool`` is rejected because
    ``str(True)`` and ``1`` would otherwise be easy to confuse.

    Raises:
        TypeError: for anything but ``str`` or ``int``.
        UnicodeEncodeError: for strings with lone surrogates.

    Example:
        >>> stable_hash64("user-1") == stable_hash64("user-1")
        True
        >>> stable_hash64(7) == stable_hash64("7")
        True
    """
    if type(value) is str:
        data = value.encode()
    elif type(value) is int:
        data = int_to_decimal(value).encode()
    elif isinstance(value, str):
        data = str.encode(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        data = int_to_decimal(value).encode()
    else:
        raise TypeError(f"stable_hash64 expects str or int, got {type(value).__name__}")
    return _from_bytes(_blake2b(data, digest_size=8).digest(), "little")


def unit_hash(value: str | int) -> float:
    """Map ``stable_hash64(value)`` uniformly onto ``[-1, 1)``.

    The top 53 bits become a double in ``[0, 1)`` exactly, then are scaled to
    ``[-1, 1)``: ``(h >> 11) * 2**-53 * 2.0 - 1.0``.

    Example:
        >>> -1.0 <= unit_hash("click") < 1.0
        True
    """
    return (stable_hash64(value) >> 11) * 2.0**-53 * 2.0 - 1.0


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class HashCache(Generic[K, V]):
    """Memoise ``fn(key)`` in a dict that is emptied when it outgrows ``max_size``.

    Clearing wholesale is cheaper on the hot path than LRU bookkeeping, keeps memory
    bounded, and hot keys are back after one miss.  Concurrent use is safe: dict
    operations are atomic, and a lost race only recomputes a value.

    Example:
        >>> cache = HashCache(unit_hash, max_size=2)
        >>> cache("click") == unit_hash("click")
        True
        >>> len(cache)
        1
    """

    __slots__ = ("_data", "_fn", "_max_size")

    def __init__(self, fn: Callable[[K], V], max_size: int = 65_536) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a positive int, got {max_size!r}")
        self._fn = fn
        self._max_size = max_size
        self._data: dict[K, V] = {}

    @property
    def max_size(self) -> int:
        """Number of entries after which the cache is cleared."""
        return self._max_size

    @property
    def data(self) -> dict[K, V]:
        """The backing dict, for hot loops that inline ``data.get(key)``; do not mutate."""
        return self._data

    def __call__(self, key: K) -> V:
        """Return ``fn(key)``, computing and remembering it on a miss."""
        try:
            return self._data[key]
        except KeyError:
            return self.miss(key)

    def miss(self, key: K) -> V:
        """Compute ``fn(key)`` and store it, clearing the cache first if it is full."""
        value = self._fn(key)
        data = self._data
        if len(data) >= self._max_size:
            data.clear()
        data[key] = value
        return value

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def clear(self) -> None:
        """Forget every cached value."""
        self._data.clear()
