"""The coordinator: holds the global model, merges the replicas' deltas, checkpoints.

Transport-agnostic: replicas reach it through a
:class:`~livelearn.distributed.Transport` (in-process, Ray actor, ...). Every call is
serialised by one lock; a merge is one native :meth:`~livelearn.Network.apply_delta`.

Merge rules (``merge=``):

* ``"fedavg"`` (default, buffered rounds): pushes wait in a round buffer; when
  ``round_size`` replicas have pushed (default: every replica seen so far), or one
  of them pushes again (so a dead or slow replica never holds the others up for
  more than one of their sync periods), the round closes with
  ``G <- G + server_lr * avg``, ``avg`` the steps-weighted mean of the round's
  deltas (:func:`~livelearn.distributed.average_deltas`; with ``sparse=True``,
  the default, each weight is averaged over the replicas that changed it only).
  A push is answered at once, never waiting for the round: with the *tentative*
  model ``G + server_lr * avg`` over the deltas buffered so far (its own
  included), so the replica keeps its own progress; the final merge reaches it
  at its next round.
* ``"delta"`` (asynchronous): each push is merged on arrival,
  ``G <- G + server_lr * delta``. With ``server_lr=1`` every replica step lands
  in the global model exactly once, as if one model had taken them all, but
  from a stale model: the deltas of ``n`` replicas add up to ``n`` times the
  step size on the weights they share, which overshoots unless ``sync_every`` is
  small (or ``server_lr`` about ``1/n``).

Measured on the simulator (3 replicas on disjoint user shards of 20,000 events,
hashed encoder, SGD; ``benchmarks/scale_out.py``, ``merge_rules``), progressive
log loss relative to one engine that saw every event, at ``sync_every`` 25 / 100
/ 400: sparse FedAvg +0.3 % / +1.0 % / +1.3 %; plain FedAvg +1.4 % / +1.9 % /
+2.0 % (weights that one shard owns learn ``n`` times slower); ``"delta"``
+2.6-4 % / +4 % to +37 % (unstable) / +5-7 %.

The coordinator's network never trains; its ``steps`` counter is set to the
number of replica steps merged when a checkpoint is written, so the normal
checkpoint format (:meth:`livelearn.Network.save`, loadable with
:meth:`livelearn.Network.load`) says how much learning the model holds. The
checkpoint also records the merge version and each replica's last push number,
so after :meth:`Coordinator.restore` a replica's retried push is still not
merged twice. A restarted coordinator has lost the merges since its last
checkpoint; bound that with ``checkpoint_every`` / ``checkpoint_interval``.

Example:
    >>> import numpy as np
    >>> from livelearn import Network
    >>> coordinator = Coordinator(Network(layers=[2, 1], output="identity", loss="mse"))
    >>> g = coordinator.pull("a").params
    >>> delta = {k: np.full_like(v, 0.5) for k, v in g.items()}
    >>> reply = coordinator.push(delta, steps=8, replica_id="a", seq=1)
    >>> float(reply.params["layers.0.bias"][0] - g["layers.0.bias"][0])
    0.5
    >>> coordinator.push(delta, steps=8, replica_id="a", seq=1).version  # a retry: no re-merge
    1
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, cast

import numpy as np
from numpy.typing import NDArray

from livelearn.checkpoint import load_network, read_checkpoint, save_network
from livelearn.distributed.averaging import add_scaled, average_deltas
from livelearn.distributed.transport import SyncReply
from livelearn.network import Network
from livelearn.validation import (
    check_choice,
    check_int,
    check_interval,
    check_optional_int,
    check_path,
    check_positive,
)

__all__ = ["Coordinator", "CoordinatorStats", "MergeRule"]

logger = logging.getLogger("livelearn")

MergeRule = Literal["delta", "fedavg"]
_RULES = ("delta", "fedavg")


class CoordinatorStats(NamedTuple):
    """A consistent snapshot of the coordinator's counters.

    Attributes:
        version: merges applied to the global model.
        steps: replica training steps merged into it.
        pushes: pushes taken (merged or buffered), duplicates excluded.
        duplicates: retried pushes that had already been taken (not merged again).
        buffered: ``"fedavg"``: pushes waiting for their round to close.
        buffered_steps: the training steps those pushes hold (``steps`` counts
            them once their round closes; :meth:`Coordinator.flush` closes it).
        replicas: each replica's last push sequence number taken.
        checkpoints: checkpoints written by this coordinator.
        checkpoint_version: ``version`` at the last checkpoint written or restored
            (None: none).
    """

    version: int
    steps: int
    pushes: int
    duplicates: int
    buffered: int
    buffered_steps: int
    replicas: dict[str, int]
    checkpoints: int
    checkpoint_version: int | None


class Coordinator:
    """Holds the global model; merges pushed deltas; answers with the merged model.

    Args:
        network: the global model's initial state (taken over, not copied; its
            configuration is what replicas must use). Replicas adopt it when
            they join.
        merge: ``"fedavg"`` or ``"delta"``, see the module docstring.
        server_lr: scales every merge (> 0).
        round_size: ``"fedavg"``: pushes per round (default: every replica seen).
        sparse: ``"fedavg"``: average each weight over the replicas that
            changed it only (see :func:`~livelearn.distributed.average_deltas`).
        checkpoint_path: where :meth:`save` writes by default, and where the
            automatic checkpoints go.
        checkpoint_every: checkpoint after every this many merges.
        checkpoint_interval: checkpoint when this many seconds passed since the
            last one (checked at each push). Automatic checkpoints are written
            synchronously in the pushing caller's call (a model copy and a file
            write, atomic).

    Example:
        >>> from livelearn import Network
        >>> c = Coordinator(Network(layers=[4, 8, 1]), merge="fedavg", round_size=3)
        >>> c.stats().version
        0
    """

    def __init__(
        self,
        network: Network,
        *,
        merge: MergeRule = "fedavg",
        server_lr: float = 1.0,
        round_size: int | None = None,
        sparse: bool = True,
        checkpoint_path: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        checkpoint_interval: float | None = None,
    ) -> None:
        if not isinstance(network, Network):
            raise TypeError(f"network: expected a livelearn.Network, got {type(network).__name__}")
        self._merge = cast(MergeRule, check_choice("merge", merge, _RULES))
        self._server_lr = check_positive("server_lr", server_lr)
        self._round_size = check_optional_int("round_size", round_size, low=1)
        self._every = check_optional_int("checkpoint_every", checkpoint_every, low=1)
        self._interval = check_interval("checkpoint_interval", checkpoint_interval)
        if checkpoint_path is None and (self._every is not None or self._interval is not None):
            raise ValueError("checkpoint_every/checkpoint_interval need a checkpoint_path")
        self._path = (
            None if checkpoint_path is None else check_path("checkpoint_path", checkpoint_path)
        )
        self._net = network
        # The native apply_delta is the one check of a delta's layout; a
        # "fedavg" push is only buffered, so it is checked on this probe (same
        # layers, weight 0: nothing changes) before it is taken. Plain SGD: the
        # parameters' layout does not depend on the optimizer, and it has no buffers.
        self._probe = Network.from_config(
            {**network.get_config(), "optimizer": "sgd", "momentum": 0.0}
        )
        self._sparse = bool(sparse)
        self._lock = threading.Lock()
        self._version = 0
        self._steps = int(network.steps)
        self._pushes = 0
        self._duplicates = 0
        self._seqs: dict[str, int] = {}
        self._known: set[str] = set()
        self._buffer: dict[str, tuple[dict[str, NDArray[np.float32]], int]] = {}
        self._checkpoints = 0
        self._ckpt_version: int | None = None
        self._last_save = time.monotonic()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: Mapping[str, Any], **options: Any) -> Coordinator:
        """A coordinator around a fresh ``Network(**config)`` (the replicas' configuration).

        Example:
            >>> Coordinator.from_config({"layers": [4, 8, 1], "seed": 1}).network.layers
            [4, 8, 1]
        """
        return cls(Network.from_config(dict(config)), **options)

    @classmethod
    def restore(cls, path: str | os.PathLike[str], **options: Any) -> Coordinator:
        """Restart from a checkpoint written by :meth:`save` (or any network checkpoint).

        The model, the merged step count, the merge version and every replica's
        last push number come back; ``options`` are the constructor's keyword
        arguments (``checkpoint_path`` defaults to ``path``). Raises
        :class:`~livelearn.CheckpointError` for a damaged file.

        Example:
            >>> import os, tempfile
            >>> from livelearn import Network
            >>> path = os.path.join(tempfile.mkdtemp(), "global.safetensors")
            >>> Coordinator(Network(layers=[2, 1])).save(path)
            >>> Coordinator.restore(path).stats().checkpoint_version
            0
        """
        network = load_network(path)  # verifies the checksum and every tensor
        section = read_checkpoint(path).meta.get("coordinator")
        options.setdefault("checkpoint_path", path)
        coordinator = cls(network, **options)
        if isinstance(section, dict):
            seqs = section.get("replicas", {})
            if isinstance(seqs, dict):
                coordinator._seqs = {str(k): int(v) for k, v in seqs.items()}
                coordinator._known = set(coordinator._seqs)
            coordinator._version = int(section.get("version", 0))
        coordinator._ckpt_version = coordinator._version
        return coordinator

    # ------------------------------------------------------------------ the two calls
    def pull(self, replica_id: str) -> SyncReply:
        """The current global model; registers ``replica_id`` (for ``"fedavg"`` rounds)."""
        with self._lock:
            self._known.add(replica_id)
            return self._reply(replica_id)

    def push(
        self, delta: Mapping[str, NDArray[Any]], steps: int, replica_id: str, seq: int
    ) -> SyncReply:
        """Merge one replica's delta (see the module docstring); returns the model after.

        ``seq`` numbers this replica's pushes from 1 upwards; a ``seq`` at or
        below the last one taken is a retry and is answered without merging.

        Raises:
            ValueError: a delta of the wrong layout or with non-finite values,
                negative ``steps``, ``seq`` < 1 (nothing is changed).
        """
        steps = check_int("steps", steps, low=0)
        seq = check_int("seq", seq, low=1)
        arrays = self._checked(delta)
        with self._lock:
            self._known.add(replica_id)
            if seq <= self._seqs.get(replica_id, 0):
                self._duplicates += 1
                return self._reply(replica_id)
            tentative: dict[str, NDArray[np.float32]] | None = None
            if self._merge == "delta":
                self._net.apply_delta(arrays, self._server_lr)  # raises before any change
                self._version += 1
                self._steps += steps
            else:
                if replica_id in self._buffer:  # it moved on: do not wait for the others
                    self._close_round()
                self._buffer[replica_id] = (arrays, steps)
                if len(self._buffer) >= (self._round_size or len(self._known)):
                    self._close_round()
                else:
                    average = self._round_average()
                    if average is not None:
                        tentative = add_scaled(self._net.parameters(), average, self._server_lr)
            self._seqs[replica_id] = seq
            self._pushes += 1
            if self._due():
                assert self._path is not None
                self._save_locked(self._path)
            reply = self._reply(replica_id)
            return reply if tentative is None else reply._replace(params=tentative)

    def flush(self) -> bool:
        """``"fedavg"``: close the open round now (e.g. before a final checkpoint).
        Returns True if anything was merged."""
        with self._lock:
            return self._close_round()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str] | None = None) -> None:
        """Checkpoint the global model (atomic, checksummed; see :mod:`livelearn.checkpoint`).

        The file is a normal network checkpoint (``Network.load`` reads it; its
        ``steps`` counter holds the merged replica steps) plus a ``coordinator``
        metadata section for :meth:`restore`. Pushes wait while it is written.
        An open ``"fedavg"`` round is closed first, so every push taken is in it.
        """
        target = self._path if path is None else os.fspath(path)
        if target is None:
            raise ValueError("save: no path given and no checkpoint_path configured")
        with self._lock:
            self._save_locked(target)

    def _save_locked(self, path: str) -> None:
        self._close_round()  # every push taken is in the file, as its seq says
        state = self._net.get_state()
        state["counters.steps"] = np.array(self._steps, dtype=np.int64)
        self._net.set_state(state)
        section = {
            "version": self._version,
            "steps": self._steps,
            "replicas": dict(sorted(self._seqs.items())),
            "merge": self._merge,
            "server_lr": self._server_lr,
            "sparse": self._sparse,
        }
        save_network(self._net, path, metadata={"coordinator": section})
        self._checkpoints += 1
        self._ckpt_version = self._version
        self._last_save = time.monotonic()
        logger.info("coordinator checkpoint %s (version %d)", path, self._version)

    def _due(self) -> bool:
        if self._path is None:
            return False
        if self._every is not None and self._version - (self._ckpt_version or 0) >= self._every:
            return True
        return self._interval is not None and time.monotonic() - self._last_save >= self._interval

    # ------------------------------------------------------------------ read side
    @property
    def network(self) -> Network:
        """The global model (do not train it; read it with ``parameters()``/``predict``)."""
        return self._net

    @property
    def merge(self) -> MergeRule:
        """The merge rule."""
        return self._merge

    @property
    def sparse(self) -> bool:
        """Whether ``"fedavg"`` averages each weight over the replicas that changed it."""
        return self._sparse

    @property
    def server_lr(self) -> float:
        """The factor applied to every merge."""
        return self._server_lr

    def stats(self) -> CoordinatorStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return CoordinatorStats(
                version=self._version,
                steps=self._steps,
                pushes=self._pushes,
                duplicates=self._duplicates,
                buffered=len(self._buffer),
                buffered_steps=sum(s for _, s in self._buffer.values()),
                replicas=dict(self._seqs),
                checkpoints=self._checkpoints,
                checkpoint_version=self._ckpt_version,
            )

    # ------------------------------------------------------------------ internals
    def _reply(self, replica_id: str) -> SyncReply:
        return SyncReply(
            self._net.parameters(), self._version, self._steps, self._seqs.get(replica_id, 0)
        )

    def _checked(self, delta: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[np.float32]]:
        """``delta`` as float32 arrays, once the native core accepted its layout
        and values (a ValueError otherwise, naming the tensors expected)."""
        if not isinstance(delta, Mapping):
            raise TypeError(f"delta: expected a dict of arrays, got {type(delta).__name__}")
        arrays = {name: np.asarray(value, dtype=np.float32) for name, value in delta.items()}
        try:
            self._probe.apply_delta(arrays, 0.0)
        except ValueError as exc:
            expected = sorted(self._probe.parameters())
            if sorted(arrays) != expected:
                raise ValueError(
                    f"delta: expected exactly the tensors {expected}, got {sorted(arrays)}"
                ) from exc
            raise
        return arrays

    def _round_average(self) -> dict[str, NDArray[np.float32]] | None:
        steps = [s for _, s in self._buffer.values()]
        if not self._buffer or sum(steps) == 0:
            return None
        deltas = [d for d, _ in self._buffer.values()]
        return average_deltas(deltas, steps, sparse=self._sparse)

    def _close_round(self) -> bool:
        average = self._round_average()
        total = sum(s for _, s in self._buffer.values())
        self._buffer.clear()
        if average is None:
            return False
        self._net.apply_delta(average, self._server_lr)
        self._version += 1
        self._steps += total
        return True
