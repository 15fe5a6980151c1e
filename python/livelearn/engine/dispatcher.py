"""The dispatcher threads: take a batch, prepare it, train it, resolve it.

Each of the ``workers`` threads loops over: take up to ``batch_size`` queued
entries; :func:`~livelearn.engine.batch.prepare` them (encoding, targets: no
lock held); then, under the *train lock*, run the native batch call (the GIL
is released inside it) and book the outcome; then resolve the Futures, after
the lock is released (a done callback may call ``save()`` or ``os.fork()``).

Ordering guarantee: batches are trained one at a time, in the order they
take the train lock; within a batch, steps run in submission order. With one
worker that is submission order. With ``workers > 1`` the preparation of one
batch overlaps the native training of another, and batches may reach the
network in a different order than they were submitted. The counters, the
history and the loss log always follow the order in which updates were
applied, and a snapshot taken under the train lock (``export_state``) sits on
a batch boundary.

The threads hold the components they need, never the :class:`Engine`, so a
forgotten engine is collected: its finaliser only calls :meth:`Dispatcher.stop`
and the dispatcher trains what is still queued, then exits. Dispatchers still
running at interpreter exit are drained by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
from numpy.typing import NDArray

from livelearn.engine.batch import FieldFeatures, PreparedBatch, prepare
from livelearn.engine.bookkeeping import Ledger
from livelearn.engine.submission import (
    Entry,
    SubmissionQueue,
    TableChunk,
    in_dispatcher,
    rows_of,
)
from livelearn.features import Encoder
from livelearn.field_network import FieldNetwork
from livelearn.futures import StepFuture, resolve_all, resolve_rows
from livelearn.network import Network
from livelearn.results import StepResult, StepStatus, TrainedRows
from livelearn.targets import TargetMapper

if TYPE_CHECKING:
    from livelearn.autosave import AutoSaver

__all__ = ["IDLE_POLL_S", "Dispatcher", "JoinHooks"]

logger = logging.getLogger("livelearn")

# An idle dispatcher sleeps on the queue's wake event; producers set it when
# they queue work for a sleeping dispatcher, so this timeout is only a safety
# net (a wake-up can never be lost, see SubmissionQueue.put). 50 ms costs an
# idle engine 20 wake-ups a second and nothing on the hot path.
IDLE_POLL_S = 0.05


class JoinHooks(Protocol):
    """What the dispatcher needs from the delayed-feedback loop
    (:class:`livelearn.engine.joining.Joiner`): queued rows it encoded at
    prediction time train as they are, never re-encoded."""

    def split(self, batch: list[Entry]) -> Iterator[tuple[list[Entry], bool]]:
        """Consecutive runs of ``batch``, each flagged True when it holds encoded rows."""
        ...

    def prepare(self, items: list[object], fields: bool) -> PreparedBatch:
        """Network input of a run of encoded rows (with their sample weights)."""
        ...

    def trained(self, items: list[object], results: object) -> None:
        """Called after a run of encoded rows was booked and its Futures resolved."""
        ...


# Dispatchers with threads still running: drained at exit.
_RUNNING: set[Dispatcher] = set()


class Dispatcher:
    """The threads that train an engine's queued steps."""

    def __init__(
        self,
        queue: SubmissionQueue,
        encoder: Encoder,
        targets: TargetMapper,
        network: Network | FieldNetwork,
        ledger: Ledger,
        done: threading.Condition,
        workers: int,
        autosave: AutoSaver | None,
        owner: weakref.ref[Any],
    ) -> None:
        self.queue = queue
        self.encoder = encoder
        self.targets = targets
        self.network = network
        self.ledger = ledger
        self.done = done
        self.workers = workers
        self.autosave = autosave
        self._owner = owner  # the engine, for autosave (weak: see module docs)
        # Held around the native call and its bookkeeping: updates are applied
        # one batch at a time, and a snapshot under it sits on a batch boundary.
        self.train_lock = threading.Lock()
        self._train_holder: int | None = None  # thread id holding train_lock
        self._held_for_fork = False
        self.threads: list[threading.Thread] = []
        self._alive = 0  # threads started and not yet finished
        self._exit_lock = threading.Lock()
        # Batches taken from the queue and not yet resolved, by thread id: after
        # a fork, the child resolves the copies of other threads' batches.
        self.inflight: dict[int, list[Entry]] = {}
        # The batch step; an attribute so a profiler can wrap it.
        self.run_batch: Callable[[], None] = self._run_batch
        # Delayed feedback (livelearn.engine.joining), None when not configured:
        # ``tick`` runs after each batch and idle wake-up (bounded work: expiry);
        # ``joins`` prepares and books batches of already-encoded rows.
        self.tick: Callable[[], None] | None = None
        self.joins: JoinHooks | None = None

    def start(self) -> None:
        for i in range(self.workers):
            self.threads.append(
                threading.Thread(target=self._loop, name=f"livelearn-dispatcher-{i}", daemon=True)
            )
        self._alive = len(self.threads)
        _RUNNING.add(self)
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Refuse new work; the threads train what is queued, then exit."""
        self.queue.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads (and a periodic checkpoint still being
        written); True when they have all exited."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self.threads:
            if thread is threading.current_thread():
                continue
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self.autosave is not None:  # the last batch may have started one
            self.autosave.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        finished = all(not t.is_alive() for t in self.threads)
        if finished:
            _RUNNING.discard(self)
        return finished

    def _loop(self) -> None:
        try:
            self._serve()
        finally:
            with self._exit_lock:
                self._alive -= 1
                if self._alive == 0:  # the last thread: nothing left to drain at exit
                    _RUNNING.discard(self)

    def _serve(self) -> None:
        in_dispatcher.active = True
        queue = self.queue
        items = queue.items
        wake = queue.wake
        while True:
            if not items:
                closing = queue.closing  # read before the queue: see SubmissionQueue.lock
                if closing and not items:
                    return
                queue.sleeping = True
                if not items:  # re-check: a producer may have appended meanwhile
                    wake.wait(IDLE_POLL_S)
                queue.sleeping = False
                wake.clear()
                if self.tick is not None:
                    self.tick()
                continue
            self.run_batch()
            if self.tick is not None:
                self.tick()

    def _run_batch(self) -> None:
        """Take up to ``batch_size`` queued steps and train them."""
        # Registered before taking, so a fork at any moment finds every taken
        # entry in flight and the child resolves its copies.
        me = threading.get_ident()
        batch: list[Entry] = []
        self.inflight[me] = batch
        self.queue.take(self.queue.batch_size, batch)
        if not batch:
            self.inflight.pop(me, None)
            return
        try:
            for part, chunk in _table_runs(batch):
                if chunk:  # one table chunk: its rows, one native call, one Future
                    self._train_chunk(part[0], me)
                    continue
                joins = self.joins
                if joins is None:
                    self._train_part(part, me, None)
                else:  # runs of interactions and of encoded rows, in queue order
                    for run, encoded in joins.split(part):
                        self._train_part(run, me, joins if encoded else None)
        except BaseException as exc:  # never leave a Future unresolved
            self._fail(batch, exc)
        finally:
            self.inflight.pop(me, None)
        if self.autosave is not None:
            owner = self._owner()
            if owner is not None:
                # The trained count, not stats(): that also snapshots the live quality.
                self.autosave.maybe_save(self.ledger.counters.trained, owner.save)
            del owner
        self.queue.notify_room()

    def _train_part(self, batch: list[Entry], me: int, joins: JoinHooks | None) -> None:
        items = [it for it, _ in batch]
        fields = isinstance(self.network, FieldNetwork)
        if joins is None:
            prepared = prepare(items, self.encoder, self.targets, fields)
        else:
            prepared = joins.prepare(items, fields)
        with self.train_lock:
            self._train_holder = me
            try:
                results, any_rejected = self.ledger.book(prepared, *self._train(prepared))
            finally:
                self._train_holder = None
        futures = [f for _, f in batch]
        if isinstance(results, TrainedRows):
            resolve_rows(self.done, futures, results)
        else:
            resolve_all(self.done, futures, results)
        if joins is not None:
            joins.trained(items, results)
        if any_rejected:
            assert isinstance(results, list)
            _log_rejections(prepared.items, results)

    def _train_chunk(self, entry: Entry, me: int) -> None:
        """A :class:`TableChunk` entry: prepared, trained and booked like a run
        of interactions (the same ``prepare`` and ``Ledger.book``), and its
        one Future resolved with the chunk's outcome."""
        chunk, future = entry
        assert isinstance(chunk, TableChunk)
        fields = isinstance(self.network, FieldNetwork)
        prepared = prepare(chunk.items, self.encoder, self.targets, fields)
        with self.train_lock:
            self._train_holder = me
            try:
                results, any_rejected = self.ledger.book(prepared, *self._train(prepared))
            finally:
                self._train_holder = None
        resolve_all(self.done, [future], [results])
        if any_rejected:
            assert isinstance(results, list)
            _log_rejections(prepared.items, results)

    def _train(
        self, batch: PreparedBatch
    ) -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.uint8], NDArray[np.int64]]:
        """One native call for the batch's rows: losses, predictions, status
        codes and each row's step number (0 when rejected). Call under train_lock."""
        features, Y, W = batch.features, batch.targets, batch.weights
        # The core numbers each step under the network's lock, so the numbers
        # stay right while other threads train engine.network directly.
        network = self.network
        if isinstance(network, FieldNetwork):
            assert isinstance(features, FieldFeatures)
            f = features
            dense = f.dense if f.n_dense else None
            return network.train_batch(f.indptr, f.indices, f.values, f.fields, dense, Y, W)
        if isinstance(features, tuple):
            indptr, indices, values = cast("tuple[Any, Any, Any]", features)
            return network.train_batch_sparse_detailed(
                indptr, indices, values, Y, weights=W, return_steps=True
            )
        return network.train_batch_detailed(features, Y, weights=W, return_steps=True)

    def _fail(self, batch: list[Entry], exc: BaseException) -> None:
        logger.error("%d step(s) failed: %s: %s", len(batch), type(exc).__name__, exc)
        pending = [f for _, f in batch if not f.done()]
        self.ledger.failed(rows_of(pending))
        resolve_all(self.done, pending, [exc] * len(pending))

    # ------------------------------------------------------------------ fork
    def before_fork(self) -> None:
        # No native step may be in flight when the process is copied: the child
        # would inherit the network's lock held by a thread that does not exist
        # there. A train lock this very thread holds (os.fork() from a log
        # handler) is left alone: its native call is over, waiting would deadlock.
        self._held_for_fork = self._train_holder != threading.get_ident()
        if self._held_for_fork:
            self.train_lock.acquire()

    def after_fork_in_parent(self) -> None:
        if self._held_for_fork:
            self.train_lock.release()

    def after_fork_in_child(self) -> list[StepFuture[StepResult]]:
        """No threads survive; returns the unresolved Futures of other threads'
        batches (this thread's own batch, if any, goes on here)."""
        self.train_lock = threading.Lock()
        self._exit_lock = threading.Lock()
        self._train_holder = None
        self.threads = []
        self._alive = 0
        _RUNNING.discard(self)
        me = threading.get_ident()
        inherited: list[StepFuture[StepResult]] = []
        for thread_id, batch in list(self.inflight.items()):
            if thread_id != me:
                inherited += [f for _, f in batch if not f.done()]
                del self.inflight[thread_id]
        return inherited


def _table_runs(batch: list[Entry]) -> Iterator[tuple[list[Entry], bool]]:
    """Consecutive runs of ``batch`` in queue order: each :class:`TableChunk`
    entry alone (flagged True), the entries between them together."""
    start = 0
    for i, (item, _) in enumerate(batch):
        if type(item) is TableChunk:
            if i > start:
                yield batch[start:i], False
            yield batch[i : i + 1], True
            start = i + 1
    if start < len(batch):
        yield batch[start:] if start else batch, False


def _log_rejections(items: list[object], results: list[object]) -> None:
    if not logger.isEnabledFor(logging.WARNING):
        return
    for item, result in zip(items, results, strict=True):
        if isinstance(result, BaseException):
            logger.warning("step rejected: %s (%r)", result, _short(item))
        elif isinstance(result, StepResult) and result.status is StepStatus.REJECTED:
            logger.warning("step rejected: %s (%r)", result.reason, _short(item))


def _short(item: object) -> str:
    text = repr(item)
    return text if len(text) <= 200 else text[:197] + "..."


@atexit.register
def _drain_at_exit() -> None:
    # No submitted step is silently lost when a service shuts down.
    for dispatcher in list(_RUNNING):
        dispatcher.stop()
        dispatcher.join()
