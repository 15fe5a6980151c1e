"""The transport interface between replicas and the coordinator, and its in-process form.

A transport carries two calls from a replica (:class:`~livelearn.distributed.ModelAverager`)
to the coordinator that holds the global model
(:class:`~livelearn.distributed.Coordinator`):

* ``pull(replica_id)``: the current global parameters, and the highest push sequence
  number of this replica the coordinator has taken (so a restarted replica goes on
  numbering where its previous life stopped);
* ``push(delta, steps, replica_id, seq)``: what the replica learned since the global
  model it last received (``delta``) and how many training steps that took; the reply
  is the global model after the merge.

Pushes are idempotent per ``(replica_id, seq)``: a push the coordinator has already
taken (the reply was lost and the replica retries it) is not merged again, it just
answers the current model. Any exception raised by ``push`` or ``pull`` counts as a
failed round: the replica keeps training on its local model and retries later.

:class:`InProcessTransport` calls a coordinator in the same process (tests, threads);
:mod:`livelearn.distributed.ray` provides one over Ray; anything else (HTTP, gRPC, a
message queue) only needs these two methods.

Example:
    >>> from livelearn import Network
    >>> from livelearn.distributed import Coordinator, InProcessTransport
    >>> transport = InProcessTransport(Coordinator(Network(layers=[4, 8, 1])))
    >>> reply = transport.pull("replica-0")
    >>> reply.version, reply.last_seq, sorted(reply.params)[:2]
    (0, 0, ['layers.0.bias', 'layers.0.weight'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

__all__ = ["InProcessTransport", "SyncReply", "Transport"]


class SyncReply(NamedTuple):
    """The coordinator's answer to a pull or a push.

    Attributes:
        params: the global model's parameters (``layers.*``), float32 copies.
        version: how many merges the global model has had (it goes back only if
            the coordinator was restarted from an older checkpoint).
        steps: replica training steps merged into the global model so far.
        last_seq: the highest push sequence number of this replica the
            coordinator has taken (0: none).
    """

    params: dict[str, NDArray[np.float32]]
    version: int
    steps: int
    last_seq: int


@runtime_checkable
class Transport(Protocol):
    """What a :class:`~livelearn.distributed.ModelAverager` needs from a transport."""

    def pull(self, replica_id: str) -> SyncReply:
        """The current global model (for a replica joining or rejoining)."""
        ...

    def push(
        self, delta: Mapping[str, NDArray[Any]], steps: int, replica_id: str, seq: int
    ) -> SyncReply:
        """Merge ``delta`` (``steps`` training steps of ``replica_id``, its ``seq``-th
        push) into the global model and return the result."""
        ...


class InProcessTransport:
    """A :class:`Transport` that calls a :class:`Coordinator` in this process.

    The delta is copied on the way in and the parameters are fresh copies on
    the way out, as over a network: replica and coordinator never share arrays.
    Thread-safe (the coordinator serialises its calls).

    Example:
        >>> import numpy as np
        >>> from livelearn import Network
        >>> from livelearn.distributed import Coordinator, InProcessTransport
        >>> coordinator = Coordinator(Network(layers=[2, 1], output="identity", loss="mse"))
        >>> transport = InProcessTransport(coordinator)
        >>> delta = {k: np.ones_like(v) for k, v in transport.pull("a").params.items()}
        >>> reply = transport.push(delta, steps=10, replica_id="a", seq=1)
        >>> reply.version, reply.steps, reply.last_seq
        (1, 10, 1)
    """

    def __init__(self, coordinator: Transport) -> None:
        # Typed by what is called on it: a Coordinator has pull and push with
        # these signatures (and this module need not import it).
        self.coordinator = coordinator

    def pull(self, replica_id: str) -> SyncReply:
        return self.coordinator.pull(replica_id)

    def push(
        self, delta: Mapping[str, NDArray[Any]], steps: int, replica_id: str, seq: int
    ) -> SyncReply:
        copied = {k: np.array(v, dtype=np.float32, copy=True) for k, v in delta.items()}
        return self.coordinator.push(copied, steps, replica_id, seq)
