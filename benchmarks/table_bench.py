"""``Engine.train_table`` per row against the native batch step per row, same run.

For the dense default (``Engine()``, ``Network.train_batch``) and the default
sparse engine (``HashedFeatureEncoder``, the field model's ``train_batch``, or
the MLP's ``train_batch_sparse`` with ``--mlp``), on the same simulated stream:
µs per row of ``train_table`` (columns in, TableResult out) and of the native
batch call on pre-encoded inputs, alternated, and their ratio (goal: <= 2).
Writes ``benchmarks/results/table.json``.

    PYTHONPATH=python python benchmarks/table_bench.py [--rows 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from livelearn import Engine, HashedFeatureEncoder
from livelearn.datasets import simulate_interactions
from livelearn.field_network import FieldNetwork
from livelearn.interaction import InteractionData

RESULTS = Path(__file__).resolve().parent / "results" / "table.json"


def _columns(xs: list[InteractionData]) -> dict[str, Any]:
    keys = sorted({k for it in xs for k in (it.context or {})})
    table: dict[str, Any] = {
        "action_type": [it.action_type for it in xs],
        "timestamp": np.array([it.timestamp for it in xs]),
        "user_id": [it.user_id for it in xs],
        "label": np.array([it.label for it in xs]),
    }
    for key in keys:
        table[f"context.{key}"] = [(it.context or {}).get(key) for it in xs]
    return table


def _table_us(make: Any, table: dict[str, Any], n: int) -> float:
    with make() as engine:
        t0 = time.perf_counter()
        result = engine.train_table(table).result()
        dt = time.perf_counter() - t0
        assert int((result.status == "trained").sum()) == n
    return dt / n * 1e6


def _native_us(make: Any, xs: list[InteractionData], batch: int) -> float:
    with make() as engine:
        enc = engine.features
        net = engine.network
        y = np.array([it.label for it in xs], dtype=np.float32)
        if isinstance(net, FieldNetwork):
            parts = [enc.encode_fields_many(xs[i : i + batch]) for i in range(0, len(xs), batch)]
            t0 = time.perf_counter()
            for j, (indptr, idx, val, fields, dense) in enumerate(parts):
                net.train_batch(indptr, idx, val, fields, dense, y[j * batch : (j + 1) * batch])
            return (time.perf_counter() - t0) / len(xs) * 1e6
        if enc.sparse:
            parts_s = [enc.encode_sparse_many(xs[i : i + batch]) for i in range(0, len(xs), batch)]
            t0 = time.perf_counter()
            for j, (indptr, idx, val) in enumerate(parts_s):
                net.train_batch_sparse(indptr, idx, val, y[j * batch : (j + 1) * batch])
            return (time.perf_counter() - t0) / len(xs) * 1e6
        X = enc.encode_many(xs)
        t0 = time.perf_counter()
        for i in range(0, len(xs), batch):
            net.train_batch(X[i : i + batch], y[i : i + batch])
        return (time.perf_counter() - t0) / len(xs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mlp", action="store_true", help="sparse: the MLP, not the field model")
    args = parser.parse_args()
    xs = simulate_interactions(args.rows, seed=2).interactions
    table = _columns(xs)
    configs: dict[str, Any] = {
        "dense default (Engine())": lambda: Engine(log_every=0),
        "sparse default (HashedFeatureEncoder)": lambda: Engine(
            features=HashedFeatureEncoder(), log_every=0, model="mlp" if args.mlp else "auto"
        ),
    }
    rows = []
    for name, make in configs.items():
        with make() as probe:
            batch = probe.config["batch_size"]
        table_t, native_t = [], []
        for _ in range(args.repeat):  # alternated: both see the same load
            table_t.append(_table_us(make, table, len(xs)))
            native_t.append(_native_us(make, xs, batch))
        t, nat = min(table_t), min(native_t)
        rows.append(
            {
                "config": name,
                "train_table_us_per_row": round(t, 3),
                "native_batch_us_per_row": round(nat, 3),
                "ratio": round(t / nat, 2),
                "goal": "<= 2",
            }
        )
        print(
            f"{name:40} train_table {t:7.3f} µs/row  native batch {nat:7.3f} µs/row  "
            f"ratio {t / nat:5.2f}"
        )
    out = {"rows_per_table": len(xs), "load_average": os.getloadavg(), "results": rows}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
