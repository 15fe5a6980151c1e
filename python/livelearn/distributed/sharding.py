"""Key sharding: the zero-dependency way to scale out.

Route every interaction of a user to one replica, ``shard_for(user_id, n)``, and
let each replica learn its own users with an ordinary :class:`~livelearn.Engine`:
no coordinator, no synchronisation, no extra dependency.

The trade-off, against averaging (:class:`~livelearn.distributed.ModelAverager`):

* **for sharding**: throughput scales with the replicas (nothing is shared); a
  user's model is exactly the one a single engine would learn from that user's
  events; a replica's failure touches its users only; nothing to operate.
* **against**: what users have in common (action effects, time of day, device,
  position: the shared weights) is learned by each replica from ``1/n`` of the
  traffic, so it is learned later and noisier, and the replicas' models drift
  apart; a new user starts from a model that saw a fraction of the data; every
  caller must route by the same ``n`` (the load balancer needs the key); and
  changing ``n`` moves users to a replica that has never seen them.

Both combine: shard by user *and* average (``merge="delta"``) so each user's
hashed weights are learned by one replica and the shared ones by all.

:func:`shard_for` is *jump consistent hashing* (Lamping and Veach, 2014) of
livelearn's stable 64-bit hash (:func:`livelearn.hashing.stable_hash64`,
BLAKE2b): the same key maps to the same shard in every process, machine and
Python version; shards receive equal shares; and going from ``n`` to ``n + 1``
shards moves only ``1/(n + 1)`` of the keys (all of them to the new shard),
where ``hash % n`` would move almost every key.

Example:
    >>> shard_for("user-42", 4)
    3
    >>> [shard_for(f"user-{i}", 3) for i in range(8)]
    [0, 1, 0, 0, 0, 0, 1, 2]
"""

from __future__ import annotations

from livelearn.hashing import stable_hash64

__all__ = ["jump_hash", "shard_for"]

_MASK64 = (1 << 64) - 1
_LCG = 2862933555777941757


def jump_hash(key: int, n_buckets: int) -> int:
    """Jump consistent hash of an unsigned 64-bit ``key`` into ``[0, n_buckets)``.

    Example:
        >>> jump_hash(0, 10), jump_hash(2**64 - 1, 10)
        (0, 9)
    """
    if isinstance(n_buckets, bool) or not isinstance(n_buckets, int) or n_buckets < 1:
        raise ValueError(f"n_buckets: must be an int >= 1, got {n_buckets!r}")
    if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key <= _MASK64:
        raise ValueError(f"key: must be an unsigned 64-bit int, got {key!r}")
    b, j = -1, 0
    while j < n_buckets:
        b = j
        key = (key * _LCG + 1) & _MASK64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def shard_for(user_id: str | int, n_shards: int) -> int:
    """The shard, in ``[0, n_shards)``, that owns ``user_id``: stable everywhere.

    ``user_id`` is a ``str`` or an ``int`` (``7`` and ``"7"`` are the same key,
    as in :func:`~livelearn.hashing.stable_hash64`).

    Raises:
        ValueError: ``n_shards`` is not an int >= 1.
        TypeError: ``user_id`` is neither a str nor an int.

    Example:
        >>> shard_for("user-1", 1)
        0
        >>> shard_for(7, 5) == shard_for("7", 5)
        True
    """
    return jump_hash(stable_hash64(user_id), n_shards)
