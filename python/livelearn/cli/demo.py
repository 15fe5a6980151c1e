"""``livelearn demo``: replay the bundled sample (or the simulator) and report
progressive scores, a checkpoint, a loss curve and report.json."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from livelearn import Engine, FeatureEncoder, HashedFeatureEncoder
from livelearn.cli.common import (
    PLOT_HINT,
    Parser,
    UsageError,
    engine_summary,
    line,
    num,
    plot_curves,
    show_progress,
    size,
    write_json,
)
from livelearn.evaluate import progressive_val_score
from livelearn.metrics_offline import log_losses, roc_auc


def add_parser(sub: argparse._SubParsersAction[Parser], common: Parser) -> None:
    """Add ``livelearn demo`` to ``sub``."""
    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="replay the bundled sample (no arguments needed)",
        description="Replay the bundled Open Bandit sample (30,000 real impressions) through "
        "an Engine in timestamp order, then report progressive log loss and ROC AUC against "
        "the running base rate, and write a checkpoint, a loss-curve PNG and report.json. "
        "Both use the recommended configuration, Engine(features=HashedFeatureEncoder()) "
        "(the field-aware model with AdaGrad). --simulate uses "
        "livelearn.datasets.simulate_interactions (known click probabilities) and reports "
        "the share of the gap from the base rate to the Bayes-optimal log loss the model "
        "closed. --four-inputs replays the seed's Engine() (FeatureEncoder, 4 inputs).",
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
        "--hashed",
        action="store_true",
        help="HashedFeatureEncoder (the default now; kept for old command lines)",
    )
    demo.add_argument(
        "--four-inputs",
        action="store_true",
        help="the seed's Engine() with FeatureEncoder (4 inputs) instead",
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
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``livelearn demo``; returns the exit code."""
    from livelearn.datasets import load_sample, simulate_interactions

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot create the folder ({exc.strerror})") from exc
    bayes: float | None = None
    bayes_auc: float | None = None
    probabilities: NDArray[np.float64] | None = None
    stream_base: float | None = None
    features = FeatureEncoder() if args.four_inputs else HashedFeatureEncoder()
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
    else:
        interactions = sorted(load_sample(), key=lambda it: it.timestamp)
        title = "Open Bandit sample (30,000 real ZOZOTOWN impressions, CC BY 4.0)"
    # The labels are explicit (no targets): the action type may stay an input.
    engine = Engine(features=features, seed=args.seed, log_every=0)
    with engine:
        result = progressive_val_score(
            engine,
            interactions,
            loss="bce",
            progress=show_progress(args.progress),
            description="demo",
        )
        stats = engine.stats()
        checkpoint = out / "checkpoint.safetensors"
        engine.save(checkpoint)
    scores = result.scores
    clicks = int(result.targets.sum())
    print(f"livelearn demo: {title}")
    print(line("model", engine_summary(engine)))
    if args.simulate and args.four_inputs:
        print(line("", "(4 dense inputs cannot tell 200 users apart: drop --four-inputs)"))
    rate = result.events_per_second
    print(
        line(
            "events",
            f"{result.events:,} in timestamp order in {result.seconds:.2f} s "
            f"({rate:,.0f} events/s)",
        )
    )
    print(
        line(
            "steps",
            f"{stats.steps:,} trained, {stats.skipped:,} skipped, {stats.rejected:,} rejected",
        )
    )
    share = 100.0 * clicks / max(1, len(result.targets))
    print(line("clicks", f"{clicks:,} ({share:.2f} %)"))
    base_name = "base rate (running mean, predicted before each label)"
    gap: float | None = None  # the share of the learnable gap closed, where known
    if scores.model is not None and stream_base is not None and bayes is not None:
        gap = (stream_base - scores.model) / (stream_base - bayes)
    if args.simulate:
        print(
            line(
                "log loss",
                f"model {num(scores.model)}  |  base rate (constant) {num(stream_base)}"
                f"  |  Bayes-optimal {num(bayes)}",
            )
        )
        if gap is not None:
            print(
                line(
                    "",
                    f"the model closes {100 * gap:.0f} % of the gap from the base rate "
                    "to the Bayes-optimal loss (true probabilities)",
                )
            )
        print(
            line(
                "ROC AUC",
                f"model {num(scores.model_auc, 3)}  |  Bayes-optimal {num(bayes_auc, 3)}",
            )
        )
    else:
        print(line("log loss", f"model {num(scores.model)}  |  {base_name} {num(scores.baseline)}"))
        print(
            line(
                "ROC AUC",
                f"model {num(scores.model_auc, 3)}  |  base rate {num(scores.baseline_auc, 3)}",
            )
        )
    print(line("", "progressive: every event is scored before the model learns from it"))
    print(line("checkpoint", f"{checkpoint} ({size(checkpoint)})"))
    png = out / "loss_curve.png"
    curves = {"model": scores.model_curve, "base rate (running mean)": scores.baseline_curve}
    if probabilities is not None:
        chosen = probabilities[result.positions]
        curves["Bayes-optimal (true probabilities)"] = log_losses(result.targets, chosen)
    plotted = plot_curves(png, curves, f"livelearn demo: {title}", "log loss")
    if plotted:
        print(line("loss curve", str(png)))
    else:
        print(line("loss curve", f"not drawn: matplotlib is missing ({PLOT_HINT})"))
    report = {
        "dataset": "simulated" if args.simulate else "open_bandit_sample",
        "events": result.events,
        "seconds": result.seconds,
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
        "gap_closed": gap,
        "engine": engine.config,
        "features": engine.features.get_config(),
        "checkpoint": str(checkpoint),
        "loss_curve": str(png) if plotted else None,
    }
    write_json(out / "report.json", report)
    print(line("report", str(out / "report.json")))
    if not args.simulate:
        print("  note: real clicks are rare and barely predictable from these features;")
        print("        `livelearn demo --simulate` shows learning on a stream with a known answer")
    return 0
