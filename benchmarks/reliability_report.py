"""Reliability report (issue 6): compact versions of the ``tests/reliability`` scenarios,
with their figures.

Usage::

    python benchmarks/reliability_report.py [--full]

Runs, with the same code as the test suite (``tests/reliability/_scenarios.py``
and ``_fuzz.py``):

* load: producer threads x ``train_step``/``train_many`` against a predicting, a
  ``stats()`` and a checkpointing thread, then a sequential replay (bit-identical
  weights, per-step losses/predictions, checkpoints and concurrent predictions);
* back-pressure: each overload policy under sustained overload of a 4-slot queue;
* soak: events through ``train_many`` with Futures dropped (RSS, threads, fds);
* fuzz: random byte damage of checkpoints, checksum-valid edits, fuzzed
  ``InteractionData`` fields through two engines, fuzzed arrays through ``Network``.

Prints a table and writes ``benchmarks/results/reliability.json``. ``--full`` uses
the test suite's sizes (8 x 50,000 load, 2,000,000-event soak, ...). The run
fails (exit 1) if any scenario reports a problem: nothing lost, nothing hung.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))
try:
    import livelearn
except ImportError:  # a source checkout with the extension built in place
    sys.path.insert(0, str(ROOT / "python"))
    import livelearn

import _fuzz  # noqa: E402  (needs the sys.path entry above)
import _scenarios  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"
MIB = 2**20

SIZES: dict[str, dict[str, int]] = {
    "compact": {
        "load_threads": 8,
        "load_per_thread": 10_000,
        "overload_per_producer": 5_000,
        "soak_events": 500_000,
        "soak_warmup": 200_000,
        "checkpoint_cases": 2_000,
        "edit_cases": 300,
        "interaction_cases": 300,
        "network_cases": 500,
    },
    "full": {
        "load_threads": 8,
        "load_per_thread": 50_000,
        "overload_per_producer": 25_000,
        "soak_events": 2_000_000,
        "soak_warmup": 400_000,
        "checkpoint_cases": 6_000,
        "edit_cases": 600,
        "interaction_cases": 400,
        "network_cases": 700,
    },
}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the test suite's sizes")
    args = parser.parse_args()
    mode = "full" if args.full else "compact"
    size = SIZES[mode]
    report: dict[str, Any] = {
        "benchmark": "reliability",
        "mode": mode,
        "sizes": size,
        "environment": {
            "livelearn": livelearn.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        },
    }
    problems: dict[str, list[str]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        load, secs = timed(
            lambda: _scenarios.run_load(
                folder, threads=size["load_threads"], per_thread=size["load_per_thread"]
            )
        )
        report["load"] = {
            "threads": load.threads,
            "submitted": load.submitted,
            "resolved_exactly_once": load.resolved_once,
            "unresolved": load.unresolved,
            "resolved_more_than_once": load.resolved_more_than_once,
            "trained": load.trained,
            "rejected": load.rejected,
            "stats_snapshots": load.stats_snapshots,
            "predictions_checked": load.predictions_checked,
            "checkpoints_checked": load.saves_checked,
            "replay_bit_identical": load.replay_bit_identical,
            "step_outputs_identical": load.step_outputs_identical,
            "duration_s": round(load.duration_s, 2),
            "scenario_s": round(secs, 2),
        }
        problems["load"] = load.problems

        report["overload"] = {}
        for policy in ("block", "raise", "drop_oldest"):
            r, secs = timed(
                lambda p=policy: _scenarios.run_overload(
                    p, per_producer=size["overload_per_producer"]
                )
            )
            report["overload"][policy] = {
                "producers": r.producers,
                "max_pending": r.max_pending,
                "attempts": r.attempts,
                "accepted": r.accepted,
                "refused_overloaded": r.overloaded,
                "trained": r.trained,
                "dropped": r.skipped,
                "unresolved": r.unresolved,
                "max_pending_seen": r.max_pending_seen,
                "rss_growth_mib": round(r.rss_growth_bytes / MIB, 2),
                "scenario_s": round(secs, 2),
            }
            problems[f"overload/{policy}"] = r.problems

        soak_folder = folder / "soak"
        soak_folder.mkdir()
        soak, secs = timed(
            lambda: _scenarios.run_soak(
                soak_folder, events=size["soak_events"], warmup=size["soak_warmup"]
            )
        )
        report["soak"] = {
            "events": soak.events,
            "trained": soak.trained,
            "rejected": soak.rejected,
            "duration_s": round(soak.duration_s, 2),
            "events_per_s": round(soak.events / soak.duration_s),
            "rss_after_warmup_mib": round(soak.rss_after_warmup / MIB, 1),
            "rss_end_mib": round(soak.rss_end / MIB, 1),
            "rss_growth_mib": round(soak.rss_growth / MIB, 2),
            "threads": [soak.threads_after_warmup, soak.threads_end],
            "fds": [soak.fds_after_warmup, soak.fds_end],
            "history": [soak.history_len, soak.history_size],
            "scenario_s": round(secs, 2),
        }
        problems["soak"] = soak.problems

        ck, secs = timed(
            lambda: _scenarios.run_checkpoint_fuzz(folder, cases=size["checkpoint_cases"])
        )
        report["fuzz"] = {
            "checkpoint_bytes": {
                "cases": ck.cases,
                "per_mutation": ck.per_mutation,
                "refused_with_CheckpointError": ck.checkpoint_errors,
                "no_op_loaded_unchanged": ck.loaded_unchanged,
                "scenario_s": round(secs, 2),
            }
        }
        problems["fuzz/checkpoint_bytes"] = ck.problems
        ed, secs = timed(
            lambda: _scenarios.run_checkpoint_edit_fuzz(folder, cases=size["edit_cases"])
        )
        report["fuzz"]["checkpoint_edits_valid_checksum"] = {
            "cases": ed.cases,
            "refused_with_CheckpointError": ed.checkpoint_errors,
            "loaded_and_working": ed.loaded,
            "scenario_s": round(secs, 2),
        }
        problems["fuzz/checkpoint_edits"] = ed.problems

    for name, fn, cases in (
        ("interactions", _fuzz.run_interaction_fuzz, size["interaction_cases"]),
        ("network_arrays", _fuzz.run_network_fuzz, size["network_cases"]),
    ):
        try:
            seen, secs = timed(lambda f=fn, n=cases: f(n, database=False))
        except Exception as exc:  # hypothesis re-raises the falsifying example's error
            problems[f"fuzz/{name}"] = [f"{type(exc).__name__}: {exc}"]
            continue
        report["fuzz"][name] = {
            "cases": sum(seen.values()),
            "outcomes": dict(seen),
            "scenario_s": round(secs, 2),
        }
        problems[f"fuzz/{name}"] = []

    report["problems"] = {k: v[:20] for k, v in problems.items() if v}
    report["nothing_lost"] = not report["problems"]
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    print_table(report)
    print(f"\nwritten: {RESULTS.relative_to(ROOT)}")
    return 0 if report["nothing_lost"] else 1


def print_table(r: dict[str, Any]) -> None:
    env = r["environment"]
    load_avg = env["load_average_at_start"][0]
    print(f"livelearn {env['livelearn']} reliability report ({r['mode']}), python "
          f"{env['python']}, {env['cpus']} CPUs, load average {load_avg:.2f}")  # fmt: skip
    ld = r["load"]
    print(f"\nLOAD      {ld['submitted']:,} steps from {ld['threads']} threads in "
          f"{ld['duration_s']} s: {ld['resolved_exactly_once']:,} Futures resolved exactly once, "
          f"{ld['unresolved']} unresolved, {ld['resolved_more_than_once']} twice; "
          f"{ld['trained']:,} trained + {ld['rejected']:,} rejected")  # fmt: skip
    print(f"          replay bit-identical: {ld['replay_bit_identical']}, per-step outputs: "
          f"{ld['step_outputs_identical']}, {ld['checkpoints_checked']} checkpoints and "
          f"{ld['predictions_checked']} concurrent predictions matched, "
          f"{ld['stats_snapshots']:,} stats() snapshots consistent")  # fmt: skip
    for policy, o in r["overload"].items():
        print(f"OVERLOAD  {policy:<11} {o['attempts']:,} attempts: {o['accepted']:,} accepted, "
              f"{o['refused_overloaded']:,} refused, {o['trained']:,} trained, {o['dropped']:,} "
              f"dropped; max pending {o['max_pending_seen']} (max_pending {o['max_pending']}), "
              f"RSS {o['rss_growth_mib']:+.2f} MiB")  # fmt: skip
    s = r["soak"]
    print(f"SOAK      {s['events']:,} events in {s['duration_s']} s ({s['events_per_s']:,}/s); "
          f"RSS {s['rss_after_warmup_mib']} -> {s['rss_end_mib']} MiB "
          f"({s['rss_growth_mib']:+.2f}); threads {s['threads'][0]} -> {s['threads'][1]}; "
          f"fds {s['fds'][0]} -> {s['fds'][1]}; "
          f"history {s['history'][0]}/{s['history'][1]}")  # fmt: skip
    for name, f in r["fuzz"].items():
        detail = {k: v for k, v in f.items() if k not in ("cases", "scenario_s", "per_mutation")}
        print(f"FUZZ      {name:<32} {f['cases']:>6,} cases  {detail}")
    print(f"\nnothing lost, nothing hung: {r['nothing_lost']}  ({r['wall_seconds']} s)")
    for name, items in r["problems"].items():
        print(f"PROBLEM   {name}: {items[:3]}")


if __name__ == "__main__":
    sys.exit(main())
