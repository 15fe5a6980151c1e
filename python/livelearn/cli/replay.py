"""``livelearn replay``: train an Engine on a log, in timestamp order, with
progressive scores; resume from and save to a checkpoint."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from livelearn import Engine, FeatureEncoder, HashedFeatureEncoder
from livelearn.cli import replay_join
from livelearn.cli.common import (
    PLOT_HINT,
    Parser,
    UsageError,
    add_columns,
    engine_summary,
    line,
    log_columns,
    num,
    plot_curves,
    positive_float,
    read_chunks,
    report_bad_rows,
    show_progress,
    size,
    when,
    write_json,
)
from livelearn.evaluate import score_predictions
from livelearn.interaction import InteractionData, InvalidInteraction
from livelearn.logfiles import DEFAULT_CHUNK_ROWS, LogError, LogRows, RowError
from livelearn.tables import INVALID, interactions_from_table


def add_parser(sub: argparse._SubParsersAction[Parser], common: Parser) -> None:
    """Add ``livelearn replay`` to ``sub``."""
    rep = sub.add_parser(
        "replay",
        parents=[common],
        help="train on a CSV, JSON Lines or Parquet log",
        description="Replay an interaction log through an Engine (in timestamp order), "
        "reporting progressive scores. With --checkpoint, resume from it if it exists "
        "(skipping events at or before its last learned timestamp) and save it at the end.",
    )
    rep.add_argument("file", metavar="FILE", help="the log (.csv, .jsonl, .parquet; .gz)")
    add_columns(rep)
    m = rep.add_argument_group("model (ignored when resuming from a checkpoint)")
    m.add_argument(
        "--targets", metavar="JSON", help='targets by action type, e.g. \'{"click": 1, "skip": 0}\''
    )
    m.add_argument("--hidden", metavar="N,N", help="hidden layer sizes (default: 16,8)")
    m.add_argument(
        "--activation",
        choices=("tanh", "relu", "sigmoid", "identity"),
        help="hidden activation (default: tanh)",
    )
    m.add_argument(
        "--learning-rate", type=positive_float, metavar="LR", help="learning rate (default: 0.05)"
    )
    m.add_argument("--optimizer", choices=("sgd", "adam"), help="optimizer (default: sgd)")
    m.add_argument("--loss", choices=("bce", "mse"), help="loss (default: bce)")
    m.add_argument("--seed", type=int, help="weight seed (default: 0)")
    m.add_argument(
        "--hashed",
        action="store_true",
        help="HashedFeatureEncoder (one-hot hashed action, user, context, "
        "user x action) instead of the 4-input FeatureEncoder",
    )
    m.add_argument(
        "--buckets",
        type=int,
        default=2**18,
        help="hash buckets with --hashed (default: %(default)s)",
    )
    o = rep.add_argument_group("output")
    o.add_argument(
        "--checkpoint", metavar="PATH", help="resume from PATH if it exists; save to it at the end"
    )
    o.add_argument("--checkpoint-every", type=int, metavar="N", help="also save every N events")
    o.add_argument("--plot", metavar="PNG", help="write the loss curve (needs matplotlib)")
    o.add_argument("--report", metavar="JSON", help="write the report as JSON")
    o.add_argument(
        "--progress",
        action="store_true",
        help="show a progress bar even when stderr is not a terminal",
    )
    o.add_argument(
        "--no-sort", action="store_true", help="keep the file's order instead of sorting by time"
    )
    o.add_argument(
        "--chunk-rows",
        type=int,
        default=DEFAULT_CHUNK_ROWS,
        metavar="N",
        help="rows read (and sorted by time) at once; memory is bounded by it, whatever "
        "the log's size (default: %(default)s)",
    )
    o.add_argument(
        "--no-skip-seen",
        action="store_true",
        help="when resuming, train on every event, even those already learned",
    )
    replay_join.add_options(rep)  # --outcomes / --event-kind-col: split logs
    rep.set_defaults(handler=run)


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--hidden: expected sizes such as 16,8, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise UsageError(f"--hidden: sizes must be >= 1, got {text!r}")
    return sizes


def _targets(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--targets: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise UsageError('--targets: expected a JSON object such as {"click": 1, "skip": 0}')
    return value


def _new_engine(args: argparse.Namespace) -> Engine:
    features = HashedFeatureEncoder(n_buckets=args.buckets) if args.hashed else FeatureEncoder()
    try:
        return Engine(
            hidden_layers=_hidden(args.hidden or "16,8"),
            activation=args.activation or "tanh",
            loss=args.loss or "bce",
            optimizer=args.optimizer or "sgd",
            learning_rate=0.05 if args.learning_rate is None else args.learning_rate,
            seed=0 if args.seed is None else args.seed,
            features=features,
            targets=_targets(args.targets),
            log_every=0,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


_MODEL_OPTIONS = ("hidden", "activation", "loss", "optimizer", "learning_rate", "seed", "targets")


def run(args: argparse.Namespace) -> int:
    """Run ``livelearn replay``; returns the exit code."""
    if replay_join.wanted(args):  # impressions + outcomes joined by id
        return replay_join.run(args, log_columns(args, label_required=False))
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError("--checkpoint-every: must be >= 1")
    if args.checkpoint_every is not None and args.checkpoint is None:
        raise UsageError("--checkpoint-every needs --checkpoint PATH")
    if args.buckets < 1:
        raise UsageError("--buckets: must be >= 1")
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    resume = checkpoint is not None and checkpoint.exists()
    engine = Engine.load(checkpoint) if resume and checkpoint else _new_engine(args)
    engine.initialize()
    try:
        return _replay_with(args, engine, checkpoint, resume)
    finally:
        engine.close()


class _Replay:
    """Progressive scores and counts of a replay, accumulated chunk by chunk."""

    def __init__(self) -> None:
        self.events = self.trained = self.skipped = self.rejected = self.failed = 0
        self.targets: list[NDArray[np.float64]] = []
        self.predictions: list[NDArray[np.float64]] = []
        self.rejections: list[tuple[int, str]] = []  # (line, reason)
        self.invalid: list[RowError] = []  # rows InteractionData refused
        self.seconds = 0.0

    def add(
        self, engine: Engine, table: dict[str, list[Any]], lines: list[int], strict: bool
    ) -> None:
        start = time.perf_counter()
        result = engine.train_table(table, strict=strict).result()
        self.seconds += time.perf_counter() - start
        status = result.status
        self.events += int((status != INVALID).sum())
        trained = result.trained
        self.trained += int(trained.sum())
        self.skipped += int((status == "skipped").sum())
        self.rejected += int((status == "rejected").sum())
        self.failed += int((status == "failed").sum())
        for i in np.flatnonzero((status == "rejected") | (status == "failed")).tolist():
            self.rejections.append((lines[i], str(result.reason[i])))
        for i in result.invalid_rows.tolist():
            self.invalid.append(RowError(lines[i], str(result.reason[i])))
        if engine.targets.n_outputs == 1 and trained.any():
            rows, _ = interactions_from_table(
                {
                    name: [c[i] for i in np.flatnonzero(trained).tolist()]
                    for name, c in table.items()
                }
            )
            Y, _ = engine.targets.targets_many(cast("list[InteractionData]", rows))
            self.targets.append(np.asarray(Y, dtype=np.float64).reshape(len(rows), -1)[:, 0])
            self.predictions.append(np.asarray(result.prediction, dtype=np.float64)[trained])


def _replay_with(
    args: argparse.Namespace, engine: Engine, checkpoint: Path | None, resume: bool
) -> int:
    columns = log_columns(args, label_required=args.label_col_given)
    chunks = read_chunks(args, columns, args.chunk_rows)
    first = next(chunks, None)
    fmt = first.format if first is not None else (args.format or "csv")
    if (
        first is not None
        and fmt != "jsonl"
        and not first.has_label
        and args.targets is None
        and engine.targets.get_config()["type"] == "none"
    ):
        raise UsageError(
            f"{args.file}: no {columns.label!r} column and no --targets: nothing to learn "
            "(give --label-col or --targets)"
        )
    skipped_seen = 0
    last: float | None = None
    before_steps = 0
    learned_until: float | None = None
    if resume:
        before = engine.stats()
        before_steps = before.steps
        given = [o for o in _MODEL_OPTIONS if getattr(args, o) is not None]
        if given or args.hashed:
            names = ", ".join("--" + o.replace("_", "-") for o in given + ["hashed"] * args.hashed)
            print(
                f"livelearn: resuming {checkpoint}: its own settings apply ({names} ignored)",
                file=sys.stderr,
            )
        last = before.last_example_time if not args.no_skip_seen else None
        learned_until = before.last_example_time

    def save() -> None:
        if checkpoint is not None:
            engine.save(checkpoint)

    replay = _Replay()
    parse_errors: list[RowError] = []
    rows = 0
    since = 0
    step = 512 if args.checkpoint_every else 8192  # rows per train_table call
    bar = _progress_bar(show_progress(args.progress), Path(args.file).name)
    previous_end: float | None = None
    warned = False
    try:
        for chunk in itertools.chain([first] if first is not None else [], chunks):
            rows += chunk.rows
            parse_errors += chunk.errors
            order = list(range(len(chunk.lines)))
            if not args.no_sort:
                # Sorted within each chunk of --chunk-rows rows: a log out of order
                # across chunks is trained in file order beyond them (said once).
                order.sort(key=chunk.times.__getitem__)
                late = (
                    bool(order)
                    and previous_end is not None
                    and chunk.times[order[0]] < previous_end
                )
                if late and not warned:
                    print(
                        f"livelearn: {args.file} is not in timestamp order across chunks "
                        f"of {args.chunk_rows:,} rows; each chunk is sorted, the file's "
                        "order kept between them (sort the file, or raise --chunk-rows)",
                        file=sys.stderr,
                    )
                    warned = True
                if order:
                    previous_end = chunk.times[order[-1]]
            if last is not None:
                kept = [i for i in order if chunk.times[i] > last]
                skipped_seen += len(order) - len(kept)
                order = kept
            for lo in range(0, len(order), step):
                part = order[lo : lo + step]
                table = {name: [col[i] for i in part] for name, col in chunk.table.items()}
                lines = [chunk.lines[i] for i in part]
                try:
                    replay.add(engine, table, lines, args.strict)
                except InvalidInteraction as exc:  # --strict: the first invalid row
                    row = int(exc.field.split(":")[0].removeprefix("row "))
                    field = exc.field.split(": ", 1)[1]
                    raise LogError(
                        f"{args.file}: line {lines[row]}: invalid interaction: "
                        f"{field}: {exc.reason}"
                    ) from exc
                since += len(part)
                if args.checkpoint_every and since >= args.checkpoint_every:
                    save()
                    since = 0
                if bar is not None:
                    bar.update(len(part))
            if bar is not None:
                bar.update(len(chunk.lines) - len(order))  # already learned
    finally:
        if bar is not None:
            bar.close()
    errors = sorted(parse_errors + replay.invalid)
    report_bad_rows(LogRows([], [], errors, rows, fmt, True), sys.stderr)
    if resume:
        print(
            f"livelearn: resuming from {checkpoint} at step {before_steps:,}; "
            f"{skipped_seen:,} event(s) at or before {when(learned_until)} already learned, "
            "skipped",
            file=sys.stderr,
        )
    result = replay
    loss = str(engine.config["loss"])
    scores = score_predictions(
        np.concatenate(replay.targets) if replay.targets else np.zeros(0),
        np.concatenate(replay.predictions) if replay.predictions else np.zeros(0),
        loss,
    )
    rate = result.events / result.seconds if result.seconds > 0 else math.inf
    rejected_lines = replay.rejections
    log_rows = rows
    stats = engine.stats()
    save()
    print(f"livelearn replay: {args.file} ({fmt}, {log_rows:,} rows)")
    print(line("model", engine_summary(engine)))
    print(
        line(
            "events",
            f"{result.events:,} replayed in {result.seconds:.2f} s ({rate:,.0f} events/s)"
            + ("" if args.no_sort else ", in timestamp order"),
        )
    )
    print(
        line(
            "malformed",
            f"{len(errors):,} row(s) skipped"
            + (f", {skipped_seen:,} already learned" if resume else ""),
        )
    )
    print(
        line(
            "steps",
            f"{result.trained:,} trained, {result.skipped:,} skipped, "
            f"{result.rejected:,} rejected, {result.failed:,} failed "
            f"(engine total {stats.steps:,})",
        )
    )
    for line_no, reason in rejected_lines[:3]:
        print(line("", f"line {line_no}: {reason}"))
    if scores.model is not None:
        print(
            line(
                scores.metric,
                f"model {num(scores.model)}  |  running base rate {num(scores.baseline)}",
            )
        )
    if scores.model_auc is not None:
        print(
            line(
                "ROC AUC",
                f"model {num(scores.model_auc, 3)}  |  running base rate "
                f"{num(scores.baseline_auc, 3)}",
            )
        )
    if checkpoint is not None:
        print(line("checkpoint", f"{checkpoint} ({size(checkpoint)})"))
    plotted: bool | None = None
    if args.plot:
        plotted = plot_curves(
            Path(args.plot),
            {"model": scores.model_curve, "running base rate": scores.baseline_curve},
            f"livelearn replay: {Path(args.file).name}",
            scores.metric,
        )
        text = args.plot if plotted else f"not drawn: matplotlib is missing ({PLOT_HINT})"
        print(line("loss curve", text))
    if args.report:
        write_json(
            Path(args.report),
            {
                "file": args.file,
                "format": fmt,
                "rows": log_rows,
                "malformed": len(errors),
                "malformed_rows": [{"line": e.line, "message": e.message} for e in errors[:100]],
                "already_learned": skipped_seen,
                "events": result.events,
                "seconds": result.seconds,
                "events_per_second": rate,
                "trained": result.trained,
                "skipped": result.skipped,
                "rejected": result.rejected,
                "failed": result.failed,
                "rejected_rows": [{"line": ln, "reason": r} for ln, r in rejected_lines[:100]],
                "metric": scores.metric,
                "model": scores.model,
                "running_base_rate": scores.baseline,
                "roc_auc": scores.model_auc,
                "base_rate_roc_auc": scores.baseline_auc,
                "engine_steps": stats.steps,
                "mean_loss": stats.mean_loss,
                "checkpoint": None if checkpoint is None else str(checkpoint),
                "plot": args.plot if plotted else None,
                "engine": engine.config,
            },
        )
        print(line("report", args.report))
    return 0


def _progress_bar(shown: bool, description: str) -> Any:
    """A tqdm bar on stderr (rows), or None when hidden or tqdm is missing."""
    if not shown:
        return None
    try:
        from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return None
    return tqdm(desc=description, unit="row", unit_scale=True, file=sys.stderr)
