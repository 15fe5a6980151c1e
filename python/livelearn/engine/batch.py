"""A batch of queued interactions turned into network input.

:func:`prepare` encodes the features and computes the targets of a batch
(pure Python: no engine lock is held, so with ``workers > 1`` it overlaps the
native training of another batch), and keeps, per interaction, the error
that stops it from reaching the network. The rows that do reach it are
``PreparedBatch.rows``; everything after the native call works on those rows
with one mask (the rows the network accepted).
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

import numpy as np
from numpy.typing import NDArray

from livelearn.features import Encoder
from livelearn.interaction import InteractionData, InvalidInteraction
from livelearn.targets import TargetMapper

__all__ = ["Features", "PreparedBatch", "prepare", "sparse_rows"]

# Dense (n, n_inputs) float32, or CSR (indptr, indices, values) for sparse encoders.
Features = NDArray[np.float32] | tuple[Any, Any, Any]


class PreparedBatch(NamedTuple):
    """Network input for the valid part of a batch of ``len(items)`` interactions."""

    items: list[object]
    errors: list[BaseException | None]
    """Per item: None if it reaches the network, else why not."""
    rows: list[int]
    """Batch positions of the rows of ``features``/``targets``, in order."""
    features: Features
    targets: NDArray[np.float32]
    timestamps: NDArray[np.float64]


def prepare(items: list[object], encoder: Encoder, targets: TargetMapper) -> PreparedBatch:
    """Features and targets of ``items``; invalid ones get an error instead."""
    n = len(items)
    features, errors = _encode(items, encoder)
    encoded = [i for i in range(n) if errors[i] is None] if any(errors) else list(range(n))
    # Targets of the encodable interactions; rows without one are dropped.
    Y, target_errors = targets.targets_many(
        cast("list[InteractionData]", items if len(encoded) == n else [items[i] for i in encoded])
    )
    rows = encoded
    if any(target_errors):
        keep = [j for j, e in enumerate(target_errors) if e is None]
        for j, e in enumerate(target_errors):
            if e is not None:
                errors[encoded[j]] = e
        rows = [encoded[j] for j in keep]
        Y = Y[keep]
        features = _select_rows(features, keep)
    row_items = items if len(rows) == n else [items[i] for i in rows]
    timestamps = np.array([it.timestamp for it in row_items], dtype=np.float64)  # type: ignore[attr-defined]
    return PreparedBatch(items, errors, rows, features, Y, timestamps)


def _encode(items: list[object], encoder: Encoder) -> tuple[Features, list[BaseException | None]]:
    """Features of the valid items and, per item, the error that made it invalid."""
    errors: list[BaseException | None] = [None] * len(items)
    if set(map(type, items)) != {InteractionData}:
        for i, it in enumerate(items):
            if not isinstance(it, InteractionData):
                errors[i] = InvalidInteraction(
                    "interaction", f"expected InteractionData, got {type(it).__name__}"
                )
    try:
        return _encode_valid(_valid_items(items, errors), encoder), errors
    except Exception:
        pass
    # Some interaction broke the encoder: find which, one by one.
    for i, it in enumerate(items):
        if errors[i] is None:
            try:
                _encode_valid([cast("InteractionData", it)], encoder)
            except InvalidInteraction as exc:
                errors[i] = exc
            except Exception as exc:
                errors[i] = InvalidInteraction(
                    "features", f"the encoder failed: {type(exc).__name__}: {exc}"
                )
    return _encode_valid(_valid_items(items, errors), encoder), errors


def _encode_valid(items: list[InteractionData], encoder: Encoder) -> Features:
    if encoder.sparse:
        return encoder.encode_sparse_many(items)
    return encoder.encode_many(items)


def _valid_items(items: list[object], errors: list[BaseException | None]) -> list[InteractionData]:
    """The items whose error is None (each checked to be an InteractionData)."""
    return cast(
        "list[InteractionData]",
        [it for it, e in zip(items, errors, strict=True) if e is None],
    )


def _select_rows(features: Features, keep: list[int]) -> Features:
    if not isinstance(features, tuple):
        return features[keep]
    indptr, indices, values = features
    parts_i = [indices[indptr[r] : indptr[r + 1]] for r in keep]
    parts_v = [values[indptr[r] : indptr[r + 1]] for r in keep]
    lengths = np.array([len(p) for p in parts_i], dtype=np.int64)
    new_indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    if parts_i:
        return new_indptr, np.concatenate(parts_i), np.concatenate(parts_v)
    return new_indptr, np.zeros(0, np.int32), np.zeros(0, np.float32)


def sparse_rows(
    features: tuple[Any, Any, Any], mask: NDArray[np.bool_]
) -> list[tuple[NDArray[np.int32], NDArray[np.float32]]]:
    """Copies of the CSR rows selected by ``mask`` (for the history)."""
    indptr, indices, values = features
    return [
        (indices[indptr[r] : indptr[r + 1]].copy(), values[indptr[r] : indptr[r + 1]].copy())
        for r in np.flatnonzero(mask).tolist()
    ]
