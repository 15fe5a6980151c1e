"""``ModelAverager``: keeps one replica's network in step with the global model.

The replica trains as usual (an :class:`~livelearn.Engine`, or any code calling
``Network.train_*``); every ``sync_every`` steps and/or ``sync_interval`` seconds
the averager runs one *round*, in its own thread (:meth:`ModelAverager.start`) or
in the caller's (:meth:`ModelAverager.maybe_sync`, :meth:`ModelAverager.sync`).

The exact math. ``theta`` is the live network (it keeps training during a round),
``B`` the global parameters this replica last adopted (``base``), and the
invariant is ``theta = B + U``, ``U`` the replica's own learning since then
(its *unsynchronised* steps, :attr:`ModelAverager.unsynced_steps`):

1. ``S = theta`` -- one consistent copy (``get_state``: parameters and the step
   counter under the network's lock; the only pause of training besides step 4).
2. ``delta = S - B`` and ``n = steps(S) - steps(B)``; push ``(delta, n, seq)``.
3. The reply is the global model ``G`` with ``delta`` merged in (under
   ``"fedavg"``, while the round is open, the coordinator's tentative model).
   Meanwhile training went on: ``theta = S + L`` (``L``: steps taken during the
   round trip).
4. ``theta += G - S`` -- one native :meth:`~livelearn.Network.apply_delta`, atomic
   under the network's lock -- so ``theta = G + L``: the merged model plus the
   local progress made during the round trip, which is pushed next time.
5. ``B = G`` and ``steps(B) = steps(S)``: the invariant holds again with ``U = L``.

Nothing is counted twice: ``delta`` holds exactly the steps up to ``S``, ``L``
exactly those after; whatever ``G`` is, the next delta is measured from it. A
round with nothing to push (``n = 0``) and the first round (joining) are pulls:
``theta += G - B``, ``B = G`` (joining keeps whatever the replica learned
before it reached the coordinator, on top of ``G``; a fresh replica simply
adopts ``G``).

Failures: if the push or the pull raises, nothing local changes (parameters,
optimizer state, ``steps``, ``version``, ``B``); the round is counted in
``failed_rounds`` and the replica keeps training on its local model. The next
round *retries the same push* (same ``seq``, same ``delta``): if the coordinator
had merged it before the reply was lost, it recognises the ``seq`` and does not
merge it again. Either way ``theta += G - S`` keeps everything learned since
``S``. A replica that dies loses at most its :attr:`~ModelAverager.unsynced_steps`.

Optimizer state (momentum, Adam's moments) stays local and is not averaged:
``apply_delta`` moves the parameters only. Measured with the simulator
(``benchmarks/scale_out.py``, ``optimizer_state``): keeping the local state
converged as well as or better than resetting it or averaging it like the
parameters at every round, and it needs no pause nor extra traffic.

Example:
    >>> from livelearn import Engine, InteractionData, Network
    >>> from livelearn.distributed import Coordinator, InProcessTransport, ModelAverager
    >>> engine = Engine(targets={"click": 1.0, "skip": 0.0}, log_every=0)
    >>> coordinator = Coordinator(Network.from_config(engine.network.get_config()))
    >>> transport = InProcessTransport(coordinator)
    >>> # Closing order: the engine drains first, then the averager pushes the rest.
    >>> with ModelAverager(engine, transport, "replica-0", sync_every=50) as averager, engine:
    ...     for i in range(200):
    ...         _ = engine.train_step(InteractionData("click", 1.7e9 + i, f"u{i % 7}"))
    >>> averager.stats().unsynced_steps, coordinator.stats().steps
    (0, 200)
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from livelearn.distributed.averaging import subtract
from livelearn.distributed.transport import SyncReply, Transport
from livelearn.network import Network

if TYPE_CHECKING:
    from livelearn.engine import Engine

__all__ = ["AveragerStats", "ModelAverager"]

logger = logging.getLogger("livelearn")


class AveragerStats(NamedTuple):
    """A snapshot of one replica's synchronisation counters.

    Attributes:
        replica_id: this replica's name.
        joined: whether the replica has received the global model yet.
        rounds: rounds that succeeded (pulls included).
        failed_rounds: rounds whose push or pull raised.
        synced_steps: local training steps the coordinator acknowledged.
        unsynced_steps: local steps not acknowledged yet: what dying now would lose.
        seq: the last push sequence number used.
        global_version: the global model's version at the last successful round.
        global_steps: replica steps merged into the global model at that round.
        last_round_seconds: wall time of the last successful round.
        last_pause_seconds: time training was blocked in the last successful
            round (the snapshot copy plus the ``apply_delta``).
        last_error: the last failure, as ``"Type: message"`` (None: none yet).
    """

    replica_id: str
    joined: bool
    rounds: int
    failed_rounds: int
    synced_steps: int
    unsynced_steps: int
    seq: int
    global_version: int
    global_steps: int
    last_round_seconds: float | None
    last_pause_seconds: float | None
    last_error: str | None


class _Pending(NamedTuple):
    """A push whose outcome is not known yet (retried as is)."""

    seq: int
    snapshot: dict[str, NDArray[np.float32]]
    delta: dict[str, NDArray[np.float32]]
    steps: int  # training steps in delta
    snapshot_steps: int  # the network's step counter in snapshot


class ModelAverager:
    """Synchronises one replica's network with the global model through a transport.

    Args:
        model: the replica's :class:`~livelearn.Engine` or :class:`~livelearn.Network`.
            It must have the coordinator's layer sizes.
        transport: a :class:`~livelearn.distributed.Transport`.
        replica_id: this replica's stable name (a restarted replica reuses it).
        sync_every: run a round once this many local steps were taken since the
            last one (None: not by steps).
        sync_interval: run a round once this many seconds passed since the last
            one (None: not by time). At least one of the two is needed.
        poll_interval: how often the background thread (:meth:`start`) checks
            whether a round is due, in seconds.

    Construction changes nothing and contacts no one; the first round (or
    :meth:`join`) pulls the global model.

    With the background thread, rounds run back to back at most: at ``r``
    events/s the steps between two rounds (and so the most a crash loses) are
    about ``max(sync_every, r * (poll_interval + round time))`` (round times
    are in ``benchmarks/results/scale_out.json``). Memory: the averager keeps
    the last global model, and during a round a snapshot and a delta, i.e. up
    to three copies of the parameters.

    Example:
        >>> import numpy as np
        >>> from livelearn import Network
        >>> from livelearn.distributed import Coordinator, InProcessTransport, ModelAverager
        >>> transport = InProcessTransport(Coordinator(Network(layers=[3, 4, 1], seed=9)))
        >>> net = Network(layers=[3, 4, 1], seed=1)  # any initial weights: join adopts G
        >>> averager = ModelAverager(net, transport, "r0", sync_every=10)
        >>> averager.join()
        True
        >>> for _ in range(10):
        ...     _ = net.train_step(np.ones(3, np.float32), 1.0)
        >>> averager.maybe_sync(), averager.unsynced_steps
        (True, 0)
    """

    def __init__(
        self,
        model: Engine | Network,
        transport: Transport,
        replica_id: str,
        *,
        sync_every: int | None = 100,
        sync_interval: float | None = None,
        poll_interval: float = 0.01,
    ) -> None:
        network = model if isinstance(model, Network) else getattr(model, "network", None)
        if not isinstance(network, Network):
            raise TypeError(f"model: expected an Engine or a Network, got {type(model).__name__}")
        if not isinstance(replica_id, str) or not replica_id:
            raise ValueError("replica_id: must be a non-empty str")
        if sync_every is not None and (
            isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1
        ):
            raise ValueError(f"sync_every: must be an int >= 1 or None, got {sync_every!r}")
        if sync_interval is not None and not sync_interval > 0:
            raise ValueError(f"sync_interval: must be > 0 or None, got {sync_interval!r}")
        if sync_every is None and sync_interval is None:
            raise ValueError("give sync_every and/or sync_interval")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval: must be > 0, got {poll_interval!r}")
        self._net = network
        self._transport = transport
        self._id = replica_id
        self._every = sync_every
        self._interval = sync_interval
        self._poll = float(poll_interval)
        state = network.get_state()
        self._base = _params(state)
        self._base_steps = _steps(state)
        self._joined = False
        self._seq = 0
        self._pending: _Pending | None = None
        self._round_lock = threading.Lock()  # one round at a time
        self._rounds = 0
        self._failed = 0
        self._synced = 0
        self._global_version = 0
        self._global_steps = 0
        self._last_round: float | None = None
        self._last_pause: float | None = None
        self._last_error: str | None = None
        self._attempt_steps = self._base_steps
        self._attempt_time = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ rounds
    def join(self) -> bool:
        """Pull the global model and adopt it (keeping local progress on top).

        Runs by itself as the first round; call it before serving to start from
        the global model. Returns False (and counts a failed round) if the
        transport failed; the replica stays on its local model.
        """
        with self._round_lock:
            return self._pull_round()

    def sync(self) -> bool:
        """Run one round now (join, push, or pull when there is nothing to push).

        Returns True on success, False if the transport failed (see
        :attr:`stats` ``last_error``); never raises for a transport failure.
        """
        with self._round_lock:
            self._attempt_time = time.monotonic()
            self._attempt_steps = self._net.steps
            if not self._joined:
                return self._pull_round()
            if self._pending is None:
                start = time.perf_counter()
                state = self._net.get_state()  # one copy under the network lock
                copy_time = time.perf_counter() - start
                snapshot = _params(state)
                snapshot_steps = _steps(state)
                n = snapshot_steps - self._base_steps
                if n == 0:
                    return self._pull_round()
                self._pending = _Pending(
                    self._seq + 1, snapshot, subtract(snapshot, self._base), n, snapshot_steps
                )
                self._seq += 1
            else:
                copy_time = 0.0
            return self._push_round(self._pending, copy_time)

    def due(self) -> bool:
        """Whether a round is due (``sync_every`` steps or ``sync_interval`` seconds)."""
        if self._every is not None and self._net.steps - self._attempt_steps >= self._every:
            return True
        return (
            self._interval is not None and time.monotonic() - self._attempt_time >= self._interval
        )

    def maybe_sync(self) -> bool | None:
        """:meth:`sync` if a round is due; None if not due, else its result."""
        return self.sync() if self.due() else None

    def _pull_round(self) -> bool:
        start = time.perf_counter()
        try:
            reply = self._transport.pull(self._id)
            t0 = time.perf_counter()
            self._net.apply_delta(subtract(reply.params, self._base))
            pause = time.perf_counter() - t0
        except Exception as exc:
            return self._failed_round(exc)
        if not self._joined:
            self._seq = max(self._seq, reply.last_seq)
            self._joined = True
        self._base = reply.params
        self._finish(reply, start, pause)
        return True

    def _push_round(self, pending: _Pending, copy_time: float) -> bool:
        start = time.perf_counter() - copy_time
        try:
            reply = self._transport.push(pending.delta, pending.steps, self._id, pending.seq)
            t0 = time.perf_counter()
            self._net.apply_delta(subtract(reply.params, pending.snapshot))
            pause = copy_time + time.perf_counter() - t0
        except Exception as exc:
            return self._failed_round(exc)
        self._base = reply.params
        self._base_steps = pending.snapshot_steps
        self._synced += pending.steps
        self._pending = None
        self._finish(reply, start, pause)
        return True

    def _finish(self, reply: SyncReply, start: float, pause: float) -> None:
        self._rounds += 1
        self._global_version = reply.version
        self._global_steps = reply.steps
        self._last_round = time.perf_counter() - start
        self._last_pause = pause

    def _failed_round(self, exc: Exception) -> bool:
        self._failed += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        logger.warning("replica %s: sync round failed (%s); training goes on", self._id, exc)
        return False

    # ------------------------------------------------------------------ background thread
    def start(self) -> ModelAverager:
        """Run rounds in a background thread whenever one is due; returns self."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"livelearn-averager-{self._id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, final_sync: bool = True, timeout: float | None = None) -> bool | None:
        """Stop the background thread; with ``final_sync`` push the remaining steps.

        Returns the final round's result (None without ``final_sync``). Call it
        after the replica's training stopped (e.g. after ``Engine.close()``) for
        a complete final push.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None
        if not final_sync:
            return None
        ok = True
        for _ in range(3):  # a retried push, then the steps taken after its snapshot
            if not (self._pending or self.unsynced_steps or not self._joined):
                break
            ok = self.sync()
            if not ok:
                break
        return ok

    def _loop(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                if self.due():
                    self.sync()
            except Exception:  # never let the thread die: training must go on
                logger.exception("replica %s: unexpected error in a sync round", self._id)

    def __enter__(self) -> ModelAverager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(final_sync=True)

    # ------------------------------------------------------------------ read side
    @property
    def network(self) -> Network:
        """The replica's network."""
        return self._net

    @property
    def replica_id(self) -> str:
        """This replica's name."""
        return self._id

    @property
    def unsynced_steps(self) -> int:
        """Local training steps the coordinator has not acknowledged: at most what
        this replica would lose if it died now."""
        return max(0, self._net.steps - self._base_steps)

    def stats(self) -> AveragerStats:
        """The synchronisation counters."""
        return AveragerStats(
            replica_id=self._id,
            joined=self._joined,
            rounds=self._rounds,
            failed_rounds=self._failed,
            synced_steps=self._synced,
            unsynced_steps=self.unsynced_steps,
            seq=self._seq,
            global_version=self._global_version,
            global_steps=self._global_steps,
            last_round_seconds=self._last_round,
            last_pause_seconds=self._last_pause,
            last_error=self._last_error,
        )

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"ModelAverager(replica_id={self._id!r}, rounds={s.rounds}, "
            f"failed_rounds={s.failed_rounds}, unsynced_steps={s.unsynced_steps}, "
            f"global_version={s.global_version})"
        )


def _params(state: dict[str, NDArray[Any]]) -> dict[str, NDArray[np.float32]]:
    return {k: v for k, v in state.items() if k.startswith("layers.")}


def _steps(state: dict[str, NDArray[Any]]) -> int:
    return int(state["counters.steps"])
