"""Read interaction logs (CSV, JSON Lines, Parquet) into :class:`InteractionData`.

Every row becomes one interaction or one :class:`RowError` (with its line number
and what is wrong); a bad row never stops the reading unless ``strict=True``.
Parquet needs the optional ``pyarrow`` (``pip install 'livelearn[parquet]'``).
CSV and JSON Lines files may be gzip-compressed (``.csv.gz``, ``.jsonl.gz``).

Timestamps are POSIX seconds (a number, or a string holding one) or ISO 8601
strings with a timezone (``2024-05-01T12:00:00Z``, ``...+02:00``); a naive time is
an error, never silently taken as local time.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("action_type,timestamp,user_id,label,page\\n"
    ...                 "click,2024-05-01T12:00:00Z,u1,1,home\\n"
    ...                 "view,not-a-time,u2,0,home\\n")
    >>> log = read_log(path, Columns(context=("page",)))
    >>> len(log.interactions), log.errors[0].line
    (1, 3)
    >>> log.interactions[0].context["page"], log.interactions[0].timestamp
    ('home', 1714564800.0)
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, NamedTuple

from livelearn.interaction import InteractionData, InvalidInteraction

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "FORMATS",
    "ColumnError",
    "Columns",
    "LogChunk",
    "LogError",
    "LogRows",
    "RowError",
    "detect_format",
    "parse_time",
    "read_log",
    "read_log_chunks",
]

#: Rows per :class:`LogChunk` of :func:`read_log_chunks`.
DEFAULT_CHUNK_ROWS = 65_536

#: The formats :func:`read_log` understands.
FORMATS = ("csv", "jsonl", "parquet")


class LogError(ValueError):
    """The file as a whole cannot be read (unknown format, not UTF-8, missing pyarrow)."""


class ColumnError(LogError):
    """A column named in :class:`Columns` is not in the file."""


@dataclass(frozen=True)
class Columns:
    """Which column holds which interaction field.

    ``context`` lists the columns copied into ``InteractionData.context`` (empty
    values are left out); ``None`` means every column not used for another field.
    ``label`` may be missing from the file unless ``label_required``: targets then
    come from the engine's target mapping. ``use_label=False`` ignores labels
    (for predictions).

    Example:
        >>> Columns(user="visitor", context=("page", "device")).user
        'visitor'
    """

    action: str = "action_type"
    time: str = "timestamp"
    user: str = "user_id"
    label: str = "label"
    context: tuple[str, ...] | None = ()
    label_required: bool = False
    use_label: bool = True

    def required(self) -> list[str]:
        """The columns every row must have."""
        names = [self.action, self.time, self.user]
        if self.label_required:
            names.append(self.label)
        if self.context is not None:
            names.extend(self.context)
        return names


class RowError(NamedTuple):
    """A row that was skipped: its line (1-based, header = line 1 for CSV; the row
    number for Parquet) and the reason."""

    line: int
    message: str


class LogRows(NamedTuple):
    """What :func:`read_log` found: the interactions with their line numbers, the
    skipped rows, the number of rows read, the format, and whether the file has
    the label column (known up front for CSV and Parquet; JSON Lines: any row)."""

    interactions: list[InteractionData]
    lines: list[int]
    errors: list[RowError]
    rows: int
    format: str
    has_label: bool


def detect_format(path: str | os.PathLike[str]) -> str:
    """``"csv"``, ``"jsonl"`` or ``"parquet"`` from the file name.

    Example:
        >>> detect_format("events.jsonl.gz"), detect_format("events.PARQUET")
        ('jsonl', 'parquet')
    """
    name = os.fspath(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffixes, fmt in (
        ((".csv", ".tsv"), "csv"),
        ((".jsonl", ".ndjson", ".json"), "jsonl"),
        ((".parquet", ".pq"), "parquet"),
    ):
        if name.endswith(suffixes):
            return fmt
    raise LogError(
        f"cannot tell the format of {os.fspath(path)!r} from its name; "
        f"name it .csv, .jsonl or .parquet, or pass --format"
    )


def parse_time(value: object) -> float | datetime:
    """A timestamp cell as POSIX seconds or an aware ``datetime``.

    Raises:
        ValueError: empty, not a number or ISO 8601 text, or without timezone.

    Example:
        >>> parse_time("1714564800.5"), parse_time(12)
        (1714564800.5, 12.0)
        >>> parse_time("2024-05-01T14:00:00+02:00").isoformat()
        '2024-05-01T14:00:00+02:00'
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"must be POSIX seconds or ISO 8601 text, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{value.isoformat()} has no timezone")
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be POSIX seconds or ISO 8601 text, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError("is empty")
    try:
        return float(text)
    except ValueError:
        pass
    iso = text[:-1] + "+00:00" if text[-1] in "Zz" else text
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"{_short(text)} is neither POSIX seconds nor an ISO 8601 time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{_short(text)} has no timezone (add 'Z' or an offset like '+02:00')")
    return parsed


def _short(text: object, limit: int = 60) -> str:
    s = repr(text)
    return s if len(s) <= limit else s[: limit - 4] + "...'"


def _label(value: object) -> Any:
    """A label cell: None when empty, else a number (or a list of numbers, JSON)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "false"):
            return 1.0 if text == "true" else 0.0
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"label: not a number: {_short(value)}") from None
        if not math.isfinite(number):
            raise ValueError(f"label: must be finite, got {_short(value)}")
        return number
    raise ValueError(f"label: must be a number, got {type(value).__name__}")


def _user(value: object) -> str | int:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if value is None:
        raise ValueError("user_id: is missing")
    raise ValueError(f"user_id: must be text or an integer, got {type(value).__name__}")


def _action(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None:
        raise ValueError("action_type: is missing")
    raise ValueError(f"action_type: must be text, got {type(value).__name__}")


def _open_text(path: str) -> IO[str]:
    # The caller closes the returned wrapper (which closes the raw file).
    if path.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _csv_rows(path: str, columns: Columns) -> tuple[Iterator[tuple[int, dict[str, Any]]], bool]:
    handle = _open_text(path)
    delimiter = "\t" if path.lower().removesuffix(".gz").endswith(".tsv") else ","
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        handle.close()
        raise LogError(f"{path}: the file is empty (no header line)") from None
    _check_columns(path, header, columns)

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        with handle:
            while True:
                try:
                    record = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    if "field limit" not in str(exc):
                        raise
                    # One oversized field: the reader resumes at the next line.
                    yield reader.line_num, {"__error__": str(exc)}
                    continue
                if not record:
                    continue
                if len(record) != len(header):
                    yield (
                        reader.line_num,
                        {"__error__": f"expected {len(header)} fields, got {len(record)}"},
                    )
                    continue
                yield reader.line_num, dict(zip(header, record, strict=True))

    return rows(), columns.label in header


def _jsonl_rows(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                yield number, {"__error__": f"invalid JSON: {exc}"}
                continue
            if not isinstance(row, dict):
                yield number, {"__error__": f"expected a JSON object, got {type(row).__name__}"}
                continue
            yield number, row


def _parquet_rows(path: str, columns: Columns) -> tuple[Iterator[tuple[int, dict[str, Any]]], bool]:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise LogError(
            "reading Parquet needs pyarrow: pip install 'livelearn[parquet]' (or pyarrow)"
        ) from None
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError types
        raise LogError(f"{path}: cannot read Parquet: {exc}") from exc
    names = list(parquet.schema_arrow.names)
    _check_columns(path, names, columns)

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        number = 0
        try:
            batches = parquet.iter_batches(batch_size=65536)  # streamed, never all in memory
            for batch in batches:
                for row in batch.to_pylist():
                    number += 1
                    yield number, row
        except Exception as exc:
            raise LogError(f"{path}: cannot read Parquet: {exc}") from exc

    return rows(), columns.label in names


def _check_columns(path: str, header: list[str], columns: Columns) -> None:
    missing = [c for c in columns.required() if c not in header]
    if missing:
        shown = ", ".join(header[:20]) + (", ..." if len(header) > 20 else "")
        raise ColumnError(
            f"{path}: no column {', '.join(repr(m) for m in missing)}; the file has: {shown}"
        )


def read_log(
    path: str | os.PathLike[str],
    columns: Columns | None = None,
    fmt: str | None = None,
    strict: bool = False,
) -> LogRows:
    """Read every row of a CSV, JSON Lines or Parquet log.

    Args:
        path: the file (``.gz`` allowed for CSV and JSON Lines).
        columns: the column mapping (defaults: ``action_type``, ``timestamp``,
            ``user_id``, ``label``, no context).
        fmt: ``"csv"``, ``"jsonl"`` or ``"parquet"``; default from the file name.
        strict: raise :class:`LogError` at the first bad row instead of skipping it.

    Raises:
        ColumnError: a required column is missing (CSV and Parquet).
        LogError: unknown format, unreadable file, missing pyarrow, or (strict) a bad row.
        OSError: the file cannot be opened.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "log.jsonl")
        >>> with open(path, "w") as f:
        ...     _ = f.write('{"action_type": "buy", "timestamp": 10, "user_id": 7}\\n')
        ...     _ = f.write('{"oops": 1}\\n')
        >>> log = read_log(path)
        >>> log.rows, len(log.interactions), log.errors[0].message
        (2, 1, 'action_type: is missing')
    """
    cols = columns or Columns()
    name = os.fspath(path)
    kind = fmt or detect_format(name)
    try:
        source, has_label = _source(name, kind, cols)
        interactions: list[InteractionData] = []
        lines: list[int] = []
        errors: list[RowError] = []
        rows = 0
        for line, row in source:
            rows += 1
            if kind == "jsonl" and cols.label in row:
                has_label = True
            try:
                interactions.append(_interaction(row, cols))
                lines.append(line)
            except (InvalidInteraction, ValueError, TypeError) as exc:
                if strict:
                    raise LogError(f"{name}: line {line}: {exc}") from exc
                errors.append(RowError(line, str(exc)))
    except UnicodeDecodeError as exc:
        raise LogError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (csv.Error, EOFError, gzip.BadGzipFile) as exc:
        raise LogError(f"{name}: cannot read {kind}: {exc}") from exc
    return LogRows(interactions, lines, errors, rows, kind, has_label)


def _source(
    name: str, kind: str, cols: Columns
) -> tuple[Iterator[tuple[int, dict[str, Any]]], bool]:
    """The ``(line, row)`` pairs of a log, and whether it has the label column."""
    if kind not in FORMATS:
        raise LogError(f"unknown format {kind!r}; use one of {', '.join(FORMATS)}")
    if os.path.isdir(name):
        raise LogError(f"{name}: is a folder, not a log file")
    if kind == "csv":
        return _csv_rows(name, cols)
    if kind == "jsonl":
        return _jsonl_rows(name), False
    return _parquet_rows(name, cols)


class LogChunk(NamedTuple):
    """Up to ``chunk_rows`` rows of a log as a table for :meth:`Engine.train_table`.

    ``table`` holds the parsed columns (``action_type``, ``timestamp``,
    ``user_id``, ``label`` and ``context.<key>``; a row's missing context value
    is None); ``times`` each row's POSIX seconds (for ordering); ``lines`` each
    row's line; ``errors`` the rows that could not be parsed; ``rows`` the rows
    read in this chunk (parsed or not). ``InteractionData`` validation is left
    to the table's reader (:mod:`livelearn.tables`).
    """

    table: dict[str, list[Any]]
    times: list[float]
    lines: list[int]
    errors: list[RowError]
    rows: int
    format: str
    has_label: bool


def read_log_chunks(
    path: str | os.PathLike[str],
    columns: Columns | None = None,
    fmt: str | None = None,
    strict: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[LogChunk]:
    """Read a log ``chunk_rows`` rows at a time (memory bounded by the chunk,
    whatever the file's size), as tables; same formats, parsing and errors as
    :func:`read_log` (``strict`` raises :class:`LogError` at the first row that
    cannot be parsed). A CSV row with a field over the csv module's field limit
    is one bad row, not the end of the file.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
        >>> with open(path, "w") as f:
        ...     _ = f.write("action_type,timestamp,user_id,page\\n" + "click,5,u1,home\\n" * 3)
        >>> chunks = list(read_log_chunks(path, Columns(context=("page",)), chunk_rows=2))
        >>> [c.rows for c in chunks], chunks[0].table["context.page"], chunks[1].lines
        ([2, 1], ['home', 'home'], [4])
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows: must be an int >= 1, got {chunk_rows!r}")
    cols = columns or Columns()
    name = os.fspath(path)
    kind = fmt or detect_format(name)
    try:
        source, has_label = _source(name, kind, cols)
        while True:
            parsed: list[tuple[str, float | datetime, str | int, dict[str, Any] | None, Any]]
            parsed = []
            times: list[float] = []
            lines: list[int] = []
            errors: list[RowError] = []
            rows = 0
            for line, row in source:
                rows += 1
                if kind == "jsonl" and cols.label in row:
                    has_label = True
                try:
                    fields = _parsed(row, cols)
                except (InvalidInteraction, ValueError, TypeError) as exc:
                    if strict:
                        raise LogError(f"{name}: line {line}: {exc}") from exc
                    errors.append(RowError(line, str(exc)))
                else:
                    when = fields[1]
                    parsed.append(fields)
                    times.append(when if isinstance(when, float) else when.timestamp())
                    lines.append(line)
                if rows >= chunk_rows:
                    break
            if rows == 0:
                return
            yield LogChunk(_table(parsed), times, lines, errors, rows, kind, has_label)
    except UnicodeDecodeError as exc:
        raise LogError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (csv.Error, EOFError, gzip.BadGzipFile) as exc:
        raise LogError(f"{name}: cannot read {kind}: {exc}") from exc


def _table(
    parsed: list[tuple[str, float | datetime, str | int, dict[str, Any] | None, Any]],
) -> dict[str, list[Any]]:
    table: dict[str, list[Any]] = {
        "action_type": [p[0] for p in parsed],
        "timestamp": [p[1] for p in parsed],
        "user_id": [p[2] for p in parsed],
        "label": [p[4] for p in parsed],
    }
    keys: dict[str, None] = {}
    for p in parsed:
        if p[3]:
            keys.update(dict.fromkeys(p[3]))
    for key in keys:
        table["context." + key] = [None if p[3] is None else p[3].get(key) for p in parsed]
    return table


def _parsed(
    row: Mapping[str, Any], cols: Columns
) -> tuple[str, float | datetime, str | int, dict[str, Any] | None, Any]:
    """A row's fields as :func:`read_log` parses them, before InteractionData
    validation; a non-finite float (a table's "missing") is refused here."""
    action, when, user, context, label = _fields(row, cols)
    if isinstance(label, float) and not math.isfinite(label):
        raise InvalidInteraction("label", f"must be finite, got {label}")
    for key, value in (context or {}).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInteraction(f"context[{key!r}]", f"must be finite, got {value}")
    return action, when, user, context, label


def _interaction(row: Mapping[str, Any], cols: Columns) -> InteractionData:
    return InteractionData(*_fields(row, cols))


def _fields(
    row: Mapping[str, Any], cols: Columns
) -> tuple[str, float | datetime, str | int, dict[str, Any] | None, Any]:
    problem = row.get("__error__")
    if isinstance(problem, str) and len(row) == 1:
        raise ValueError(problem)
    action = _action(row.get(cols.action))
    user = _user(row.get(cols.user))
    try:
        when = parse_time(row.get(cols.time))
    except ValueError as exc:
        raise ValueError(f"timestamp: {exc}") from None
    label = _label(row.get(cols.label)) if cols.use_label else None
    keys = cols.context
    if keys is None:
        used = {cols.action, cols.time, cols.user}
        if cols.use_label:
            used.add(cols.label)
        keys = tuple(k for k in row if k not in used)
    context: dict[str, Any] = {}
    for key in keys:
        value = row.get(key)
        if value is None or (isinstance(value, str) and value == ""):
            continue
        context[key] = value
    return action, when, user, context or None, label
