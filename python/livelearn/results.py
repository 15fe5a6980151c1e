"""Value types the engine hands out: step results, history items, statistics."""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "EngineStats",
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
