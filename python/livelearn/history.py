"""The bounded history of trained examples, kept in preallocated ring buffers.

Writing costs a few bulk numpy copies per batch; :class:`TrainingExample`
objects are only built when someone reads the history.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livelearn.results import SparseFeatures, TrainingExample

__all__ = ["History"]


class History:
    """The newest ``capacity`` trained examples, oldest first.

    Dense features live in a ``(capacity, n_inputs)`` float32 ring; sparse ones
    (hashed encoders, millions of inputs) as a bounded deque of index/value
    pairs, never densified.
    """

    def __init__(self, capacity: int, n_inputs: int, n_outputs: int, sparse: bool) -> None:
        if capacity < 0:
            raise ValueError(f"history_size: must be >= 0, got {capacity}")
        self.capacity = capacity
        self.n_inputs = n_inputs
        self.sparse = sparse
        self._features = np.zeros((0 if sparse else capacity, n_inputs), dtype=np.float32)
        self._sparse: deque[tuple[NDArray[np.int32], NDArray[np.float32]]] = deque(
            maxlen=capacity or 1
        )
        self._targets = np.zeros((capacity, n_outputs), dtype=np.float32)
        self._predictions = np.zeros((capacity, n_outputs), dtype=np.float32)
        # float64 like the network's losses: a finite loss beyond FLT_MAX is kept.
        self._losses = np.zeros(capacity, dtype=np.float64)
        self._timestamps = np.zeros(capacity, dtype=np.float64)
        self._steps = np.zeros(capacity, dtype=np.int64)
        self._next = 0  # slot the next example goes to
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append_batch(
        self,
        steps: NDArray[np.int64],
        features: NDArray[np.float32] | None,
        sparse_rows: Sequence[tuple[NDArray[np.int32], NDArray[np.float32]]] | None,
        targets: NDArray[np.float32],
        predictions: NDArray[np.float32],
        losses: NDArray[np.floating[Any]],
        timestamps: NDArray[np.float64],
    ) -> None:
        """Add ``len(steps)`` examples; only the newest ``capacity`` are kept."""
        n, cap = len(steps), self.capacity
        if n == 0 or cap == 0:
            return
        if n > cap:  # only the tail survives
            start = n - cap
            steps, targets, predictions = steps[start:], targets[start:], predictions[start:]
            losses, timestamps = losses[start:], timestamps[start:]
            if features is not None:
                features = features[start:]
            if sparse_rows is not None:
                sparse_rows = sparse_rows[start:]
            n = cap
        first = min(n, cap - self._next)  # rows before wrapping around
        for lo, hi, dst in ((0, first, self._next), (first, n, 0)):
            if hi <= lo:
                continue
            rows = slice(dst, dst + hi - lo)
            self._steps[rows] = steps[lo:hi]
            self._targets[rows] = targets[lo:hi]
            self._predictions[rows] = predictions[lo:hi]
            self._losses[rows] = losses[lo:hi]
            self._timestamps[rows] = timestamps[lo:hi]
            if features is not None:
                self._features[rows] = features[lo:hi]
        if sparse_rows is not None:
            self._sparse.extend(sparse_rows)
        self._next = (self._next + n) % cap
        self._size = min(cap, self._size + n)

    def _order(self) -> NDArray[np.int64]:
        start = (self._next - self._size) % self.capacity if self.capacity else 0
        return (start + np.arange(self._size)) % max(self.capacity, 1)

    def examples(self) -> list[TrainingExample]:
        """Materialise every kept example, oldest first (copies: safe to keep)."""
        order = self._order()
        sparse = list(self._sparse)[-self._size :] if self.sparse and self._size else []
        out: list[TrainingExample] = []
        for j, slot in enumerate(order.tolist()):
            features: NDArray[np.float32] | SparseFeatures
            if self.sparse:
                idx, val = sparse[j]
                features = SparseFeatures(idx, val, self.n_inputs)
            else:
                features = self._features[slot].copy()
            out.append(
                TrainingExample(
                    step=int(self._steps[slot]),
                    features=features,
                    target=self._targets[slot].copy(),
                    loss=float(self._losses[slot]),
                    prediction=self._predictions[slot].copy(),
                    timestamp=float(self._timestamps[slot]),
                )
            )
        return out

    def arrays(self) -> dict[str, NDArray[np.generic]]:
        """The kept examples as arrays in order, oldest first (for checkpoints)."""
        order = self._order()
        out: dict[str, NDArray[np.generic]] = {
            "steps": self._steps[order],
            "targets": self._targets[order],
            "predictions": self._predictions[order],
            "losses": self._losses[order],
            "timestamps": self._timestamps[order],
        }
        if self.sparse:
            rows = list(self._sparse)[-self._size :] if self._size else []
            lengths = np.array([len(i) for i, _ in rows], dtype=np.int64)
            out["indptr"] = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
            out["indices"] = (
                np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, np.int32)
            ).astype(np.int32)
            out["values"] = (
                np.concatenate([v for _, v in rows]) if rows else np.zeros(0, np.float32)
            ).astype(np.float32)
        else:
            out["features"] = self._features[order]
        return out

    def restore(self, arrays: dict[str, NDArray[np.generic]]) -> None:
        """Replace the content with :meth:`arrays` output (validated by the caller)."""
        steps = np.asarray(arrays["steps"], dtype=np.int64)
        n = len(steps)
        self._next = 0
        self._size = 0
        self._sparse.clear()
        rows = None
        features = None
        if self.sparse:
            indptr = np.asarray(arrays["indptr"], dtype=np.int64)
            idx = np.asarray(arrays["indices"], dtype=np.int32)
            val = np.asarray(arrays["values"], dtype=np.float32)
            rows = [
                (idx[indptr[r] : indptr[r + 1]].copy(), val[indptr[r] : indptr[r + 1]].copy())
                for r in range(n)
            ]
        else:
            features = np.asarray(arrays["features"], dtype=np.float32)
        self.append_batch(
            steps,
            features,
            rows,
            np.asarray(arrays["targets"], dtype=np.float32),
            np.asarray(arrays["predictions"], dtype=np.float32),
            # float32 in checkpoints written before losses were float64
            np.asarray(arrays["losses"], dtype=np.float64),
            np.asarray(arrays["timestamps"], dtype=np.float64),
        )
