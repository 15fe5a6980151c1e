"""Back-pressure: a 4-slot queue flooded by 4 producers, for each overload policy.

``block`` makes producers wait (nothing is lost or refused), ``raise`` refuses with
:class:`EngineOverloaded` (a refused ``train_many`` queues nothing), ``drop_oldest``
resolves the oldest queued steps as skipped. Every Future resolves exactly once,
each producer's steps train in its submission order, the counters add up, and the
resident memory stays flat (Futures are not kept, so it measures the engine).
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque

import pytest
from _scenarios import OVERLOAD_CHUNK, Gate, interaction, run_overload

from livelearn import Engine, EngineOverloaded

MAX_PENDING = 4
BATCH = 2
PRODUCERS = 4


@pytest.mark.parametrize("policy", ["block", "raise", "drop_oldest"])
def test_sustained_overload(policy: str) -> None:
    r = run_overload(
        policy, producers=PRODUCERS, per_producer=25_000, max_pending=MAX_PENDING, batch_size=BATCH
    )
    print(
        f"\n{policy}: {r.attempts} attempts, {r.accepted} accepted, {r.overloaded} refused, "
        f"{r.trained} trained, {r.skipped} dropped, max pending {r.max_pending_seen}, "
        f"RSS {r.rss_growth_bytes / 2**20:+.1f} MiB"
    )
    assert not r.problems, r.problems[:10]
    assert (r.unresolved, r.resolved_more_than_once) == (0, 0)
    assert r.rss_growth_bytes <= 10 * 2**20
    # The queue never exceeds max_pending, however many producers race (see
    # also the test below).
    assert r.max_queued_seen <= MAX_PENDING
    # pending counts every step not yet resolved: besides the queue, the batch
    # in flight and the chunk a producer has counted but not yet queued; under
    # drop_oldest also the steps each producer has taken off the queue and not
    # yet resolved as skipped. (A bound of MAX_PENDING + BATCH left these out and
    # failed when a snapshot fell in such a window: 10 seen.)
    in_hand = OVERLOAD_CHUNK + (PRODUCERS * OVERLOAD_CHUNK if policy == "drop_oldest" else 0)
    assert r.max_pending_seen <= MAX_PENDING + BATCH + in_hand
    if policy == "block":
        assert r.overloaded == 0 and r.trained == r.attempts and r.skipped == 0
        assert r.max_pending_seen >= MAX_PENDING  # the queue was full: producers waited
    elif policy == "raise":
        assert r.overloaded > 0 and r.accepted > 0
        assert r.trained == r.accepted and r.skipped == 0
    else:
        assert r.overloaded == 0 and r.skipped > 0 and r.trained > 0
        assert r.trained + r.skipped == r.attempts


class _RacingLen(deque):  # type: ignore[type-arg]
    """``len()`` holds the first call of each "racer" thread until both racers have
    read the length (at most 1 s): both then see the same free slot."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = threading.Barrier(2)
        self.seen: set[int] = set()

    def __len__(self) -> int:
        n = super().__len__()
        me = threading.get_ident()
        if threading.current_thread().name.startswith("racer") and me not in self.seen:
            self.seen.add(me)
            with contextlib.suppress(threading.BrokenBarrierError):
                self.barrier.wait(timeout=1.0)
        return n


def test_max_pending_is_a_hard_bound_under_concurrent_producers() -> None:
    gate = Gate()
    engine = Engine(targets=gate, max_pending=2, overload="raise", log_every=0)
    racy = _RacingLen()
    engine._queue.items = racy  # before initialize(): the dispatcher captures this deque
    engine.initialize()
    outcomes: list[str] = []
    try:
        gate.hold(engine)  # the dispatcher is parked: nothing leaves the queue
        engine.train_step(interaction(0))  # 1 of 2 slots used

        def race() -> None:
            try:
                engine.train_step(interaction(1))
                outcomes.append("queued")
            except EngineOverloaded:
                outcomes.append("refused")

        racers = [threading.Thread(target=race, name=f"racer-{i}") for i in range(2)]
        for t in racers:
            t.start()
        for t in racers:
            t.join(10)
        queued = deque.__len__(racy)
    finally:
        gate.release()
        engine.close(wait=True, timeout=30)
    assert sorted(outcomes) == ["queued", "refused"]
    assert queued <= 2
