"""A batch of queued interactions turned into network input.

:func:`prepare` encodes the features and computes the targets of a batch
(pure Python: no engine lock is held, so with ``workers > 1`` it overlaps the
native training of another batch), and keeps, per interaction, the error
that stops it from reaching the network. The rows that do reach it are
``PreparedBatch.rows``; everything after the native call works on those rows
with one mask (the rows the network accepted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np
from numpy.typing import NDArray

from livelearn.features import Encoder, HashedFeatureEncoder
from livelearn.history import Csr
from livelearn.interaction import InteractionData, InvalidInteraction
from livelearn.targets import TargetMapper

__all__ = ["Features", "FieldFeatures", "PreparedBatch", "history_rows", "prepare", "sparse_rows"]


class FieldFeatures(NamedTuple):
    """A batch for the field-aware model (see ``HashedFeatureEncoder.encode_fields_many``)."""

    indptr: NDArray[np.int64]
    indices: NDArray[np.int32]
    values: NDArray[np.float32]
    fields: NDArray[np.int32]
    dense: NDArray[np.float32]
    n_dense: int
    n_inputs: int


# Dense (n, n_inputs) float32, CSR (indptr, indices, values) for sparse encoders,
# or FieldFeatures for the field-aware model.
Features = NDArray[np.float32] | tuple[Any, Any, Any] | FieldFeatures


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
    weights: NDArray[np.float32] | None = None
    """Per-row sample weights (None: every row weighs 1)."""


def prepare(
    items: list[object], encoder: Encoder, targets: TargetMapper, fields: bool = False
) -> PreparedBatch:
    """Features and targets of ``items``; invalid ones get an error instead.
    ``fields``: encode for the field-aware model (a ``HashedFeatureEncoder``)."""
    n = len(items)
    features, errors = _encode(items, encoder, fields)
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


def _encode(
    items: list[object], encoder: Encoder, fields: bool
) -> tuple[Features, list[BaseException | None]]:
    """Features of the valid items and, per item, the error that made it invalid."""
    errors: list[BaseException | None] = [None] * len(items)
    if set(map(type, items)) != {InteractionData}:
        for i, it in enumerate(items):
            if not isinstance(it, InteractionData):
                errors[i] = InvalidInteraction(
                    "interaction", f"expected InteractionData, got {type(it).__name__}"
                )
    try:
        return _encode_valid(_valid_items(items, errors), encoder, fields), errors
    except Exception:
        pass
    # Some interaction broke the encoder: find which, one by one.
    for i, it in enumerate(items):
        if errors[i] is None:
            try:
                _encode_valid([cast("InteractionData", it)], encoder, fields)
            except InvalidInteraction as exc:
                errors[i] = exc
            except Exception as exc:
                errors[i] = InvalidInteraction(
                    "features", f"the encoder failed: {type(exc).__name__}: {exc}"
                )
    return _encode_valid(_valid_items(items, errors), encoder, fields), errors


def _encode_valid(items: list[InteractionData], encoder: Encoder, fields: bool) -> Features:
    if fields:
        hashed = cast("HashedFeatureEncoder", encoder)
        indptr, indices, values, field_ids, dense = hashed.encode_fields_many(items)
        return FieldFeatures(
            indptr, indices, values, field_ids, dense, hashed.n_dense, hashed.n_inputs
        )
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
    if isinstance(features, FieldFeatures):
        indptr, indices, values = _select_csr(
            features.indptr, features.indices, features.values, keep
        )
        _, fields, _ = _select_csr(features.indptr, features.fields, features.values, keep)
        return features._replace(
            indptr=indptr, indices=indices, values=values, fields=fields, dense=features.dense[keep]
        )
    if not isinstance(features, tuple):
        return features[keep]
    return _select_csr(*features, keep)


def _select_csr(indptr: Any, indices: Any, values: Any, keep: list[int]) -> tuple[Any, Any, Any]:
    parts_i = [indices[indptr[r] : indptr[r + 1]] for r in keep]
    parts_v = [values[indptr[r] : indptr[r + 1]] for r in keep]
    lengths = np.array([len(p) for p in parts_i], dtype=np.int64)
    new_indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    if parts_i:
        return new_indptr, np.concatenate(parts_i), np.concatenate(parts_v)
    return new_indptr, np.zeros(0, np.int32), np.zeros(0, np.float32)


Selector = slice | NDArray[np.bool_]
"""Rows of a batch: a boolean mask, or ``slice(None)`` for all of them."""


def sparse_rows(features: tuple[Any, Any, Any], mask: Selector) -> Csr:
    """The CSR rows selected by ``mask``, in bulk (the history copies them)."""
    indptr, indices, values = features
    if isinstance(mask, slice):
        return indptr, indices, values
    lengths = np.diff(indptr)
    entries = np.repeat(mask, lengths)
    new_indptr = np.zeros(int(np.count_nonzero(mask)) + 1, dtype=np.int64)
    np.cumsum(lengths[mask], out=new_indptr[1:])
    return new_indptr, indices[entries], values[entries]


def history_rows(
    features: Features, mask: Selector
) -> tuple[NDArray[np.float32] | None, Csr | Callable[[], Csr] | None]:
    """The rows selected by ``mask`` as the history stores them: dense rows, or
    CSR rows in the encoder's column layout (a field batch is mapped back to it:
    dense slots first, then ``n_dense + bucket``, collisions summed)."""
    if isinstance(features, FieldFeatures):
        # Mapped back only if someone reads the history (a per-batch np.unique).
        return None, lambda: sparse_rows(_encoder_layout(features), mask)
    if isinstance(features, tuple):
        return None, sparse_rows(features, mask)
    return features[mask], None


def _encoder_layout(f: FieldFeatures) -> tuple[Any, Any, Any]:
    """A field batch as the encoder's CSR (``encode_sparse_many``): dense slots at
    ``0..n_dense-1``, then ``n_dense + bucket``; one vectorised pass, duplicates summed."""
    n = len(f.indptr) - 1
    width = f.n_inputs
    rows = np.concatenate(
        (
            np.repeat(np.arange(n, dtype=np.int64), f.n_dense),
            np.repeat(np.arange(n), np.diff(f.indptr)),
        )
    )
    cols = np.concatenate(
        (np.tile(np.arange(f.n_dense, dtype=np.int64), n), f.indices.astype(np.int64) + f.n_dense)
    )
    vals = np.concatenate((f.dense.reshape(-1).astype(np.float64), f.values))
    unique, inverse = np.unique(rows * width + cols, return_inverse=True)
    sums = np.bincount(inverse.reshape(-1), weights=vals)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(unique // width, minlength=n), out=indptr[1:])
    return indptr, (unique % width).astype(np.int32), sums.astype(np.float32)
