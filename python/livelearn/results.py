"""Value types the engine hands out: step results, history items, statistics."""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "EngineStats",
    "FeedbackStats",
    "SparseFeatures",
    "StepResult",
    "StepStatus",
    "TrainedRows",
    "TrainingExample",
]


class StepStatus(str, Enum):
    """What happened to one submitted interaction."""

    TRAINED = "trained"
    """The network took one training step on it."""
    SKIPPED = "skipped"
    """Not trained, by design: the engine was not initialised, or the step was
    dropped by the ``"drop_oldest"`` overload policy."""
    REJECTED = "rejected"
    """Not trained because of the data: invalid input (the Future raises
    :class:`~livelearn.InvalidInteraction`) or a non-finite loss or update, or a
    bce target outside [0, 1] (the Future's result says so; the model is
    unchanged)."""
    FAILED = "failed"
    """Not trained because of an unexpected error (the Future raises it)."""
    DUPLICATE = "duplicate"
    """An :meth:`Engine.feedback` for an id whose outcome was already taken (the
    first one wins), or folded into the aggregate of its window
    (``duplicate_policy="max" | "sum" | "last"``): no step of its own."""
    LATE = "late"
    """An :meth:`Engine.feedback` after the id's window closed (it trained with
    the default label, or was dropped): counted, nothing trained
    (``late_policy="ignore"``, or a correction was not needed)."""
    UNKNOWN = "unknown"
    """An :meth:`Engine.feedback` for an id never predicted with
    ``event_id=``, or forgotten: nothing trained."""

    def __str__(self) -> str:
        return self.value


class StepResult(NamedTuple):
    """The outcome of one :meth:`Engine.train_step`.

    ``prediction`` is the model's output for this interaction made *before* the
    update (progressive validation: score it against the target to measure
    the model honestly); a float for one output, an array for several.
    ``step`` is the network's step count after this step (1 for the first
    step ever), ``None`` unless trained. ``reason`` says why a step was not
    trained.
    """

    step: int | None
    loss: float | None
    prediction: float | NDArray[np.float32] | None
    status: StepStatus
    reason: str | None = None

    @property
    def trained(self) -> bool:
        """True when the network learned from this interaction."""
        return self.status is StepStatus.TRAINED


class TrainedRows:
    """The outcome of a batch whose rows all trained: the :class:`StepResult` of
    row ``j`` is built from the batch's arrays only when asked for (a step
    Future's ``result()``), equal to the one built at once.

    >>> rows = TrainedRows(np.array([7]), np.array([0.5]), np.array([[0.25]], np.float32))
    >>> rows.result_of(0) == StepResult(7, 0.5, 0.25, StepStatus.TRAINED)
    True
    """

    __slots__ = ("_losses", "_preds", "_single", "_steps")

    def __init__(
        self, steps: NDArray[np.int64], losses: NDArray[np.float64], preds: NDArray[np.float32]
    ) -> None:
        self._steps = steps
        self._losses = losses
        self._single = preds.shape[1] == 1
        self._preds = preds[:, 0] if self._single else preds

    def result_of(self, row: int) -> StepResult:
        """Row ``row``'s result (a float prediction for one output, else a row view)."""
        pred = self._preds[row]
        return tuple.__new__(
            StepResult,
            (
                int(self._steps[row]),
                float(self._losses[row]),
                float(pred) if self._single else pred,
                StepStatus.TRAINED,
                None,
            ),
        )


class SparseFeatures(NamedTuple):
    """A sparse feature vector: ``values`` at ``indices`` of ``n_inputs``."""

    indices: NDArray[np.int32]
    values: NDArray[np.float32]
    n_inputs: int

    def to_dense(self) -> NDArray[np.float32]:
        """The dense vector (allocates ``n_inputs`` floats)."""
        out = np.zeros(self.n_inputs, dtype=np.float32)
        out[self.indices] = self.values
        return out


class TrainingExample(NamedTuple):
    """One trained interaction as the network saw it, kept in :attr:`Engine.history`."""

    step: int
    features: NDArray[np.float32] | SparseFeatures
    target: NDArray[np.float32]
    loss: float
    prediction: NDArray[np.float32]
    timestamp: float


class EngineStats(NamedTuple):
    """An immutable snapshot of an engine's counters.

    ``interactions`` counts every submitted interaction; each ends up in exactly
    one of ``steps`` (trained), ``skipped``, ``rejected``, ``failed``, or is still
    ``pending``: ``steps + skipped + rejected + failed + pending == interactions``.
    ``mean_loss`` is the mean loss of all trained steps of this engine's life,
    ``recent_loss`` an exponential moving average (weight 0.01 per step).
    Times are POSIX seconds; ``last_example_time`` is the timestamp of the
    newest trained interaction (its own time, not the wall clock).
    """

    steps: int
    interactions: int
    skipped: int
    rejected: int
    failed: int
    pending: int
    last_loss: float | None
    mean_loss: float | None
    recent_loss: float | None
    last_example_time: float | None
    started_at: float | None
    feedback: FeedbackStats | None = None
    """The delayed-feedback loop and its live quality (None without
    ``feedback_timeout``)."""

    #: With ``Engine(share=...)``: the shared model's trained steps (every
    #: process's) and version; None for an engine of its own.
    model_steps: int | None = None
    model_version: int | None = None


class FeedbackStats(NamedTuple):
    """The delayed-feedback loop of an engine (:meth:`Engine.feedback`) at one moment.

    Counters add up: ``predictions == joined + expired_trained + expired_dropped
    + evicted_trained + evicted_dropped + awaiting`` and ``feedbacks == matched +
    duplicate + late + unknown`` (``invalid`` feedback calls are refused before
    they count). ``sampled_out`` counts negatives left out by
    ``negative_sampling`` (still counted as joined or expired above).

    The quality fields cover the last ``quality_window`` outcomes, scored
    against the prediction served at ``predict`` time (progressive validation):
    ``log_loss``, ``auc`` (None with one class only), ``calibration`` (mean
    prediction / mean label; None while the mean label is 0). ``delay_*`` are
    percentiles of the feedback delay (outcome time - prediction time, clock
    seconds) and ``train_lag_*`` of the time from a labelled example being
    queued to its update being applied (wall seconds). ``drift_alarms`` counts
    Page-Hinkley alarms on the loss (each logged at WARNING). ``join_rate`` is the
    share of ids that left with their outcome (None before any left).
    """

    predictions: int
    awaiting: int
    joined: int
    expired_trained: int
    expired_dropped: int
    evicted_trained: int
    evicted_dropped: int
    feedbacks: int
    matched: int
    duplicate: int
    late: int
    unknown: int
    invalid: int
    corrections: int
    sampled_out: int
    join_rate: float | None
    window_count: int
    log_loss: float | None
    auc: float | None
    calibration: float | None
    mean_prediction: float | None
    mean_label: float | None
    delay_p50: float | None
    delay_p90: float | None
    delay_p99: float | None
    train_lag_p50: float | None
    train_lag_p90: float | None
    train_lag_p99: float | None
    drift_alarms: int

    @property
    def expired(self) -> int:
        """Ids whose window closed without an outcome, trained or dropped."""
        return self.expired_trained + self.expired_dropped

    @property
    def evicted(self) -> int:
        """Ids that left early to make room (``max_awaiting``)."""
        return self.evicted_trained + self.evicted_dropped
