"""Scale out: many service replicas learning one model.

Two ways, both without pausing training:

* **Averaging** (this package): every replica trains its own copy of the network
  (an ordinary :class:`~livelearn.Engine`), and a :class:`ModelAverager` beside it
  periodically pushes what it learned (a parameter delta and its step count) to a
  :class:`Coordinator` holding the global model, and adopts the merged model while
  keeping the steps it took meanwhile. The coordinator is reached through a
  :class:`Transport`: :class:`InProcessTransport` in one process,
  :mod:`livelearn.distributed.ray` across a Ray cluster (``pip install
  "livelearn[ray]"``), or your own (two methods). See :mod:`.averager` for the
  exact synchronisation math and the failure behaviour.
* **Key sharding** (:func:`shard_for`): route each user to one replica and share
  nothing; see :mod:`.sharding` for the trade-off.

Building blocks: :func:`average_deltas` / :func:`average_states` (FedAvg-style
weighted averages), :func:`subtract`, :func:`add_scaled`.

Example (three replicas in one process, in-process transport):
    >>> from livelearn import Engine, Network
    >>> from livelearn.datasets import simulate_interactions
    >>> from livelearn.distributed import (
    ...     Coordinator, InProcessTransport, ModelAverager, shard_for)
    >>> stream = simulate_interactions(n_events=3_000, seed=1)
    >>> engines = [Engine(log_every=0) for _ in range(3)]
    >>> coordinator = Coordinator(Network.from_config(engines[0].network.get_config()))
    >>> transport = InProcessTransport(coordinator)
    >>> averagers = [ModelAverager(e, transport, f"replica-{i}", sync_every=100)
    ...              for i, e in enumerate(engines)]
    >>> for a, e in zip(averagers, engines):
    ...     _ = a.start(), e.initialize()
    >>> futures = [engines[shard_for(it.user_id, 3)].train_step(it) for it in stream.interactions]
    >>> _ = [f.result() for f in futures]
    >>> for a, e in zip(averagers, engines):
    ...     e.close(); _ = a.stop()  # drain the engine, then push what is left
    >>> _ = coordinator.flush()  # merge the last, incomplete FedAvg round
    >>> coordinator.stats().steps
    3000
"""

from __future__ import annotations

from livelearn.distributed.averager import AveragerStats, ModelAverager
from livelearn.distributed.averaging import (
    Params,
    add_scaled,
    average_deltas,
    average_states,
    check_finite,
    subtract,
)
from livelearn.distributed.coordinator import Coordinator, CoordinatorStats, MergeRule
from livelearn.distributed.sharding import jump_hash, shard_for
from livelearn.distributed.transport import InProcessTransport, SyncReply, Transport

__all__ = [
    "AveragerStats",
    "Coordinator",
    "CoordinatorStats",
    "InProcessTransport",
    "MergeRule",
    "ModelAverager",
    "Params",
    "SyncReply",
    "Transport",
    "add_scaled",
    "average_deltas",
    "average_states",
    "check_finite",
    "jump_hash",
    "shard_for",
    "subtract",
]
