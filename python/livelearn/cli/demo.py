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

_BLOCKS = "▁▂▃▄▅▆▇█"


def windowed(curve: NDArray[np.float64], width: int) -> NDArray[np.float64]:
    """The mean of ``curve`` over ``width`` consecutive, equal slices (fewer if short).

    Example:
        >>> windowed(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist()
        [2.0, 6.0]
    """
    n = len(curve)
    if n == 0:
        return np.zeros(0)
    edges = np.linspace(0, n, min(width, n) + 1).astype(int)
    sums = np.add.reduceat(np.asarray(curve, dtype=np.float64), edges[:-1])
    return np.asarray(sums / np.diff(edges), dtype=np.float64)


def sparkline(values: NDArray[np.float64], low: float, high: float) -> str:
    """One block character per value, ``low`` -> ``▁`` ... ``high`` -> ``█``.

    Example:
        >>> sparkline(np.array([0.0, 0.5, 1.0]), 0.0, 1.0)
        '▁▅█'
    """
    span = high - low
    if not span > 0:
        return _BLOCKS[0] * len(values)
    levels = np.clip(np.rint((values - low) / span * (len(_BLOCKS) - 1)), 0, len(_BLOCKS) - 1)
    return "".join(_BLOCKS[int(v)] for v in levels)


def cumulative(curve: NDArray[np.float64], width: int) -> NDArray[np.float64]:
    """The running mean of ``curve`` (the progressive score so far) at the end of each
    of ``width`` equal slices.

    Example:
        >>> cumulative(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist()
        [2.0, 4.0]
    """
    n = len(curve)
    ends = np.linspace(0, n, min(width, n) + 1).astype(int)[1:]
    return np.asarray(np.cumsum(curve)[ends - 1] / ends, dtype=np.float64)


def text_curves(curves: dict[str, NDArray[np.float64]], width: int = 60) -> list[str]:
    """The loss curves as sparklines on one shared scale: the mean loss of every event
    so far, at ``width`` points along the stream (its range in the legend)."""
    slices = {name: cumulative(curve, width) for name, curve in curves.items() if len(curve)}
    if not slices:
        return []
    low = min(float(v.min()) for v in slices.values())
    high = max(float(v.max()) for v in slices.values())
    label = max(len(name) for name in slices)
    out = [f"{name:<{label}}  {sparkline(v, low, high)}" for name, v in slices.items()]
    out.append(f"{'':<{label}}  ▁ = {low:.4f}, █ = {high:.4f} (mean log loss of all events so far)")
    return out


def write_svg(path: Path, curves: dict[str, NDArray[np.float64]], title: str) -> None:
    """A dependency-free SVG of the curves: the mean loss per 1/200 of the stream."""
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
    slices = {name: windowed(curve, 200) for name, curve in curves.items() if len(curve)}
    w, h, pad = 720.0, 360.0, 40.0
    low = min((float(v.min()) for v in slices.values()), default=0.0)
    high = max((float(v.max()) for v in slices.values()), default=1.0)
    span = high - low if high > low else 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w:.0f}" height="{h:.0f}" fill="white"/>',
        f'<text x="{pad}" y="20">{_xml(title)}</text>',
        f'<text x="4" y="{pad + 4:.0f}">{high:.4f}</text>',
        f'<text x="4" y="{h - pad:.0f}">{low:.4f}</text>',
    ]
    for i, (name, v) in enumerate(slices.items()):
        xs = pad + (w - 2 * pad) * np.arange(len(v)) / max(1, len(v) - 1)
        ys = h - pad - (h - 2 * pad) * (v - low) / span
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        colour = colours[i % len(colours)]
        parts.append(f'<polyline fill="none" stroke="{colour}" points="{points}"/>')
        parts.append(
            f'<text x="{w - 260:.0f}" y="{40 + 16 * i}" fill="{colour}">{_xml(name)}</text>'
        )
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
    svg = out / "loss_curve.svg"
    write_svg(svg, curves, f"livelearn demo: {title}")
    rows = text_curves(curves)
    print(line("loss curve", rows[0] if rows else "(no events)"))
    for row in rows[1:]:
        print(line("", row))
    if plotted:
        print(line("", f"{png} and {svg}"))
    else:
        print(line("", f"{svg} (a PNG needs matplotlib: {PLOT_HINT})"))
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
        "loss_curve_svg": str(svg),
    }
    write_json(out / "report.json", report)
    print(line("report", str(out / "report.json")))
    if not args.simulate:
        print("  note: real clicks are rare and barely predictable from these features;")
        print("        `livelearn demo --simulate` shows learning on a stream with a known answer")
    return 0
