"""Columnar input for :meth:`Engine.train_table` and :meth:`Engine.predict_table`.

A table is a pandas ``DataFrame``, a pyarrow ``Table`` or a mapping of column
name to array (numpy array, list, tuple). Columns are named like the fields of
:class:`~livelearn.interaction.InteractionData` -- ``action_type``,
``timestamp``, ``user_id`` (required) and ``label`` (optional) -- plus
``context.<key>`` for each context value. A missing value in a context column
(None, NaN, pandas ``NA``/``NaT``) leaves the key out of that row's context; a
missing label means no label. Each row is validated by ``InteractionData``
itself (the same rules and errors); a bad row is reported by its index.
pandas and pyarrow are imported by nobody here: a table is recognised by its
methods, so neither is needed unless the caller uses it.

Example:
    >>> import numpy as np
    >>> rows, errors = interactions_from_table({
    ...     "action_type": ["click", "view"], "timestamp": np.array([0.0, -1.0]),
    ...     "user_id": ["u1", "u2"], "context.page": ["home", None]})
    >>> rows[0].context["page"], rows[1], errors[0][0], errors[0][1].field
    ('home', None, 1, 'timestamp')
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from itertools import repeat
from types import MappingProxyType
from typing import Any, NamedTuple, TypeAlias, cast

import numpy as np
from numpy.typing import NDArray

from livelearn.interaction import (
    MAX_ACTION_TYPE_LEN,
    MAX_CONTEXT_KEY_LEN,
    MAX_CONTEXT_KEYS,
    MAX_CONTEXT_STR_LEN,
    MAX_TIMESTAMP,
    MAX_USER_ID_LEN,
    InteractionData,
    InvalidInteraction,
)
from livelearn.results import StepResult, TrainedRows

__all__ = [
    "CONTEXT_PREFIX",
    "FIELDS",
    "INVALID",
    "Table",
    "TableResult",
    "check_rows",
    "collect",
    "collect_chunks",
    "interactions_from_table",
    "spread_predictions",
    "table_columns",
]

logger = logging.getLogger("livelearn")

#: The columns named like ``InteractionData`` fields (the first three are required).
FIELDS = ("action_type", "timestamp", "user_id", "label")
#: Prefix of a context column: ``context.page`` holds ``context["page"]``.
CONTEXT_PREFIX = "context."
#: ``TableResult.status`` of a row refused by validation (it never reached the engine).
INVALID = "invalid"

#: A pandas DataFrame, a pyarrow Table, or a mapping of column name -> array.
Table: TypeAlias = Any


class TableResult(NamedTuple):
    """One entry per row of the table, in row order.

    ``step`` is the network's step count after the row's step (-1 unless
    trained), ``loss`` and ``prediction`` (made before the update; shape ``(n,)``
    for one output, else ``(n, n_outputs)``) are NaN where there is none,
    ``status`` holds :class:`~livelearn.StepStatus` values (``"trained"``,
    ``"skipped"``, ``"rejected"``, ``"failed"``) or ``"invalid"`` for a row
    refused by validation, and ``reason`` why a row was not trained (None if it was).

    Example:
        >>> from livelearn import Engine
        >>> with Engine(targets={"click": 1.0, "view": 0.0}) as engine:
        ...     result = engine.train_table({"action_type": ["click", "view"],
        ...         "timestamp": [0.0, 1.0], "user_id": [1, 2]}).result()
        >>> result.step.tolist(), result.status.tolist()
        ([1, 2], ['trained', 'trained'])
    """

    step: NDArray[np.int64]
    loss: NDArray[np.float64]
    prediction: NDArray[np.float32]
    status: NDArray[np.object_]
    reason: NDArray[np.object_]

    @property
    def trained(self) -> NDArray[np.bool_]:
        """Mask of the rows the network learned from."""
        return np.asarray(self.status == "trained", dtype=bool)

    @property
    def invalid_rows(self) -> NDArray[np.int64]:
        """Indices of the rows refused by validation."""
        return np.flatnonzero(self.status == INVALID).astype(np.int64)


def _is_pandas(table: object) -> bool:
    return type(table).__module__.split(".")[0] == "pandas" and hasattr(table, "columns")


def _is_arrow(table: object) -> bool:
    return type(table).__module__.split(".")[0] == "pyarrow" and hasattr(table, "column_names")


def _as_list(name: str, column: object) -> list[Any]:
    if isinstance(column, np.ndarray):
        if column.ndim != 1:
            raise InvalidInteraction(name, f"column must be 1-D, got shape {column.shape}")
        return column.tolist()  # type: ignore[no-any-return]
    if isinstance(column, list):
        return column
    if isinstance(column, (str, bytes)) or not isinstance(column, Sequence):
        tolist = getattr(column, "tolist", None) or getattr(column, "to_pylist", None)
        if callable(tolist):
            return list(tolist())
        raise InvalidInteraction(name, f"column must be an array, got {type(column).__name__}")
    return list(column)


def table_columns(table: Table) -> dict[str, list[Any]]:
    """The columns of ``table`` as Python lists, checked for names and lengths.

    Raises:
        InvalidInteraction: not a table, an unknown or missing column, or
            columns of different lengths (nothing is read then).

    Example:
        >>> table_columns({"action_type": ("a",), "timestamp": [1], "user_id": [2]})
        {'action_type': ['a'], 'timestamp': [1], 'user_id': [2]}
    """
    columns: dict[str, list[Any]]
    if _is_pandas(table):
        columns = {}
        for name in table.columns:
            series = table[name]
            if series.dtype.kind == "O" or series.hasnans:  # NA, NaT, NaN -> None
                series = series.astype(object).where(series.notna(), None)
            columns[str(name)] = series.tolist()
    elif _is_arrow(table):
        columns = {str(name): table.column(name).to_pylist() for name in table.column_names}
    elif isinstance(table, Mapping):
        columns = {}
        for name, column in table.items():
            if not isinstance(name, str):
                raise InvalidInteraction(repr(name), "column names must be str")
            columns[name] = _as_list(name, column)
    else:
        raise InvalidInteraction(
            "table",
            "expected a pandas DataFrame, a pyarrow Table or a mapping of column name -> "
            f"array, got {type(table).__name__}",
        )
    for name in columns:
        if name not in FIELDS and not (name.startswith(CONTEXT_PREFIX) and name[8:]):
            raise InvalidInteraction(
                name,
                f"unknown column; expected {', '.join(FIELDS)} or {CONTEXT_PREFIX}<key>",
            )
    for name in FIELDS[:3]:
        if name not in columns:
            raise InvalidInteraction(name, "is required (no such column)")
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        shown = ", ".join(f"{name}: {len(c)}" for name, c in columns.items())
        raise InvalidInteraction("table", f"columns differ in length ({shown})")
    return columns


def _missing(value: object) -> bool:
    if value is None:
        return True
    if type(value) is float:
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def interactions_from_table(
    table: Table,
) -> tuple[list[InteractionData | None], list[tuple[int, InvalidInteraction]]]:
    """One ``InteractionData`` per row (None where the row is invalid) and the
    ``(row index, error)`` of each invalid row.

    Raises:
        InvalidInteraction: the table as a whole is unusable (see :func:`table_columns`).
    """
    columns = table_columns(table)
    n = len(columns["action_type"])
    keys = [name[8:] for name in columns if name.startswith(CONTEXT_PREFIX)]
    contexts: Any = (
        zip(*(columns[CONTEXT_PREFIX + k] for k in keys), strict=True) if keys else repeat(None, n)
    )
    labels = columns.get("label") or repeat(None, n)
    rows: list[InteractionData | None] = []
    errors: list[tuple[int, InvalidInteraction]] = []
    append = rows.append
    make = InteractionData
    fast = _fast_checks(columns, keys)
    if fast is not None:
        actions, ctx_ok = fast
        new = object.__new__
        put = object.__setattr__
        proxy = MappingProxyType
        isfinite = math.isfinite
        for action, when, user, label, values in zip(
            columns["action_type"],
            columns["timestamp"],
            columns["user_id"],
            labels,
            contexts,
            strict=False,
        ):
            # Rows whose every value the column checks judged valid are built
            # without InteractionData.__init__ (the same stored values); any
            # other row goes through it, below, for its exact error.
            if (
                action in actions
                and type(when) is float
                and 0.0 <= when < MAX_TIMESTAMP
                and (
                    type(user) is int
                    or (
                        type(user) is str
                        and user
                        and len(user) <= MAX_USER_ID_LEN
                        and user.isascii()
                    )
                )
                and (
                    label is None or (type(label) is float and (label != label or isfinite(label)))
                )
                and ctx_ok
            ):
                it = new(make)
                put(it, "action_type", action)
                put(it, "timestamp", when)
                put(it, "user_id", user)
                if values is None:
                    put(it, "context", None)
                else:
                    ctx = {
                        k: v for k, v in zip(keys, values, strict=True) if v is not None and v == v
                    }
                    put(it, "context", proxy(ctx) if ctx else None)
                put(it, "label", label if label == label else None)
                append(it)
            else:
                append(None)
        if all(it is not None for it in rows):
            return rows, errors
        slow = [i for i, it in enumerate(rows) if it is None]
        columns = {name: [col[i] for i in slow] for name, col in columns.items()}
        contexts = (
            zip(*(columns[CONTEXT_PREFIX + k] for k in keys), strict=True)
            if keys
            else repeat(None, len(slow))
        )
        labels = columns.get("label") or repeat(None, len(slow))
        indices: Any = iter(slow)
    else:
        indices = iter(range(n))
    for i, action, when, user, label, values in zip(
        indices,
        columns["action_type"],
        columns["timestamp"],
        columns["user_id"],
        labels,
        contexts,
        strict=False,  # equal lengths: table_columns checked them
    ):
        try:
            # v == v is False for NaN only: None and NaN mark a missing value.
            context = (
                {k: v for k, v in zip(keys, values, strict=True) if v is not None and v == v}
                or None
                if values is not None
                else None
            )
            if label is not None and not label == label:  # noqa: SIM201 -- NaN
                label = None
        except Exception:  # an odd value (an array...): InteractionData says what is wrong
            context = (
                None
                if values is None
                else {k: v for k, v in zip(keys, values, strict=True) if not _missing(v)} or None
            )
            if _missing(label):
                label = None
        made: InteractionData | None
        try:
            made = make(action, when, user, context, label)
        except InvalidInteraction as exc:
            made = None
            errors.append((i, exc))
        if fast is None:
            append(made)
        else:
            rows[i] = made
    return rows, errors


_PLAIN = frozenset({str, float, int, bool, type(None)})


def _fast_checks(columns: dict[str, list[Any]], keys: list[str]) -> tuple[set[str], bool] | None:
    """What the column checks judge valid without looking row by row: the
    action types (each distinct value once) and whether every context column
    holds only plain values that ``InteractionData`` accepts as they are
    (short ASCII str, finite or NaN float, int, bool, None). None: the table
    is not plain enough (every row goes through ``InteractionData``)."""
    try:
        distinct = set(columns["action_type"])
    except TypeError:  # an unhashable value
        return None
    actions = {
        a
        for a in distinct
        if type(a) is str
        and a
        and len(a) <= MAX_ACTION_TYPE_LEN
        and a.isascii()
        and not a.isspace()
    }
    if len(keys) > MAX_CONTEXT_KEYS:
        return None
    for key in keys:
        if len(key) > MAX_CONTEXT_KEY_LEN or not key.isascii():
            return None
    ctx_ok = True
    for key in keys:
        column = columns[CONTEXT_PREFIX + key]
        kinds = set(map(type, column))
        if not kinds <= _PLAIN:
            ctx_ok = False
            break
        if str in kinds:
            try:
                strings = {v for v in column if type(v) is str}
            except TypeError:
                return None
            if not all(len(v) <= MAX_CONTEXT_STR_LEN and v.isascii() for v in strings):
                ctx_ok = False
                break
        if float in kinds and any(type(v) is float and v in _INFINITIES for v in column):
            ctx_ok = False
            break
    return actions, ctx_ok


_INFINITIES = (math.inf, -math.inf)


def check_rows(errors: list[tuple[int, InvalidInteraction]], strict: bool, what: str) -> None:
    """Refuse the call (``strict``) or log the invalid rows (which are skipped).

    Raises:
        InvalidInteraction: ``strict`` and some row is invalid; its field reads
            ``"row <index>: <field>"``.
    """
    if not errors:
        return
    index, first = errors[0]
    if strict:
        raise InvalidInteraction(f"row {index}: {first.field}", first.reason)
    logger.warning(
        "%s: %d invalid row(s) skipped (first: row %d: %s)", what, len(errors), index, first
    )


def _when_all_done(futures: Sequence[Future[Any]], then: Callable[[], None]) -> None:
    """Call ``then`` once every Future is done: a callback on the first one not
    done yet, re-armed on the next (Futures mostly finish in order, one batch at
    a time, so this adds about one callback per batch)."""
    position = 0
    fired = False
    lock = threading.Lock()

    def check(_: object = None) -> None:
        nonlocal position, fired
        with lock:
            if fired:
                return
            while position < len(futures) and futures[position].done():
                position += 1
            waiting = futures[position] if position < len(futures) else None
            fired = waiting is None
        if waiting is None:
            then()
        else:
            waiting.add_done_callback(check)  # runs at once if it finished meanwhile

    check()


def collect(
    rows: list[InteractionData | None],
    errors: list[tuple[int, InvalidInteraction]],
    futures: Sequence[Future[Any]],
    n_outputs: int,
) -> Future[TableResult]:
    """A Future resolved with the :class:`TableResult` of ``rows`` once the
    step Futures of the valid rows (in order) are all done."""
    return _collected(futures, lambda: _result(rows, errors, futures, n_outputs))


def collect_chunks(
    rows: list[InteractionData | None],
    errors: list[tuple[int, InvalidInteraction]],
    futures: Sequence[Future[Any]],
    n_outputs: int,
) -> Future[TableResult]:
    """Like :func:`collect`, for the Futures of the table's chunks (consecutive
    valid rows, in order): each resolves with a ``TrainedRows`` (every row
    trained), a per-row result list, one ``StepResult`` for the whole chunk
    (skipped: dropped, forked) or an exception (failed)."""
    return _collected(futures, lambda: _chunk_result(rows, errors, futures, n_outputs))


def _collected(
    futures: Sequence[Future[Any]], make: Callable[[], TableResult]
) -> Future[TableResult]:
    """A running Future set to ``make()`` once every one of ``futures`` is done."""
    out: Future[TableResult] = Future()
    out.set_running_or_notify_cancel()

    def build() -> None:
        try:
            out.set_result(make())
        except BaseException as exc:  # never leave the caller waiting
            out.set_exception(exc)

    if futures:
        _when_all_done(futures, build)
    else:
        build()
    return out


def _empty(n: int, n_outputs: int) -> TableResult:
    shape = (n,) if n_outputs == 1 else (n, n_outputs)
    return TableResult(
        np.full(n, -1, dtype=np.int64),
        np.full(n, np.nan, dtype=np.float64),
        np.full(shape, np.nan, dtype=np.float32),
        np.empty(n, dtype=object),
        np.full(n, None, dtype=object),
    )


def _chunk_result(
    rows: list[InteractionData | None],
    errors: list[tuple[int, InvalidInteraction]],
    futures: Sequence[Future[Any]],
    n_outputs: int,
) -> TableResult:
    n = len(rows)
    out = _empty(n, n_outputs)
    step, loss, prediction, status, reason = out
    for i, invalid in errors:
        status[i] = INVALID
        reason[i] = str(invalid)
    valid = (
        np.flatnonzero(np.fromiter((it is not None for it in rows), dtype=bool, count=n))
        if errors
        else np.arange(n)
    )
    start = 0
    for future in futures:
        size = cast("Any", future).rows
        at = valid[start : start + size]
        start += size
        exc = future.exception()
        if exc is not None:
            status[at] = "rejected" if isinstance(exc, InvalidInteraction) else "failed"
            reason[at] = str(exc)
            continue
        outcome = future.result()
        if isinstance(outcome, TrainedRows):
            step[at] = outcome._steps
            loss[at] = outcome._losses
            prediction[at] = outcome._preds
            status[at] = "trained"
        elif isinstance(outcome, StepResult):  # the whole chunk (skipped)
            status[at] = outcome.status.value
            reason[at] = outcome.reason
        else:
            for i, r in zip(at.tolist(), outcome, strict=True):
                _put(out, i, r)
    return out


def _put(out: TableResult, i: int, r: object) -> None:
    if isinstance(r, BaseException):
        out.status[i] = "rejected" if isinstance(r, InvalidInteraction) else "failed"
        out.reason[i] = str(r)
        return
    assert isinstance(r, StepResult)
    out.status[i] = r.status.value
    out.reason[i] = r.reason
    if r.step is not None:
        out.step[i] = r.step
    if r.loss is not None:
        out.loss[i] = r.loss
    if r.prediction is not None:
        out.prediction[i] = r.prediction


def _result(
    rows: list[InteractionData | None],
    errors: list[tuple[int, InvalidInteraction]],
    futures: Sequence[Future[Any]],
    n_outputs: int,
) -> TableResult:
    n = len(rows)
    step = np.full(n, -1, dtype=np.int64)
    loss = np.full(n, np.nan, dtype=np.float64)
    shape = (n,) if n_outputs == 1 else (n, n_outputs)
    prediction = np.full(shape, np.nan, dtype=np.float32)
    status = np.empty(n, dtype=object)
    reason = np.full(n, None, dtype=object)
    for i, invalid in errors:
        status[i] = INVALID
        reason[i] = str(invalid)
    valid = [i for i, it in enumerate(rows) if it is not None] if errors else range(n)
    for i, future in zip(valid, futures, strict=True):
        exc = future.exception()
        if exc is not None:
            status[i] = "rejected" if isinstance(exc, InvalidInteraction) else "failed"
            reason[i] = str(exc)
            continue
        r = future.result()
        status[i] = r.status.value
        reason[i] = r.reason
        if r.step is not None:
            step[i] = r.step
        if r.loss is not None:
            loss[i] = r.loss
        if r.prediction is not None:
            prediction[i] = r.prediction
    return TableResult(step, loss, prediction, status, reason)


def spread_predictions(
    rows: list[InteractionData | None], predictions: NDArray[np.float32]
) -> NDArray[np.float32]:
    """``predictions`` of the valid rows placed at their row indices, NaN rows between."""
    if all(it is not None for it in rows):
        return predictions
    out = np.full((len(rows), predictions.shape[1]), np.nan, dtype=np.float32)
    out[[i for i, it in enumerate(rows) if it is not None]] = predictions
    return out
