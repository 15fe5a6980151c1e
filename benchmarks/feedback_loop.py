"""Cost of the delayed-feedback loop: predict(event_id=) + feedback() against
predict() + train_step(), per event, as a ratio; memory per awaiting example; and
RSS while many impressions wait without feedback (bounded by ``max_awaiting``).

Each round serves ``--events`` impressions (a prediction each) and learns every
label, then drains the engine: ``baseline`` predicts and calls ``train_step``
with the labelled interaction (the caller keeps it and encodes it twice);
``joined`` predicts with an ``event_id`` and sends ``feedback(event_id, label)``
(the engine keeps the encoded row). Rounds alternate, ``--repeat`` each, and
the ratio of the medians is reported (alternating cancels most of the drift of
a shared machine). Memory per awaiting example is ``tracemalloc``'s traced
growth over ``--awaiting`` predictions with ids, divided by their number. The
RSS check serves ``--impressions`` predictions with ids and no feedback into an
engine with ``max_awaiting=--max-awaiting`` and samples the RSS; the issue's
check is ``--impressions 10000000`` (about 20 minutes on one core).

Run: ``PYTHONPATH=python python3 benchmarks/feedback_loop.py`` (writes
``benchmarks/results/feedback.json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

from livelearn import Engine, HashedFeatureEncoder, InteractionData

RESULTS = Path(__file__).resolve().parent / "results" / "feedback.json"


def _engine(kind: str, **kw: Any) -> Engine:
    if kind == "hashed":
        kw["features"] = HashedFeatureEncoder(n_buckets=2**18)
    return Engine(log_every=0, **kw).initialize()


def _events(n: int) -> list[InteractionData]:
    return [
        InteractionData(
            "view", 1.7e9 + i, f"u{i % 1000}", context={"item": f"i{i % 97}", "page": i % 5}
        )
        for i in range(n)
    ]


def baseline(kind: str, events: list[InteractionData], labels: list[float]) -> float:
    """Seconds per event: predict, then train_step with the labelled interaction."""
    engine = _engine(kind)
    gc.collect()
    start = time.perf_counter()
    for it, y in zip(events, labels, strict=True):
        engine.predict(it)
        engine.train_step(
            InteractionData(it.action_type, it.timestamp, it.user_id, it.context, label=y)
        )
    engine.close()
    return (time.perf_counter() - start) / len(events)


def joined(kind: str, events: list[InteractionData], labels: list[float]) -> float:
    """Seconds per event: predict with an id, then feedback with the label."""
    engine = _engine(kind, feedback_timeout=3600.0, max_awaiting=len(events) + 1)
    gc.collect()
    start = time.perf_counter()
    for i, (it, y) in enumerate(zip(events, labels, strict=True)):
        engine.predict(it, event_id=i)
        engine.feedback(i, y)
    engine.close()
    seconds = (time.perf_counter() - start) / len(events)
    stats = engine.stats()
    assert stats.steps == len(events), stats
    return seconds


def bytes_per_awaiting(kind: str, n: int) -> float:
    """Traced memory growth per awaiting example (features, prediction, bookkeeping)."""
    engine = _engine(kind, feedback_timeout=3600.0, max_awaiting=n + 1)
    events = _events(n)
    engine.predict(events[0], event_id=-1)  # first-use allocations out of the count
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, it in enumerate(events):
        engine.predict(it, event_id=i)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del events
    engine.close()
    return grown / n


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_series(n: int, max_awaiting: int, samples: int = 10) -> dict[str, Any]:
    """RSS while ``n`` impressions wait without feedback (evicted beyond ``max_awaiting``)."""
    engine = _engine("hashed", feedback_timeout=1e9, max_awaiting=max_awaiting)
    every = max(1, n // samples)
    series = []
    most = 0
    for i in range(n):
        engine.predict(
            InteractionData("view", 1.7e9 + i, f"u{i % 1000}", context={"item": f"i{i % 97}"}),
            event_id=i,
        )
        if (i + 1) % every == 0:
            stats = engine.stats().feedback
            assert stats is not None
            most = max(most, stats.awaiting)
            series.append({"impressions": i + 1, "awaiting": stats.awaiting, "rss": _rss()})
    engine.close()
    filled = [s["rss"] for s in series if s["impressions"] >= 2 * max_awaiting]
    return {
        "impressions": n,
        "max_awaiting": max_awaiting,
        "most_awaiting_seen": most,
        "series": series,
        "rss_growth_after_full_bytes": (max(filled) - min(filled)) if filled else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--awaiting", type=int, default=20_000)
    parser.add_argument("--impressions", type=int, default=200_000)
    parser.add_argument("--max-awaiting", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    events = _events(args.events)
    labels = [float(i % 7 == 0) for i in range(args.events)]
    result: dict[str, Any] = {
        "events": args.events,
        "repeat": args.repeat,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    for kind in ("dense", "hashed"):
        base: list[float] = []
        join: list[float] = []
        for _ in range(args.repeat):  # alternated: drift hits both alike
            base.append(baseline(kind, events, labels))
            join.append(joined(kind, events, labels))
        b, j = statistics.median(base), statistics.median(join)
        per = bytes_per_awaiting(kind, args.awaiting)
        result[kind] = {
            "baseline_us_per_event": b * 1e6,
            "joined_us_per_event": j * 1e6,
            "ratio": j / b,
            "baseline_runs_us": [x * 1e6 for x in base],
            "joined_runs_us": [x * 1e6 for x in join],
            "bytes_per_awaiting_example": per,
        }
        print(
            f"{kind:6s}: predict+train_step {b * 1e6:7.1f} us/event, "
            f"predict(event_id)+feedback {j * 1e6:7.1f} us/event, ratio {j / b:.2f}; "
            f"{per:,.0f} bytes per awaiting example"
        )
    result["rss"] = rss_series(args.impressions, args.max_awaiting)
    rss = result["rss"]
    growth = rss["rss_growth_after_full_bytes"]
    print(
        f"rss: {rss['impressions']:,} impressions without feedback, at most "
        f"{rss['most_awaiting_seen']:,} awaiting (max_awaiting={rss['max_awaiting']:,}); "
        f"RSS growth once full: {growth if growth is None else f'{growth / 2**20:.1f} MiB'}"
    )
    result["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
