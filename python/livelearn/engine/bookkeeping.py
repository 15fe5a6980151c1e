"""What the engine remembers about resolved steps: counters, the loss log and
its moving average, and the bounded history of trained examples.

One :class:`Ledger` per engine; every method that writes takes its lock, so
a reader holding it (``stats()``, ``history``) sees whole batches only.
"""

from __future__ import annotations

import logging
import math
import threading
from itertools import repeat
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livelearn.engine.batch import PreparedBatch, history_rows
from livelearn.history import History
from livelearn.network import STATUS_NAMES
from livelearn.results import StepResult, StepStatus, TrainedRows

__all__ = ["RECENT_WEIGHT", "Counters", "Ledger"]

logger = logging.getLogger("livelearn")

#: Weight of each step in ``recent_loss``, the loss's exponential moving average.
RECENT_WEIGHT = 0.01
_NATIVE_REASONS = tuple(f"rejected by the network: {name}" for name in STATUS_NAMES)


class Counters:
    """Outcome counters and loss statistics, written under the ledger's lock."""

    __slots__ = (
        "failed",
        "last_example_time",
        "last_loss",
        "loss_sum",
        "recent_loss",
        "rejected",
        "skipped",
        "trained",
    )

    def __init__(self) -> None:
        self.trained = 0
        self.skipped = 0
        self.rejected = 0
        self.failed = 0
        self.loss_sum = 0.0
        self.last_loss: float | None = None
        self.recent_loss: float | None = None
        self.last_example_time: float | None = None


class Ledger:
    """Counters, history and the number of resolved steps of one engine."""

    def __init__(self, history: History, log_every: int) -> None:
        self.lock = threading.Lock()
        self.counters = Counters()
        self.history = history
        self.resolved = 0  # steps resolved in any way (trained ... failed)
        self.log_every = log_every

    def skipped(self, n: int) -> None:
        with self.lock:
            self.count_skipped_locked(n)

    def count_skipped_locked(self, n: int) -> None:
        """Count ``n`` skipped steps; the caller holds :attr:`lock`."""
        self.counters.skipped += n
        self.resolved += n

    def failed(self, n: int) -> None:
        with self.lock:
            self.counters.failed += n
            self.resolved += n

    def book(
        self,
        batch: PreparedBatch,
        losses: NDArray[np.float64],
        preds: NDArray[np.float32],
        status: NDArray[np.uint8],
        steps: NDArray[np.int64],
    ) -> tuple[list[object] | TrainedRows, bool]:
        """Record a batch's native outcome (one entry per row of ``batch``);
        returns each item's result (a :class:`StepResult`, or the error that
        made it invalid) and whether any item was rejected. When every item
        trained, the results are a :class:`TrainedRows` (built when read)."""
        n = len(batch.items)
        ok = status == 0
        n_trained = int(np.count_nonzero(ok))
        # The one selector of the rows the network learned from: a slice when it
        # learned from all of them (a view, where a mask would copy every array).
        trained: slice | NDArray[np.bool_] = slice(None) if n_trained == len(status) else ok
        results: list[object] | TrainedRows
        if n_trained == n:  # every item trained: results are built when read
            results = TrainedRows(steps, losses, preds)
        else:
            results = self._results(batch, losses, preds, status, steps, ok)
        n_rejected = n - n_trained
        with self.lock:
            c = self.counters
            if n_trained:
                features = batch.features
                t_losses = losses[trained]
                t_sum = float(t_losses.sum(dtype=np.float64))
                before, sum_before = c.trained, c.loss_sum
                c.loss_sum += t_sum
                c.last_loss = float(t_losses[-1])
                c.recent_loss = ema(c.recent_loss, t_losses)
                t_stamps = batch.timestamps[trained]
                c.last_example_time = float(t_stamps[-1])
                c.trained += n_trained
                dense_rows, sparse = history_rows(features, trained)
                self.history.append_batch(
                    steps[trained],
                    dense_rows,
                    sparse,
                    batch.targets[trained],
                    preds[trained],
                    t_losses,
                    t_stamps,
                )
                self._log_losses(before, sum_before, t_losses)
            c.rejected += n_rejected
            self.resolved += n
        return results, n_rejected > 0

    @staticmethod
    def _results(
        batch: PreparedBatch,
        losses: NDArray[np.float64],
        preds: NDArray[np.float32],
        status: NDArray[np.uint8],
        steps: NDArray[np.int64],
        ok: NDArray[np.bool_],
    ) -> list[object]:
        """Each item's result, built at once (a batch where some item did not train)."""
        loss_list = losses.tolist()
        pred_list: list[Any] = preds[:, 0].tolist() if preds.shape[1] == 1 else list(preds)
        row_results: list[object] = list(
            map(_new_result, zip(steps.tolist(), loss_list, pred_list, repeat(StepStatus.TRAINED)))
        )
        for j in np.flatnonzero(~ok).tolist():
            loss_j = loss_list[j]
            row_results[j] = StepResult(
                None,
                loss_j if math.isfinite(loss_j) else None,
                None,
                StepStatus.REJECTED,
                _NATIVE_REASONS[int(status[j])],
            )
        if len(batch.rows) == len(batch.items):
            return row_results
        results: list[object] = list(batch.errors)
        for j, i in enumerate(batch.rows):
            results[i] = row_results[j]
        return results

    def _log_losses(self, before: int, sum_before: float, losses: NDArray[np.float64]) -> None:
        """INFO line at every multiple of ``log_every`` reached by this batch,
        with the loss of that step and the mean loss of steps 1..that step."""
        every = self.log_every
        if not every or not logger.isEnabledFor(logging.INFO):
            return
        first = (before // every + 1) * every
        steps = range(first, before + len(losses) + 1, every)
        if not steps:
            return
        prefix = sum_before + np.cumsum(losses, dtype=np.float64)
        for step in steps:
            j = step - before - 1
            logger.info(
                "step %d loss %.6f mean_loss %.6f", step, float(losses[j]), prefix[j] / step
            )

    def after_fork_in_child(self) -> None:
        self.lock = threading.Lock()


def ema(recent: float | None, losses: NDArray[np.float64]) -> float:
    """Fold ``losses`` one by one into an exponential moving average
    (weight :data:`RECENT_WEIGHT` per step), in closed form.

    >>> ema(None, np.array([1.0, 1.0]))
    1.0
    >>> round(ema(0.0, np.array([1.0])), 6)
    0.01
    """
    x = losses.astype(np.float64)
    if recent is None:
        recent, x = float(x[0]), x[1:]
    keep = 1.0 - RECENT_WEIGHT
    n = len(x)
    weights = RECENT_WEIGHT * keep ** np.arange(n - 1, -1, -1, dtype=np.float64)
    return float(recent * keep**n + weights @ x)


def _new_result(fields: tuple[int, float, Any, StepStatus]) -> StepResult:
    """A trained step's result; tuple.__new__ skips NamedTuple's argument parsing."""
    return tuple.__new__(StepResult, (*fields, None))
