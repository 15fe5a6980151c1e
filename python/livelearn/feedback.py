"""The join store of delayed feedback: predictions wait here for their outcome.

A service predicts now and learns the outcome later (a click seconds after the
impression, or nothing). :class:`JoinStore` keeps, per *event id*, what the
network saw at prediction time (the encoded features, an opaque tuple of 1-D
numpy arrays: a dense float32 row, or CSR ``(indices, values[, fields])``), the
prediction and its time, until the outcome arrives or the wait times out. It
trains nothing itself: every operation hands back the :class:`Example` rows the
caller (the engine) must train, with their label and weight.

Life of an id (``deadline = predicted_at + timeout``; the *window* closes at the
deadline):

- ``add`` makes it *awaiting*. A second ``add`` of an id that is still awaiting
  is refused with :class:`DuplicateEventId` (the first prediction stays; counters
  unchanged): two impressions must not share one outcome.
- ``feedback`` at a time ``<= deadline`` *joins* it. With ``duplicates="first"``
  (default) the first label trains at once (:attr:`JoinStatus.JOINED`) and any
  later one says :attr:`JoinStatus.DUPLICATE`. With ``"max" | "sum" | "last"``
  labels aggregate (:attr:`JoinStatus.PENDING`) and the aggregate trains when the
  window closes, at the deadline.
- At the deadline with no feedback it *expires*: trains with ``default_label``
  (``expired_trained``) or, with ``default_label=None``, is dropped
  (``expired_dropped``).
- When ``max_awaiting`` ids wait, an ``add`` first *evicts* the one with the
  earliest deadline: it leaves early under the same rule (trains with the
  default label, or its aggregate if it had feedback, which counts as joined).
  *Evicted* means "left before its deadline to make room"; *expired* means "its
  deadline passed".
- Feedback after the id left without a label is *late* (:attr:`JoinStatus.LATE`).
  ``late_policy="ignore"`` counts it. ``late_policy="correct"`` trains the late
  label once, weight 1, when it differs from the label already trained (or when
  nothing trained because it was dropped). This is the *fake negative* scheme of
  delayed-feedback CTR work (Ktena et al., "Addressing Delayed Feedback for
  Continuous Training with Neural Networks in CTR prediction", RecSys 2019):
  the example trained as a negative at the timeout and the positive is
  added again when it comes. Ktena et al. also reweight both (fake negative
  weighting, FNW, weights ``1 + p``) because in their setting *every* example is
  first ingested as a negative, which biases the model to ``p / (1 + p)``. Here
  only outcomes beyond the timeout pass through a fake negative, so the bias is
  ``p_late``-sized; we train the correction with weight 1 and leave importance
  weights to the caller (:attr:`Example.weight` is the hook), because a weight
  ``1 + p`` needs the model's current prediction, which the store does not own.
- :meth:`JoinStore.drain` closes every window at once (a shutdown that trains
  rather than saves), under the same rules as the deadline.
- Feedback for an id never added, or forgotten, says :attr:`JoinStatus.UNKNOWN`.
  Unknown ids never raise. Only ill-typed ids and non-finite labels or times
  raise :class:`InvalidFeedback` (nothing changes then).

Ids that left are remembered in a bounded ring (``remember`` entries, oldest
forgotten first) so a late outcome is told from an unknown one; with
``late_policy="correct"`` the ring also keeps the features of ids that left
without their label, to train the correction.

Counters always add up (:meth:`JoinStore.counters`)::

    added = joined + expired_trained + expired_dropped + evicted + awaiting
    feedbacks = matched + duplicate + late + unknown

where ``matched`` counts the feedback calls that reached an awaiting id for the
first time and ``evicted = evicted_trained + evicted_dropped``.

Time comes from a clock: :class:`WallClock` (``time.monotonic``, default) or
:class:`EventClock`, which the caller advances from the events' own timestamps so
that a replay is deterministic. Each operation also takes an explicit ``time``.

Memory per awaiting example, measured with ``tracemalloc`` (CPython 3.11, numpy
arrays copied into the store, dict, slot object and heap entry included, the id
object itself excluded; ``tests/test_feedback.py::test_memory_per_awaiting_example``):

- hashed row, 10 active features, ``(int32 indices, float32 values)``: about
  630 bytes (790 with a third ``int32`` fields array);
- dense row of 4 float32: about 440 bytes.

So one million waiting impressions cost about 0.6 GB: size
``max_awaiting`` accordingly.

Example:
    >>> import numpy as np
    >>> clock = EventClock(0.0)
    >>> store = JoinStore(timeout=10.0, default_label=0.0, clock=clock)
    >>> store.add("imp-1", np.array([0.5, 1.0], dtype=np.float32), prediction=0.3)
    []
    >>> store.add("imp-2", np.array([0.1, 0.2], dtype=np.float32), prediction=0.6)
    []
    >>> clock.advance(4.0)
    >>> outcome = store.feedback("imp-1", 1.0)
    >>> outcome.status, outcome.examples[0].label, outcome.examples[0].delay
    (<JoinStatus.JOINED: 'joined'>, 1.0, 4.0)
    >>> [(e.event_id, e.label) for e in store.advance(10.0)]  # imp-2 timed out
    [('imp-2', 0.0)]
    >>> store.feedback("imp-2", 1.0).status  # after its default label trained
    <JoinStatus.LATE: 'late'>
    >>> store.feedback("imp-1", 1.0).status, store.feedback("nope", 1.0).status
    (<JoinStatus.DUPLICATE: 'duplicate'>, <JoinStatus.UNKNOWN: 'unknown'>)
    >>> c = store.counters()
    >>> c.added == c.joined + c.expired_trained + c.expired_dropped + c.evicted + c.awaiting
    True
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import numbers
import operator
import threading
import time as _time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Final, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from livelearn.validation import logs_refusals

__all__ = [
    "Clock",
    "DuplicateEventId",
    "EventClock",
    "EventId",
    "Example",
    "FeedbackCounters",
    "InvalidFeedback",
    "JoinStatus",
    "JoinStore",
    "Outcome",
    "WallClock",
    "check_finite",
]

logger = logging.getLogger("livelearn")

EventId = str | int
Payload = tuple[NDArray[Any], ...]

MAX_EVENT_ID_LEN: Final = 1024
DUPLICATE_POLICIES: Final = ("first", "max", "sum", "last")
LATE_POLICIES: Final = ("ignore", "correct")
STATE_VERSION: Final = 1


class InvalidFeedback(ValueError):  # noqa: N818 -- mirrors InvalidInteraction
    """An argument of the join store failed validation (nothing was changed).

    Example:
        >>> str(InvalidFeedback("label", "must be finite, got nan"))
        'invalid feedback: label: must be finite, got nan'
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid feedback: {field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidFeedback], tuple[str, str]]:
        return (type(self), (self.field, self.reason))


class DuplicateEventId(InvalidFeedback):
    """``add`` of an id that is still awaiting its outcome (the first one stays)."""

    def __init__(self, event_id: EventId) -> None:
        super().__init__("event_id", f"{event_id!r} is already awaiting its outcome")
        self.event_id = event_id

    def __reduce__(self) -> tuple[type[DuplicateEventId], tuple[EventId]]:  # type: ignore[override]
        return (type(self), (self.event_id,))


_logged = logs_refusals(InvalidFeedback, "join store")


# ------------------------------------------------------------------ clocks
class Clock(Protocol):
    """Where the store reads the time when an operation is given none."""

    def now(self) -> float:
        """The current time, in seconds."""
        ...


class WallClock:
    """Monotonic wall-clock time (``time.monotonic``): immune to clock steps.

    Example:
        >>> a = WallClock().now(); b = WallClock().now()
        >>> b >= a
        True
    """

    def now(self) -> float:
        """Seconds from an arbitrary origin, never going back."""
        return _time.monotonic()


class EventClock:
    """Event time, driven by the caller (replays are then deterministic).

    The clock never goes back: ``advance`` to an earlier time raises
    :class:`InvalidFeedback` (a log replayed out of order is a bug to see).

    Example:
        >>> clock = EventClock(100.0)
        >>> clock.advance(105.5)
        >>> clock.now()
        105.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = check_finite("start", start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """The time of the latest :meth:`advance`."""
        return self._now

    def advance(self, t: float) -> None:
        """Move the clock to ``t`` (``t >= now()``)."""
        t = check_finite("t", t)
        with self._lock:
            if t < self._now:
                raise InvalidFeedback("t", f"the event clock cannot go back ({t} < {self._now})")
            self._now = t


# ------------------------------------------------------------------ results
class JoinStatus(str, Enum):
    """What a :meth:`JoinStore.feedback` call did."""

    JOINED = "joined"  #: joined an awaiting id: its example trains now
    PENDING = "pending"  #: folded into the aggregate; trains when the window closes
    DUPLICATE = "duplicate"  #: the id already joined: nothing trains
    LATE = "late"  #: the id left without a label (expired, evicted or dropped)
    UNKNOWN = "unknown"  #: never added, or forgotten: nothing trains


class Example(NamedTuple):
    """One row to train: what the network saw, and the label it learns.

    Attributes:
        event_id: the id given to ``add``.
        features: the payload given to ``add`` (read-only arrays).
        prediction: the prediction made with those features.
        label: the label to train.
        weight: the sample weight (1.0 unless a caller reweights).
        predicted_at: the time of ``add``.
        labelled_at: the time of the outcome, or of the expiry for a default label.
        reason: ``"joined"``, ``"expired"``, ``"evicted"`` or ``"late"``
            (a late correction).
    """

    event_id: EventId
    features: Payload
    prediction: float
    label: float
    weight: float
    predicted_at: float
    labelled_at: float
    reason: str

    @property
    def delay(self) -> float:
        """``labelled_at - predicted_at``: the feedback (or expiry) delay."""
        return self.labelled_at - self.predicted_at


@dataclass(frozen=True)
class Outcome:
    """The answer of :meth:`JoinStore.feedback`: a status and the rows to train.

    ``examples`` is empty, or holds the joined example, or (for an outcome that
    arrives after its deadline before :meth:`JoinStore.expire` ran) the
    default-label example of the expiry, then the late correction if any.
    """

    status: JoinStatus
    examples: tuple[Example, ...] = ()
    folded: bool = False
    """True for a :attr:`JoinStatus.PENDING` outcome folded into an aggregate
    that an earlier outcome started (it counts as a duplicate)."""


@dataclass(frozen=True)
class FeedbackCounters:
    """A consistent snapshot of the store's counters (see the module docstring)."""

    added: int
    joined: int
    expired_trained: int
    expired_dropped: int
    evicted_trained: int
    evicted_dropped: int
    awaiting: int
    feedbacks: int
    matched: int
    duplicate: int
    late: int
    unknown: int
    corrections: int
    remembered: int

    @property
    def evicted(self) -> int:
        """Ids that left early to make room, trained or dropped."""
        return self.evicted_trained + self.evicted_dropped

    def add_up(self) -> bool:
        """Whether both counter identities hold (they always should)."""
        left = self.joined + self.expired_trained + self.expired_dropped + self.evicted
        fed = self.matched + self.duplicate + self.late + self.unknown
        return self.added == left + self.awaiting and self.feedbacks == fed


# ------------------------------------------------------------------ checks
def check_finite(name: str, value: object) -> float:
    """``value`` as a finite float, or :class:`InvalidFeedback` naming ``name``
    (booleans and non-real values refused).

    >>> check_finite("label", 1)
    1.0
    """
    if type(value) is float:  # the common case skips the abstract-class checks
        t = value
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidFeedback(name, f"must be a real number, got {type(value).__name__}")
    else:
        t = float(value)
    if not math.isfinite(t):
        raise InvalidFeedback(name, f"must be finite, got {t}")
    return t


def _check_id(value: object) -> EventId:
    """Like ``InteractionData.user_id``: a non-empty str or an int (not a bool)."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        if not value:
            raise InvalidFeedback("event_id", "must not be empty")
        if len(value) > MAX_EVENT_ID_LEN:
            raise InvalidFeedback(
                "event_id", f"must be at most {MAX_EVENT_ID_LEN} characters, got {len(value)}"
            )
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidFeedback("event_id", "must be UTF-8 encodable") from None
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return operator.index(value)
    raise InvalidFeedback("event_id", f"must be a str or int, got {type(value).__name__}")


def _check_payload(value: object) -> Payload:
    parts: Sequence[object] = value if isinstance(value, (tuple, list)) else (value,)
    if not parts:
        raise InvalidFeedback("features", "must hold at least one array")
    out = []
    for i, part in enumerate(parts):
        if not isinstance(part, np.ndarray):
            raise InvalidFeedback("features", f"part {i} must be a numpy array")
        if part.ndim != 1 or part.dtype.kind not in "biuf":
            raise InvalidFeedback(
                "features", f"part {i} must be a 1-D numeric array, got {part.dtype}{part.shape}"
            )
        copy = np.array(part, copy=True)  # later changes by the caller cannot leak in
        copy.flags.writeable = False
        out.append(copy)
    return tuple(out)


def _check_label(name: str, value: object) -> float:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    return check_finite(name, value)


# ------------------------------------------------------------------ the store
class _Awaiting:
    """An id waiting for its outcome (slots: this is the per-example memory)."""

    __slots__ = (
        "count",
        "deadline",
        "features",
        "label",
        "last_at",
        "predicted_at",
        "prediction",
        "seq",
    )

    def __init__(
        self, features: Payload, prediction: float, at: float, deadline: float, seq: int
    ) -> None:
        self.seq = seq  # matches its heap entry (a reused id has a new one)
        self.features = features
        self.prediction = prediction
        self.predicted_at = at
        self.deadline = deadline
        self.label = math.nan  # the aggregate so far
        self.count = 0  # feedbacks folded in
        self.last_at = math.nan  # time of the latest feedback


# How an id left the store, as remembered in the ring.
_JOINED, _TRAINED_DEFAULT, _DROPPED, _CORRECTED = 0, 1, 2, 3


class _Left:
    __slots__ = ("features", "kind", "predicted_at", "prediction")

    def __init__(
        self, kind: int, features: Payload | None, prediction: float, predicted_at: float
    ) -> None:
        self.kind = kind
        self.features = features
        self.prediction = prediction
        self.predicted_at = predicted_at


class JoinStore:
    """Thread-safe, bounded store of predictions awaiting their outcome.

    Args:
        timeout: seconds an id waits for its outcome (the window), ``> 0``.
        default_label: the label an id trains with when no outcome came in time
            (0.0 for "no click"); None drops it instead.
        max_awaiting: at most this many ids wait; the earliest deadline is
            evicted first to make room.
        late_policy: ``"ignore"`` (count late outcomes) or ``"correct"`` (train
            the late label once, weight 1; see the module docstring).
        duplicates: ``"first"`` (the first outcome trains at once, later ones are
            duplicates) or ``"max"``, ``"sum"``, ``"last"`` (aggregate until the
            window closes at the deadline, then train the aggregate).
        remember: how many ids that left are remembered to tell late and
            duplicate outcomes from unknown ones (default ``max_awaiting``).
        clock: where the time comes from when an operation gets none
            (:class:`WallClock` by default).

    All methods may be called from any thread; each holds one lock for O(log n)
    work (a heap push or pop), ``expire`` for the ids it releases.
    """

    def __init__(
        self,
        timeout: float,
        *,
        default_label: float | None = 0.0,
        max_awaiting: int = 100_000,
        late_policy: str = "ignore",
        duplicates: str = "first",
        remember: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        t = check_finite("timeout", timeout)
        if t <= 0:
            raise InvalidFeedback("timeout", f"must be > 0, got {t}")
        self.timeout = t
        self.default_label = (
            None if default_label is None else _check_label("default_label", default_label)
        )
        if type(max_awaiting) is not int or max_awaiting < 1:
            raise InvalidFeedback("max_awaiting", f"must be an int >= 1, got {max_awaiting!r}")
        self.max_awaiting = max_awaiting
        if late_policy not in LATE_POLICIES:
            raise InvalidFeedback("late_policy", f"must be one of {LATE_POLICIES}")
        self.late_policy = late_policy
        if duplicates not in DUPLICATE_POLICIES:
            raise InvalidFeedback("duplicates", f"must be one of {DUPLICATE_POLICIES}")
        self.duplicates = duplicates
        remember = max_awaiting if remember is None else remember
        if type(remember) is not int or remember < 0:
            raise InvalidFeedback("remember", f"must be an int >= 0, got {remember!r}")
        self.remember = remember
        self.clock: Clock = WallClock() if clock is None else clock
        self._lock = threading.Lock()
        self._awaiting: dict[EventId, _Awaiting] = {}
        # (deadline, sequence, id); entries of ids that left are skipped lazily
        # and compacted away when they outnumber the live ones.
        self._heap: list[tuple[float, int, EventId]] = []
        self._seq = itertools.count()
        self._left: OrderedDict[EventId, _Left] = OrderedDict()
        self._layout: tuple[str, ...] | None = None  # dtypes of the payload parts
        self._dtypes_of: tuple[str, ...] | None = None
        self._dtypes_cache: tuple[np.dtype[Any], ...] = ()
        self._c = dict.fromkeys(
            (
                "added",
                "joined",
                "expired_trained",
                "expired_dropped",
                "evicted_trained",
                "evicted_dropped",
                "feedbacks",
                "matched",
                "duplicate",
                "late",
                "unknown",
                "corrections",
            ),
            0,
        )

    # -------------------------------------------------------------- time
    def _time(self, name: str, value: float | None) -> float:
        return self.clock.now() if value is None else check_finite(name, value)

    @_logged
    def advance(self, t: float) -> list[Example]:
        """Advance an :class:`EventClock` to ``t`` and :meth:`expire` what passed.

        Raises :class:`InvalidFeedback` when the store's clock is not an
        :class:`EventClock`.
        """
        if not isinstance(self.clock, EventClock):
            raise InvalidFeedback("clock", "advance() needs an EventClock")
        self.clock.advance(t)
        return self.expire(t)

    # -------------------------------------------------------------- add
    @_logged
    def add(
        self,
        event_id: EventId,
        features: object,
        prediction: float,
        time: float | None = None,
    ) -> list[Example]:
        """Keep a prediction until its outcome comes; returns the rows to train now.

        The list is empty unless the store was full: then the id with the
        earliest deadline leaves early (evicted) and trains with the default
        label, or with its aggregate if it had outcomes.

        Raises:
            DuplicateEventId: ``event_id`` is already awaiting.
            InvalidFeedback: an ill-typed id, payload, prediction or time; or a
                payload whose layout (number and dtypes of its arrays) differs
                from the first one's.
        """
        eid = _check_id(event_id)
        payload = _check_payload(features)
        pred = check_finite("prediction", prediction)
        at = self._time("time", time)
        dtypes = tuple(p.dtype for p in payload)
        with self._lock:
            if eid in self._awaiting:
                raise DuplicateEventId(eid)
            if self._layout is None:
                self._layout = tuple(d.str for d in dtypes)
            elif dtypes != self._dtypes():
                layout = tuple(d.str for d in dtypes)
                raise InvalidFeedback(
                    "features", f"array layout {layout} differs from the store's {self._layout}"
                )
            out: list[Example] = []
            while len(self._awaiting) >= self.max_awaiting:
                self._pop_earliest(at, evict=True, out=out)
            self._left.pop(eid, None)  # a reused id is a new event
            deadline, seq = at + self.timeout, next(self._seq)
            self._awaiting[eid] = _Awaiting(payload, pred, at, deadline, seq)
            heapq.heappush(self._heap, (deadline, seq, eid))
            self._c["added"] += 1
            return out

    def _dtypes(self) -> tuple[np.dtype[Any], ...]:
        """The payload layout as dtypes (cached: comparing them is the hot path)."""
        layout = self._layout
        if self._dtypes_of is not layout:
            self._dtypes_cache = tuple(np.dtype(d) for d in layout or ())
            self._dtypes_of = layout
        return self._dtypes_cache

    # -------------------------------------------------------------- feedback
    @_logged
    def feedback(self, event_id: EventId, label: float, time: float | None = None) -> Outcome:
        """Deliver the outcome of ``event_id``; never raises for an unknown id.

        An outcome later than the id's deadline is late even if :meth:`expire`
        has not run yet (the id expires first, so the result does not depend on
        when ``expire`` is called).

        Raises:
            InvalidFeedback: an ill-typed id, or a non-finite label or time.
        """
        eid = _check_id(event_id)
        y = _check_label("label", label)
        at = self._time("time", time)
        with self._lock:
            self._c["feedbacks"] += 1
            entry = self._awaiting.get(eid)
            if entry is not None and at > entry.deadline:
                expired: list[Example] = []
                self._release(eid, entry, entry.deadline, evict=False, out=expired)
                entry = None
            else:
                expired = []
            if entry is not None:
                return self._join(eid, entry, y, at)
            left = self._left.get(eid)
            if left is None:
                self._c["unknown"] += 1
                return Outcome(JoinStatus.UNKNOWN, tuple(expired))
            if left.kind in (_JOINED, _CORRECTED):
                self._c["duplicate"] += 1
                return Outcome(JoinStatus.DUPLICATE, tuple(expired))
            self._c["late"] += 1
            correction = self._correct(eid, left, y, at)
            return Outcome(JoinStatus.LATE, (*expired, *correction))

    def _join(self, eid: EventId, entry: _Awaiting, y: float, at: float) -> Outcome:
        if entry.count:
            self._c["duplicate"] += 1  # only reachable when aggregating
        else:
            self._c["matched"] += 1
        if self.duplicates == "first":
            del self._awaiting[eid]
            self._c["joined"] += 1
            self._remember(eid, _Left(_JOINED, None, entry.prediction, entry.predicted_at))
            self._compact()
            example = Example(
                eid, entry.features, entry.prediction, y, 1.0, entry.predicted_at, at, "joined"
            )
            return Outcome(JoinStatus.JOINED, (example,))
        if entry.count == 0 or self.duplicates == "last":
            entry.label = y
        elif self.duplicates == "max":
            entry.label = max(entry.label, y)
        else:
            entry.label += y
        folded = entry.count > 0
        entry.count += 1
        entry.last_at = at
        return Outcome(JoinStatus.PENDING, (), folded)

    def _correct(self, eid: EventId, left: _Left, y: float, at: float) -> tuple[Example, ...]:
        if self.late_policy != "correct" or left.features is None:
            return ()
        if left.kind == _TRAINED_DEFAULT and y == self.default_label:
            return ()  # the default label was right: nothing to correct
        self._c["corrections"] += 1
        example = Example(
            eid, left.features, left.prediction, y, 1.0, left.predicted_at, at, "late"
        )
        left.kind, left.features = _CORRECTED, None
        return (example,)

    # -------------------------------------------------------------- expiry
    @_logged
    def expire(self, now: float | None = None, limit: int | None = None) -> list[Example]:
        """Close every window whose deadline is ``<= now`` (the clock's time by
        default); returns the rows to train: aggregates of ids with outcomes and
        default labels of ids without (those are dropped when
        ``default_label=None``). ``limit`` bounds the work: at most that many
        windows close per call (the rest on the next call)."""
        t = self._time("now", now)
        out: list[Example] = []
        popped = 0
        with self._lock:
            while self._heap and self._heap[0][0] <= t:
                if limit is not None and popped >= limit:
                    break
                self._pop_earliest(t, evict=False, out=out)
                popped += 1
        return out

    def next_deadline(self) -> float | None:
        """The earliest deadline in the heap (maybe of an id that already left), or None."""
        with self._lock:
            return self._heap[0][0] if self._heap else None

    @_logged
    def drain(self, now: float | None = None) -> list[Example]:
        """Close every window now, as if its deadline had passed (for a shutdown
        that trains instead of saving): ids with outcomes train their aggregate
        (joined), the others the default label (expired, or dropped); deadline
        order. The store is empty afterwards.

        Example:
            >>> import numpy as np
            >>> store = JoinStore(60.0, clock=EventClock())
            >>> _ = store.add("a", np.zeros(2, dtype=np.float32), 0.5)
            >>> [(e.event_id, e.label, e.reason) for e in store.drain()]
            [('a', 0.0, 'expired')]
        """
        t = self._time("now", now)
        out: list[Example] = []
        with self._lock:
            while self._heap:
                deadline, seq, eid = heapq.heappop(self._heap)
                entry = self._awaiting.get(eid)
                if entry is not None and entry.seq == seq:
                    self._release(eid, entry, min(t, deadline), evict=False, out=out)
        return out

    def _pop_earliest(self, at: float, *, evict: bool, out: list[Example]) -> None:
        deadline, seq, eid = heapq.heappop(self._heap)
        entry = self._awaiting.get(eid)
        if entry is None or entry.seq != seq:
            return  # a stale heap entry of an id that already left
        if deadline <= at:  # its window had closed: an expiry, whoever noticed it
            self._release(eid, entry, deadline, evict=False, out=out)
        else:
            self._release(eid, entry, at, evict=evict, out=out)

    def _release(
        self, eid: EventId, entry: _Awaiting, at: float, *, evict: bool, out: list[Example]
    ) -> None:
        """``entry`` leaves without a new outcome: trains its aggregate or the default."""
        del self._awaiting[eid]
        if entry.count:
            self._c["joined"] += 1
            self._remember(eid, _Left(_JOINED, None, entry.prediction, entry.predicted_at))
            out.append(
                Example(
                    eid,
                    entry.features,
                    entry.prediction,
                    entry.label,
                    1.0,
                    entry.predicted_at,
                    entry.last_at,
                    "joined",
                )
            )
        else:
            trained = self.default_label is not None
            prefix = "evicted" if evict else "expired"
            self._c[f"{prefix}_{'trained' if trained else 'dropped'}"] += 1
            keep = entry.features if self.late_policy == "correct" else None
            kind = _TRAINED_DEFAULT if trained else _DROPPED
            self._remember(eid, _Left(kind, keep, entry.prediction, entry.predicted_at))
            if self.default_label is not None:
                out.append(
                    Example(
                        eid,
                        entry.features,
                        entry.prediction,
                        self.default_label,
                        1.0,
                        entry.predicted_at,
                        at,
                        prefix,
                    )
                )
        self._compact()

    def _remember(self, eid: EventId, left: _Left) -> None:
        if self.remember == 0:
            return
        self._left[eid] = left
        self._left.move_to_end(eid)
        while len(self._left) > self.remember:
            self._left.popitem(last=False)

    def _compact(self) -> None:
        # Stale heap entries (ids that joined) are dropped once they outnumber
        # the live ones: amortized O(1) per id, heap size <= 2 * awaiting + 64.
        if len(self._heap) > 2 * len(self._awaiting) + 64:
            live = self._awaiting
            self._heap = [
                item
                for item in self._heap
                if (entry := live.get(item[2])) is not None and entry.seq == item[1]
            ]
            heapq.heapify(self._heap)

    def after_fork_in_child(self) -> None:
        """A new lock in a child process (another thread may have held the old one)."""
        self._lock = threading.Lock()

    # -------------------------------------------------------------- views
    def __len__(self) -> int:
        """How many ids await their outcome."""
        return len(self._awaiting)

    def __contains__(self, event_id: object) -> bool:
        """Whether ``event_id`` awaits its outcome."""
        return event_id in self._awaiting

    def counters(self) -> FeedbackCounters:
        """A consistent snapshot of the counters (taken under the lock)."""
        with self._lock:
            return FeedbackCounters(
                **self._c, awaiting=len(self._awaiting), remembered=len(self._left)
            )

    def snapshot(self) -> dict[str, object]:
        """The counters, the join rate, the configuration and the next deadline, JSON-able."""
        counters = self.counters()
        with self._lock:
            oldest = min((e.deadline for e in self._awaiting.values()), default=None)
        resolved = counters.added - counters.awaiting
        return {
            **asdict(counters),
            "evicted": counters.evicted,
            # Of the ids that left, the share that got their outcome in time.
            "join_rate": counters.joined / resolved if resolved else None,
            "timeout": self.timeout,
            "default_label": self.default_label,
            "max_awaiting": self.max_awaiting,
            "late_policy": self.late_policy,
            "duplicates": self.duplicates,
            "remember": self.remember,
            "next_deadline": oldest,
        }

    # -------------------------------------------------------------- state
    def export_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """The awaiting ids, the remembered ones and the counters: numpy arrays
        plus JSON-able metadata; :meth:`import_state` restores them exactly.

        Example:
            >>> import numpy as np
            >>> store = JoinStore(5.0, clock=EventClock())
            >>> _ = store.add(7, np.array([1.0, 2.0], dtype=np.float32), 0.4)
            >>> arrays, meta = store.export_state()
            >>> copy = JoinStore(5.0, clock=EventClock())
            >>> copy.import_state(arrays, meta)
            >>> copy.feedback(7, 1.0).examples[0].features[0].tolist()
            [1.0, 2.0]
        """
        with self._lock:
            ids = list(self._awaiting)
            entries = [self._awaiting[k] for k in ids]
            left_ids = list(self._left)
            lefts = [self._left[k] for k in left_ids]
            layout = self._layout
            counters = dict(self._c)
        arrays: dict[str, NDArray[Any]] = {
            "prediction": np.array([e.prediction for e in entries], dtype=np.float64),
            "predicted_at": np.array([e.predicted_at for e in entries], dtype=np.float64),
            "deadline": np.array([e.deadline for e in entries], dtype=np.float64),
            "label": np.array([e.label for e in entries], dtype=np.float64),
            "count": np.array([e.count for e in entries], dtype=np.int64),
            "last_at": np.array([e.last_at for e in entries], dtype=np.float64),
            "left_kind": np.array([x.kind for x in lefts], dtype=np.int8),
            "left_prediction": np.array([x.prediction for x in lefts], dtype=np.float64),
            "left_predicted_at": np.array([x.predicted_at for x in lefts], dtype=np.float64),
            "left_has_features": np.array([x.features is not None for x in lefts], dtype=bool),
        }
        if layout is not None:
            kept = [x.features for x in lefts if x.features is not None]
            for prefix, payloads in (("features", [e.features for e in entries]), ("left", kept)):
                for j, dtype in enumerate(layout):
                    parts = [p[j] for p in payloads]
                    arrays[f"{prefix}_{j}"] = (
                        np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
                    )
                    arrays[f"{prefix}_{j}_len"] = np.array([p.size for p in parts], dtype=np.int64)
        meta = {
            "version": STATE_VERSION,
            "ids": ids,
            "left_ids": left_ids,
            "layout": None if layout is None else list(layout),
            "counters": counters,
        }
        return arrays, meta

    @_logged
    def import_state(self, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> None:
        """Replace this store's contents by an :meth:`export_state` result.

        The configuration (timeout, policies, bounds) is this store's own; the
        deadlines are the saved ones. Ids beyond ``max_awaiting`` or
        ``remember`` are not dropped silently: :class:`InvalidFeedback` is raised
        and nothing changes.
        """
        if meta.get("version") != STATE_VERSION:
            raise InvalidFeedback("state", f"unknown version {meta.get('version')!r}")
        try:
            ids = [_check_id(k) for k in meta["ids"]]
            left_ids = [_check_id(k) for k in meta["left_ids"]]
            layout = None if meta["layout"] is None else tuple(str(d) for d in meta["layout"])
            counters = {k: int(meta["counters"][k]) for k in self._c}
            n, m = len(ids), len(left_ids)
            col = {k: np.asarray(v) for k, v in arrays.items()}
            for key in ("prediction", "predicted_at", "deadline", "label", "count", "last_at"):
                if col[key].shape != (n,):
                    raise InvalidFeedback("state", f"{key} must have {n} entries")
            for key in ("left_kind", "left_prediction", "left_predicted_at", "left_has_features"):
                if col[key].shape != (m,):
                    raise InvalidFeedback("state", f"{key} must have {m} entries")
            payloads: list[list[NDArray[Any]]] = [[] for _ in range(n)]
            kept: list[list[NDArray[Any]]] = [
                [] for _ in range(int(col["left_has_features"].sum()))
            ]
            if layout is not None:
                for prefix, rows in (("features", payloads), ("left", kept)):
                    for j, dtype in enumerate(layout):
                        flat = col[f"{prefix}_{j}"].astype(dtype, copy=False)
                        lengths = col[f"{prefix}_{j}_len"]
                        if lengths.shape != (len(rows),) or int(lengths.sum()) != flat.size:
                            raise InvalidFeedback("state", f"{prefix}_{j} lengths do not match")
                        ends = np.cumsum(lengths)
                        for row, end, size in zip(rows, ends, lengths, strict=True):
                            row.append(flat[end - size : end].copy())
            elif n or kept:
                raise InvalidFeedback("state", "entries without a payload layout")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidFeedback):
                raise
            raise InvalidFeedback("state", f"malformed: {exc!r}") from exc
        left_total = sum(
            counters[k] for k in ("joined", "expired_trained", "expired_dropped", "evicted_trained")
        )
        if counters["added"] != left_total + counters["evicted_dropped"] + n:
            raise InvalidFeedback("state", "the counters do not add up to the awaiting ids")
        if n > self.max_awaiting or m > self.remember:
            raise InvalidFeedback(
                "state", f"{n} awaiting / {m} remembered exceed this store's bounds"
            )

        def frozen(parts: list[NDArray[Any]]) -> Payload:
            for p in parts:
                p.flags.writeable = False
            return tuple(parts)

        awaiting: dict[EventId, _Awaiting] = {}
        heap: list[tuple[float, int, EventId]] = []
        for i, eid in enumerate(ids):
            entry = _Awaiting(
                frozen(payloads[i]),
                float(col["prediction"][i]),
                float(col["predicted_at"][i]),
                float(col["deadline"][i]),
                i,  # export order is insertion order: the sequence restarts from it
            )
            entry.label = float(col["label"][i])
            entry.count = int(col["count"][i])
            entry.last_at = float(col["last_at"][i])
            awaiting[eid] = entry
        left: OrderedDict[EventId, _Left] = OrderedDict()
        kept_rows = iter(kept)
        for i, eid in enumerate(left_ids):
            features = frozen(next(kept_rows)) if col["left_has_features"][i] else None
            left[eid] = _Left(
                int(col["left_kind"][i]),
                features,
                float(col["left_prediction"][i]),
                float(col["left_predicted_at"][i]),
            )
        with self._lock:
            self._seq = itertools.count(len(ids))
            for eid, entry in awaiting.items():
                heap.append((entry.deadline, entry.seq, eid))
            heapq.heapify(heap)
            self._awaiting, self._heap, self._left = awaiting, heap, left
            self._layout = layout
            self._c = counters
