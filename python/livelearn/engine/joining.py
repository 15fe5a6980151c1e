"""Delayed feedback inside the engine: predict now, learn when the outcome arrives.

:class:`Joiner` wires :class:`~livelearn.feedback.JoinStore` (the waiting
predictions) and :class:`~livelearn.monitoring.QualityMonitor` (live quality)
into an engine's queue, dispatcher and counters:

- ``Engine.predict(it, event_id=...)`` encodes ``it`` once, predicts from those
  features and keeps them (the *encoded* row: later encoder or model changes
  cannot leak in), with the prediction and the time;
- ``Engine.feedback(event_id, label)`` joins the outcome; the stored row is
  queued as an :class:`EncodedRow`, which the dispatcher trains as it is (never
  re-encoded), in queue order with ``train_step`` interactions, through the same
  native batch call, ledger and counters;
- windows close without any call from the caller: with the wall clock the
  dispatcher's tick (after every batch and every idle wake-up, at most every
  :data:`TICK_S`) closes at most :attr:`Joiner.per_tick` due windows; with
  ``clock="event"`` the time is the events' own (``interaction.timestamp`` at
  predict, ``timestamp=`` at feedback) and windows close in the calling thread
  as the clock passes their deadline, so a replay is deterministic.

What each feedback Future says (it resolves exactly once):

=================================  =================================================
case                               Future's :class:`~livelearn.results.StepResult`
=================================  =================================================
joined (first outcome)             the training step's result (``TRAINED``, ...)
aggregating, first outcome         the aggregate's step when the window closes
aggregating, later outcomes        ``DUPLICATE`` at once (folded into the aggregate)
duplicate (``"first"`` policy)     ``DUPLICATE`` at once
late, ``late_policy="ignore"``     ``LATE`` at once
late, ``late_policy="correct"``    the correction step's result (``LATE`` at once
                                   when the default label was already right)
unknown or forgotten id            ``UNKNOWN`` at once
negative left out by sampling      ``SKIPPED`` (reason says so)
invalid label, id or time          raises :class:`~livelearn.errors.InvalidFeedback`
=================================  =================================================

Steps that come from the loop itself (expiries with the default label,
evictions) get a Future nobody holds; they count in ``stats().interactions``
like any queued step. Join steps never block and never raise on a full queue
(they may exceed ``max_pending``): their number is bounded by ``max_awaiting``.

Late corrections (``late_policy="correct"``): the example already trained with
the default label ``d`` at the timeout; the late label ``y`` trains once more
with the importance weight ``w = (y - d) / (y - q)``, ``q`` the prediction made
at ``predict`` time (at most :data:`MAX_CORRECTION_WEIGHT`; 1 when ``q`` is not
between them, or when nothing trained because ``default_label=None``). For
log loss and squared error the gradient on the output is proportional to
``q - label``, so the two steps together move the model like the one step of
the true label: ``(q - d) + w (q - y) = q - y``. For ``d = 0, y = 1`` that is
``w = 1 / (1 - q)``, the importance weight of the fake-negative scheme of
delayed-feedback CTR work (Ktena et al., RecSys 2019), and the bias of
``ignore`` (predictions shrink to about ``p / (1 + p * late_share)`` with
plain weight-1 corrections, and to ``p * (1 - late_share)`` when ignored)
goes away.

Negative sampling (``negative_sampling=r``): a row whose label is 0 trains with
probability ``r`` and then weight ``1/r`` (a native sample weight); the expected
gradient is the full stream's, so the predictions stay calibrated. The quality
monitor sees every outcome, sampled out or not.

Lock order: the engine's train lock, then the ledger's, then :attr:`Joiner.lock`,
then the queue's and the store's. No Future is resolved and no user code runs
under :attr:`Joiner.lock`.
"""

from __future__ import annotations

import logging
import numbers
import operator
import threading
import time
from collections.abc import Iterator
from typing import Any, Final, cast

import numpy as np
from numpy.typing import NDArray

from livelearn.engine.batch import FieldFeatures, PreparedBatch
from livelearn.engine.bookkeeping import Ledger
from livelearn.engine.submission import Entry, SubmissionQueue
from livelearn.errors import EngineClosed
from livelearn.features import Encoder, HashedFeatureEncoder
from livelearn.feedback import (
    DUPLICATE_POLICIES,
    LATE_POLICIES,
    Clock,
    EventId,
    Example,
    InvalidFeedback,
    JoinStatus,
    JoinStore,
    check_finite,
)
from livelearn.field_network import FieldNetwork
from livelearn.futures import StepFuture, resolve_all
from livelearn.interaction import InteractionData, InvalidInteraction
from livelearn.monitoring import QualityMonitor
from livelearn.network import Network
from livelearn.results import FeedbackStats, StepResult, StepStatus, TrainedRows
from livelearn.targets import TargetMapper

__all__ = [
    "CLOSE_POLICIES",
    "MAX_CORRECTION_WEIGHT",
    "TICK_S",
    "EncodedRow",
    "EpochClock",
    "Joiner",
    "ReplayClock",
    "wait_idle",
]

logger = logging.getLogger("livelearn")

#: The wall-clock tick closes due windows at most this often (seconds).
TICK_S: Final = 0.02
#: The largest importance weight of a late correction.
MAX_CORRECTION_WEIGHT: Final = 100.0
#: What ``close()`` does with examples still awaiting their outcome.
CLOSE_POLICIES: Final = ("keep", "expire")
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
STATE_VERSION: Final = 1

_R_DUPLICATE = "duplicate: the outcome of this id was already taken (the first one wins)"
_R_FOLDED = (
    "duplicate: folded into the aggregate of this id's window (duplicate_policy={policy!r}); "
    "the first outcome's Future resolves when the window closes"
)
_R_LATE = "late: the window of this id had closed (late_policy={policy!r}); nothing trained"
_R_UNKNOWN = (
    "unknown: no prediction with this event_id awaits its outcome (never seen or forgotten)"
)
_R_SAMPLED = "skipped: a negative left out by negative sampling (negative_sampling={rate})"
_R_CLOSED = "skipped: the engine was closed before this join step was queued"
_R_KEPT = (
    "skipped: the engine closed while this outcome's window was open; the example "
    "still awaits (awaiting_on_close='keep': save() keeps it)"
)


_R_KEPT_RESULT = StepResult(None, None, None, StepStatus.SKIPPED, _R_KEPT)


class EpochClock:
    """Wall-clock time in POSIX seconds (``time.time``): the engine's default,
    so deadlines saved in a checkpoint mean the same after a restart.

    Example:
        >>> abs(EpochClock().now() - time.time()) < 60
        True
    """

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()


class ReplayClock:
    """Event time for replays: moved forward by the events themselves.

    Starts at the first event's time; ``advance_to`` never goes back (an
    earlier time leaves the clock where it is, so a slightly out-of-order log
    stays deterministic).

    Example:
        >>> clock = ReplayClock()
        >>> clock.advance_to(10.0); clock.advance_to(7.0)
        10.0
        10.0
        >>> clock.now()
        10.0
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = start

    def now(self) -> float:
        """The latest event time (0.0 before any event)."""
        return 0.0 if self._now is None else self._now

    def advance_to(self, t: float) -> float:
        """Move to ``max(now, t)``; returns the new time."""
        if self._now is None or t > self._now:
            self._now = t
        return self._now

    @property
    def started(self) -> float | None:
        """The time, or None before the first event."""
        return self._now


class EncodedRow:
    """A queued join step: the row the network saw at prediction time and its label."""

    __slots__ = (
        "delay",
        "event_id",
        "features",
        "label",
        "prediction",
        "queued_at",
        "reason",
        "timestamp",
        "weight",
    )

    def __init__(self, example: Example, weight: float) -> None:
        self.event_id = example.event_id
        self.features = example.features
        self.label = example.label
        self.prediction = example.prediction
        self.timestamp = example.predicted_at
        self.delay = example.delay
        self.reason = example.reason
        self.weight = weight
        self.queued_at = time.monotonic()

    def __repr__(self) -> str:
        return (
            f"EncodedRow(event_id={self.event_id!r}, label={self.label}, "
            f"weight={self.weight}, reason={self.reason!r})"
        )


def resolve_clock(clock: str | Clock | None) -> tuple[Clock, str]:
    """The clock object and its configuration name (``"wall"``, ``"event"``, ``"custom"``)."""
    if clock is None or clock == "wall":
        return EpochClock(), "wall"
    if clock == "event":
        return ReplayClock(), "event"
    if isinstance(clock, str) or not callable(getattr(clock, "now", None)):
        raise ValueError(
            f"clock: must be 'wall', 'event' or an object with a now() method, got {clock!r}"
        )
    return clock, "custom"


class Joiner:
    """The delayed-feedback loop of one engine (see the module docstring)."""

    def __init__(
        self,
        *,
        timeout: float,
        default_label: float | None,
        max_awaiting: int,
        late_policy: str,
        duplicate_policy: str,
        clock: str | Clock | None,
        negative_sampling: float | None,
        awaiting_on_close: str,
        quality_window: int,
        seed: int,
        encoder: Encoder,
        network: Network | FieldNetwork,
        targets: TargetMapper,
        loss: str,
        queue: SubmissionQueue,
        ledger: Ledger,
        done: threading.Condition,
        batch_size: int,
    ) -> None:
        if targets.n_outputs != 1:
            n = targets.n_outputs
            raise ValueError(f"feedback_timeout: delayed feedback needs one output (n_outputs={n})")
        if late_policy not in LATE_POLICIES:
            raise ValueError(f"late_policy: must be one of {LATE_POLICIES}, got {late_policy!r}")
        if duplicate_policy not in DUPLICATE_POLICIES:
            raise ValueError(
                f"duplicate_policy: must be one of {DUPLICATE_POLICIES}, got {duplicate_policy!r}"
            )
        if awaiting_on_close not in CLOSE_POLICIES:
            raise ValueError(
                f"awaiting_on_close: must be one of {CLOSE_POLICIES}, got {awaiting_on_close!r}"
            )
        rate = None if negative_sampling is None else _rate(negative_sampling)
        self.clock, self.clock_name = resolve_clock(clock)
        try:
            self.store = JoinStore(
                timeout,
                default_label=default_label,
                max_awaiting=max_awaiting,
                late_policy=late_policy,
                duplicates=duplicate_policy,
                clock=self.clock,
            )
        except InvalidFeedback as exc:
            raise ValueError(f"{_engine_name(exc.field)}: {exc.reason}") from None
        if loss == "bce" and default_label is not None and not 0.0 <= float(default_label) <= 1.0:
            raise ValueError(
                f"default_label: must be in [0, 1] for loss='bce', got {default_label}"
            )
        self.monitor = QualityMonitor(window=quality_window)
        self.negative_sampling = rate
        self.awaiting_on_close = awaiting_on_close
        self.encoder = encoder
        self.network = network
        self.targets = targets
        self.bce = loss == "bce"
        self.kind = (
            "field"
            if isinstance(network, FieldNetwork)
            else "sparse"
            if encoder.sparse
            else "dense"
        )
        self.queue = queue
        self.ledger = ledger
        self.done = done
        self.per_tick = max(256, 4 * batch_size)
        self.lock = threading.Lock()
        self._pending: dict[EventId, StepFuture[StepResult]] = {}  # aggregates' first Futures
        self._rng = np.random.default_rng(seed)
        self._invalid = 0
        self._sampled_out = 0
        self._closed = False
        self._tick_lock = threading.Lock()
        self._next_tick = 0.0

    @property
    def event_time(self) -> bool:
        """True with ``clock="event"``: windows close as the events' time passes."""
        return isinstance(self.clock, ReplayClock)

    # -------------------------------------------------------------- predict
    def predict(self, interaction: InteractionData, event_id: EventId) -> float:
        """Predict, keep the encoded row awaiting ``event_id``'s outcome; the prediction."""
        payload, prediction = self._encode_predict(interaction)
        error: InvalidFeedback | None = None
        with self.lock:
            if self._closed:
                raise EngineClosed("predict(event_id=...) after close()")
            rows: list[Example] = []
            at: float | None = None
            if isinstance(self.clock, ReplayClock):
                at = self.clock.advance_to(interaction.timestamp)
                rows = self.store.expire(at)
            try:
                rows += self.store.add(event_id, payload, prediction, at)
            except InvalidFeedback as exc:  # nothing was added
                error = exc
            later = self._emit(rows, None, None)
        self._finish(later)
        if error is not None:
            raise error
        return prediction

    def _encode_predict(self, it: InteractionData) -> tuple[tuple[NDArray[Any], ...], float]:
        if not isinstance(it, InteractionData):
            raise InvalidInteraction(
                "interaction", f"expected InteractionData, got {type(it).__name__}"
            )
        network = self.network
        if isinstance(network, FieldNetwork):
            enc = cast("HashedFeatureEncoder", self.encoder)
            indptr, indices, values, fields, dense = enc.encode_fields_many([it])
            out = network.predict(indptr, indices, values, fields, dense if enc.n_dense else None)
            payload: tuple[NDArray[Any], ...] = (indices, values, fields, dense[0])
        elif self.encoder.sparse:
            indptr, indices, values = self.encoder.encode_sparse_many([it])
            out = network.predict_sparse(indptr, indices, values)
            payload = (np.asarray(indices, dtype=np.int32), np.asarray(values, dtype=np.float32))
        else:
            X = self.encoder.encode_many([it])
            out = network.predict(X)
            payload = (X[0],)
        return payload, float(out[0, 0])

    # -------------------------------------------------------------- feedback
    def feedback(
        self,
        event_id: EventId,
        label: float | None,
        action_type: str | None,
        timestamp: float | None,
    ) -> StepFuture[StepResult]:
        """Join an outcome; returns its Future (see the module docstring)."""
        future: StepFuture[StepResult] = StepFuture(self.done)
        try:
            y = self._label(label, action_type)
            at = None if timestamp is None else check_finite("timestamp", timestamp)
        except InvalidFeedback as exc:
            return self._refuse(future, exc)
        later: list[tuple[StepFuture[StepResult], object]] = []
        eid = _normal_id(event_id)
        with self.lock:
            if self._closed:
                raise EngineClosed("feedback after close()")
            rows: list[Example] = []
            if isinstance(self.clock, ReplayClock):
                now = self.clock.advance_to(self.clock.now() if at is None else at)
                rows = self.store.expire(now)
                at = now if at is None else at  # the outcome's own time judges lateness
            error: InvalidFeedback | None = None
            try:
                outcome = self.store.feedback(event_id, y, at)
            except InvalidFeedback as exc:
                error = exc
                later = self._emit(rows, None, None)
            else:
                rows += outcome.examples
                status = outcome.status
                caller = None
                if status is JoinStatus.JOINED:
                    caller = "joined"
                elif status is JoinStatus.LATE and any(
                    e.reason == "late" and e.event_id == eid for e in rows
                ):
                    caller = "late"
                elif status is JoinStatus.PENDING and not outcome.folded:
                    self._pending[cast("EventId", eid)] = future  # valid: the store took it
                else:
                    later.append((future, self._answer(status, outcome.folded)))
                later += self._emit(rows, future if caller else None, caller, eid)
        if error is not None:
            self._finish(later)
            return self._refuse(future, error)
        self._finish(later)
        return future

    def _answer(self, status: JoinStatus, folded: bool) -> StepResult:
        if status is JoinStatus.UNKNOWN:
            return StepResult(None, None, None, StepStatus.UNKNOWN, _R_UNKNOWN)
        if status is JoinStatus.LATE:
            reason = _R_LATE.format(policy=self.store.late_policy)
            return StepResult(None, None, None, StepStatus.LATE, reason)
        reason = _R_FOLDED.format(policy=self.store.duplicates) if folded else _R_DUPLICATE
        return StepResult(None, None, None, StepStatus.DUPLICATE, reason)

    def _refuse(
        self, future: StepFuture[StepResult], exc: InvalidFeedback
    ) -> StepFuture[StepResult]:
        with self.lock:
            self._invalid += 1
        logger.warning("feedback refused: %s", exc)
        resolve_all(self.done, [future], [exc])
        return future

    def _label(self, label: object, action_type: object) -> float:
        if label is None:
            if action_type is None:
                raise InvalidFeedback("label", "give a label or an action_type")
            if not isinstance(action_type, str):
                raise InvalidFeedback(
                    "action_type", f"must be a str, got {type(action_type).__name__}"
                )
            try:
                vec = self.targets.target(InteractionData(action_type, 0.0, "feedback"))
            except InvalidInteraction as exc:
                raise InvalidFeedback("action_type", exc.reason) from None
            label = float(vec[0])
        y = check_finite("label", label)
        if abs(y) > _FLOAT32_MAX:
            raise InvalidFeedback("label", f"must fit a float32, got {y}")
        if self.bce and not 0.0 <= y <= 1.0:
            raise InvalidFeedback("label", f"must be in [0, 1] for loss='bce', got {y}")
        return y

    # -------------------------------------------------------------- rows
    def _emit(
        self,
        rows: list[Example],
        caller: StepFuture[StepResult] | None,
        caller_reason: str | None,
        caller_id: object = None,
    ) -> list[tuple[StepFuture[StepResult], object]]:
        """Queue ``rows`` (under :attr:`lock`); returns the Futures to resolve
        once the lock is released. ``caller`` is the Future of the row of
        ``caller_id`` with reason ``caller_reason``."""
        later: list[tuple[StepFuture[StepResult], object]] = []
        if not rows:
            return later
        entries: list[Entry] = []
        rate = self.negative_sampling
        for ex in rows:
            future: StepFuture[StepResult] | None = None
            if caller is not None and ex.reason == caller_reason and ex.event_id == caller_id:
                future, caller = caller, None
            elif ex.reason == "joined":
                future = self._pending.pop(ex.event_id, None)
            if ex.reason != "late":
                self._observe(ex)
            weight = ex.weight if ex.reason != "late" else self._correction_weight(ex)
            if rate is not None and ex.label == 0.0:
                if self._rng.random() >= rate:
                    self._sampled_out += 1
                    if future is not None:
                        reason = _R_SAMPLED.format(rate=rate)
                        later.append(
                            (future, StepResult(None, None, None, StepStatus.SKIPPED, reason))
                        )
                    continue
                weight = weight / rate
            if future is None:
                future = StepFuture(self.done)
            entries.append((EncodedRow(ex, weight), future))
        if entries:
            later += self._enqueue(entries)
        return later

    def _correction_weight(self, ex: Example) -> float:
        """The importance weight of a late correction (see the module docstring)."""
        d = self.store.default_label
        if d is None or ex.label == d:
            return 1.0  # nothing trained at the timeout: a plain example
        # The default label's step moved the logit by about (q - d); the
        # correction must bring the total to a single (q - y): w (q - y) = d - y.
        q = ex.prediction
        if (ex.label - q) * (ex.label - d) <= 0.0:
            return 1.0
        return min(MAX_CORRECTION_WEIGHT, (ex.label - d) / (ex.label - q))

    def _observe(self, ex: Example) -> None:
        monitor = self.monitor
        if ex.reason == "joined":
            monitor.record_delay(max(0.0, ex.delay))
        if self.bce and 0.0 <= ex.prediction <= 1.0:
            monitor.update(ex.prediction, ex.label)

    def _enqueue(self, entries: list[Entry]) -> list[tuple[StepFuture[StepResult], object]]:
        q = self.queue
        with q.lock:
            closed = q.closing
            q.submitted += len(entries)
            if not closed:
                q.items.extend(entries)
        if not closed:
            if q.sleeping:  # as SubmissionQueue.put: wake a sleeping dispatcher once
                q.sleeping = False
                q.wake.set()
            return []
        # The queue closed meanwhile: counted, then resolved as skipped.
        result = StepResult(None, None, None, StepStatus.SKIPPED, _R_CLOSED)
        return [(f, _Skipped(result)) for _, f in entries]

    def _finish(self, later: list[tuple[StepFuture[StepResult], object]]) -> None:
        """Resolve Futures collected under the lock (none is held now)."""
        if not later:
            return
        n_skipped = sum(isinstance(r, _Skipped) for _, r in later)
        if n_skipped:  # counted in the ledger: they were counted as submitted
            self.ledger.skipped(n_skipped)
            logger.warning("%d join step(s) %s", n_skipped, _R_CLOSED)
        results = [r.result if isinstance(r, _Skipped) else r for _, r in later]
        resolve_all(self.done, [f for f, _ in later], results)

    # -------------------------------------------------------------- dispatcher hooks
    def tick(self) -> None:
        """Close due windows (wall clock), at most :attr:`per_tick` per call;
        called by the dispatcher. Never raises."""
        now = time.monotonic()
        if now < self._next_tick or not self._tick_lock.acquire(blocking=False):
            return
        try:
            self._next_tick = now + TICK_S
            with self.lock:
                if self._closed:
                    return
                due = self.store.next_deadline()
                if due is None or due > self.clock.now():
                    return
                rows = self.store.expire(None, limit=self.per_tick)
                if len(rows) >= self.per_tick:
                    self._next_tick = 0.0  # more may be due: the next tick goes on
                later = self._emit(rows, None, None)
            self._finish(later)
        except Exception:
            logger.exception("delayed feedback: closing due windows failed")
        finally:
            self._tick_lock.release()

    def split(self, batch: list[Entry]) -> Iterator[tuple[list[Entry], bool]]:
        """Consecutive runs of interactions and of encoded rows."""
        start = 0
        kind = type(batch[0][0]) is EncodedRow
        for i in range(1, len(batch)):
            k = type(batch[i][0]) is EncodedRow
            if k != kind:
                yield batch[start:i], kind
                start, kind = i, k
        yield batch[start:], kind

    def prepare(self, items: list[object], fields: bool) -> PreparedBatch:
        """The network input of a run of :class:`EncodedRow` (their stored rows)."""
        rows = cast("list[EncodedRow]", items)
        n = len(rows)
        parts = [r.features for r in rows]
        features: Any
        if self.kind == "dense":
            features = np.stack([p[0] for p in parts]).astype(np.float32, copy=False)
        else:
            sizes = np.fromiter((p[0].size for p in parts), dtype=np.int64, count=n)
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(sizes, out=indptr[1:])
            indices = np.concatenate([p[0] for p in parts]).astype(np.int32, copy=False)
            values = np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False)
            if self.kind == "field":
                enc = cast("HashedFeatureEncoder", self.encoder)
                fids = np.concatenate([p[2] for p in parts]).astype(np.int32, copy=False)
                dense = np.stack([p[3] for p in parts]).astype(np.float32, copy=False)
                features = FieldFeatures(
                    indptr, indices, values, fids, dense, enc.n_dense, enc.n_inputs
                )
            else:
                features = (indptr, indices, values)
        targets = np.array([r.label for r in rows], dtype=np.float32).reshape(n, 1)
        stamps = np.array([r.timestamp for r in rows], dtype=np.float64)
        weights = np.array([r.weight for r in rows], dtype=np.float32)
        return PreparedBatch(items, [None] * n, list(range(n)), features, targets, stamps, weights)

    def trained(self, items: list[object], results: object) -> None:
        """Train lags of the applied rows (queued -> applied); ``results`` is
        the batch's :class:`TrainedRows` (every row trained) or its result list."""
        now = time.monotonic()
        rows = cast("list[EncodedRow]", items)
        if isinstance(results, TrainedRows):
            for row in rows:
                self.monitor.record_train_lag(max(0.0, now - row.queued_at))
            return
        for row, result in zip(rows, cast("list[object]", results), strict=True):
            if isinstance(result, StepResult) and result.status is StepStatus.TRAINED:
                self.monitor.record_train_lag(max(0.0, now - row.queued_at))

    # -------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Before the queue closes: expire every awaiting example
        (``awaiting_on_close="expire"``) or keep them for ``save()`` (``"keep"``;
        the Futures of open aggregates then resolve as skipped)."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            later = []
            if self.awaiting_on_close == "expire":
                later = self._emit(self.store.drain(self.clock.now()), None, None)
            later += [(f, _R_KEPT_RESULT) for f in self._pending.values()]
            self._pending.clear()
        self._finish(later)

    def after_fork_in_child(self) -> None:
        """Fork hook: new locks (another thread may have held one); refuse new work."""
        self.lock = threading.Lock()
        self._tick_lock = threading.Lock()
        self._closed = True
        self.store.after_fork_in_child()
        self.monitor.after_fork_in_child()

    # -------------------------------------------------------------- reading
    def stats(self) -> FeedbackStats:
        """The counters and the live quality now."""
        with self.lock:
            c = self.store.counters()
            invalid, sampled = self._invalid, self._sampled_out
        q = self.monitor.snapshot()
        left = c.added - c.awaiting
        return FeedbackStats(
            predictions=c.added,
            awaiting=c.awaiting,
            joined=c.joined,
            expired_trained=c.expired_trained,
            expired_dropped=c.expired_dropped,
            evicted_trained=c.evicted_trained,
            evicted_dropped=c.evicted_dropped,
            feedbacks=c.feedbacks,
            matched=c.matched,
            duplicate=c.duplicate,
            late=c.late,
            unknown=c.unknown,
            invalid=invalid,
            corrections=c.corrections,
            sampled_out=sampled,
            join_rate=c.joined / left if left else None,
            window_count=q.window_count,
            log_loss=q.log_loss,
            auc=q.auc,
            calibration=q.calibration,
            mean_prediction=q.mean_prediction,
            mean_label=q.mean_label,
            delay_p50=q.delay_p50,
            delay_p90=q.delay_p90,
            delay_p99=q.delay_p99,
            train_lag_p50=q.train_lag_p50,
            train_lag_p90=q.train_lag_p90,
            train_lag_p99=q.train_lag_p99,
            drift_alarms=q.drift_alarms,
        )

    # -------------------------------------------------------------- state
    def export_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """The awaiting and remembered examples as checkpoint tensors (int32/int64
        /float32/float64 only; names without a prefix) and JSON metadata."""
        with self.lock:
            arrays, meta = self.store.export_state()
            clock_now = self.clock.started if isinstance(self.clock, ReplayClock) else None
            counters = {"invalid": self._invalid, "sampled_out": self._sampled_out}
        out = {k: _storable(v) for k, v in arrays.items()}
        return out, {
            "version": STATE_VERSION,
            "store": meta,
            "clock_now": clock_now,
            "counters": counters,
        }

    def import_state(self, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> None:
        """Restore :meth:`export_state` output; ``ValueError`` (nothing changed) when invalid."""
        if not isinstance(meta, dict) or meta.get("version") != STATE_VERSION:
            raise InvalidFeedback("state", "unknown delayed-feedback state version")
        try:
            counters = {k: int(meta["counters"][k]) for k in ("invalid", "sampled_out")}
            clock_now = meta["clock_now"]
            if clock_now is not None:
                clock_now = check_finite("clock_now", clock_now)
            store_meta = meta["store"]
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidFeedback):
                raise
            raise InvalidFeedback("state", f"malformed: {exc!r}") from exc
        if min(counters.values()) < 0:
            raise InvalidFeedback("state", "negative counters")
        cols = dict(arrays)
        for key in ("left_kind", "left_has_features"):
            if key in cols:
                cols[key] = cols[key].astype(np.int8 if key == "left_kind" else bool)
        with self.lock:
            self.store.import_state(cols, store_meta)  # validates before changing
            if isinstance(self.clock, ReplayClock) and clock_now is not None:
                self.clock.advance_to(clock_now)
            self._invalid, self._sampled_out = counters["invalid"], counters["sampled_out"]


class _Skipped:
    """A queued-then-refused join step: counted as skipped in the ledger."""

    __slots__ = ("result",)

    def __init__(self, result: StepResult) -> None:
        self.result = result


def _normal_id(event_id: object) -> object:
    """The id as the store keys it (an integral numpy scalar becomes an int)."""
    if type(event_id) in (str, int) or isinstance(event_id, (bool, np.bool_)):
        return event_id
    if isinstance(event_id, numbers.Integral):
        return operator.index(event_id)
    return event_id


def wait_idle(
    queue: SubmissionQueue, ledger: Ledger, done: threading.Condition, timeout: float | None
) -> bool:
    """Wait on ``done`` (notified whenever Futures resolve) until nothing is pending."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with done:
        while queue.submitted - ledger.resolved > 0:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            done.wait(0.05 if left is None else min(left, 0.05))
    return True


def _storable(array: NDArray[Any]) -> NDArray[Any]:
    """A checkpoint holds int32, int64, float32 and float64 tensors only."""
    if array.dtype.kind == "b" or array.dtype == np.int8:
        return array.astype(np.int32)
    return array


def _rate(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"negative_sampling: must be a number in (0, 1], got {value!r}")
    r = float(value)
    if not 0.0 < r <= 1.0:
        raise ValueError(f"negative_sampling: must be in (0, 1], got {r}")
    return r


def _engine_name(field: str) -> str:
    return {"timeout": "feedback_timeout", "duplicates": "duplicate_policy"}.get(field, field)
