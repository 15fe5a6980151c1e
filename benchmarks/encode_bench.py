"""Encoding cost per row: the native encoders against the Python reference, same run.

For each encoder (the dense default ``FeatureEncoder``, the default
``HashedFeatureEncoder``) and each method the engine uses, the µs per row of one
row and of a batch of 1000 rows, native and reference alternated, and their ratio.
Then ``Engine.predict`` of one interaction end to end (encode + native forward) with
the native encoder and with the reference one. Writes ``benchmarks/results/encode.json``.

    PYTHONPATH=python python benchmarks/encode_bench.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livelearn import Engine
from livelearn.datasets import simulate_interactions
from livelearn.features import FeatureEncoder, HashedFeatureEncoder, reference_encoder
from livelearn.interaction import InteractionData

RESULTS = Path(__file__).resolve().parent / "results" / "encode.json"


def _per_row(fn: Callable[[], object], rows: int, budget: float = 0.2) -> float:
    """Best-of-3 µs per row of ``fn`` (which encodes ``rows`` rows)."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > budget / 4:
            break
        n *= 4
    best = dt
    for _ in range(2):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / n / rows * 1e6


def _cases(
    xs: list[InteractionData],
) -> list[tuple[str, Callable[[Any], Callable[[], object]], int]]:
    one = xs[0]
    return [
        ("encode (1 row)", lambda e: lambda: e.encode(one), 1),
        ("encode_many (1 row)", lambda e: lambda: e.encode_many(xs[:1]), 1),
        ("encode_many (1000 rows)", lambda e: lambda: e.encode_many(xs), len(xs)),
        ("encode_sparse (1 row)", lambda e: lambda: e.encode_sparse(one), 1),
        ("encode_sparse_many (1 row)", lambda e: lambda: e.encode_sparse_many(xs[:1]), 1),
        ("encode_sparse_many (1000 rows)", lambda e: lambda: e.encode_sparse_many(xs), len(xs)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="alternated rounds")
    args = parser.parse_args()
    xs = list(simulate_interactions(1000, seed=1).interactions)
    encoders: dict[str, Any] = {
        "FeatureEncoder()": FeatureEncoder(),
        "HashedFeatureEncoder()": HashedFeatureEncoder(),
    }
    rows: list[dict[str, Any]] = []
    for name, enc in encoders.items():
        ref = reference_encoder(enc)
        cases = _cases(xs)
        if isinstance(enc, HashedFeatureEncoder):
            cases += [
                ("encode_fields_many (1 row)", lambda e: lambda: e.encode_fields_many(xs[:1]), 1),
                (
                    "encode_fields_many (1000 rows)",
                    lambda e: lambda: e.encode_fields_many(xs),
                    len(xs),
                ),
            ]
        for label, make, n in cases:
            native_t: list[float] = []
            ref_t: list[float] = []
            for _ in range(args.repeat):  # alternated: the same load for both
                native_t.append(_per_row(make(enc), n))
                ref_t.append(_per_row(make(ref), n))
            native, python = min(native_t), min(ref_t)
            rows.append(
                {
                    "encoder": name,
                    "method": label,
                    "native_us_per_row": round(native, 3),
                    "python_us_per_row": round(python, 3),
                    "speedup": round(python / native, 1),
                }
            )
            print(
                f"{name:24} {label:32} native {native:8.3f} µs  python {python:8.3f} µs  "
                f"x{python / native:6.1f}"
            )
    # Engine.predict end to end (encode + native forward), native vs reference encoder.
    for name, enc in encoders.items():
        engines = {}
        for label, e in (("native", enc), ("python", reference_encoder(enc))):
            engine = Engine(features=e, log_every=0)
            engine.initialize()
            assert engine.features is e  # no targets: the encoder is used as given
            engines[label] = engine
        times: dict[str, list[float]] = {"native": [], "python": []}
        for _ in range(args.repeat):
            for label, engine in engines.items():
                times[label].append(_per_row(lambda engine=engine: engine.predict(xs[0]), 1))
        native, python = min(times["native"]), min(times["python"])
        for engine in engines.values():
            engine.close()
        rows.append(
            {
                "encoder": name,
                "method": "Engine.predict (1 row)",
                "native_us_per_row": round(native, 3),
                "python_us_per_row": round(python, 3),
                "speedup": round(python / native, 1),
            }
        )
        print(
            f"{name:24} {'Engine.predict (1 row)':32} native {native:8.3f} µs  "
            f"python {python:8.3f} µs  x{python / native:6.1f}"
        )
    out = {"load_average": os.getloadavg(), "rows": rows}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
