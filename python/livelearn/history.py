"""The bounded history of trained examples, kept in preallocated ring buffers.

Writing costs a few bulk numpy copies per batch; :class:`TrainingExample`
objects are only built when someone reads the history.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livelearn.results import SparseFeatures, TrainingExample

__all__ = ["Csr", "History"]

#: Sparse rows: ``(indptr int64, indices int32, values float32)``.
Csr = tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.float32]]


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
        # Sparse rows, in bulk: one CSR chunk (indptr from 0, indices, values)
        # per appended batch, oldest first; whole chunks are dropped once the
        # newer ones hold ``capacity`` rows (so at most one batch more is kept).
        # A chunk is ``[rows, csr]``, or ``[rows, (make, start)]`` for rows that
        # ``make()`` builds when the history is first read (rows ``start:``).
        self._chunks: deque[list[Any]] = deque()
        self._chunk_rows = 0  # rows held by _chunks
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
        sparse_rows: Csr | Callable[[], Csr] | None,
        targets: NDArray[np.float32],
        predictions: NDArray[np.float32],
        losses: NDArray[np.floating[Any]],
        timestamps: NDArray[np.float64],
    ) -> None:
        """Add ``len(steps)`` examples; only the newest ``capacity`` are kept.

        ``sparse_rows`` (sparse histories): the rows' CSR, or a callable that
        builds it, called only if the history is read (the arrays it uses must
        not change afterwards)."""
        n, cap = len(steps), self.capacity
        if n == 0 or cap == 0:
            return
        if n > cap:  # only the tail survives
            start = n - cap
            steps, targets, predictions = steps[start:], targets[start:], predictions[start:]
            losses, timestamps = losses[start:], timestamps[start:]
            if features is not None:
                features = features[start:]
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
            self._append_chunk(sparse_rows, len(steps), n)
        self._next = (self._next + n) % cap
        self._size = min(cap, self._size + n)

    def _append_chunk(self, rows: Csr | Callable[[], Csr], total: int, kept: int) -> None:
        """Keep the last ``kept`` of the ``total`` rows of ``rows`` (copied now,
        or built later when ``rows`` is a callable)."""
        start = total - kept
        if callable(rows):
            self._chunks.append([kept, (rows, start)])
        else:
            self._chunks.append([kept, _tail_copy(rows, start)])
        self._chunk_rows += kept
        chunks = self._chunks
        while self._chunk_rows - chunks[0][0] >= self.capacity:
            self._chunk_rows -= chunks.popleft()[0]

    def _sparse_csr(self) -> Csr:
        """The kept examples' sparse rows as one CSR, oldest first."""
        size = self._size
        if not size:
            return np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
        for chunk in self._chunks:
            if not isinstance(chunk[1][0], np.ndarray):  # built on first read
                make, start = chunk[1]
                chunk[1] = _tail_copy(make(), start)
        chunks = [c[1] for c in self._chunks]
        lengths = np.concatenate([np.diff(c[0]) for c in chunks])
        skip = len(lengths) - size  # older rows of the first chunk, no longer kept
        first = int(lengths[:skip].sum())
        indptr = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(lengths[skip:], out=indptr[1:])
        indices = np.concatenate([c[1] for c in chunks])[first:]
        values = np.concatenate([c[2] for c in chunks])[first:]
        return indptr, indices, values

    def _order(self) -> NDArray[np.int64]:
        start = (self._next - self._size) % self.capacity if self.capacity else 0
        return (start + np.arange(self._size)) % max(self.capacity, 1)

    def examples(self) -> list[TrainingExample]:
        """Materialise every kept example, oldest first (copies: safe to keep)."""
        order = self._order()
        if self.sparse:
            indptr, indices, values = self._sparse_csr()
            bounds = indptr.tolist()
        out: list[TrainingExample] = []
        for j, slot in enumerate(order.tolist()):
            features: NDArray[np.float32] | SparseFeatures
            if self.sparse:
                lo, hi = bounds[j], bounds[j + 1]
                features = SparseFeatures(
                    indices[lo:hi].copy(), values[lo:hi].copy(), self.n_inputs
                )
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
            out["indptr"], out["indices"], out["values"] = self._sparse_csr()
        else:
            out["features"] = self._features[order]
        return out

    def restore(self, arrays: dict[str, NDArray[np.generic]]) -> None:
        """Replace the content with :meth:`arrays` output (validated by the caller)."""
        steps = np.asarray(arrays["steps"], dtype=np.int64)
        self._next = 0
        self._size = 0
        self._chunks.clear()
        self._chunk_rows = 0
        rows: Csr | None = None
        features = None
        if self.sparse:
            rows = (
                np.asarray(arrays["indptr"], dtype=np.int64),
                np.asarray(arrays["indices"], dtype=np.int32),
                np.asarray(arrays["values"], dtype=np.float32),
            )
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


def _tail_copy(rows: Csr, start: int) -> Csr:
    """Copies of the CSR rows ``start:`` of ``rows``, indptr from 0."""
    indptr, indices, values = rows
    lo, hi = int(indptr[start]), int(indptr[-1])
    return (
        np.asarray(indptr[start:], dtype=np.int64) - lo,
        np.array(indices[lo:hi], dtype=np.int32),
        np.array(values[lo:hi], dtype=np.float32),
    )
