"""``livelearn replay``: train an Engine on a log, in timestamp order, with
progressive scores; resume from and save to a checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

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
    read,
    report_bad_rows,
    show_progress,
    size,
    when,
    write_json,
)
from livelearn.evaluate import progressive_val_score


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


def _replay_with(
    args: argparse.Namespace, engine: Engine, checkpoint: Path | None, resume: bool
) -> int:
    columns = log_columns(args, label_required=args.label_col_given)
    log = read(args, columns)
    if (
        log.format != "jsonl"
        and not log.has_label
        and args.targets is None
        and engine.targets.get_config()["type"] == "none"
    ):
        raise UsageError(
            f"{args.file}: no {columns.label!r} column and no --targets: nothing to learn "
            "(give --label-col or --targets)"
        )
    report_bad_rows(log, sys.stderr)
    order = list(range(len(log.interactions)))
    if not args.no_sort:
        order.sort(key=lambda i: log.interactions[i].timestamp)
    interactions = [log.interactions[i] for i in order]
    lines = [log.lines[i] for i in order]
    skipped_seen = 0
    if resume:
        before = engine.stats()
        given = [o for o in _MODEL_OPTIONS if getattr(args, o) is not None]
        if given or args.hashed:
            names = ", ".join("--" + o.replace("_", "-") for o in given + ["hashed"] * args.hashed)
            print(
                f"livelearn: resuming {checkpoint}: its own settings apply ({names} ignored)",
                file=sys.stderr,
            )
        last = before.last_example_time
        if last is not None and not args.no_skip_seen:
            keep = [i for i, it in enumerate(interactions) if it.timestamp > last]
            skipped_seen = len(interactions) - len(keep)
            interactions = [interactions[i] for i in keep]
            lines = [lines[i] for i in keep]
        print(
            f"livelearn: resuming from {checkpoint} at step {before.steps:,}; "
            f"{skipped_seen:,} event(s) at or before {when(last)} already learned, skipped",
            file=sys.stderr,
        )

    def save() -> None:
        if checkpoint is not None:
            engine.save(checkpoint)

    result = progressive_val_score(
        engine,
        interactions,
        progress=show_progress(args.progress),
        description=Path(args.file).name,
        every=args.checkpoint_every,
        on_every=save,
    )
    stats = engine.stats()
    save()
    scores = result.scores
    rate = result.events_per_second
    rejected_lines = [(lines[i], reason) for i, reason in result.rejections]
    print(f"livelearn replay: {args.file} ({log.format}, {log.rows:,} rows)")
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
            f"{len(log.errors):,} row(s) skipped"
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
                "format": log.format,
                "rows": log.rows,
                "malformed": len(log.errors),
                "malformed_rows": [
                    {"line": e.line, "message": e.message} for e in log.errors[:100]
                ],
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
