"""The bounded submission queue: what ``train_step``/``train_many`` append to.

One lock orders "is the engine closing?" against appends (so ``close()`` can
never miss an item appended just before it) and guards the ``max_pending``
bound (so concurrent producers can never overfill the queue together). The
overload policy decides what a producer does when the queue is full.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

from livelearn.engine.bookkeeping import Ledger
from livelearn.errors import EngineClosed, EngineOverloaded
from livelearn.futures import StepFuture, resolve_all
from livelearn.results import StepResult, StepStatus

__all__ = [
    "FORKED_MESSAGE",
    "POLICIES",
    "YIELD_EVERY_BATCHES",
    "ChunkFuture",
    "OverloadPolicy",
    "SubmissionQueue",
    "TableChunk",
    "in_dispatcher",
    "rows_of",
]

logger = logging.getLogger("livelearn")

OverloadPolicy = Literal["block", "raise", "drop_oldest"]
POLICIES: tuple[OverloadPolicy, ...] = ("block", "raise", "drop_oldest")

# A busy producer holds the GIL; without a hand-over the dispatcher would wait
# for the interpreter's switch interval (5 ms) after every native call. A
# producer yields (time.sleep(0)) once per this many batches of submissions:
# often enough to keep the dispatcher fed, rare enough (< 1 % of calls) that the
# call which yields stays out of the p99 submit latency (measured with
# benchmarks/engine_bench.py on the 2-core development machine, commit 1a611f4).
YIELD_EVERY_BATCHES = 2

FORKED_MESSAGE = (
    "this engine belongs to the parent process (it existed before os.fork()); "
    "its dispatcher thread did not survive the fork. Create a new Engine in the "
    "child, e.g. Engine.load(checkpoint)"
)
_DROPPED = "dropped: the queue was full (overload='drop_oldest')"
# Producers blocked on a full queue re-check this often (they are also notified).
_ROOM_POLL_S = 0.1

Entry = tuple[object, StepFuture[StepResult]]


class TableChunk:
    """Consecutive valid rows of a table (:meth:`Engine.train_table`) queued as
    ONE entry: the dispatcher prepares and trains them with one native call and
    books them in bulk; its :class:`ChunkFuture` resolves with the chunk's
    outcome (a ``TrainedRows``, a per-row result list, a skipped ``StepResult``
    for the whole chunk, or an exception)."""

    __slots__ = ("items",)

    def __init__(self, items: list[object]) -> None:
        self.items = items


class ChunkFuture(StepFuture[Any]):
    """The Future of a :class:`TableChunk` entry; ``rows`` steps are counted for it."""

    def __init__(self, condition: threading.Condition, rows: int) -> None:
        super().__init__(condition)
        self.rows = rows


def rows_of(futures: Sequence[StepFuture[Any]]) -> int:
    """How many steps ``futures`` stand for (a chunk's Future counts its rows)."""
    n = len(futures)
    for f in futures:
        if type(f) is ChunkFuture:
            n += f.rows - 1
    return n


# .active is True inside dispatcher threads (set by the dispatcher).
in_dispatcher = threading.local()


class SubmissionQueue:
    """Queued ``(interaction, future)`` entries, bounded by ``max_pending``.

    Futures dropped by the ``"drop_oldest"`` policy are counted in ``ledger``
    and resolved (as skipped) under ``done``.
    """

    def __init__(
        self,
        max_pending: int,
        overload: OverloadPolicy,
        batch_size: int,
        ledger: Ledger,
        done: threading.Condition,
    ) -> None:
        self.items: deque[Entry] = deque()
        self.max_pending = max_pending
        self.overload: OverloadPolicy = overload
        self.batch_size = batch_size
        self._yield_every = YIELD_EVERY_BATCHES * batch_size
        self._ledger = ledger
        self._done = done
        self.lock = threading.Lock()  # closing flag + appends + the bound
        self.room = threading.Condition()  # producers blocked on a full queue
        self.wake = threading.Event()  # set to wake sleeping dispatchers
        self.sleeping = False  # a dispatcher waits on ``wake``
        self.submitted = 0  # every Future ever handed out (under ``lock``)
        self.closing = False
        self.forked = False  # True in a child process created by os.fork()
        self.blocked_producers = 0

    def closed_message(self, call: str) -> str:
        return FORKED_MESSAGE if self.forked else f"{call} after close()"

    def count(self, n: int) -> None:
        """Count ``n`` Futures handed out that will never be queued."""
        with self.lock:
            self.submitted += n

    def put(self, interaction: object) -> StepFuture[StepResult]:
        """Queue one entry (``train_step``), applying the overload policy;
        returns its new Future."""
        future: StepFuture[StepResult] = StepFuture(self._done)
        items = self.items
        overflow = False
        while True:
            with self.lock:
                if self.closing:
                    raise EngineClosed(self.closed_message("train_step"))
                if overflow or len(items) < self.max_pending:
                    seq = self.submitted
                    self.submitted = seq + 1
                    items.append((interaction, future))
                    break
            overflow = self.make_room(1)
        if self.sleeping:
            # Wake a sleeping dispatcher once, not on every call until it runs.
            self.sleeping = False
            self.wake.set()
        elif seq % self._yield_every == 0 and len(items) >= self.batch_size:
            time.sleep(0)  # see YIELD_EVERY_BATCHES
        return future

    def put_many(
        self, interactions: Sequence[object], futures: Sequence[StepFuture[StepResult]]
    ) -> int:
        """Queue entries in order (``train_many``); returns how many were queued
        (fewer than all only when the engine closed meanwhile)."""
        n = len(interactions)
        start = 0
        overflow = False
        while start < n:
            with self.lock:
                if self.closing:
                    break
                queued = len(self.items)
                if start == 0 and self.overload == "raise" and queued + n > self.max_pending:
                    # All or nothing: the caller never loses Futures of queued steps.
                    raise EngineOverloaded(
                        f"{n} steps do not fit: {queued} pending (max_pending={self.max_pending})"
                    )
                end = n if overflow else min(n, start + max(0, self.max_pending - queued))
                if end > start:
                    self.submitted += end - start
                    self.items.extend(zip(interactions[start:end], futures[start:end], strict=True))
            if end > start:
                self.wake.set()
                start = end
                continue
            try:
                overflow = self.make_room(min(n - start, self.max_pending))
            except EngineClosed:
                break
        return start

    def put_chunks(self, chunks: Sequence[TableChunk], futures: Sequence[ChunkFuture]) -> bool:
        """Queue a table's chunks in order, all at once (``train_table``); each
        counts its rows as submitted. With ``overload="raise"`` they must fit in
        ``max_pending`` (counted in entries plus rows), else nothing is queued;
        the other policies queue them past the bound (a table is one call).
        Returns False when the engine is closed (nothing queued)."""
        rows = rows_of(futures)
        with self.lock:
            if self.closing:
                return False
            queued = len(self.items)
            if self.overload == "raise" and queued + rows > self.max_pending:
                raise EngineOverloaded(
                    f"{rows} steps do not fit: {queued} pending (max_pending={self.max_pending})"
                )
            self.submitted += rows
            self.items.extend(zip(chunks, futures, strict=True))
        self.wake.set()
        return True

    def make_room(self, needed: int) -> bool:
        """Apply the overload policy until ``needed`` more items fit. Returns
        True when the caller must queue them even though they do not fit."""
        if self.overload == "raise":
            raise EngineOverloaded(
                f"{len(self.items)} steps pending (max_pending={self.max_pending})"
            )
        if self.overload == "drop_oldest":
            dropped: list[StepFuture[StepResult]] = []
            ledger = self._ledger
            # Popped and counted as resolved at once: a stats() snapshot never
            # sees a dropped step as neither queued nor resolved.
            with ledger.lock:
                while len(self.items) + needed > self.max_pending:
                    try:
                        _, future = self.items.popleft()
                    except IndexError:
                        break
                    dropped.append(future)
                ledger.count_skipped_locked(rows_of(dropped))
            if dropped:
                logger.warning("%d queued steps skipped: %s", rows_of(dropped), _DROPPED)
                result = StepResult(None, None, None, StepStatus.SKIPPED, _DROPPED)
                resolve_all(self._done, dropped, [result] * len(dropped))
            return False
        if getattr(in_dispatcher, "active", False):
            # Called from a dispatcher thread (a done callback submitting more
            # work): waiting for room only this thread can make would deadlock,
            # so the queue may exceed max_pending by these items instead.
            return True
        self.wake.set()
        with self.room:
            self.blocked_producers += 1
            try:
                while len(self.items) + needed > self.max_pending:
                    if self.closing:
                        raise EngineClosed("engine closed while waiting for queue room")
                    self.room.wait(_ROOM_POLL_S)
            finally:
                self.blocked_producers -= 1
        return False

    def take(self, n: int, into: list[Entry] | None = None) -> list[Entry]:
        """Pop up to ``n`` entries (fewer if another worker or drop_oldest took them),
        appended to ``into`` (a new list by default). An entry is never held
        by this call alone: it leaves the queue and enters ``into`` within one
        bytecode, so a list a fork hook can see (the dispatcher's in-flight
        batch) always holds it."""
        items = self.items
        batch: list[Entry] = [] if into is None else into
        try:
            for _ in range(min(len(items), n)):
                batch.append(items.popleft())
        except IndexError:
            pass
        return batch

    def close(self) -> bool:
        """Refuse new entries; True the first time. Wakes everyone waiting."""
        with self.lock:
            first = not self.closing
            self.closing = True
        if first:
            with self.room:
                self.room.notify_all()  # blocked producers see EngineClosed
            self.wake.set()
        return first

    def notify_room(self) -> None:
        """Tell blocked producers that entries left the queue."""
        if self.blocked_producers:
            with self.room:
                self.room.notify_all()

    def after_fork_in_child(self) -> list[StepFuture[StepResult]]:
        """New locks, refuse new work; returns the queued Futures (the parent's to train)."""
        self.lock = threading.Lock()
        self.room = threading.Condition()
        self.forked = True
        self.closing = True
        inherited = [f for _, f in self.items]
        self.items.clear()
        return inherited
