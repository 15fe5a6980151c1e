"""``livelearn replay`` over split logs: impressions and their outcomes, joined by id.

A service logs an *impression* when it predicts (an id, the interaction) and an
*outcome* when the click or purchase comes (the id, its time, a label or an
action type). :func:`replay_split` merges both in event-time order and drives
an engine with ``clock="event"`` through ``predict(it, event_id=...)`` and
``feedback(...)``, so the same timeout, default-label, late and duplicate rules
as in the live service apply, deterministically (each prediction waits for the
steps queued before it). At an equal timestamp an impression comes before an
outcome. Windows still open at the end of the logs expire (trained with the
default label) unless a checkpoint keeps them.

The two logs are two files (``--outcomes FILE``), or one file whose
``--event-kind-col`` says which rows are outcomes (``--outcome-kind``, default
``outcome``; every other row is an impression).

Example:
    >>> from livelearn import Engine, InteractionData
    >>> impressions = [("a", InteractionData("view", 0.0, "u1")),
    ...                ("b", InteractionData("view", 1.0, "u2"))]
    >>> outcomes = [Outcome("a", 5.0, 1.0), Outcome("zz", 6.0, 1.0)]
    >>> engine = Engine(feedback_timeout=30.0, clock="event", awaiting_on_close="expire")
    >>> report = replay_split(engine.initialize(), impressions, outcomes)
    >>> report.joined, report.awaiting, report.unknown, report.steps
    (1, 1, 1, 1)
    >>> engine.close()  # "b" is still awaiting at the end: its window closes now
    >>> engine.stats().feedback.expired_trained, engine.stats().steps
    (1, 2)
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

from livelearn import Engine, FeatureEncoder, HashedFeatureEncoder, InteractionData
from livelearn.cli.common import UsageError, line, num, positive_float, read, write_json
from livelearn.errors import InvalidFeedback
from livelearn.logfiles import Columns, LogError, detect_format, parse_time

__all__ = ["JoinReport", "Outcome", "add_options", "read_outcomes", "replay_split", "run", "wanted"]


class Outcome(NamedTuple):
    """One row of an outcomes log: the id it answers, its time, a label or an action type."""

    event_id: str | int
    timestamp: float
    label: float | None = None
    action_type: str | None = None


@dataclass(frozen=True)
class JoinReport:
    """What a split-log replay did: the join counters and the live quality.

    ``log_loss``, ``auc`` and ``calibration`` score the prediction served at
    each impression against the label it learned when its window closed.
    """

    impressions: int
    outcomes: int
    refused_impressions: int
    refused_outcomes: int
    joined: int
    expired_trained: int
    expired_dropped: int
    evicted: int
    awaiting: int
    duplicate: int
    late: int
    unknown: int
    corrections: int
    join_rate: float | None
    delay_p50: float | None
    delay_p90: float | None
    delay_p99: float | None
    log_loss: float | None
    auc: float | None
    calibration: float | None
    steps: int
    seconds: float


def wanted(args: argparse.Namespace) -> bool:
    """Whether the replay command was asked to join split logs."""
    return bool(getattr(args, "outcomes", None) or getattr(args, "event_kind_col", None))


def add_options(p: argparse.ArgumentParser) -> None:
    """The split-log options of ``livelearn replay``."""
    g = p.add_argument_group(
        "split logs (impressions joined with their outcomes by id; see livelearn.cli.replay_join)"
    )
    g.add_argument("--outcomes", metavar="FILE", help="the outcomes log (.csv or .jsonl; .gz)")
    g.add_argument(
        "--event-kind-col",
        metavar="NAME",
        help="one file holds both: this column says which rows are outcomes",
    )
    g.add_argument(
        "--outcome-kind",
        default="outcome",
        metavar="VALUE",
        help="the --event-kind-col value of outcome rows (default: %(default)s)",
    )
    g.add_argument(
        "--event-id-col",
        default="event_id",
        metavar="NAME",
        help="column of the id joining both (default: %(default)s)",
    )
    g.add_argument(
        "--feedback-timeout",
        type=positive_float,
        default=3600.0,
        metavar="SECONDS",
        help="how long an impression waits for its outcome (default: %(default)s)",
    )
    g.add_argument(
        "--default-label",
        default="0",
        metavar="Y",
        help="label of an impression without outcome in time; 'none' drops it (default: 0)",
    )
    g.add_argument("--late-policy", choices=("ignore", "correct"), default="ignore")
    g.add_argument("--duplicate-policy", choices=("first", "max", "sum", "last"), default="first")
    g.add_argument("--max-awaiting", type=int, default=1_000_000, metavar="N")


def _engine(args: argparse.Namespace, keep: bool, quality_window: int) -> Engine:
    text = str(args.default_label).strip().lower()
    try:
        default = None if text == "none" else float(text)
    except ValueError:
        raise UsageError(f"--default-label: expected a number or 'none', got {text!r}") from None
    targets = None
    if args.targets is not None:
        try:
            targets = json.loads(args.targets)
        except ValueError as exc:
            raise UsageError(f"--targets: not valid JSON ({exc})") from exc
    hidden: tuple[int, ...] = (16, 8)
    if args.hidden:
        try:
            hidden = tuple(int(s) for s in args.hidden.split(",") if s.strip())
        except ValueError:
            raise UsageError(
                f"--hidden: expected sizes such as 16,8, got {args.hidden!r}"
            ) from None
    features = HashedFeatureEncoder(n_buckets=args.buckets) if args.hashed else FeatureEncoder()
    try:
        return Engine(
            hidden_layers=hidden,
            activation=args.activation or "tanh",
            loss=args.loss or "bce",
            optimizer=args.optimizer or "sgd",
            learning_rate=0.05 if args.learning_rate is None else args.learning_rate,
            seed=0 if args.seed is None else args.seed,
            features=features,
            targets=targets,
            log_every=0,
            feedback_timeout=args.feedback_timeout,
            default_label=default,
            max_awaiting=args.max_awaiting,
            late_policy=args.late_policy,
            duplicate_policy=args.duplicate_policy,
            clock="event",
            awaiting_on_close="keep" if keep else "expire",
            quality_window=quality_window,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


# --------------------------------------------------------------------------- reading
def _rows(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    kind = detect_format(path)
    opener: Any = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        if kind == "csv":
            for i, row in enumerate(csv.DictReader(f), start=2):
                yield i, dict(row)
        elif kind == "jsonl":
            for i, text in enumerate(f, start=1):
                if text.strip():
                    try:
                        value = json.loads(text)
                    except ValueError:
                        value = None
                    yield (
                        i,
                        value if isinstance(value, dict) else {"__error__": "not a JSON object"},
                    )
        else:
            raise LogError(f"{path}: outcomes are read from .csv or .jsonl files")


def _event_id(value: object) -> str | int:
    if isinstance(value, bool) or value is None or value == "":
        raise ValueError("event id: is missing")
    if isinstance(value, int):
        return value
    return str(value)


def read_outcomes(
    path: str,
    *,
    id_col: str = "event_id",
    time_col: str = "timestamp",
    label_col: str = "label",
    action_col: str = "action_type",
    kind_col: str | None = None,
    outcome_kind: str = "outcome",
) -> tuple[list[Outcome], list[tuple[int, str]], set[int]]:
    """The outcome rows of ``path`` (CSV or JSON Lines): the outcomes, the
    malformed rows ``(line, reason)`` and the lines of every outcome row."""
    out: list[Outcome] = []
    errors: list[tuple[int, str]] = []
    lines: set[int] = set()
    for number, row in _rows(path):
        if kind_col is not None and str(row.get(kind_col)) != outcome_kind:
            continue
        lines.add(number)
        try:
            if "__error__" in row:
                raise ValueError(row["__error__"])
            eid = _event_id(row.get(id_col))
            when = parse_time(row.get(time_col))
            t = when if isinstance(when, float) else when.timestamp()
            raw = row.get(label_col)
            label = None if raw in (None, "") else float(raw)
            action = row.get(action_col)
            if label is None and action in (None, ""):
                raise ValueError(f"{label_col}/{action_col}: neither is given")
            out.append(Outcome(eid, float(t), label, None if action in (None, "") else str(action)))
        except (ValueError, TypeError) as exc:
            errors.append((number, str(exc)))
    return out, errors, lines


def _impressions(
    args: argparse.Namespace, columns: Columns, skip_lines: set[int]
) -> tuple[list[tuple[str | int, InteractionData]], int, int]:
    """``(event id, interaction)`` pairs of the impressions log; the id (and the
    event-kind column) are read as context and taken out again."""
    extra = tuple(c for c in (args.event_id_col, args.event_kind_col) if c)
    wanted_context = columns.context
    with_ids = Columns(
        action=columns.action,
        time=columns.time,
        user=columns.user,
        label=columns.label,
        context=None if wanted_context is None else (*wanted_context, *extra),
        label_required=False,
        use_label=columns.use_label,
    )
    log = read(args, with_ids)
    pairs: list[tuple[str | int, InteractionData]] = []
    malformed = sum(1 for e in log.errors if e.line not in skip_lines)
    for it, number in zip(log.interactions, log.lines, strict=True):
        if number in skip_lines:
            continue
        context = dict(it.context or {})
        try:
            eid = _event_id(context.pop(args.event_id_col, None))
        except ValueError:
            malformed += 1
            continue
        if args.event_kind_col:
            context.pop(args.event_kind_col, None)
        pairs.append(
            (eid, InteractionData(it.action_type, it.timestamp, it.user_id, context or None))
        )
    return pairs, malformed, log.rows


# --------------------------------------------------------------------------- replay
def replay_split(
    engine: Engine,
    impressions: Sequence[tuple[str | int, InteractionData]],
    outcomes: Sequence[Outcome],
    *,
    exact: bool = True,
) -> JoinReport:
    """Drive ``engine`` (``clock="event"``, initialised) through both logs in
    event-time order; ``exact`` waits before each prediction for the steps
    queued before it (the same predictions on every run). Bad rows are counted
    (``refused_*``), never raised."""
    if engine.config.get("clock") != "event":
        raise ValueError("replay_split needs an engine with clock='event'")
    events: list[tuple[float, int, int]] = [
        (it.timestamp, 0, i) for i, (_, it) in enumerate(impressions)
    ]
    events += [(o.timestamp, 1, i) for i, o in enumerate(outcomes)]
    events.sort()
    refused_impressions = refused_outcomes = 0
    start = time.perf_counter()
    futures = []
    for _, kind, i in events:
        if kind == 0:
            eid, it = impressions[i]
            if exact:
                engine.wait_idle()
            try:
                engine.predict(it, event_id=eid)
            except (InvalidFeedback, ValueError):
                refused_impressions += 1
        else:
            o = outcomes[i]
            futures.append(
                engine.feedback(
                    o.event_id, o.label, action_type=o.action_type, timestamp=o.timestamp
                )
            )
    refused_outcomes = sum(1 for f in futures if f.exception() is not None)
    engine.wait_idle()
    return _report(
        engine,
        len(impressions),
        len(outcomes),
        refused_impressions,
        refused_outcomes,
        time.perf_counter() - start,
    )


def _report(
    engine: Engine, n_imp: int, n_out: int, bad_imp: int, bad_out: int, seconds: float
) -> JoinReport:
    stats = engine.stats()
    f = stats.feedback
    assert f is not None
    return JoinReport(
        impressions=n_imp,
        outcomes=n_out,
        refused_impressions=bad_imp,
        refused_outcomes=bad_out,
        joined=f.joined,
        expired_trained=f.expired_trained,
        expired_dropped=f.expired_dropped,
        evicted=f.evicted,
        awaiting=f.awaiting,
        duplicate=f.duplicate,
        late=f.late,
        unknown=f.unknown,
        corrections=f.corrections,
        join_rate=f.join_rate,
        delay_p50=f.delay_p50,
        delay_p90=f.delay_p90,
        delay_p99=f.delay_p99,
        log_loss=f.log_loss,
        auc=f.auc,
        calibration=f.calibration,
        steps=stats.steps,
        seconds=seconds,
    )


def run(args: argparse.Namespace, columns: Columns) -> int:
    """``livelearn replay FILE --outcomes FILE2`` (or ``--event-kind-col``)."""
    if args.outcomes and args.event_kind_col:
        raise UsageError("give --outcomes FILE or --event-kind-col NAME, not both")
    if args.max_awaiting < 1:
        raise UsageError("--max-awaiting: must be >= 1")
    source = args.outcomes or args.file
    kind_col = None if args.outcomes else args.event_kind_col
    try:
        outcomes, bad_outcomes, outcome_lines = read_outcomes(
            source,
            id_col=args.event_id_col,
            time_col=args.time_col,
            label_col=args.label_col,
            action_col=args.action_col,
            kind_col=kind_col,
            outcome_kind=args.outcome_kind,
        )
    except FileNotFoundError as exc:
        raise LogError(f"{source}: no such file") from exc
    skip = outcome_lines if kind_col else set()
    impressions, bad_impressions, rows = _impressions(args, columns, skip)
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    if checkpoint is not None and checkpoint.exists():
        engine = Engine.load(checkpoint)
        if engine.config.get("clock") != "event":
            engine.close()
            raise UsageError(f"{checkpoint}: not a split-log replay checkpoint (clock='event')")
    else:
        engine = _engine(args, checkpoint is not None, max(1, len(impressions)))
    engine.initialize()
    try:
        report = replay_split(engine, impressions, outcomes)
    finally:
        engine.close()
    if checkpoint is not None:
        engine.save(checkpoint)
    final = engine.stats().feedback
    assert final is not None
    _print(
        args, report, final.expired_trained, bad_impressions, len(bad_outcomes), rows, sys.stdout
    )
    if args.report:
        payload = asdict(report)
        payload.update(
            file=args.file,
            outcomes_file=args.outcomes,
            malformed_impressions=bad_impressions,
            malformed_outcomes=len(bad_outcomes),
            expired_at_end=final.expired_trained - report.expired_trained,
            engine_steps=engine.stats().steps,
            engine=engine.config,
        )
        write_json(Path(args.report), payload)
    return 0


def _print(
    args: argparse.Namespace,
    r: JoinReport,
    expired_final: int,
    bad_imp: int,
    bad_out: int,
    rows: int,
    out: IO[str],
) -> None:
    both = f"{args.file} + {args.outcomes}" if args.outcomes else args.file
    print(f"livelearn replay (split logs): {both} ({rows:,} rows)", file=out)
    print(
        line(
            "events",
            f"{r.impressions:,} impressions, {r.outcomes:,} outcomes in {r.seconds:.2f} s, "
            "in event-time order",
        ),
        file=out,
    )
    print(line("malformed", f"{bad_imp:,} impression row(s), {bad_out:,} outcome row(s)"), file=out)
    print(
        line(
            "join",
            f"{r.joined:,} joined, {expired_final:,} expired (default label), "
            f"{r.expired_dropped:,} dropped, {r.evicted:,} evicted, {r.late:,} late, "
            f"{r.duplicate:,} duplicate, {r.unknown:,} unknown, {r.corrections:,} corrected",
        ),
        file=out,
    )
    print(
        line(
            "join rate",
            f"{num(r.join_rate, 3)}; delay p50 {num(r.delay_p50, 1)} s, "
            f"p90 {num(r.delay_p90, 1)} s, p99 {num(r.delay_p99, 1)} s "
            f"(timeout {args.feedback_timeout:g} s)",
        ),
        file=out,
    )
    print(
        line(
            "quality",
            f"log loss {num(r.log_loss)}  |  ROC AUC {num(r.auc, 3)}  |  "
            f"calibration {num(r.calibration, 3)}",
        ),
        file=out,
    )
    print(line("steps", f"{r.steps:,} trained"), file=out)
