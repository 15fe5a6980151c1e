"""``livelearn predict``: write an Engine checkpoint's prediction for each row of a log."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from livelearn import CheckpointError, Engine
from livelearn.checkpoint import read_checkpoint
from livelearn.cli.common import Parser, add_columns, log_columns, read, report_bad_rows
from livelearn.logfiles import LogRows


def add_parser(sub: argparse._SubParsersAction[Parser], common: Parser) -> None:
    """Add ``livelearn predict`` to ``sub``."""
    pred = sub.add_parser(
        "predict",
        parents=[common],
        help="predict every row of a log with a checkpoint",
        description="Load an Engine checkpoint and write the model's prediction for each "
        "row of FILE (CSV or JSON Lines) to stdout or --out. Labels are not needed.",
    )
    pred.add_argument("checkpoint", metavar="CHECKPOINT", help="an Engine checkpoint")
    pred.add_argument("file", metavar="FILE", help="the log (.csv, .jsonl, .parquet; .gz)")
    add_columns(pred)
    pred.add_argument("--out", metavar="PATH", help="output file (default: stdout)")
    pred.add_argument(
        "--output-format",
        choices=("csv", "jsonl"),
        help="default: jsonl for --out *.jsonl, else csv",
    )
    pred.set_defaults(handler=run)


def _load_for_predict(path: str) -> Engine:
    try:
        return Engine.load(path)
    except CheckpointError as exc:
        if "callable target" not in str(exc):
            raise
    # Predictions do not need the target function: stand in for it.
    return Engine.load(path, targets=lambda _: None)


def run(args: argparse.Namespace) -> int:
    """Run ``livelearn predict``; returns the exit code."""
    if not Path(args.checkpoint).exists():
        raise CheckpointError(f"{args.checkpoint}: no such checkpoint")
    if read_checkpoint(args.checkpoint).kind != "engine":
        raise CheckpointError(
            f"{args.checkpoint}: a Network checkpoint has no feature encoder; "
            "predict needs an Engine checkpoint"
        )
    engine = _load_for_predict(args.checkpoint)
    try:
        columns = log_columns(args, label_required=False, use_label=False)
        log = read(args, columns)
        report_bad_rows(log, sys.stderr)
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
