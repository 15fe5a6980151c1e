"""Progressive validation: how well an :class:`~livelearn.Engine` learns a stream.

Each interaction is scored with the prediction the engine made *before* it learned
from that interaction (:attr:`StepResult.prediction`), so every event is a test
event and nothing is scored on data the model has already seen, as in River's
``evaluate.progressive_val_score``. The baseline is the running base rate (the
running mean for regression), also predicted before each label. The per-event
metrics themselves live in :mod:`livelearn.metrics_offline`.

Example:
    >>> from livelearn import Engine
    >>> from livelearn.datasets import simulate_interactions
    >>> stream = simulate_interactions(n_events=2000, seed=0)
    >>> with Engine(seed=0, log_every=0) as engine:
    ...     result = progressive_val_score(engine, stream.interactions)
    >>> result.events, result.trained, result.scores.metric
    (2000, 2000, 'log loss')
    >>> result.scores.model is not None and result.scores.baseline is not None
    True
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from livelearn import Engine, InteractionData, InvalidInteraction, StepStatus
from livelearn.metrics_offline import (
    log_losses,
    roc_auc,
    running_base_rate,
    running_mean,
    squared_errors,
)

__all__ = ["ProgressiveResult", "Scores", "progressive_val_score", "score_predictions"]

#: Interactions submitted per :meth:`Engine.train_many` call.
DEFAULT_CHUNK_SIZE = 512


@dataclass(frozen=True)
class Scores:
    """Progressive scores of a model against the running-mean baseline.

    Attributes:
        metric: ``"log loss"`` (loss ``bce`` with targets in ``[0, 1]``) or ``"MSE"``.
        model: mean per-event loss of the model's predictions; None without events.
        baseline: the same for the running base rate (running mean for MSE).
        model_auc: ROC AUC of the model where every target is 0 or 1 (and both
            occur), else None.
        baseline_auc: ROC AUC of the running base rate, likewise.
        model_curve: the model's loss for each event, in order.
        baseline_curve: the baseline's loss for each event, in order.
    """

    metric: str
    model: float | None
    baseline: float | None
    model_auc: float | None
    baseline_auc: float | None
    model_curve: NDArray[np.float64]
    baseline_curve: NDArray[np.float64]


def score_predictions(targets: ArrayLike, predictions: ArrayLike, loss: str = "bce") -> Scores:
    """Score progressive ``predictions`` of ``targets`` against the running baseline.

    With ``loss="bce"`` and every target in ``[0, 1]`` the metric is the log loss
    and the baseline :func:`~livelearn.metrics_offline.running_base_rate`;
    otherwise the squared error against
    :func:`~livelearn.metrics_offline.running_mean`. ROC AUC is computed where
    every target is 0 or 1.

    Raises:
        ValueError: ``loss`` is neither ``"bce"`` nor ``"mse"``, or the shapes differ.

    Example:
        >>> s = score_predictions([0.0, 1.0, 0.0, 1.0], [0.2, 0.7, 0.4, 0.9])
        >>> s.metric, round(s.model, 4), round(s.baseline, 4), s.model_auc
        ('log loss', 0.299, 0.9384, 1.0)
        >>> score_predictions([2.0, 4.0], [1.0, 3.0], loss="mse").model
        1.0
    """
    if loss not in ("bce", "mse"):
        raise ValueError(f"loss: expected 'bce' or 'mse', got {loss!r}")
    y = np.asarray(targets, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(
            f"targets shape {y.shape} and predictions shape {p.shape} must be 1-D, equal"
        )
    binary = bool(y.size) and bool(np.isin(y, (0.0, 1.0)).all())
    if loss == "bce" and y.size and bool(((y >= 0) & (y <= 1)).all()):
        base = running_base_rate(y)
        model_curve, base_curve, metric = log_losses(y, p), log_losses(y, base), "log loss"
    else:
        base = running_mean(y)
        model_curve, base_curve, metric = squared_errors(y, p), squared_errors(y, base), "MSE"
    return Scores(
        metric=metric,
        model=float(model_curve.mean()) if y.size else None,
        baseline=float(base_curve.mean()) if y.size else None,
        model_auc=roc_auc(y, p) if binary else None,
        baseline_auc=roc_auc(y, base) if binary else None,
        model_curve=model_curve,
        baseline_curve=base_curve,
    )


@dataclass(frozen=True)
class ProgressiveResult:
    """What happened when a stream of interactions went through an engine.

    ``events == trained + skipped + rejected + failed``. The per-event arrays hold
    one entry per trained event, and only for single-output engines (empty
    otherwise).

    Attributes:
        events: interactions submitted.
        seconds: wall-clock time of the whole run.
        trained: steps that trained the network.
        skipped: steps not trained by design (e.g. no target for the action type).
        rejected: steps refused because of the data (invalid input, non-finite loss).
        failed: steps whose future raised something other than
            :class:`~livelearn.InvalidInteraction`.
        targets: output 0 of the target of each trained event.
        predictions: the prediction for each trained event, made before learning from it.
        positions: the index in the stream of each trained event.
        rejections: ``(index, reason)`` of each rejected or failed event.
        scores: :func:`score_predictions` of ``targets`` and ``predictions``.
    """

    events: int
    seconds: float
    trained: int
    skipped: int
    rejected: int
    failed: int
    targets: NDArray[np.float64]
    predictions: NDArray[np.float64]
    positions: NDArray[np.int64]
    rejections: tuple[tuple[int, str], ...]
    scores: Scores

    @property
    def events_per_second(self) -> float:
        """``events / seconds`` (infinite for a run too short to time).

        Example:
            >>> from livelearn import Engine, InteractionData
            >>> events = [InteractionData("click", 1e9 + i, i) for i in range(50)]
            >>> with Engine(log_every=0) as engine:
            ...     progressive_val_score(engine, events).events_per_second > 0
            True
        """
        return self.events / self.seconds if self.seconds > 0 else math.inf


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: must be an int >= 1, got {value!r}")
    return value


def progressive_val_score(
    engine: Engine,
    interactions: Iterable[InteractionData],
    *,
    loss: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = False,
    description: str = "replay",
    every: int | None = None,
    on_every: Callable[[], None] | None = None,
) -> ProgressiveResult:
    """Train ``engine`` on ``interactions`` in order, scoring each event with the
    prediction made before the engine learned from it.

    Interactions are submitted ``chunk_size`` at a time with
    :meth:`Engine.train_many`, and each chunk is finished before the next one is
    sent, so the order of learning is the order of the stream.

    Args:
        engine: an initialised engine (e.g. ``with Engine(...) as engine``); an
            uninitialised one skips every step.
        interactions: any iterable, consumed once.
        loss: ``"bce"`` or ``"mse"`` for :func:`score_predictions`; default: the
            engine's loss.
        chunk_size: interactions per :meth:`Engine.train_many` call.
        progress: show a tqdm progress bar on stderr.
        description: the progress bar's label.
        every: call ``on_every`` after each ``every`` events (at a chunk boundary,
            every earlier step finished), e.g. to save a checkpoint.
        on_every: the callback for ``every``.

    Raises:
        ValueError: a bad ``loss``, ``chunk_size`` or ``every``.

    Example:
        >>> from livelearn import Engine, InteractionData
        >>> events = [InteractionData("click" if i % 3 else "skip", 1e9 + i, i % 5)
        ...           for i in range(300)]
        >>> with Engine(targets={"click": 1.0, "skip": 0.0}, log_every=0) as engine:
        ...     result = progressive_val_score(engine, events, chunk_size=100)
        >>> result.trained, result.targets.shape, result.scores.model_auc is not None
        (300, (300,), True)
    """
    if loss is None:
        loss = str(engine.config["loss"])
    if loss not in ("bce", "mse"):
        raise ValueError(f"loss: expected 'bce' or 'mse', got {loss!r}")
    chunk_size = _positive("chunk_size", chunk_size)
    if every is not None:
        every = _positive("every", every)
    single = engine.targets.n_outputs == 1
    total = len(interactions) if isinstance(interactions, Sized) else None
    trained = skipped = rejected = failed = 0
    targets: list[float] = []
    predictions: list[float] = []
    positions: list[int] = []
    rejections: list[tuple[int, str]] = []
    events = 0
    since = 0
    bar = _progress_bar(total, description) if progress else None
    stream = iter(interactions)
    start = time.perf_counter()
    try:
        while chunk := list(itertools.islice(stream, chunk_size)):
            for offset, future in enumerate(engine.train_many(chunk)):
                index = events + offset
                error = future.exception()
                if error is not None:
                    if isinstance(error, InvalidInteraction):
                        rejected += 1
                    else:
                        failed += 1
                    rejections.append((index, str(error)))
                    continue
                result = future.result()
                if result.status is StepStatus.TRAINED:
                    trained += 1
                    if single:
                        targets.append(float(engine.targets.target(chunk[offset])[0]))
                        predictions.append(float(result.prediction))  # type: ignore[arg-type]
                        positions.append(index)
                elif result.status is StepStatus.SKIPPED:
                    skipped += 1
                else:
                    rejected += 1
                    rejections.append((index, result.reason or "rejected"))
            events += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
            since += len(chunk)
            if every and on_every is not None and since >= every:
                on_every()
                since = 0
    finally:
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
    return ProgressiveResult(
        events=events,
        seconds=seconds,
        trained=trained,
        skipped=skipped,
        rejected=rejected,
        failed=failed,
        targets=np.asarray(targets, dtype=np.float64),
        predictions=np.asarray(predictions, dtype=np.float64),
        positions=np.asarray(positions, dtype=np.int64),
        rejections=tuple(rejections),
        scores=score_predictions(targets, predictions, loss),
    )


def _progress_bar(total: int | None, description: str) -> Any:
    try:
        from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # tqdm is a dependency, but never fail for a progress bar
        return None
    return tqdm(total=total, desc=description, unit="ev", unit_scale=True, file=sys.stderr)
