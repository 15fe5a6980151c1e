"""The join store of delayed feedback: policies, clocks, bounds, threads, state."""

from __future__ import annotations

import gc
import random
import threading
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from livelearn.feedback import (
    DuplicateEventId,
    EventClock,
    Example,
    InvalidFeedback,
    JoinStatus,
    JoinStore,
    WallClock,
)


def row(i: float = 0.0) -> np.ndarray:
    return np.array([i, 1.0, 2.0, 3.0], dtype=np.float32)


def sparse(i: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(i, i + 10, dtype=np.int32), np.full(10, 0.5, dtype=np.float32)


def store(**kw: Any) -> JoinStore:
    kw.setdefault("clock", EventClock(0.0))
    return JoinStore(kw.pop("timeout", 10.0), **kw)


# ------------------------------------------------------------------ basics
def test_join_trains_the_label_with_the_features_seen_at_prediction() -> None:
    s = store()
    x = row(1.0)
    assert s.add("a", x, 0.25, time=1.0) == []
    x[0] = 99.0  # the caller's array changing later must not leak in
    out = s.feedback("a", 1.0, time=3.0)
    assert out.status is JoinStatus.JOINED
    (ex,) = out.examples
    assert (ex.event_id, ex.label, ex.weight, ex.prediction, ex.reason) == (
        "a",
        1.0,
        1.0,
        0.25,
        "joined",
    )
    assert ex.features[0].tolist() == [1.0, 1.0, 2.0, 3.0]
    assert not ex.features[0].flags.writeable
    assert (ex.predicted_at, ex.labelled_at, ex.delay) == (1.0, 3.0, 2.0)
    assert "a" not in s and len(s) == 0


def test_first_wins_and_the_duplicate_says_so() -> None:
    s = store()
    s.add(1, row(), 0.5, time=0.0)
    assert s.feedback(1, 1.0, time=1.0).status is JoinStatus.JOINED
    out = s.feedback(1, 0.0, time=2.0)
    assert out.status is JoinStatus.DUPLICATE and out.examples == ()
    c = s.counters()
    assert (c.joined, c.matched, c.duplicate, c.feedbacks) == (1, 1, 1, 2) and c.add_up()


def test_unknown_ids_never_raise() -> None:
    s = store()
    out = s.feedback("never", 1.0, time=0.0)
    assert out.status is JoinStatus.UNKNOWN and out.examples == ()
    assert s.counters().unknown == 1


def test_a_second_add_while_awaiting_is_refused_and_changes_nothing() -> None:
    s = store()
    s.add("a", row(1.0), 0.1, time=0.0)
    before = s.counters()
    with pytest.raises(DuplicateEventId):
        s.add("a", row(2.0), 0.9, time=1.0)
    assert s.counters() == before
    assert s.feedback("a", 1.0, time=2.0).examples[0].prediction == 0.1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event_id": 1.5}, "event_id"),
        ({"event_id": True}, "event_id"),
        ({"event_id": ""}, "event_id"),
        ({"features": [[1.0]]}, "features"),
        ({"features": np.zeros((2, 2))}, "features"),
        ({"features": np.array(["x"])}, "features"),
        ({"prediction": float("nan")}, "prediction"),
        ({"time": float("inf")}, "time"),
    ],
)
def test_bad_adds_raise_typed_errors_and_change_nothing(kwargs: dict[str, Any], field: str) -> None:
    s = store()
    args: dict[str, Any] = {"event_id": "a", "features": row(), "prediction": 0.5, "time": 0.0}
    args.update(kwargs)
    before = s.counters()
    with pytest.raises(InvalidFeedback) as err:
        s.add(**args)
    assert err.value.field == field
    assert s.counters() == before


def test_a_payload_layout_change_is_refused() -> None:
    s = store()
    s.add(1, sparse(0), 0.5, time=0.0)
    with pytest.raises(InvalidFeedback, match="layout"):
        s.add(2, row(), 0.5, time=0.0)


@pytest.mark.parametrize("label", [float("nan"), float("inf"), "1"])
def test_bad_labels_raise_and_change_nothing(label: object) -> None:
    s = store()
    s.add(1, row(), 0.5, time=0.0)
    before = s.counters()
    with pytest.raises(InvalidFeedback):
        s.feedback(1, label, time=1.0)  # type: ignore[arg-type]
    assert s.counters() == before and 1 in s


def test_bad_configuration_is_refused() -> None:
    for kw in (
        {"timeout": 0.0},
        {"max_awaiting": 0},
        {"late_policy": "retry"},
        {"duplicates": "mean"},
        {"remember": -1},
        {"default_label": float("nan")},
    ):
        with pytest.raises(InvalidFeedback):
            store(**kw)


# ------------------------------------------------------------------ timeouts
def test_timeout_trains_the_default_label() -> None:
    s = store(timeout=5.0, default_label=0.0)
    s.add("a", row(), 0.3, time=0.0)
    assert s.expire(4.9) == []
    (ex,) = s.expire(5.0)  # the window closes at the deadline, inclusive
    assert (ex.label, ex.reason, ex.labelled_at) == (0.0, "expired", 5.0)
    c = s.counters()
    assert (c.expired_trained, c.expired_dropped, c.awaiting) == (1, 0, 0) and c.add_up()


def test_timeout_drops_without_a_default_label() -> None:
    s = store(timeout=5.0, default_label=None)
    s.add("a", row(), 0.3, time=0.0)
    assert s.expire(6.0) == []
    assert s.counters().expired_dropped == 1
    out = s.feedback("a", 1.0, time=7.0)
    assert out.status is JoinStatus.LATE and out.examples == ()


def test_feedback_after_the_deadline_is_late_even_before_expire_runs() -> None:
    s = store(timeout=5.0)
    s.add("a", row(), 0.3, time=0.0)
    out = s.feedback("a", 1.0, time=5.5)
    assert out.status is JoinStatus.LATE
    (default,) = out.examples  # the expiry's default label, so replay is deterministic
    assert (default.label, default.reason) == (0.0, "expired")
    assert s.counters().late == 1 and s.counters().add_up()


def test_late_ignore_counts() -> None:
    s = store(timeout=1.0, late_policy="ignore")
    s.add("a", row(), 0.3, time=0.0)
    s.expire(2.0)
    out = s.feedback("a", 1.0, time=3.0)
    assert (out.status, out.examples) == (JoinStatus.LATE, ())
    assert (s.counters().late, s.counters().corrections) == (1, 0)


def test_late_correct_trains_the_late_positive_once() -> None:
    s = store(timeout=1.0, late_policy="correct")
    s.add("a", row(7.0), 0.3, time=0.0)
    (neg,) = s.expire(2.0)
    assert neg.label == 0.0
    out = s.feedback("a", 1.0, time=3.0)
    assert out.status is JoinStatus.LATE
    (pos,) = out.examples
    assert (pos.label, pos.weight, pos.reason, pos.delay) == (1.0, 1.0, "late", 3.0)
    assert pos.features[0][0] == 7.0
    again = s.feedback("a", 1.0, time=4.0)
    assert (again.status, again.examples) == (JoinStatus.DUPLICATE, ())
    assert s.counters().corrections == 1 and s.counters().add_up()


def test_late_correct_skips_a_late_label_equal_to_the_default() -> None:
    s = store(timeout=1.0, late_policy="correct")
    s.add("a", row(), 0.3, time=0.0)
    s.expire(2.0)
    out = s.feedback("a", 0.0, time=3.0)
    assert (out.status, out.examples) == (JoinStatus.LATE, ())


def test_late_correct_trains_a_dropped_example_when_its_label_comes() -> None:
    s = store(timeout=1.0, late_policy="correct", default_label=None)
    s.add("a", row(), 0.3, time=0.0)
    assert s.expire(2.0) == []
    (ex,) = s.feedback("a", 0.0, time=3.0).examples
    assert ex.label == 0.0


def test_late_is_told_from_unknown_only_while_remembered() -> None:
    s = store(timeout=1.0, remember=2)
    for i in range(3):
        s.add(i, row(), 0.5, time=0.0)
    s.expire(5.0)
    assert s.feedback(0, 1.0, time=6.0).status is JoinStatus.UNKNOWN  # forgotten
    assert s.feedback(1, 1.0, time=6.0).status is JoinStatus.LATE
    assert s.feedback(2, 1.0, time=6.0).status is JoinStatus.LATE
    assert s.counters().remembered == 2


# ------------------------------------------------------------------ aggregation
@pytest.mark.parametrize(("policy", "expected"), [("max", 3.0), ("sum", 5.0), ("last", 1.0)])
def test_aggregates_train_when_the_window_closes(policy: str, expected: float) -> None:
    s = store(timeout=10.0, duplicates=policy)
    s.add("a", row(), 0.5, time=0.0)
    statuses = [s.feedback("a", y, time=t).status for y, t in ((1.0, 1.0), (3.0, 2.0), (1.0, 3.0))]
    assert statuses == [JoinStatus.PENDING] * 3
    assert s.expire(9.0) == []
    (ex,) = s.expire(10.0)
    assert (ex.label, ex.reason, ex.labelled_at) == (expected, "joined", 3.0)
    assert s.feedback("a", 1.0, time=11.0).status is JoinStatus.DUPLICATE
    c = s.counters()
    assert (c.joined, c.matched, c.duplicate, c.expired_trained) == (1, 1, 3, 0) and c.add_up()


def test_an_aggregate_is_closed_by_a_feedback_after_its_deadline() -> None:
    s = store(timeout=10.0, duplicates="sum")
    s.add("a", row(), 0.5, time=0.0)
    s.feedback("a", 1.0, time=1.0)
    out = s.feedback("a", 1.0, time=12.0)
    assert out.status is JoinStatus.DUPLICATE
    assert [e.label for e in out.examples] == [1.0]


# ------------------------------------------------------------------ clocks
def test_the_event_clock_drives_time_and_never_goes_back() -> None:
    clock = EventClock(0.0)
    s = JoinStore(5.0, clock=clock)
    s.add("a", row(), 0.5)
    clock.advance(3.0)
    assert s.feedback("a", 1.0).examples[0].labelled_at == 3.0
    s.add("b", row(), 0.5)
    assert [e.event_id for e in s.advance(8.0)] == ["b"]
    with pytest.raises(InvalidFeedback):
        clock.advance(7.0)


def test_advance_needs_an_event_clock() -> None:
    s = JoinStore(5.0)
    assert isinstance(s.clock, WallClock)
    with pytest.raises(InvalidFeedback):
        s.advance(1.0)


def test_the_wall_clock_is_the_default() -> None:
    s = JoinStore(3600.0)
    s.add("a", row(), 0.5)
    assert s.expire() == []  # an hour has not passed
    ex = s.feedback("a", 1.0).examples[0]
    assert ex.delay >= 0.0


def test_replays_are_deterministic() -> None:
    def replay() -> list[tuple[object, ...]]:
        rng = random.Random(3)
        s = store(timeout=5.0, duplicates="max", late_policy="correct", max_awaiting=20)
        trained: list[tuple[object, ...]] = []
        t = 0.0
        for i in range(500):
            t += rng.random()
            trained += [(e.event_id, e.label, e.reason) for e in s.advance(t)]
            if rng.random() < 0.6:
                trained += [(e.event_id, e.label, e.reason) for e in s.add(i, row(), 0.5)]
            else:
                out = s.feedback(rng.randrange(i + 1), float(rng.random() < 0.5))
                trained += [(e.event_id, e.label, e.reason) for e in out.examples]
        return trained

    assert replay() == replay()


# ------------------------------------------------------------------ bounds
def test_eviction_keeps_max_awaiting_oldest_deadline_first() -> None:
    s = store(timeout=100.0, max_awaiting=3)
    for i in range(3):
        s.add(i, row(), 0.5, time=float(i))
    (ex,) = s.add(3, row(), 0.5, time=10.0)
    assert (ex.event_id, ex.label, ex.reason, ex.labelled_at) == (0, 0.0, "evicted", 10.0)
    c = s.counters()
    assert (c.awaiting, c.evicted_trained, c.expired_trained) == (3, 1, 0) and c.add_up()
    assert s.feedback(0, 1.0, time=11.0).status is JoinStatus.LATE


def test_eviction_without_default_label_drops() -> None:
    s = store(max_awaiting=1, default_label=None)
    s.add(0, row(), 0.5, time=0.0)
    assert s.add(1, row(), 0.5, time=0.0) == []
    assert s.counters().evicted_dropped == 1


def test_an_evicted_aggregate_trains_as_joined() -> None:
    s = store(max_awaiting=1, duplicates="max")
    s.add(0, row(), 0.5, time=0.0)
    s.feedback(0, 1.0, time=1.0)
    (ex,) = s.add(1, row(), 0.5, time=2.0)
    assert (ex.label, ex.reason) == (1.0, "joined")
    assert s.counters().joined == 1 and s.counters().evicted == 0


def _traced(n: int, make: Any) -> float:
    s = store(timeout=1e9, max_awaiting=n + 1)
    rows = [make(i) for i in range(n)]
    ids = [f"imp-{i:08d}" for i in range(n)]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            s.add(ids[i], rows[i], 0.5, time=float(i))
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return used / n


def test_memory_per_awaiting_example() -> None:
    """The numbers of the module docstring (printed with -s); loose upper bounds."""
    hashed = _traced(2000, sparse)
    dense = _traced(2000, row)
    print(f"bytes per awaiting example: hashed(10) {hashed:.0f}, dense(4) {dense:.0f}")
    assert 0 < dense < hashed < 1000


def test_100k_adds_stay_within_max_awaiting_and_memory_is_flat() -> None:
    s = store(timeout=1e9, max_awaiting=1000, remember=1000)
    x = sparse(0)
    for i in range(100_000):
        s.add(i, x, 0.5, time=float(i))
        if i % 10_000 == 9_999:
            assert len(s) == 1000 and len(s._heap) <= 2 * 1000 + 64
    c = s.counters()
    assert (c.awaiting, c.evicted_trained, c.remembered) == (1000, 99_000, 1000) and c.add_up()
    # Steady state, traced from the start (objects made before tracing would hide
    # their release): after a warm-up, 10k more adds, each evicting one, keep the
    # traced memory flat.
    s = store(timeout=1e9, max_awaiting=1000, remember=1000)
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(3000):
            s.add(i, x, 0.5, time=float(i))
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(3000, 13_000):
            s.add(i, x, 0.5, time=float(i))
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth < 50_000, growth  # one example is ~600 bytes: 10k kept would be 6 MB


def test_joined_ids_do_not_leave_the_heap_growing() -> None:
    s = store(timeout=1e9, max_awaiting=10)
    for i in range(10_000):
        s.add(i, row(), 0.5, time=0.0)
        s.feedback(i, 1.0, time=0.0)
    assert len(s._heap) <= 64 + 2 and len(s) == 0


# ------------------------------------------------------------------ counters
class StoreMachine(RuleBasedStateMachine):
    """Any sequence of operations keeps both counter identities."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 0.0
        self.next_id = 0
        self.trained = 0

    @rule(
        duplicates=st.sampled_from(["first", "max", "sum", "last"]),
        late=st.sampled_from(["ignore", "correct"]),
        default=st.sampled_from([0.0, None]),
        cap=st.integers(1, 5),
    )
    def reset(self, duplicates: str, late: str, default: float | None, cap: int) -> None:
        self.s = store(
            timeout=3.0,
            duplicates=duplicates,
            late_policy=late,
            default_label=default,
            max_awaiting=cap,
            remember=4,
        )

    def _store(self) -> JoinStore:
        if not hasattr(self, "s"):
            self.s = store(timeout=3.0, max_awaiting=3, remember=4)
        return self.s

    @rule(reuse=st.integers(0, 9), fresh=st.booleans())
    def add(self, reuse: int, fresh: bool) -> None:
        s = self._store()
        eid = self.next_id if fresh else reuse
        self.next_id += fresh
        try:
            s.add(eid, row(), 0.5, time=self.t)
        except DuplicateEventId:
            assert eid in s

    @rule(eid=st.integers(0, 12), label=st.sampled_from([0.0, 1.0, 2.0]))
    def feedback(self, eid: int, label: float) -> None:
        self._store().feedback(eid, label, time=self.t)

    @rule(dt=st.floats(0.0, 4.0))
    def tick(self, dt: float) -> None:
        self.t += dt
        self._store().expire(self.t)

    @invariant()
    def counters_add_up(self) -> None:
        c = self._store().counters()
        assert c.add_up(), c
        assert c.awaiting <= self._store().max_awaiting
        assert c.remembered <= 4


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


# ------------------------------------------------------------------ threads
def test_threads_resolve_every_id_exactly_once() -> None:
    """8 adders and 8 senders with duplicates, unknown ids and feedback racing its
    own add: each id leaves once (joined, or by the timeout), nothing deadlocks."""
    n_per = 2000
    s = JoinStore(1e9, max_awaiting=100_000, remember=100_000, clock=EventClock(0.0))
    joined: list[list[Example]] = [[] for _ in range(8)]
    statuses: list[dict[JoinStatus, int]] = [dict.fromkeys(JoinStatus, 0) for _ in range(8)]
    start = threading.Barrier(16)

    def adder(k: int) -> None:
        start.wait(timeout=30)
        for i in range(n_per):
            s.add(k * n_per + i, row(), 0.5)

    def sender(k: int) -> None:
        rng = random.Random(k)
        start.wait(timeout=30)
        for _ in range(n_per):
            eid = rng.randrange(8 * n_per + 500)  # ids past 8*n_per are never added
            for _ in range(1 + (rng.random() < 0.3)):  # duplicates
                out = s.feedback(eid, 1.0)
                statuses[k][out.status] += 1
                joined[k].extend(out.examples)

    threads = [threading.Thread(target=adder, args=(k,)) for k in range(8)]
    threads += [threading.Thread(target=sender, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock"
    expired = s.expire(2e9)
    ids = [e.event_id for part in joined for e in part] + [e.event_id for e in expired]
    assert len(ids) == len(set(ids)) == 8 * n_per  # every id resolved exactly once
    c = s.counters()
    assert c.add_up() and c.awaiting == 0
    assert c.joined == sum(len(p) for p in joined) and c.expired_trained == len(expired)
    total = {st_: sum(d[st_] for d in statuses) for st_ in JoinStatus}
    assert total[JoinStatus.JOINED] == c.joined and total[JoinStatus.UNKNOWN] == c.unknown
    assert c.unknown > 0 and c.duplicate > 0


# ------------------------------------------------------------------ state
def test_state_round_trips_exactly() -> None:
    def build() -> JoinStore:
        s = store(timeout=5.0, duplicates="sum", late_policy="correct", max_awaiting=50)
        for i in range(40):
            s.add(f"id-{i}", sparse(i), i / 40, time=float(i) / 4)
        for i in range(0, 40, 3):
            s.feedback(f"id-{i}", 1.0, time=float(i) / 4 + 1)
        s.expire(6.0)
        return s

    a = build()
    arrays, meta = a.export_state()
    import json

    meta = json.loads(json.dumps(meta))  # JSON-able metadata
    b = store(timeout=5.0, duplicates="sum", late_policy="correct", max_awaiting=50)
    b.import_state(arrays, meta)
    assert b.counters() == a.counters()
    arrays2, meta2 = b.export_state()
    assert meta2 == meta and arrays2.keys() == arrays.keys()
    for k in arrays:
        np.testing.assert_array_equal(arrays2[k], arrays[k])
        assert arrays2[k].dtype == arrays[k].dtype

    def rest(s: JoinStore) -> list[tuple[object, ...]]:
        out = [s.feedback(f"id-{i}", 1.0, time=9.0) for i in range(0, 45, 2)]
        seen = [(o.status, tuple((e.event_id, e.label, e.reason) for e in o.examples)) for o in out]
        seen += [(e.event_id, e.label, e.features[0].tolist()) for e in s.expire(100.0)]
        return seen

    assert rest(a) == rest(b)
    assert b.counters() == a.counters()


def test_an_empty_store_round_trips() -> None:
    arrays, meta = store().export_state()
    b = store()
    b.import_state(arrays, meta)
    assert b.counters() == store().counters()


def test_a_bad_state_is_refused_and_changes_nothing() -> None:
    a = store()
    a.add(1, row(), 0.5, time=0.0)
    arrays, meta = a.export_state()
    b = store(max_awaiting=5)
    b.add(9, row(), 0.5, time=0.0)
    with pytest.raises(InvalidFeedback):
        b.import_state({**arrays, "prediction": np.zeros(3)}, meta)
    with pytest.raises(InvalidFeedback):
        b.import_state(arrays, {**meta, "version": 99})
    with pytest.raises(InvalidFeedback):
        store(max_awaiting=1, remember=0).import_state(*store_with(3).export_state())
    assert 9 in b and len(b) == 1


def store_with(n: int) -> JoinStore:
    s = store(max_awaiting=n)
    for i in range(n):
        s.add(i, row(), 0.5, time=0.0)
    return s


def test_snapshot_is_json_able() -> None:
    import json

    s = store()
    s.add(1, row(), 0.5, time=0.0)
    snap = s.snapshot()
    assert json.loads(json.dumps(snap))["awaiting"] == 1
    assert snap["next_deadline"] == 10.0 and snap["evicted"] == 0


def test_the_join_rate_counts_ids_that_left() -> None:
    s = store(timeout=1.0)
    assert s.snapshot()["join_rate"] is None
    for i in range(4):
        s.add(i, row(), 0.5, time=0.0)
    s.feedback(0, 1.0, time=0.5)
    s.expire(2.0)
    assert s.snapshot()["join_rate"] == 0.25


def test_a_state_whose_counters_do_not_add_up_is_refused() -> None:
    arrays, meta = store_with(2).export_state()
    meta["counters"]["added"] = 5
    with pytest.raises(InvalidFeedback, match="add up"):
        store().import_state(arrays, meta)


def test_drain_closes_every_window_under_the_timeout_policy() -> None:
    s = store(timeout=10.0, duplicates="max")
    for i in range(3):
        s.add(i, row(), 0.5, time=float(i))
    s.feedback(1, 1.0, time=3.0)
    out = s.drain(4.0)
    assert [(e.event_id, e.label, e.reason) for e in out] == [
        (0, 0.0, "expired"),
        (1, 1.0, "joined"),
        (2, 0.0, "expired"),
    ]
    c = s.counters()
    assert (len(s), c.joined, c.expired_trained) == (0, 1, 2) and c.add_up()
    assert s.feedback(0, 1.0, time=5.0).status is JoinStatus.LATE


def test_a_reused_id_is_a_new_event_and_its_old_heap_entry_is_stale() -> None:
    s = store(timeout=5.0, max_awaiting=2)
    s.add("a", row(1.0), 0.1, time=0.0)
    s.feedback("a", 1.0, time=0.0)
    s.add("a", row(2.0), 0.2, time=0.0)  # same deadline as the stale heap entry
    s.add("b", row(), 0.5, time=0.0)
    (ex,) = s.add("c", row(), 0.5, time=1.0)  # evicts the oldest live one: "a" again
    assert (ex.event_id, ex.prediction, ex.reason) == ("a", 0.2, "evicted")
    assert "b" in s and "c" in s and s.counters().add_up()


def test_an_add_that_finds_a_passed_deadline_counts_an_expiry() -> None:
    s = store(timeout=5.0, max_awaiting=1)
    s.add("a", row(), 0.5, time=0.0)
    (ex,) = s.add("b", row(), 0.5, time=9.0)  # expire() was never called
    assert (ex.reason, ex.labelled_at) == ("expired", 5.0)
    assert (s.counters().expired_trained, s.counters().evicted) == (1, 0)


def test_bad_input_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    s = store()
    s.add(1, row(), 0.5, time=0.0)
    with caplog.at_level("WARNING", logger="livelearn"), pytest.raises(DuplicateEventId):
        s.add(1, row(), 0.5, time=0.0)
    with caplog.at_level("WARNING", logger="livelearn"), pytest.raises(InvalidFeedback):
        s.feedback(1, float("nan"), time=0.0)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "already awaiting" in messages[0] and "nan" in messages[1]
