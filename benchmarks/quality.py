"""What the models *learn*: progressive log loss and ROC AUC on the same streams.

Every learner sees every event once, predicts it *before* learning from it
(progressive validation), and gets the same categorical fields, each hashed as a
field-prefixed string (``"user=u-42"``) with :func:`livelearn.hashing.stable_hash64`.
The outcome (label) is never an input. Streams:

* ``parity``: 500 users x 50 items (``context["item"]``); a user clicks with
  probability 0.8 when user and item have the same parity, else never. 200k events.
  Also reported: accuracy over all 25,000 user x item pairs (predicted > 0.4 iff same
  parity).
* ``simulator-20k`` / ``simulator-100k``: :func:`livelearn.datasets.simulate_interactions`
  (fields user, action type, device, position, and the hour of day derived from the
  timestamp). The true click probabilities are known, so the share of the
  base-rate -> Bayes log-loss gap each learner closes is reported.
* ``open-bandit``: the embedded 30,000-impression Open Bandit sample (fields user,
  action type and every context key), against the running base rate.

Learners: ``livelearn Engine defaults`` -- the real service path,
``Engine(features=HashedFeatureEncoder(), targets=...)`` with every model argument at its
default, through :func:`livelearn.evaluate.progressive_val_score` (its µs/event include
the engine's encoding and dispatching; on the parity stream also with the outcome as the
action type and ``targets``) --, ``livelearn.FieldModel`` with its defaults, River
``LogisticRegression`` on one-hot features, a plain online logistic regression (numpy,
SGD), and Vowpal Wabbit (linear, and with all field-pair interactions ``-q ::``) when
``vowpalwabbit`` imports. Times are the learner's own calls per event (inputs prepared
beforehand; for the Engine rows the whole engine path), on a shared machine: compare
them with each other, not across runs.

Dense section (the seed's ``Engine()`` network, 4-16-8-1 tanh): the synthetic logistic
stream of ``benchmarks/peers.py`` (200k events, 4 N(0, 1) inputs, known truth) and the
Open Bandit sample through the 4-input ``FeatureEncoder``, with the default optimizer
(SGD, lr 0.05) and candidate defaults beside Vowpal Wabbit linear, in one run.

Run: ``PYTHONPATH=python python benchmarks/quality.py`` (writes
``benchmarks/results/quality.json`` and ``quality.md``; ``--quick`` for a smaller run).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livelearn._core import FieldModel
from livelearn.datasets import load_sample, simulate_interactions
from livelearn.hashing import stable_hash64
from livelearn.interaction import InteractionData
from livelearn.metrics_offline import roc_auc, running_base_rate

RESULTS = Path(__file__).resolve().parent / "results"
N_BUCKETS = 1 << 18
_EPS = 1e-7

Tokens = list[list[str]]  # per event: one "field=value" string per field


@dataclass
class Stream:
    name: str
    fields: list[str]
    tokens: Tokens
    labels: NDArray[np.float64]
    probabilities: NDArray[np.float64] | None = None  # the truth, where known
    pairs: Tokens | None = None  # parity: every user x item pair ...
    pair_truth: NDArray[np.bool_] | None = None  # ... and whether it should click
    events: list[InteractionData] | None = None  # the raw stream, for the Engine rows
    pair_events: list[InteractionData] | None = None
    targets: dict[str, float] | None = None  # the events' outcome is the action type
    variants: dict[str, tuple[list[InteractionData], dict[str, float]]] = field(
        default_factory=dict
    )  # extra label forms of the same stream for the Engine row: name -> (events, targets)
    notes: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ streams
def _event_tokens(event: InteractionData, derived: dict[str, str] | None = None) -> list[str]:
    """user, action type and each categorical context key; never the label."""
    tokens = [f"user={event.user_id}", f"action={event.action_type}"]
    for key in sorted(event.context):
        value = event.context[key]
        if isinstance(value, str | int) and not isinstance(value, bool):
            tokens.append(f"{key}={value}")
    for key, value in (derived or {}).items():
        tokens.append(f"{key}={value}")
    return tokens


def parity_stream(n_users: int, n_items: int, n_events: int, seed: int = 0) -> Stream:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_events)
    items = rng.integers(0, n_items, n_events)
    same = users % 2 == items % 2
    labels = (same & (rng.random(n_events) < 0.8)).astype(np.float64)
    # The outcome is the label; the action type is constant (it is not the outcome).
    tokens = [
        [f"user=u{u}", "action=view", f"item=i{i}"] for u, i in zip(users, items, strict=True)
    ]
    events = [
        InteractionData("view", float(t), f"u{u}", {"item": f"i{i}"}, label=float(y))
        for t, (u, i, y) in enumerate(zip(users, items, labels, strict=True))
    ]
    by_action = [
        InteractionData("click" if y else "view", float(t), f"u{u}", {"item": f"i{i}"})
        for t, (u, i, y) in enumerate(zip(users, items, labels, strict=True))
    ]
    uu, ii = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    pairs = [
        [f"user=u{u}", "action=view", f"item=i{i}"]
        for u, i in zip(uu.ravel(), ii.ravel(), strict=True)
    ]
    return Stream(
        f"parity {n_users}x{n_items}, {n_events // 1000}k",
        ["user", "action", "item"],
        tokens,
        labels,
        probabilities=np.where(same, 0.8, 0.0),
        pairs=pairs,
        pair_truth=(uu.ravel() % 2) == (ii.ravel() % 2),
        events=events,
        pair_events=[
            InteractionData("view", 0.0, f"u{u}", {"item": f"i{i}"})
            for u, i in zip(uu.ravel(), ii.ravel(), strict=True)
        ],
        variants={"targets={'click': 1, 'view': 0}": (by_action, {"click": 1.0, "view": 0.0})},
    )


def simulator_stream(n_events: int, seed: int = 0) -> Stream:
    sim = simulate_interactions(n_events=n_events, seed=seed)
    tokens = [
        _event_tokens(e, {"hour": str(int(e.timestamp % 86_400 // 3600))}) for e in sim.interactions
    ]
    return Stream(
        f"simulator {n_events // 1000}k",
        ["user", "action", "device", "position", "hour"],
        tokens,
        np.asarray(sim.labels, dtype=np.float64),
        probabilities=np.asarray(sim.probabilities, dtype=np.float64),
        events=list(sim.interactions),
        notes={
            "bayes_log_loss": sim.bayes_log_loss(),
            "base_rate_log_loss": sim.base_rate_log_loss(),
        },
    )


def open_bandit_stream() -> Stream:
    events = load_sample()
    tokens = [_event_tokens(e) for e in events]
    fields = [t.split("=", 1)[0] for t in tokens[0]]
    labels = np.array([e.label for e in events], dtype=np.float64)
    return Stream("open bandit sample, 30k", fields, tokens, labels, events=list(events))


# ----------------------------------------------------------------- learners
class Learner:
    name = ""

    def run(self, stream: Stream) -> tuple[NDArray[np.float64], float]:
        """Progressive predictions (before each update) and seconds spent learning."""
        raise NotImplementedError

    def predict(self, tokens: Tokens) -> NDArray[np.float64]:
        raise NotImplementedError

    def size(self) -> str:
        raise NotImplementedError


class _HashCache:
    def __init__(self, n_buckets: int) -> None:
        self.n = n_buckets
        self.cache: dict[str, int] = {}

    def __call__(self, token: str) -> int:
        h = self.cache.get(token)
        if h is None:
            h = self.cache[token] = stable_hash64(token) % self.n
        return h


def _csr(
    tokens: Tokens, fields: list[str], hashed: _HashCache
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32], NDArray[np.int32]]:
    field_of = {name: f for f, name in enumerate(fields)}
    indptr = np.zeros(len(tokens) + 1, dtype=np.int64)
    idx: list[int] = []
    fld: list[int] = []
    for r, row in enumerate(tokens):
        for t in row:
            idx.append(hashed(t))
            fld.append(field_of[t.split("=", 1)[0]])
        indptr[r + 1] = len(idx)
    return (
        indptr,
        np.asarray(idx, dtype=np.int64),
        np.ones(len(idx), dtype=np.float32),
        np.asarray(fld, dtype=np.int32),
    )


class FieldLearner(Learner):
    def __init__(self, label: str = "livelearn FieldModel (defaults)", **kwargs: Any) -> None:
        self.name = label
        self.kwargs = kwargs
        self.hashed = _HashCache(N_BUCKETS)

    def run(self, stream: Stream) -> tuple[NDArray[np.float64], float]:
        self.fields = stream.fields
        self.model = FieldModel(N_BUCKETS, len(stream.fields), **self.kwargs)
        indptr, idx, val, fld = _csr(stream.tokens, stream.fields, self.hashed)
        y = stream.labels.astype(np.float32)
        start = time.perf_counter()
        _, preds, status, _ = self.model.train_batch(indptr, idx, val, fld, None, y)
        elapsed = time.perf_counter() - start
        assert not status.any(), "every step must be accepted"
        return preds.astype(np.float64), elapsed

    def predict(self, tokens: Tokens) -> NDArray[np.float64]:
        out = self.model.predict_batch(*_csr(tokens, self.fields, self.hashed), None)
        return np.asarray(out, dtype=np.float64)

    def size(self) -> str:
        state = sum(int(np.prod(shape)) for _, shape in self.model._state_layout())
        mib = 4 * state / 2**20
        return f"{self.model.n_parameters:,} parameters ({mib:.0f} MiB with optimizer state)"


class EngineDefaults(Learner):
    """The real service path: ``Engine(features=HashedFeatureEncoder(), ...)`` with every
    model argument at its default, through :func:`livelearn.evaluate.progressive_val_score`
    (train_many, the dispatcher, encoding included in the time)."""

    def __init__(self, variant: str | None = None) -> None:
        self.variant = variant
        self.name = "livelearn Engine defaults" + (f", {variant}" if variant else "")

    def run(self, stream: Stream) -> tuple[NDArray[np.float64], float]:
        from livelearn import Engine, HashedFeatureEncoder
        from livelearn.evaluate import progressive_val_score

        events, targets = stream.events, stream.targets
        if self.variant is not None:
            events, targets = stream.variants[self.variant]
        assert events is not None
        # The open-ended context_keys=None default: every categorical key is a field.
        self.engine = Engine(features=HashedFeatureEncoder(), targets=targets, log_every=0)
        self.engine.initialize()
        result = progressive_val_score(self.engine, events, loss="bce")
        assert result.trained == len(events), "every step must be trained"
        preds = np.empty(len(events))
        preds[result.positions] = result.predictions
        return preds, result.seconds

    def predict(self, tokens: Tokens) -> NDArray[np.float64]:
        raise NotImplementedError("uses predict_events")

    def predict_events(self, events: list[InteractionData]) -> NDArray[np.float64]:
        return np.asarray(self.engine.predict_many(events)[:, 0], dtype=np.float64)

    def size(self) -> str:
        net = self.engine.network
        mib = 4 * sum(v.size for v in net.get_state().values()) / 2**20
        self.engine.close()
        return f"{net.n_parameters:,} parameters ({mib:.0f} MiB with optimizer state)"


class NumpyLogistic(Learner):
    """Plain online logistic regression over hashed one-hot features: SGD, constant rate."""

    name = "online logistic regression (numpy, SGD lr 0.05)"

    def __init__(self, lr: float = 0.05) -> None:
        self.lr = lr
        self.hashed = _HashCache(N_BUCKETS)

    def run(self, stream: Stream) -> tuple[NDArray[np.float64], float]:
        rows = [[self.hashed(t) for t in row] for row in stream.tokens]
        self.w = [0.0] * N_BUCKETS
        self.b = 0.0
        w, lr = self.w, self.lr
        out = np.empty(len(rows))
        start = time.perf_counter()
        for r, (row, y) in enumerate(zip(rows, stream.labels.tolist(), strict=True)):
            z = self.b + sum(w[j] for j in row)
            p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
            out[r] = p
            g = lr * (p - y)
            self.b -= g
            for j in row:
                w[j] -= g
        return out, time.perf_counter() - start

    def predict(self, tokens: Tokens) -> NDArray[np.float64]:
        z = np.array([self.b + sum(self.w[self.hashed(t)] for t in row) for row in tokens])
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)

    def size(self) -> str:
        return f"{sum(1 for v in self.w if v != 0.0) + 1:,} non-zero weights"


class RiverLogistic(Learner):
    name = "River LogisticRegression (one-hot, defaults)"

    def run(self, stream: Stream) -> tuple[NDArray[np.float64], float]:
        from river import linear_model

        self.model = linear_model.LogisticRegression()
        xs = [dict.fromkeys(row, 1.0) for row in stream.tokens]
        out = np.empty(len(xs))
        m = self.model
        start = time.perf_counter()
        for r, (x, y) in enumerate(zip(xs, stream.labels.tolist(), strict=True)):
            out[r] = m.predict_proba_one(x).get(True, 0.0)
            m.learn_one(x, y > 0.5)
        return out, time.perf_counter() - start

    def predict(self, tokens: Tokens) -> NDArray[np.float64]:
        return np.array([self.model.predict_proba_one(dict.fromkeys(r, 1.0))[True] for r in tokens])

    def size(self) -> str:
        return f"{len(self.model._weights) + 1:,} weights"


class VowpalWabbit(Learner):
    def __init__(self, quadratic: bool) -> None:
        self.quadratic = quadratic
        self.name = "Vowpal Wabbit " + ("-q :: (all field pairs)" if quadratic else "linear")

    def _line(self, row: list[str], y: float | None = None) -> str:
        label = "" if y is None else ("1 " if y > 0.5 else "-1 ")
        parts = []
        for t in row:
            key, value = t.split("=", 1)
            value = value.replace(" ", "_").replace(":", ";").replace("|", "/")
            parts.append(f"|{self.letters[key]} {value}")
        return label + " ".join(parts)

    def run(self, stream: Stream) -> tuple[NDArray[np.float64], float]:
        import vowpalwabbit

        letters = "abcdefghijklmnopqrstuvwxyz"
        self.letters = {name: letters[f] for f, name in enumerate(stream.fields)}
        args = "--loss_function logistic --link logistic -b 18 --quiet"
        if self.quadratic:
            args += " -q ::"
        self.vw = vowpalwabbit.Workspace(args)
        lines = [
            self._line(row, y) for row, y in zip(stream.tokens, stream.labels.tolist(), strict=True)
        ]
        out = np.empty(len(lines))
        vw = self.vw
        start = time.perf_counter()
        for r, line in enumerate(lines):
            ex = vw.parse(line)
            out[r] = vw.predict(ex)
            vw.learn(ex)
            vw.finish_example(ex)
        return out, time.perf_counter() - start

    def predict(self, tokens: Tokens) -> NDArray[np.float64]:
        return np.array([self.vw.predict(self._line(row)) for row in tokens], dtype=np.float64)

    def size(self) -> str:
        return "2^18 weights (-b 18)"


def learners(with_vw: bool, fm_kwargs: dict[str, Any]) -> list[Callable[[], Learner]]:
    out: list[Callable[[], Learner]] = [
        EngineDefaults,
        lambda: FieldLearner(**fm_kwargs),
        RiverLogistic,
        NumpyLogistic,
    ]
    if with_vw:
        out += [lambda: VowpalWabbit(False), lambda: VowpalWabbit(True)]
    return out


# ---------------------------------------------------------------- measuring
def log_loss(y: NDArray[np.float64], p: NDArray[np.float64]) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def evaluate(stream: Stream, make: Callable[[], Learner]) -> dict[str, Any]:
    learner = make()
    preds, seconds = learner.run(stream)
    y = stream.labels
    row: dict[str, Any] = {
        "learner": learner.name,
        "log_loss": log_loss(y, preds),
        "auc": roc_auc(y, preds),
        "us_per_event": 1e6 * seconds / len(y),
    }
    if "bayes_log_loss" in stream.notes:
        base, bayes = stream.notes["base_rate_log_loss"], stream.notes["bayes_log_loss"]
        row["gap_closed"] = (base - row["log_loss"]) / (base - bayes)
    if stream.pairs is not None and stream.pair_truth is not None:
        if isinstance(learner, EngineDefaults):
            assert stream.pair_events is not None
            pair_preds = learner.predict_events(stream.pair_events)
        else:
            pair_preds = learner.predict(stream.pairs)
        row["pair_accuracy"] = float(np.mean((pair_preds > 0.4) == stream.pair_truth))
    row["size"] = learner.size()
    return row


def run_all(
    streams: Sequence[Stream], makers: Sequence[Callable[[], Learner]]
) -> list[dict[str, Any]]:
    results = []
    for stream in streams:
        base = running_base_rate(stream.labels)
        entry: dict[str, Any] = {
            "stream": stream.name,
            "events": len(stream.labels),
            "fields": stream.fields,
            "click_rate": float(stream.labels.mean()),
            "running_base_rate_log_loss": log_loss(stream.labels, base),
            **stream.notes,
            "rows": [],
        }
        if stream.probabilities is not None:
            entry["bayes_auc"] = roc_auc(stream.labels, stream.probabilities)
        stream_makers = [*makers, *(partial(EngineDefaults, v) for v in stream.variants)]
        for make in stream_makers:
            row = evaluate(stream, make)
            row["vs_running_base_rate"] = row["log_loss"] / entry["running_base_rate_log_loss"] - 1
            entry["rows"].append(row)
            print(f"  {stream.name:28s} {row['learner']:48s} loss {row['log_loss']:.5f}"
                  + (f"  gap {100 * row['gap_closed']:.0f}%" if "gap_closed" in row else "")
                  + (f"  acc {row['pair_accuracy']:.3f}" if "pair_accuracy" in row else "")
                  + f"  {row['us_per_event']:.1f} us/event", flush=True)  # fmt: skip
        results.append(entry)
    return results


# ------------------------------------------------------------------ dense
# The synthetic stream of benchmarks/peers.py (same constants and seed).
SYN_WEIGHTS = (1.5, -1.0, 0.5, 0.25)
SYN_BIAS = -1.0
SYN_SEED = 20240601
DENSE_CANDIDATES: dict[str, dict[str, Any]] = {
    "Engine() default network (SGD, lr 0.05)": {"optimizer": "sgd", "learning_rate": 0.05},
    "candidate: SGD, lr 0.01": {"optimizer": "sgd", "learning_rate": 0.01},
    "candidate: Adam, lr 0.001": {"optimizer": "adam", "learning_rate": 0.001},
    "candidate: Adam, lr 0.0005": {"optimizer": "adam", "learning_rate": 0.0005},
    "candidate: SGD, lr 0.05, running bias": {
        "optimizer": "sgd",
        "learning_rate": 0.05,
        "running_bias": True,
    },
    "candidate: SGD, lr 0.01, running bias": {
        "optimizer": "sgd",
        "learning_rate": 0.01,
        "running_bias": True,
    },
    "candidate: Adam, lr 0.001, running bias": {
        "optimizer": "adam",
        "learning_rate": 0.001,
        "running_bias": True,
    },
    "candidate: Adam, lr 0.0005, running bias": {
        "optimizer": "adam",
        "learning_rate": 0.0005,
        "running_bias": True,
    },
}


def dense_streams(n_synthetic: int) -> dict[str, tuple[NDArray[np.float32], NDArray[np.float64]]]:
    from livelearn import FeatureEncoder

    rng = np.random.default_rng(SYN_SEED)
    X = rng.standard_normal((n_synthetic, 4)).astype(np.float32)
    p = 1.0 / (1.0 + np.exp(-(X.astype(np.float64) @ np.array(SYN_WEIGHTS) + SYN_BIAS)))
    y = (rng.random(n_synthetic) < p).astype(np.float64)
    items = load_sample()
    obd_y = np.array([it.label for it in items], dtype=np.float64)
    # A check stream tuned to nothing: rare positives (about 5 %) and an
    # interaction a linear model cannot express.
    rng3 = np.random.default_rng(7)
    n3 = max(n_synthetic // 2, 1)
    X3 = rng3.standard_normal((n3, 4)).astype(np.float32)
    z3 = -3.5 + 0.8 * X3[:, 0] - 0.5 * X3[:, 1] + 0.6 * X3[:, 2] * X3[:, 3]
    y3 = (rng3.random(n3) < 1.0 / (1.0 + np.exp(-z3.astype(np.float64)))).astype(np.float64)
    return {
        f"synthetic logistic (peers.py), {n_synthetic // 1000}k": (X, y),
        "open bandit sample, 4-input FeatureEncoder": (FeatureEncoder().encode_many(items), obd_y),
        f"rare nonlinear logistic (5 % positives, x2*x3 term), {n3 // 1000}k": (X3, y3),
        "_oracle": (X, p),
    }


def run_dense(n_synthetic: int, with_vw: bool) -> list[dict[str, Any]]:
    from livelearn import Network

    streams = dense_streams(n_synthetic)
    oracle = streams.pop("_oracle")[1]
    out = []
    for name, (X, y) in streams.items():
        entry: dict[str, Any] = {
            "stream": name,
            "events": len(y),
            "running_base_rate_log_loss": log_loss(y, running_base_rate(y)),
            "rows": [],
        }
        if name.startswith("synthetic"):
            entry["oracle_log_loss"] = log_loss(y, oracle)
        for label, kw in DENSE_CANDIDATES.items():
            net = Network(
                layers=[4, 16, 8, 1], activation="tanh", output="sigmoid", loss="bce", seed=0, **kw
            )
            start = time.perf_counter()
            losses = np.asarray(net.train_batch(X, y.astype(np.float32).reshape(-1, 1)))
            elapsed = time.perf_counter() - start
            lo = losses.astype(np.float64).reshape(-1)
            preds = np.where(y > 0.5, np.exp(-lo), -np.expm1(-lo))  # pre-update, exact
            entry["rows"].append(
                {
                    "learner": label,
                    "log_loss": log_loss(y, preds),
                    "us_per_event": 1e6 * elapsed / len(y),
                }
            )
        if with_vw:
            import vowpalwabbit

            vw = vowpalwabbit.Workspace("--loss_function logistic --link logistic --quiet")
            lines = [
                ("1 " if t > 0.5 else "-1 ")
                + "| "
                + " ".join(f"x{j}:{v:.6g}" for j, v in enumerate(row))
                for row, t in zip(X.tolist(), y.tolist(), strict=True)
            ]
            preds = np.empty(len(y))
            start = time.perf_counter()
            for r, text in enumerate(lines):
                ex = vw.parse(text)
                preds[r] = vw.predict(ex)
                vw.learn(ex)
                vw.finish_example(ex)
            entry["rows"].append(
                {
                    "learner": "Vowpal Wabbit linear",
                    "log_loss": log_loss(y, preds),
                    "us_per_event": 1e6 * (time.perf_counter() - start) / len(y),
                }
            )
        vw_loss = next(
            (r["log_loss"] for r in entry["rows"] if r["learner"].startswith("Vowpal")), None
        )
        for r in entry["rows"]:
            r["vs_running_base_rate"] = r["log_loss"] / entry["running_base_rate_log_loss"] - 1
            r["vs_vw_linear"] = None if vw_loss is None else r["log_loss"] / vw_loss - 1
            print(
                f"  {name:44s} {r['learner']:40s} loss {r['log_loss']:.5f}"
                + ("" if r["vs_vw_linear"] is None else f"  vs VW {100 * r['vs_vw_linear']:+.2f}%"),
                flush=True,
            )
        out.append(entry)
    return out


def dense_markdown(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Dense: the seed's Engine() network (4-16-8-1 tanh) and candidate defaults",
        "",
        "Progressive log loss, one step per event; the MLP rows differ only in optimizer and "
        "learning rate.",
        "",
    ]
    for e in results:
        extra = f"running base rate {e['running_base_rate_log_loss']:.5f}"
        if "oracle_log_loss" in e:
            extra += f", true model {e['oracle_log_loss']:.5f}"
        lines += [f"### {e['stream']}", "", extra, ""]
        lines += [
            "| learner | log loss | vs VW linear | vs running base rate | µs/event |",
            "|---|---|---|---|---|",
        ]
        for r in e["rows"]:
            vs = "n/a" if r["vs_vw_linear"] is None else f"{100 * r['vs_vw_linear']:+.2f} %"
            lines.append(
                f"| {r['learner']} | {r['log_loss']:.5f} | {vs} | "
                f"{100 * r['vs_running_base_rate']:+.2f} % | {r['us_per_event']:.2f} |"
            )
        lines.append("")
    return lines


def _fmt(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Learning quality: progressive log loss and AUC",
        "",
        f"Produced by `benchmarks/quality.py` on {meta['date']} ({meta['machine']}).",
        "Every learner predicts each event before learning from it; the same hashed "
        "field-prefixed categorical features for all; the label is never an input.",
        "µs/event: the learner's own calls only (inputs prepared beforehand), a shared 2-core "
        "machine.",
        "",
    ]
    for e in results:
        lines.append(f"## {e['stream']}")
        extra = (
            f"click rate {100 * e['click_rate']:.2f} %, "
            f"running base rate log loss {e['running_base_rate_log_loss']:.5f}"
        )
        if "bayes_log_loss" in e:
            extra += f", base rate {e['base_rate_log_loss']:.5f}, Bayes {e['bayes_log_loss']:.5f}"
        lines += [f"fields: {', '.join(e['fields'])}; {extra}", ""]
        has_gap = any("gap_closed" in r for r in e["rows"])
        has_acc = any("pair_accuracy" in r for r in e["rows"])
        head = "| learner | log loss | vs running base rate | AUC |"
        sep = "|---|---|---|---|"
        if has_gap:
            head, sep = head + " gap closed |", sep + "---|"
        if has_acc:
            head, sep = head + " pair accuracy |", sep + "---|"
        lines += [head + " µs/event | model size |", sep + "---|---|"]
        for r in e["rows"]:
            cells = [
                r["learner"],
                _fmt(r["log_loss"], 5),
                f"{100 * r['vs_running_base_rate']:+.1f} %",
                _fmt(r["auc"], 3),
            ]
            if has_gap:
                cells.append(f"{100 * r['gap_closed']:.0f} %")
            if has_acc:
                cells.append(_fmt(r.get("pair_accuracy"), 3))
            cells += [f"{r['us_per_event']:.1f}", r["size"]]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller streams, no files written")
    parser.add_argument("--only", default="", help="comma list: parity,sim20,sim100,obd,dense")
    parser.add_argument(
        "--fm", default="", help="FieldModel keyword overrides, e.g. 'learning_rate=0.1'"
    )
    parser.add_argument("--fm-only", action="store_true", help="run the FieldModel only")
    parser.add_argument(
        "--update-dense",
        action="store_true",
        help="run the dense section only and replace it in the existing results files",
    )
    args = parser.parse_args(argv)
    fm_kwargs: dict[str, Any] = eval(f"dict({args.fm})", {})  # a developer's tuning knob
    try:
        import vowpalwabbit  # noqa: F401

        with_vw = True
    except ImportError:
        with_vw = False
        print("vowpalwabbit not importable: VW rows skipped", file=sys.stderr)
    if args.update_dense:
        saved = json.loads((RESULTS / "quality.json").read_text())
        saved["dense"] = run_dense(200_000, with_vw)
        (RESULTS / "quality.json").write_text(json.dumps(saved, indent=2) + "\n")
        (RESULTS / "quality.md").write_text(
            markdown(saved["streams"], saved["meta"])
            + "\n"
            + "\n".join(dense_markdown(saved["dense"]))
            + "\n"
        )
        print(f"updated the dense section of {RESULTS / 'quality.json'} and quality.md")
        return 0
    wanted = set(filter(None, args.only.split(","))) or {
        "parity",
        "sim20",
        "sim100",
        "obd",
        "dense",
    }
    streams = []
    if "parity" in wanted:
        streams.append(
            parity_stream(100, 20, 20_000) if args.quick else parity_stream(500, 50, 200_000)
        )
    if "sim20" in wanted:
        streams.append(simulator_stream(20_000))
    if "sim100" in wanted and not args.quick:
        streams.append(simulator_stream(100_000))
    if "obd" in wanted:
        streams.append(open_bandit_stream())
    makers = learners(with_vw, fm_kwargs)
    if args.fm_only:
        makers = makers[1:2]
    results = run_all(streams, makers)
    dense = run_dense(20_000 if args.quick else 200_000, with_vw) if "dense" in wanted else []
    if args.quick or args.only or args.fm or args.fm_only:
        return 0
    meta = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "fieldmodel_config": FieldModel(N_BUCKETS, 1).get_config(),
        "vowpalwabbit": with_vw,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quality.json").write_text(
        json.dumps({"meta": meta, "streams": results, "dense": dense}, indent=2) + "\n"
    )
    (RESULTS / "quality.md").write_text(
        markdown(results, meta) + "\n" + "\n".join(dense_markdown(dense)) + "\n"
    )
    print(f"wrote {RESULTS / 'quality.json'} and quality.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
