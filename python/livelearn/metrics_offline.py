"""Offline metrics for replayed interaction logs, in plain numpy (no scikit-learn).

Progressive validation scores each event with the prediction made *before* the
model learned from it (:attr:`StepResult.prediction`), so every event is a test
event and the score is honest. The natural baseline is the running base rate:
the mean of the labels seen so far, also predicted before seeing each label.

Example:
    >>> labels = [0.0, 0.0, 1.0, 0.0, 1.0]
    >>> running_base_rate(labels).round(3).tolist()
    [0.5, 0.25, 0.167, 0.375, 0.3]
    >>> roc_auc(labels, [0.1, 0.2, 0.8, 0.3, 0.8])
    1.0
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "log_losses",
    "roc_auc",
    "rolling_mean",
    "running_base_rate",
    "running_mean",
    "squared_errors",
]

_EPS = 1e-12


def log_losses(labels: ArrayLike, probabilities: ArrayLike) -> NDArray[np.float64]:
    """Per-event binary cross-entropy (natural log), probabilities clipped to
    ``[1e-12, 1 - 1e-12]`` so a confident miss costs a large but finite loss.

    Example:
        >>> log_losses([1.0, 0.0], [0.5, 0.25]).round(4).tolist()
        [0.6931, 0.2877]
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0 - _EPS)
    if y.shape != p.shape:
        raise ValueError(f"labels shape {y.shape} != probabilities shape {p.shape}")
    return np.asarray(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)), dtype=np.float64)


def squared_errors(targets: ArrayLike, predictions: ArrayLike) -> NDArray[np.float64]:
    """Per-event squared error.

    Example:
        >>> squared_errors([1.0, 2.0], [0.5, 2.0]).tolist()
        [0.25, 0.0]
    """
    y = np.asarray(targets, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"targets shape {y.shape} != predictions shape {p.shape}")
    return np.asarray((y - p) ** 2, dtype=np.float64)


def running_base_rate(labels: ArrayLike, prior: float = 0.5) -> NDArray[np.float64]:
    """The base rate known *before* each event: ``(clicks so far + prior) / (events
    so far + 2 * prior)`` (the Krichevsky-Trofimov estimator for ``prior=0.5``).

    The prior keeps the prediction away from exactly 0 or 1 (the first events
    would otherwise cost an unbounded log loss) and fades after a few events.

    Example:
        >>> running_base_rate([1.0, 1.0, 0.0]).round(3).tolist()
        [0.5, 0.75, 0.833]
    """
    y = np.asarray(labels, dtype=np.float64)
    before = np.concatenate(([0.0], np.cumsum(y)[:-1])) if y.size else y
    n = np.arange(y.size, dtype=np.float64)
    return np.asarray((before + prior) / (n + 2.0 * prior), dtype=np.float64)


def running_mean(values: ArrayLike, start: float = 0.0) -> NDArray[np.float64]:
    """The mean of the values *before* each event (``start`` for the first one):
    the regression counterpart of :func:`running_base_rate`.

    Example:
        >>> running_mean([2.0, 4.0, 6.0]).tolist()
        [0.0, 2.0, 3.0]
    """
    y = np.asarray(values, dtype=np.float64)
    if not y.size:
        return y
    before = np.concatenate(([0.0], np.cumsum(y)[:-1]))
    n = np.arange(y.size, dtype=np.float64)
    out = np.divide(before, n, out=np.full(y.size, float(start)), where=n > 0)
    return np.asarray(out, dtype=np.float64)


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float | None:
    """Area under the ROC curve: the probability that a random positive is scored
    above a random negative, ties counting one half (rank-based, ties averaged).

    Returns None when the labels hold only one class. Labels are positive when
    ``> 0.5``.

    Example:
        >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
        >>> roc_auc([0, 1], [0.3, 0.3])
        0.5
        >>> roc_auc([1, 1], [0.2, 0.9]) is None
        True
    """
    y = np.asarray(labels, dtype=np.float64) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels shape {y.shape} and scores shape {s.shape} must be equal, 1-D")
    if np.isnan(s).any():
        raise ValueError("scores must not contain NaN")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # Average rank (1-based) of each distinct score: ties share the mean rank.
    last = np.cumsum(counts)
    average_rank = last - (counts - 1) / 2.0
    ranks = average_rank[inverse.reshape(-1)]
    u = float(ranks[y].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def rolling_mean(values: ArrayLike, window: int) -> NDArray[np.float64]:
    """Trailing mean over the last ``window`` values (fewer at the start).

    Example:
        >>> rolling_mean([1.0, 2.0, 3.0, 4.0], 2).tolist()
        [1.0, 1.5, 2.5, 3.5]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    x = np.asarray(values, dtype=np.float64)
    c = np.concatenate(([0.0], np.cumsum(x)))
    idx = np.arange(1, x.size + 1)
    lo = np.maximum(idx - window, 0)
    return np.asarray((c[idx] - c[lo]) / (idx - lo), dtype=np.float64)
