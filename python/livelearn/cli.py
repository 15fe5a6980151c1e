"""The ``livelearn`` command line: ``demo``, ``replay``, ``predict``, ``inspect``.

Run ``livelearn --help`` (or ``python -m livelearn --help``) and ``livelearn
COMMAND --help``. Exit codes: 0 success, 1 runtime error (unreadable file, damaged
checkpoint), 2 usage error (bad option, missing column); errors are one line on
stderr, with the traceback only under ``--verbose``.

Example:
    >>> main(["inspect", "--help"])  # doctest: +ELLIPSIS
    usage: livelearn inspect [-h] [-v] [--json] CHECKPOINT
    ...
    0
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, NoReturn

import numpy as np
from numpy.typing import NDArray

import livelearn
from livelearn import (
    CheckpointError,
    Engine,
    FeatureEncoder,
    HashedFeatureEncoder,
    InteractionData,
    InvalidInteraction,
    StepStatus,
)
from livelearn.checkpoint import read_checkpoint
from livelearn.logfiles import ColumnError, Columns, LogError, LogRows, detect_format, read_log
from livelearn.metrics_offline import (
    log_losses,
    roc_auc,
    rolling_mean,
    running_base_rate,
    running_mean,
    squared_errors,
)

__all__ = ["main"]

PLOT_HINT = "pip install 'livelearn[plot]'"
_CHUNK = 512


class UsageError(Exception):
    """A bad option or argument (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------- replay core
@dataclass
class Replay:
    """What happened when a list of interactions went through an engine."""

    events: int = 0
    seconds: float = 0.0
    trained: int = 0
    skipped: int = 0
    rejected: int = 0
    failed: int = 0
    targets: list[float] = field(default_factory=list)  # output 0 of each trained event
    predictions: list[float] = field(default_factory=list)  # made before learning from it
    positions: list[int] = field(default_factory=list)  # index of each trained event
    rejections: list[tuple[int, str]] = field(default_factory=list)  # (index, reason)


def replay(
    engine: Engine,
    interactions: Sequence[InteractionData],
    *,
    progress: bool = False,
    description: str = "replay",
    every: int | None = None,
    on_every: Callable[[], None] | None = None,
) -> Replay:
    """Train ``engine`` on ``interactions`` in order, keeping each event's
    progressive prediction (made before the engine learned from it).

    ``on_every`` is called after each ``every`` events (at a chunk boundary,
    with every earlier step finished), e.g. to save a checkpoint.
    """
    out = Replay(events=len(interactions))
    single = engine.targets.n_outputs == 1
    bar = _progress_bar(len(interactions), description, progress)
    since = 0
    start = time.perf_counter()
    try:
        for lo in range(0, len(interactions), _CHUNK):
            chunk = interactions[lo : lo + _CHUNK]
            futures = engine.train_many(chunk)
            for offset, future in enumerate(futures):
                index = lo + offset
                error = future.exception()
                if error is not None:
                    kind = "rejected" if isinstance(error, InvalidInteraction) else "failed"
                    setattr(out, kind, getattr(out, kind) + 1)
                    out.rejections.append((index, str(error)))
                    continue
                result = future.result()
                if result.status is StepStatus.TRAINED:
                    out.trained += 1
                    if single:
                        target = engine.targets.target(chunk[offset])
                        out.targets.append(float(target[0]))
                        out.predictions.append(float(result.prediction))  # type: ignore[arg-type]
                        out.positions.append(index)
                elif result.status is StepStatus.SKIPPED:
                    out.skipped += 1
                else:
                    out.rejected += 1
                    out.rejections.append((index, result.reason or "rejected"))
            if bar is not None:
                bar.update(len(chunk))
            since += len(chunk)
            if every and on_every is not None and since >= every:
                on_every()
                since = 0
    finally:
        out.seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
    return out


def _progress_bar(total: int, description: str, force: bool) -> Any:
    if not (force or sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # tqdm is a dependency, but never fail for a progress bar
        return None
    return tqdm(total=total, desc=description, unit="ev", unit_scale=True, file=sys.stderr)


@dataclass
class Scores:
    """Progressive scores of a replay against the running-mean baseline."""

    metric: str  # "log loss" or "MSE"
    model: float | None
    baseline: float | None
    model_auc: float | None
    baseline_auc: float | None
    model_curve: NDArray[np.float64]
    baseline_curve: NDArray[np.float64]


def score(run: Replay, loss: str) -> Scores:
    """Per-event losses of the model and the running base rate, and ROC AUC
    where targets are 0/1."""
    y = np.asarray(run.targets, dtype=np.float64)
    p = np.asarray(run.predictions, dtype=np.float64)
    binary = bool(y.size) and bool(np.isin(y, (0.0, 1.0)).all())
    if loss == "bce" and y.size and bool(((y >= 0) & (y <= 1)).all()):
        base = running_base_rate(y)
        model_curve, base_curve, metric = log_losses(y, p), log_losses(y, base), "log loss"
    else:
        base = running_mean(y)
        model_curve, base_curve, metric = squared_errors(y, p), squared_errors(y, base), "MSE"
    return Scores(
        metric=metric,
        model=float(model_curve.mean()) if y.size else None,
        baseline=float(base_curve.mean()) if y.size else None,
        model_auc=roc_auc(y, p) if binary else None,
        baseline_auc=roc_auc(y, base) if binary else None,
        model_curve=model_curve,
        baseline_curve=base_curve,
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


# --------------------------------------------------------------------------- formatting
def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def _size(path: Path) -> str:
    n = float(path.stat().st_size)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _line(label: str, text: str) -> str:
    return f"  {label:<13}{text}"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _engine_summary(engine: Engine) -> str:
    c = engine.config
    enc = engine.features
    lr = engine.network.get_config()["learning_rate"]
    config = enc.get_config()
    name = config.get("type", type(enc).__name__)
    if name == "HashedFeatureEncoder":
        name += f"(n_buckets={config.get('n_buckets')})"
    return (
        f"Engine(hidden_layers={tuple(c['hidden_layers'])}, optimizer={c['optimizer']!r}, "
        f"learning_rate={lr}, loss={c['loss']!r}), {name}, {enc.n_inputs:,} inputs"
    )


# --------------------------------------------------------------------------- demo
def _demo(args: argparse.Namespace) -> int:
    from livelearn.datasets import load_sample, simulate_interactions

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot create the folder ({exc.strerror})") from exc
    progress = bool(args.progress)
    bayes: float | None = None
    bayes_auc: float | None = None
    probabilities: NDArray[np.float64] | None = None
    stream_base: float | None = None
    hashed = args.simulate or args.hashed
    features = HashedFeatureEncoder() if hashed else FeatureEncoder()
    if args.simulate:
        if args.events < 1:
            raise UsageError("--events: must be >= 1")
        stream = simulate_interactions(n_events=args.events, seed=args.seed)
        interactions = stream.interactions
        bayes = stream.bayes_log_loss()
        probabilities = np.asarray(stream.probabilities, dtype=np.float64)
        bayes_auc = roc_auc(stream.labels, stream.probabilities)
        stream_base = stream.base_rate_log_loss()
        title = (
            f"simulated stream (simulate_interactions(n_events={args.events}, seed={args.seed}))"
        )
        engine = Engine(
            features=features, optimizer="adam", learning_rate=0.001, seed=args.seed, log_every=0
        )
    else:
        interactions = sorted(load_sample(), key=lambda it: it.timestamp)
        title = "Open Bandit sample (30,000 real ZOZOTOWN impressions, CC BY 4.0)"
        engine = Engine(features=features, seed=args.seed, log_every=0)
    with engine:
        run = replay(engine, interactions, progress=progress, description="demo")
        stats = engine.stats()
        checkpoint = out / "checkpoint.safetensors"
        engine.save(checkpoint)
    scores = score(run, "bce")
    clicks = int(sum(run.targets))
    print(f"livelearn demo: {title}")
    print(_line("model", _engine_summary(engine)))
    if args.simulate:
        print(_line("", "(hashed one-hot features: 4 dense inputs cannot tell 200 users apart)"))
    rate = run.events / run.seconds if run.seconds > 0 else float("inf")
    print(
        _line(
            "events",
            f"{run.events:,} in timestamp order in {run.seconds:.2f} s ({rate:,.0f} events/s)",
        )
    )
    print(
        _line(
            "steps",
            f"{stats.steps:,} trained, {stats.skipped:,} skipped, {stats.rejected:,} rejected",
        )
    )
    share = 100.0 * clicks / max(1, len(run.targets))
    print(_line("clicks", f"{clicks:,} ({share:.2f} %)"))
    base_name = "base rate (running mean, predicted before each label)"
    if args.simulate:
        print(
            _line(
                "log loss",
                f"model {_num(scores.model)}  |  base rate (constant) {_num(stream_base)}"
                f"  |  Bayes-optimal {_num(bayes)}",
            )
        )
        if scores.model is not None and stream_base is not None and bayes is not None:
            gap = (stream_base - scores.model) / (stream_base - bayes)
            print(
                _line(
                    "",
                    f"the model closes {100 * gap:.0f} % of the gap from the base rate "
                    "to the Bayes-optimal loss (true probabilities)",
                )
            )
        print(
            _line(
                "ROC AUC",
                f"model {_num(scores.model_auc, 3)}  |  Bayes-optimal {_num(bayes_auc, 3)}",
            )
        )
    else:
        print(
            _line("log loss", f"model {_num(scores.model)}  |  {base_name} {_num(scores.baseline)}")
        )
        print(
            _line(
                "ROC AUC",
                f"model {_num(scores.model_auc, 3)}  |  base rate {_num(scores.baseline_auc, 3)}",
            )
        )
    print(_line("", "progressive: every event is scored before the model learns from it"))
    print(_line("checkpoint", f"{checkpoint} ({_size(checkpoint)})"))
    png = out / "loss_curve.png"
    curves = {"model": scores.model_curve, "base rate (running mean)": scores.baseline_curve}
    if probabilities is not None:
        truth = np.asarray(run.targets, dtype=np.float64)
        chosen = probabilities[np.asarray(run.positions, dtype=np.int64)]
        curves["Bayes-optimal (true probabilities)"] = log_losses(truth, chosen)
    plotted = plot_curves(png, curves, f"livelearn demo: {title}", "log loss")
    if plotted:
        print(_line("loss curve", str(png)))
    else:
        print(_line("loss curve", f"not drawn: matplotlib is missing ({PLOT_HINT})"))
    report = {
        "dataset": "simulated" if args.simulate else "open_bandit_sample",
        "events": run.events,
        "seconds": run.seconds,
        "events_per_second": rate,
        "steps": stats.steps,
        "skipped": stats.skipped,
        "rejected": stats.rejected,
        "clicks": clicks,
        "log_loss": scores.model,
        "base_rate_log_loss": stream_base if args.simulate else scores.baseline,
        "running_base_rate_log_loss": scores.baseline,
        "bayes_log_loss": bayes,
        "roc_auc": scores.model_auc,
        "base_rate_roc_auc": scores.baseline_auc,
        "bayes_roc_auc": bayes_auc,
        "engine": engine.config,
        "features": engine.features.get_config(),
        "checkpoint": str(checkpoint),
        "loss_curve": str(png) if plotted else None,
    }
    _write_json(out / "report.json", report)
    print(_line("report", str(out / "report.json")))
    if not args.simulate:
        print("  note: real clicks are rare and barely predictable from these features;")
        print("        `livelearn demo --simulate` shows learning on a stream with a known answer")
    return 0


# --------------------------------------------------------------------------- replay
def _columns(args: argparse.Namespace, *, label_required: bool, use_label: bool = True) -> Columns:
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


def _read(args: argparse.Namespace, columns: Columns) -> LogRows:
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


def _report_bad_rows(log: LogRows, stream: IO[str], show: int = 5) -> None:
    if not log.errors:
        return
    print(f"livelearn: skipped {len(log.errors):,} malformed row(s) of {log.rows:,}:", file=stream)
    for error in log.errors[:show]:
        print(f"  line {error.line}: {error.message}", file=stream)
    if len(log.errors) > show:
        print(f"  ... and {len(log.errors) - show:,} more", file=stream)


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


def _replay_cmd(args: argparse.Namespace) -> int:
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
    columns = _columns(args, label_required=args.label_col_given)
    log = _read(args, columns)
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
    _report_bad_rows(log, sys.stderr)
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
            f"{skipped_seen:,} event(s) at or before {_when(last)} already learned, skipped",
            file=sys.stderr,
        )

    def save() -> None:
        if checkpoint is not None:
            engine.save(checkpoint)

    run = replay(
        engine,
        interactions,
        progress=args.progress,
        description=Path(args.file).name,
        every=args.checkpoint_every,
        on_every=save,
    )
    stats = engine.stats()
    save()
    scores = score(run, engine.config["loss"])
    rate = run.events / run.seconds if run.seconds > 0 else float("inf")
    rejected_lines = [(lines[i], reason) for i, reason in run.rejections]
    print(f"livelearn replay: {args.file} ({log.format}, {log.rows:,} rows)")
    print(_line("model", _engine_summary(engine)))
    print(
        _line(
            "events",
            f"{run.events:,} replayed in {run.seconds:.2f} s ({rate:,.0f} events/s)"
            + ("" if args.no_sort else ", in timestamp order"),
        )
    )
    print(
        _line(
            "malformed",
            f"{len(log.errors):,} row(s) skipped"
            + (f", {skipped_seen:,} already learned" if resume else ""),
        )
    )
    print(
        _line(
            "steps",
            f"{run.trained:,} trained, {run.skipped:,} skipped, "
            f"{run.rejected:,} rejected, {run.failed:,} failed "
            f"(engine total {stats.steps:,})",
        )
    )
    for line, reason in rejected_lines[:3]:
        print(_line("", f"line {line}: {reason}"))
    if scores.model is not None:
        print(
            _line(
                scores.metric,
                f"model {_num(scores.model)}  |  running base rate {_num(scores.baseline)}",
            )
        )
    if scores.model_auc is not None:
        print(
            _line(
                "ROC AUC",
                f"model {_num(scores.model_auc, 3)}  |  running base rate "
                f"{_num(scores.baseline_auc, 3)}",
            )
        )
    if checkpoint is not None:
        print(_line("checkpoint", f"{checkpoint} ({_size(checkpoint)})"))
    plotted: bool | None = None
    if args.plot:
        plotted = plot_curves(
            Path(args.plot),
            {"model": scores.model_curve, "running base rate": scores.baseline_curve},
            f"livelearn replay: {Path(args.file).name}",
            scores.metric,
        )
        text = args.plot if plotted else f"not drawn: matplotlib is missing ({PLOT_HINT})"
        print(_line("loss curve", text))
    if args.report:
        _write_json(
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
                "events": run.events,
                "seconds": run.seconds,
                "events_per_second": rate,
                "trained": run.trained,
                "skipped": run.skipped,
                "rejected": run.rejected,
                "failed": run.failed,
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
        print(_line("report", args.report))
    return 0


# --------------------------------------------------------------------------- predict
def _load_for_predict(path: str) -> Engine:
    try:
        return Engine.load(path)
    except CheckpointError as exc:
        if "callable target" not in str(exc):
            raise
    # Predictions do not need the target function: stand in for it.
    return Engine.load(path, targets=lambda _: None)


def _predict_cmd(args: argparse.Namespace) -> int:
    if not Path(args.checkpoint).exists():
        raise CheckpointError(f"{args.checkpoint}: no such checkpoint")
    if read_checkpoint(args.checkpoint).kind != "engine":
        raise CheckpointError(
            f"{args.checkpoint}: a Network checkpoint has no feature encoder; "
            "predict needs an Engine checkpoint"
        )
    engine = _load_for_predict(args.checkpoint)
    try:
        columns = _columns(args, label_required=False, use_label=False)
        log = _read(args, columns)
        _report_bad_rows(log, sys.stderr)
        out_format = args.output_format
        if out_format is None:
            out_format = "jsonl" if args.out and args.out.endswith((".jsonl", ".json")) else "csv"
        k = engine.targets.n_outputs
        chunks = [
            engine.predict_many(log.interactions[lo : lo + 4096])
            for lo in range(0, len(log.interactions), 4096)
        ]
        preds = np.concatenate(chunks) if chunks else np.zeros((0, k), np.float32)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "w", encoding="utf-8", newline="") as handle:
                _write_predictions(handle, out_format, log, preds)
        else:
            _write_predictions(sys.stdout, out_format, log, preds)
            sys.stdout.flush()
        where = args.out or "stdout"
        print(
            f"livelearn predict: {len(log.interactions):,} prediction(s) written to {where}; "
            f"{len(log.errors):,} malformed row(s) skipped",
            file=sys.stderr,
        )
    finally:
        engine.close()
    return 0


def _write_predictions(
    handle: IO[str], out_format: str, log: LogRows, preds: NDArray[np.float32]
) -> None:
    k = preds.shape[1]
    names = ["prediction"] if k == 1 else [f"prediction_{j}" for j in range(k)]
    rows = preds.tolist()
    if out_format == "csv":
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["line", "user_id", "action_type", "timestamp", *names])
        for line, it, row in zip(log.lines, log.interactions, rows, strict=True):
            writer.writerow(
                [
                    line,
                    it.user_id,
                    it.action_type,
                    repr(it.timestamp),
                    *(format(v, ".9g") for v in row),
                ]
            )
    else:
        for line, it, row in zip(log.lines, log.interactions, rows, strict=True):
            record: dict[str, Any] = {
                "line": line,
                "user_id": it.user_id,
                "action_type": it.action_type,
                "timestamp": it.timestamp,
            }
            record.update(zip(names, (float(format(v, ".9g")) for v in row), strict=True))
            handle.write(json.dumps(record) + "\n")


# --------------------------------------------------------------------------- inspect
def _inspect_cmd(args: argparse.Namespace) -> int:
    ckpt = read_checkpoint(args.checkpoint)
    meta = ckpt.meta
    tensors = ckpt.tensors
    params = sum(
        int(v.size)
        for k, v in tensors.items()
        if k.startswith("network.layers.") and k.endswith((".weight", ".bias"))
    )
    history = _history_summary(tensors)
    if args.json:
        payload = {
            "path": args.checkpoint,
            "bytes": ckpt.size,
            "kind": ckpt.kind,
            "format_version": ckpt.format_version,
            "parameters": params,
            "history": history,
            "metadata": meta,
            "tensors": {k: [str(v.dtype), list(v.shape)] for k, v in sorted(tensors.items())},
        }
        print(json.dumps(payload, indent=2, sort_keys=True))
        return 0
    net = meta.get("network", {})
    saved_at = meta.get("saved_at")
    print(f"livelearn checkpoint: {args.checkpoint} ({_size(Path(args.checkpoint))})")
    print(
        _line(
            "format",
            f"livelearn.checkpoint v{ckpt.format_version}, {ckpt.kind} checkpoint, "
            f"written by livelearn {meta.get('library_version', '?')} at "
            f"{_when(saved_at if isinstance(saved_at, float) else None)}",
        )
    )
    optim = f"{net.get('optimizer')} (learning_rate {net.get('learning_rate'):.7g}"
    if net.get("optimizer") == "sgd" and net.get("momentum"):
        optim += f", momentum {net.get('momentum'):.7g}"
    if net.get("weight_decay"):
        optim += f", weight_decay {net.get('weight_decay'):.7g}"
    if net.get("clip_norm") is not None:
        optim += f", clip_norm {net.get('clip_norm'):.7g}"
    optim += ")"
    print(
        _line(
            "network",
            f"layers {net.get('layers')}, {net.get('activation')} hidden, "
            f"{net.get('output')} output, loss {net.get('loss')}",
        )
    )
    print(_line("optimizer", optim))
    print(_line("parameters", f"{params:,}"))
    steps = int(tensors["network.counters.steps"]) if "network.counters.steps" in tensors else 0
    if ckpt.kind == "network":
        rejected = int(tensors.get("network.counters.rejected_steps", np.array(0)))
        print(_line("counters", f"{steps:,} steps, {rejected:,} rejected"))
        return 0
    features = dict(meta.get("features", {}))
    kind = features.pop("type", "?")
    n_inputs = features.pop("n_inputs", "?")
    shown = ", ".join(f"{k}={v!r}" for k, v in features.items())
    print(
        _line(
            "features",
            f"{kind}({shown}), {n_inputs:,} inputs"
            if isinstance(n_inputs, int)
            else f"{kind}({shown})",
        )
    )
    print(_line("targets", json.dumps(meta.get("targets"))))
    engine = meta.get("engine", {})
    settings = ", ".join(
        f"{k}={engine.get(k)!r}"
        for k in ("history_size", "batch_size", "workers", "max_pending", "overload")
    )
    print(_line("engine", settings))
    if engine.get("checkpoint_path") is not None:
        print(
            _line(
                "autosave",
                f"{engine.get('checkpoint_path')} every "
                f"{engine.get('checkpoint_every')} steps / "
                f"{engine.get('checkpoint_interval')} s",
            )
        )
    c = meta.get("counters", {})
    trained = c.get("trained", 0)
    mean = c.get("loss_sum", 0.0) / trained if trained else None
    print(
        _line(
            "counters",
            f"{trained:,} trained, {c.get('skipped', 0):,} skipped, "
            f"{c.get('rejected', 0):,} rejected, {c.get('failed', 0):,} failed",
        )
    )
    print(
        _line(
            "loss",
            f"mean {_num(mean)}, recent {_num(c.get('recent_loss'))}, "
            f"last {_num(c.get('last_loss'))}",
        )
    )
    print(_line("last event", _when(c.get("last_example_time"))))
    if history["examples"]:
        print(
            _line(
                "history",
                f"{history['examples']:,} examples, steps "
                f"{history['first_step']:,}..{history['last_step']:,}, "
                f"{_when(history['first_time'])} .. {_when(history['last_time'])}",
            )
        )
        print(
            _line(
                "",
                f"mean loss {_num(history['mean_loss'])}, mean target "
                f"{_num(history['mean_target'])}, mean prediction "
                f"{_num(history['mean_prediction'])}",
            )
        )
    else:
        print(_line("history", "empty"))
    return 0


def _history_summary(tensors: dict[str, NDArray[Any]]) -> dict[str, Any]:
    steps = tensors.get("history.steps")
    if steps is None or not len(steps):
        return {"examples": 0}
    times = tensors["history.timestamps"]
    return {
        "examples": len(steps),
        "first_step": int(steps[0]),
        "last_step": int(steps[-1]),
        "first_time": float(times[0]),
        "last_time": float(times[-1]),
        "mean_loss": float(np.mean(tensors["history.losses"], dtype=np.float64)),
        "mean_target": float(np.mean(tensors["history.targets"], dtype=np.float64)),
        "mean_prediction": float(np.mean(tensors["history.predictions"], dtype=np.float64)),
    }


# --------------------------------------------------------------------------- parser
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


class _LabelCol(argparse.Action):
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


def _add_columns(p: argparse.ArgumentParser, *, with_strict: bool = True) -> None:
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
        action=_LabelCol,
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


def build_parser() -> argparse.ArgumentParser:
    """The ``livelearn`` argument parser (exposed for documentation tools)."""
    common = _Parser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log details and show tracebacks on errors",
    )
    parser = _Parser(
        prog="livelearn",
        description="Learn live from user interactions: replay logs through a livelearn "
        "Engine, predict, and inspect checkpoints.",
        epilog="Run 'livelearn COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"livelearn {livelearn.__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False,
        help="log details and show tracebacks on errors",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="replay the bundled sample (no arguments needed)",
        description="Replay the bundled Open Bandit sample (30,000 real impressions) through "
        "an Engine in timestamp order, then report progressive log loss and ROC AUC against "
        "the running base rate, and write a checkpoint, a loss-curve PNG and report.json. "
        "Defaults: Engine() with FeatureEncoder (4 inputs). --simulate uses "
        "livelearn.datasets.simulate_interactions (known click probabilities) with "
        "HashedFeatureEncoder() and Adam (learning rate 0.001), and compares with the "
        "Bayes-optimal log loss.",
    )
    demo.add_argument(
        "--simulate", action="store_true", help="use the simulator instead of the real sample"
    )
    demo.add_argument(
        "--events",
        type=int,
        default=20_000,
        help="simulated events (with --simulate; default: %(default)s)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    demo.add_argument(
        "--hashed", action="store_true", help="HashedFeatureEncoder for the real sample too"
    )
    demo.add_argument(
        "--out",
        default="livelearn-demo",
        metavar="DIR",
        help="output folder (default: ./%(default)s/)",
    )
    demo.add_argument(
        "--progress",
        action="store_true",
        help="show a progress bar even when stderr is not a terminal",
    )
    demo.set_defaults(handler=_demo)

    rep = sub.add_parser(
        "replay",
        parents=[common],
        help="train on a CSV, JSON Lines or Parquet log",
        description="Replay an interaction log through an Engine (in timestamp order), "
        "reporting progressive scores. With --checkpoint, resume from it if it exists "
        "(skipping events at or before its last learned timestamp) and save it at the end.",
    )
    rep.add_argument("file", metavar="FILE", help="the log (.csv, .jsonl, .parquet; .gz)")
    _add_columns(rep)
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
        "--learning-rate", type=_positive_float, metavar="LR", help="learning rate (default: 0.05)"
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
    rep.set_defaults(handler=_replay_cmd)

    pred = sub.add_parser(
        "predict",
        parents=[common],
        help="predict every row of a log with a checkpoint",
        description="Load an Engine checkpoint and write the model's prediction for each "
        "row of FILE (CSV or JSON Lines) to stdout or --out. Labels are not needed.",
    )
    pred.add_argument("checkpoint", metavar="CHECKPOINT", help="an Engine checkpoint")
    pred.add_argument("file", metavar="FILE", help="the log (.csv, .jsonl, .parquet; .gz)")
    _add_columns(pred)
    pred.add_argument("--out", metavar="PATH", help="output file (default: stdout)")
    pred.add_argument(
        "--output-format",
        choices=("csv", "jsonl"),
        help="default: jsonl for --out *.jsonl, else csv",
    )
    pred.set_defaults(handler=_predict_cmd)

    ins = sub.add_parser(
        "inspect",
        parents=[common],
        help="show a checkpoint's configuration and counters",
        description="Verify a checkpoint and print its configuration, counters, parameter "
        "count and a summary of its history.",
    )
    ins.add_argument("checkpoint", metavar="CHECKPOINT")
    ins.add_argument("--json", action="store_true", help="print everything as JSON")
    ins.set_defaults(handler=_inspect_cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, 1 runtime error, 2 usage error).

    Example:
        >>> main(["--version"])  # doctest: +ELLIPSIS
        livelearn ...
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    verbose = bool(getattr(args, "verbose", False))
    log = logging.getLogger("livelearn")
    if verbose:
        logging.basicConfig(level=logging.INFO, format="livelearn: %(levelname)s %(message)s")
        log.setLevel(logging.INFO)
    else:
        log.setLevel(logging.ERROR)
    prog = f"livelearn {args.command}"
    try:
        status: int = args.handler(args)
        return status
    except BrokenPipeError:  # e.g. `livelearn predict ... | head`: the reader left
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error at exit
        return 0
    except (UsageError, ColumnError) as exc:
        _error(prog, str(exc), verbose)
        return 2
    except (CheckpointError, LogError, OSError, ValueError, RuntimeError) as exc:
        message = str(exc)
        if isinstance(exc, OSError) and exc.filename is not None:
            message = f"{exc.filename}: {exc.strerror or exc}"
        _error(prog, message, verbose)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        _error(prog, f"unexpected {type(exc).__name__}: {exc}", verbose)
        return 1


def _error(prog: str, message: str, verbose: bool) -> None:
    if verbose:
        traceback.print_exc()
    text = " ".join(message.split())  # one line
    print(f"{prog}: error: {text}", file=sys.stderr)
