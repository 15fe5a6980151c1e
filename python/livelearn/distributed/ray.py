"""Ray backend: a coordinator actor holding the global model, replicas anywhere on the cluster.

Needs Ray: ``pip install "livelearn[ray]"`` (or ``pip install ray``).

* :func:`start_coordinator` starts (or finds, by name) a Ray actor wrapping a
  :class:`~livelearn.distributed.Coordinator`. With ``checkpoint_path`` it
  checkpoints the global model in the normal atomic format and, when Ray
  restarts it after a crash (``max_restarts``), it comes back from that file.
* :class:`RayTransport` is the :class:`~livelearn.distributed.Transport` to that
  actor: usable from the driver, from any ordinary process connected to the
  cluster, or from inside other actors (it is picklable).
* :func:`start_replica` starts a :class:`ReplicaActor`: an :class:`~livelearn.Engine`
  plus a :class:`~livelearn.distributed.ModelAverager` whose background thread
  pushes deltas and pulls the merged model while the engine keeps training.

Pushes and pulls run in the averager's thread, never in the training path; the
coordinator actor answers a push at once (``"fedavg"`` merges a round when it is
complete, without making anyone wait). Actors take no CPU reservation by
default (``num_cpus=0``), so a small machine can host several; give them real
resources with ``actor_options={"num_cpus": 1}`` on a cluster.

On an existing cluster (run on any node, or with ``ray://`` through Ray Client)::

    import ray
    from livelearn.distributed.ray import RayTransport, start_coordinator, start_replica

    ray.init(address="auto")  # or "ray://head-node:10001"
    coordinator = start_coordinator(
        {"layers": [4, 16, 8, 1]},  # Network config; replicas must match it
        name="ctr-model", checkpoint_path="/shared/ctr/global.safetensors",
        checkpoint_every=100, max_restarts=-1, detached=True,
    )
    replicas = [start_replica(coordinator, f"replica-{i}", sync_every=200) for i in range(8)]
    # ... replicas[k].train.remote(interactions) from your request handlers ...

A service process that is not an actor joins the same model with its own engine::

    ray.init(address="auto")
    transport = RayTransport("ctr-model")  # the coordinator's name
    engine = Engine(hidden_layers=(16, 8))
    averager = ModelAverager(engine, transport, "web-7", sync_every=200)
    averager.join()  # pull the current global model first
    engine.initialize(); averager.start()

Locally (tests, a laptop), the same code after ``ray.init(num_cpus=2)``.

Example:
    >>> import ray  # doctest: +SKIP
    >>> from livelearn.datasets import simulate_interactions  # doctest: +SKIP
    >>> ray.init(num_cpus=2)  # doctest: +SKIP
    >>> coordinator = start_coordinator({"layers": [4, 16, 8, 1]})  # doctest: +SKIP
    >>> replica = start_replica(coordinator, "replica-0", sync_every=50)  # doctest: +SKIP
    >>> stream = simulate_interactions(n_events=500)  # doctest: +SKIP
    >>> losses = ray.get(replica.train.remote(stream.interactions))  # doctest: +SKIP
    >>> ray.get(replica.close.remote()).unsynced_steps  # doctest: +SKIP
    0
    >>> ray.get(coordinator.stats.remote()).steps  # doctest: +SKIP
    500
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# The Ray package (absolute import; this module is livelearn.distributed.ray). Ray
# ships type hints; where it is absent mypy must not fail on this optional extra.
import ray  # type: ignore[import-not-found, unused-ignore]
from numpy.typing import NDArray

from livelearn.distributed.averager import AveragerStats, ModelAverager
from livelearn.distributed.coordinator import Coordinator, CoordinatorStats
from livelearn.distributed.transport import SyncReply
from livelearn.engine import Engine
from livelearn.interaction import InteractionData
from livelearn.results import EngineStats

__all__ = [
    "DEFAULT_NAME",
    "CoordinatorActor",
    "RayTransport",
    "ReplicaActor",
    "start_coordinator",
    "start_replica",
]

#: The coordinator actor's name when none is given.
DEFAULT_NAME = "livelearn-coordinator"


class CoordinatorActor:
    """The body of the coordinator actor (use :func:`start_coordinator`).

    Built from ``checkpoint_path`` when that file exists (a restart), else
    from the network ``config``; ``options`` go to
    :class:`~livelearn.distributed.Coordinator`.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None,
        checkpoint_path: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        opts = dict(options or {})
        if checkpoint_path is not None:
            opts["checkpoint_path"] = checkpoint_path
        self.started_at = time.time()
        self.restored = checkpoint_path is not None and os.path.exists(checkpoint_path)
        if self.restored:
            assert checkpoint_path is not None
            self.coordinator = Coordinator.restore(checkpoint_path, **opts)
        elif config is not None:
            self.coordinator = Coordinator.from_config(config, **opts)
        else:
            raise ValueError("start_coordinator: give a network config or an existing checkpoint")

    def pull(self, replica_id: str) -> SyncReply:
        return self.coordinator.pull(replica_id)

    def push(
        self, delta: Mapping[str, NDArray[Any]], steps: int, replica_id: str, seq: int
    ) -> SyncReply:
        return self.coordinator.push(delta, steps, replica_id, seq)

    def save(self, path: str | None = None) -> None:
        self.coordinator.save(path)

    def flush(self) -> bool:
        return self.coordinator.flush()

    def stats(self) -> CoordinatorStats:
        return self.coordinator.stats()

    def incarnation(self) -> dict[str, Any]:
        """Which life of the actor answers: ``pid``, ``started_at`` and ``restored``
        (True if it started from the checkpoint file, i.e. after a restart)."""
        return {"pid": os.getpid(), "started_at": self.started_at, "restored": self.restored}

    def parameters(self) -> dict[str, NDArray[np.float32]]:
        return self.coordinator.network.parameters()

    def get_config(self) -> dict[str, Any]:
        return self.coordinator.network.get_config()


def start_coordinator(
    config: Mapping[str, Any] | None = None,
    *,
    name: str = DEFAULT_NAME,
    namespace: str | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    max_restarts: int = 0,
    detached: bool = False,
    actor_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Any:
    """Start the coordinator actor, or return the running one named ``name``.

    Args:
        config: the global network's configuration (``Network.get_config()``
            or ``{"layers": [...], ...}``); not needed when ``checkpoint_path``
            exists (the actor restores from it).
        name, namespace: the actor's name, by which replicas find it.
        checkpoint_path: where the global model is checkpointed (a path every
            node that may host the actor can read, for restarts elsewhere).
        max_restarts: how often Ray restarts the actor after it died (-1:
            always); a restarted actor restores from ``checkpoint_path``.
        detached: keep the actor alive after this driver exits.
        actor_options: more ``ray.remote`` options (``num_cpus`` defaults to 0).
        options: :class:`~livelearn.distributed.Coordinator` keyword arguments
            (``merge``, ``server_lr``, ``round_size``, ``checkpoint_every``, ...).

    Returns:
        The actor handle (methods ``pull``, ``push``, ``save``, ``flush``,
        ``stats``, ``parameters``, ``get_config``, ``incarnation``, all ``.remote()``).
    """
    ray_options: dict[str, Any] = {"num_cpus": 0, **dict(actor_options or {})}
    ray_options.update(name=name, get_if_exists=True, max_restarts=max_restarts)
    if namespace is not None:
        ray_options["namespace"] = namespace
    if detached:
        ray_options["lifetime"] = "detached"
    path = None if checkpoint_path is None else os.path.abspath(os.fspath(checkpoint_path))
    cfg = None if config is None else dict(config)
    remote_cls = ray.remote(CoordinatorActor)
    return remote_cls.options(**ray_options).remote(cfg, path, dict(options))


class RayTransport:
    """A :class:`~livelearn.distributed.Transport` to a coordinator actor.

    Args:
        coordinator: the actor handle, or its name (looked up when first used,
            so a transport can be built before the actor exists).
        namespace: the actor's namespace, when looking it up by name.
        timeout: seconds to wait for a reply; a slower reply (or a dead actor)
            fails the round, and the averager retries the same push later.

    Picklable: pass it to other actors or tasks.
    """

    def __init__(
        self, coordinator: Any = DEFAULT_NAME, namespace: str | None = None, timeout: float = 30.0
    ) -> None:
        self._handle: Any = None if isinstance(coordinator, str) else coordinator
        self._name = coordinator if isinstance(coordinator, str) else None
        self._namespace = namespace
        self.timeout = float(timeout)

    @property
    def handle(self) -> Any:
        """The coordinator's actor handle (looked up by name if needed)."""
        if self._handle is None:
            assert self._name is not None
            self._handle = ray.get_actor(self._name, namespace=self._namespace)
        return self._handle

    def pull(self, replica_id: str) -> SyncReply:
        reply: SyncReply = ray.get(self.handle.pull.remote(replica_id), timeout=self.timeout)
        return reply

    def push(
        self, delta: Mapping[str, NDArray[Any]], steps: int, replica_id: str, seq: int
    ) -> SyncReply:
        reply: SyncReply = ray.get(
            self.push_async(delta, steps, replica_id, seq), timeout=self.timeout
        )
        return reply

    def push_async(
        self, delta: Mapping[str, NDArray[Any]], steps: int, replica_id: str, seq: int
    ) -> Any:
        """Send a push without waiting: returns the ``ObjectRef`` of its :class:`SyncReply`."""
        return self.handle.push.remote(dict(delta), int(steps), replica_id, int(seq))


class ReplicaActor:
    """The body of a replica actor (use :func:`start_replica`): an engine that
    learns from the interactions it is sent, kept in step with the global model.

    ``engine_options`` are :class:`~livelearn.Engine` keyword arguments; give
    ``features`` as an encoder configuration (``encoder.get_config()``), since
    encoders are rebuilt inside the actor. The constructor pulls the current
    global model before the engine takes its first step.
    """

    def __init__(
        self,
        transport: RayTransport,
        replica_id: str,
        engine_options: Mapping[str, Any] | None = None,
        sync_every: int | None = 100,
        sync_interval: float | None = None,
    ) -> None:
        from livelearn.features import encoder_from_config

        kwargs = dict(engine_options or {})
        kwargs.setdefault("log_every", 0)
        kwargs.setdefault("model", "mlp")  # model averaging merges Network states
        if isinstance(kwargs.get("features"), Mapping):
            kwargs["features"] = encoder_from_config(kwargs["features"])
        self.engine = Engine(**kwargs)
        self.averager = ModelAverager(
            self.engine,
            transport,
            replica_id,
            sync_every=sync_every,
            sync_interval=sync_interval,
        )
        self.averager.join()  # a failure is retried by the first rounds
        self.engine.initialize()
        self.averager.start()

    def train(self, interactions: Sequence[InteractionData]) -> list[float | None]:
        """Train on ``interactions`` in order; returns each step's progressive loss
        (the loss of the prediction made before that step; None if not trained)."""
        futures = self.engine.train_many(interactions)
        return [f.result().loss for f in futures]

    def predict(self, interactions: Sequence[InteractionData]) -> NDArray[np.float32]:
        """The replica's current outputs, shape ``(n, n_outputs)``."""
        return self.engine.predict_many(interactions)

    def stats(self) -> tuple[EngineStats, AveragerStats]:
        """The engine's and the averager's counters."""
        return self.engine.stats(), self.averager.stats()

    def sync(self) -> bool:
        """Run one synchronisation round now."""
        return self.averager.sync()

    def close(self, final_sync: bool = True) -> AveragerStats:
        """Drain the engine, then stop the averager (pushing the rest with ``final_sync``)."""
        self.engine.close()
        self.averager.stop(final_sync=final_sync)
        return self.averager.stats()


def start_replica(
    coordinator: Any,
    replica_id: str,
    engine_options: Mapping[str, Any] | None = None,
    *,
    sync_every: int | None = 100,
    sync_interval: float | None = None,
    timeout: float = 30.0,
    actor_options: Mapping[str, Any] | None = None,
) -> Any:
    """Start a :class:`ReplicaActor` learning with the coordinator (a handle or its name).

    ``engine_options`` must give the coordinator's network shape (e.g. the same
    ``hidden_layers`` and ``features`` configuration). ``actor_options`` are
    more ``ray.remote`` options (``num_cpus`` defaults to 0; ``max_restarts``
    makes Ray restart a dead replica, which rejoins by pulling the global model).

    Returns:
        The actor handle (methods ``train``, ``predict``, ``stats``, ``sync``,
        ``close``, all ``.remote()``).
    """
    transport = RayTransport(coordinator, timeout=timeout)
    ray_options: dict[str, Any] = {"num_cpus": 0, **dict(actor_options or {})}
    remote_cls = ray.remote(ReplicaActor)
    return remote_cls.options(**ray_options).remote(
        transport, replica_id, dict(engine_options or {}), sync_every, sync_interval
    )
