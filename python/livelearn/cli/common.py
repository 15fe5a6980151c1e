"""What the ``livelearn`` commands share: the parser class, options, reading logs,
and the report's formatting (one module per command sits beside this one)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from livelearn import Engine
from livelearn.logfiles import (
    Columns,
    LogChunk,
    LogError,
    LogRows,
    detect_format,
    read_log,
    read_log_chunks,
)
from livelearn.metrics_offline import rolling_mean

PLOT_HINT = "pip install 'livelearn[plot]'"


class UsageError(Exception):
    """A bad option or argument (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def show_progress(forced: bool) -> bool:
    """Whether to draw a progress bar: when asked to, or when stderr is a terminal."""
    return forced or sys.stderr.isatty()


# --------------------------------------------------------------------------- options
def positive_float(text: str) -> float:
    """argparse type: a finite number > 0.

    Example:
        >>> positive_float("0.05")
        0.05
        >>> positive_float("inf")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be a finite number > 0, got 'inf'
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


class LabelCol(argparse.Action):
    """--label-col: remembers that the user chose it (then the column is required)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        namespace.label_col = values
        namespace.label_col_given = True


def add_columns(p: argparse.ArgumentParser, *, with_strict: bool = True) -> None:
    """The options naming a log's columns (and ``--strict``), shared by replay and predict.

    Example:
        >>> p = Parser(prog="x")
        >>> add_columns(p)
        >>> args = p.parse_args(["--user-col", "visitor", "--context-cols", "device, page"])
        >>> cols = log_columns(args, label_required=args.label_col_given)
        >>> cols.user, cols.context, cols.label_required
        ('visitor', ('device', 'page'), False)
    """
    g = p.add_argument_group("columns")
    g.add_argument(
        "--format",
        choices=("csv", "jsonl", "parquet"),
        help="file format (default: from the file name; .gz allowed for csv/jsonl)",
    )
    g.add_argument(
        "--action-col",
        default="action_type",
        metavar="NAME",
        help="column of the action type (default: %(default)s)",
    )
    g.add_argument(
        "--time-col",
        default="timestamp",
        metavar="NAME",
        help="column of the time: POSIX seconds or ISO 8601 with a timezone (default: %(default)s)",
    )
    g.add_argument(
        "--user-col",
        default="user_id",
        metavar="NAME",
        help="column of the user id (default: %(default)s)",
    )
    g.add_argument(
        "--label-col",
        default="label",
        metavar="NAME",
        action=LabelCol,
        help="column of the label; empty cells use --targets (default: %(default)s, "
        "optional unless given)",
    )
    g.add_argument(
        "--context-cols",
        metavar="A,B,...",
        help="comma-separated columns copied into the context; '*' for every "
        "other column (default: none)",
    )
    p.set_defaults(label_col_given=False)
    if with_strict:
        p.add_argument(
            "--strict",
            action="store_true",
            help="stop at the first malformed row (default: count, report, skip it)",
        )


# --------------------------------------------------------------------------- logs
def log_columns(
    args: argparse.Namespace, *, label_required: bool, use_label: bool = True
) -> Columns:
    """The :class:`Columns` chosen by the ``--*-col`` options of :func:`add_columns`."""
    context: tuple[str, ...] | None
    if args.context_cols is None:
        context = ()
    elif args.context_cols.strip() == "*":
        context = None
    else:
        context = tuple(c.strip() for c in args.context_cols.split(",") if c.strip())
    names = [args.action_col, args.time_col, args.user_col, args.label_col]
    if any(not n for n in names):
        raise UsageError("column names must not be empty")
    return Columns(
        action=args.action_col,
        time=args.time_col,
        user=args.user_col,
        label=args.label_col,
        context=context,
        label_required=label_required,
        use_label=use_label,
    )


def read(args: argparse.Namespace, columns: Columns) -> LogRows:
    """Read ``args.file``; a format that cannot be told from the name is a usage error."""
    if args.format is None:
        try:
            detect_format(args.file)
        except LogError as exc:
            raise UsageError(str(exc)) from exc
    try:
        return read_log(args.file, columns, fmt=args.format, strict=args.strict)
    except FileNotFoundError as exc:
        raise LogError(f"{args.file}: no such file") from exc
    except IsADirectoryError as exc:
        raise LogError(f"{args.file}: is a folder, not a log file") from exc


def read_chunks(args: argparse.Namespace, columns: Columns, chunk_rows: int) -> Iterator[LogChunk]:
    """:func:`read` in chunks of ``chunk_rows`` rows (:func:`read_log_chunks`)."""
    if chunk_rows < 1:
        raise UsageError("--chunk-rows: must be >= 1")
    if args.format is None:
        try:
            detect_format(args.file)
        except LogError as exc:
            raise UsageError(str(exc)) from exc
    try:
        chunks = read_log_chunks(
            args.file, columns, fmt=args.format, strict=args.strict, chunk_rows=chunk_rows
        )
        first = next(chunks, None)
    except FileNotFoundError as exc:
        raise LogError(f"{args.file}: no such file") from exc
    except IsADirectoryError as exc:
        raise LogError(f"{args.file}: is a folder, not a log file") from exc
    if first is not None:
        yield first
        yield from chunks


def report_bad_rows(log: LogRows, stream: IO[str], show: int = 5) -> None:
    """Print how many rows were malformed, and the first ``show`` of them."""
    if not log.errors:
        return
    print(f"livelearn: skipped {len(log.errors):,} malformed row(s) of {log.rows:,}:", file=stream)
    for error in log.errors[:show]:
        print(f"  line {error.line}: {error.message}", file=stream)
    if len(log.errors) > show:
        print(f"  ... and {len(log.errors) - show:,} more", file=stream)


# --------------------------------------------------------------------------- report
def num(value: float | None, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals, ``n/a`` for None.

    Example:
        >>> num(0.123456), num(0.5, 3), num(None)
        ('0.1235', '0.500', 'n/a')
    """
    return "n/a" if value is None else f"{value:.{digits}f}"


def when(seconds: float | None) -> str:
    """POSIX seconds as an ISO 8601 UTC time (``...Z``), ``n/a`` for None.

    Example:
        >>> when(1700000000.5)
        '2023-11-14T22:13:20.500000Z'
    """
    if seconds is None:
        return "n/a"
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def size(path: Path) -> str:
    """The size of the file at ``path``, in B, KB, MB or GB (powers of 1000)."""
    n = float(path.stat().st_size)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def line(label: str, text: str) -> str:
    """One report line: ``text`` after a 13-column ``label``.

    Example:
        >>> line("steps", "10 trained")
        '  steps        10 trained'
    """
    return f"  {label:<13}{text}"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON with sorted keys, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def engine_summary(engine: Engine) -> str:
    """One line naming the engine's network settings and its feature encoder.

    Example:
        >>> from livelearn import Engine
        >>> print(engine_summary(Engine()))  # doctest: +ELLIPSIS
        Engine(hidden_layers=(16, 8), optimizer='sgd', ..., loss='bce'), FeatureEncoder, 4 inputs
    """
    c = engine.config
    enc = engine.features
    net = engine.network.get_config()
    lr = net["learning_rate"]
    config = enc.get_config()
    name = config.get("type", type(enc).__name__)
    if name == "HashedFeatureEncoder":
        name += f"(n_buckets={config.get('n_buckets')})"
    if c.get("model") == "field":
        return (
            f"Engine(model='field': wide + factorization machine over {net['n_fields']} "
            f"hashed fields, embedding_dim={net['embedding_dim']}, "
            f"optimizer={net['optimizer']!r}, loss={c['loss']!r}), {name}, "
            f"{enc.n_inputs:,} inputs"
        )
    return (
        f"Engine(hidden_layers={tuple(c['hidden_layers'])}, optimizer={c['optimizer']!r}, "
        f"learning_rate={lr}, loss={c['loss']!r}), {name}, {enc.n_inputs:,} inputs"
    )


def plot_curves(
    path: Path,
    curves: dict[str, NDArray[np.float64]],
    title: str,
    ylabel: str,
) -> bool:
    """Write a PNG of per-event loss curves: a trailing window mean (how the loss
    moves) above the cumulative mean (the progressive score reported). Returns
    False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n = max((len(c) for c in curves.values()), default=0)
    window = max(1, min(max(50, n // 40), n // 4))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), dpi=110, sharex=True)
    for label, curve in curves.items():
        if len(curve) <= window:
            continue
        x = np.arange(1, len(curve) + 1)
        top.plot(x[window - 1 :], rolling_mean(curve, window)[window - 1 :], label=label, lw=1.2)
        bottom.plot(x[window - 1 :], (np.cumsum(curve) / x)[window - 1 :], label=label, lw=1.4)
    top.set_ylabel(f"{ylabel}, last {window} events")
    bottom.set_ylabel(f"{ylabel}, all events so far")
    bottom.set_xlabel("events (each scored before the model learns from it)")
    top.set_title(title, fontsize=10)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    if top.lines:
        top.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True
