#!/usr/bin/env python3
"""Issue 5: livelearn against its peers on one online-learning workload.

One command, one table::

    python benchmarks/peers.py                 # everything, a few minutes
    python benchmarks/peers.py --quick         # smaller streams, for a smoke run
    python benchmarks/peers.py --only torch,river --skip-scaling

Workload. Two event streams, each learnt in order, one SGD step per event,
predict-before-learn (progressive validation: every prediction is scored
before its own label is learnt):

* ``obd``: the 30,000 real impressions of the embedded Open Bandit sample
  (``livelearn.datasets.load_sample()``, timestamp order), encoded with
  livelearn's default 4-input ``FeatureEncoder``; label = click (0.43 %).
* ``synthetic``: 200,000 events of 4 standard-normal features with labels
  drawn from a fixed logistic model (known truth, so the best possible log
  loss is known too).

Model: 4-16-8-1, tanh hidden, sigmoid output, binary cross-entropy, plain SGD
at learning rate 0.05, batch size 1. Peers that cannot express it run their
closest model; the table's note column says what differs.

Every row runs in its own child process, so its peak RSS (``ru_maxrss`` of
the child) is its own. The parent imports nothing heavier than the standard
library until all children are done: a child's ``ru_maxrss`` starts at the
parent's resident size at spawn (Linux carries it across ``exec``), so a lean
parent keeps it honest. Writes ``results/peers.{json,md,png}`` and
``results/scaling.json`` next to this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import itertools
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LAYERS = (4, 16, 8, 1)
LR = 0.05
SEED = 0
WORKLOADS = ("obd", "synthetic")
WL_TITLE = {"obd": "Open Bandit", "synthetic": "synthetic"}
# The synthetic stream's ground truth: p(click | x) = sigmoid(x . W + B).
SYN_WEIGHTS = (1.5, -1.0, 0.5, 0.25)
SYN_BIAS = -1.0
SYN_SEED = 20240601
SCALING_LAYERS: tuple[tuple[int, ...], ...] = (
    (4, 16, 8, 1),
    (16, 64, 32, 1),
    (64, 256, 256, 1),
    (256, 512, 512, 8),
)
CHILD_TIMEOUT_S = 900
# A timed run whose wall time exceeds its CPU time by more than this shared its
# core with other work (the machine is shared): it is re-run, see _steady.
STEADY = 1.15
TIMES = "\u00d7"  # the multiplication sign, escaped for ruff RUF001


@dataclass(frozen=True)
class Budget:
    """How many events each kind of row learns and times."""

    synthetic_events: int
    # Timed runs per speed class: more where a run is cheap, so the median is steadier.
    repeats: dict[str, int]
    # Per speed class: events timed per repeat (None: the whole stream) and
    # events scored for quality per workload (None: the whole stream).
    time_cap: dict[str, int | None]
    quality_cap: dict[str, dict[str, int | None]]
    floor_steps: int
    scaling_rep_s: float

    def prefix(self, workload: str, n_total: int) -> int:
        """Events every row is scored on (the slow rows' quality cap), for a fair comparison."""
        cap = self.quality_cap["slow"][workload]
        return n_total if cap is None else min(cap, n_total)


FULL = Budget(
    synthetic_events=200_000,
    repeats={"fast": 5, "medium": 3, "slow": 3},
    time_cap={"fast": None, "medium": 20_000, "slow": 2_000},
    quality_cap={
        "fast": {"obd": None, "synthetic": None},
        "medium": {"obd": None, "synthetic": None},
        "slow": {"obd": None, "synthetic": 20_000},
    },
    floor_steps=2_000_000,
    scaling_rep_s=0.25,
)
QUICK = Budget(
    synthetic_events=20_000,
    repeats={"fast": 5, "medium": 3, "slow": 3},
    time_cap={"fast": None, "medium": 5_000, "slow": 500},
    quality_cap={
        "fast": {"obd": None, "synthetic": None},
        "medium": {"obd": None, "synthetic": None},
        "slow": {"obd": 3_000, "synthetic": 3_000},
    },
    floor_steps=300_000,
    scaling_rep_s=0.05,
)


# ----------------------------------------------------------------------------- metrics
def _bind_numpy() -> None:
    """Import numpy into this module's globals, in child processes only (see module doc)."""
    global np
    import numpy as np


def log_loss(y: FloatArray, p: FloatArray) -> float:
    """Mean binary cross-entropy of probabilities ``p`` for 0/1 labels ``y``."""
    if not np.all(np.isfinite(p)):
        return math.nan
    q = np.clip(p, 1e-15, 1.0 - 1e-15)
    return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))


def _average_ranks(s: FloatArray) -> FloatArray:
    """1-based ranks of ``s``, ties sharing their average rank."""
    order = np.argsort(s, kind="mergesort")
    ordered = s[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ordered)) + 1))
    ends = np.concatenate((starts[1:], [len(s)]))
    ranks = np.empty(len(s), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def roc_auc(y: FloatArray, s: FloatArray) -> float:
    """Rank-based ROC AUC (Mann-Whitney U), ties averaged; nan without both classes."""
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0 or not np.all(np.isfinite(s)):
        return math.nan
    ranks = _average_ranks(np.asarray(s, dtype=np.float64))
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def sigmoid(z: FloatArray) -> FloatArray:
    """Numerically stable logistic function."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _quality(y: FloatArray, p: FloatArray) -> dict[str, float]:
    return {"log_loss": log_loss(y, p), "auc": roc_auc(y, p), "events": len(p)}


# ----------------------------------------------------------------------------- workloads
def _synthetic(n: int) -> tuple[NDArray[np.float32], NDArray[np.float32], FloatArray]:
    """Features, labels and true probabilities of the fixed logistic stream."""
    rng = np.random.default_rng(SYN_SEED)
    X = rng.standard_normal((n, 4)).astype(np.float32)
    p = sigmoid(X.astype(np.float64) @ np.array(SYN_WEIGHTS) + SYN_BIAS)
    y = (rng.random(n) < p).astype(np.float32)
    return X, y, p


def _running_rate(y: FloatArray) -> FloatArray:
    """Progressive base-rate predictor: (clicks so far + 0.5) / (events so far + 1)."""
    seen = np.concatenate(([0.0], np.cumsum(y)[:-1]))
    return (seen + 0.5) / (np.arange(len(y)) + 1.0)


def _prepare(path: Path, budget: Budget) -> dict[str, Any]:
    """Build both streams into ``path`` (.npz); return the reference rows' quality."""
    from livelearn import FeatureEncoder
    from livelearn.datasets import load_sample

    items = load_sample()
    obd_X = FeatureEncoder().encode_many(items)
    obd_y = np.array([it.label for it in items], dtype=np.float32)
    syn_X, syn_y, syn_p = _synthetic(budget.synthetic_events)
    np.savez(path, obd_X=obd_X, obd_y=obd_y, synthetic_X=syn_X, synthetic_y=syn_y)
    refs: dict[str, Any] = {"running click rate": {}, "true model (oracle)": {}}
    for wl, y in (("obd", obd_y), ("synthetic", syn_y)):
        y64 = y.astype(np.float64)
        refs["running click rate"][wl] = _scores(y64, _running_rate(y64), budget, wl)
    refs["true model (oracle)"]["synthetic"] = _scores(
        syn_y.astype(np.float64), syn_p, budget, "synthetic"
    )
    return {"references": refs, "events": {"obd": len(obd_y), "synthetic": len(syn_y)}}


def _scores(y: FloatArray, p: FloatArray, budget: Budget, wl: str) -> dict[str, Any]:
    """Quality over every scored event and over the prefix all rows share."""
    n = budget.prefix(wl, len(y))
    return {"all": _quality(y[: len(p)], p), "prefix": _quality(y[:n], p[:n])}


# ----------------------------------------------------------------------------- rows
class Row:
    """One learner. ``learn`` is the timed part; everything else is untimed setup.

    ``convert`` turns a slice of the stream into the learner's native input
    (dicts for River, text for VW, tensors for torch) outside the clock, one
    ``chunk`` at a time so the converted copy never dominates peak RSS.
    ``learn`` must predict each event before learning it and return what it
    predicted (probabilities, or whatever ``to_proba`` turns into them).
    """

    version = ""
    chunk: int | None = 1_000

    def reset(self) -> None:
        """Start from a fresh, untrained model."""
        raise NotImplementedError

    def convert(self, X: Any, y: Any, start: int, stop: int) -> Any:
        return X[start:stop], y[start:stop].tolist()

    def learn(self, batch: Any) -> Any:
        raise NotImplementedError

    def to_proba(self, out: Any, y: FloatArray) -> FloatArray:
        return np.asarray(out, dtype=np.float64)


def _livelearn_network() -> Any:
    from livelearn import Network

    return Network(
        layers=list(LAYERS),
        activation="tanh",
        output="sigmoid",
        loss="bce",
        optimizer="sgd",
        learning_rate=LR,
        seed=SEED,
    )


def _proba_from_bce(loss: FloatArray, y: FloatArray) -> FloatArray:
    """Recover the pre-update prediction from the step's BCE loss (exact, monotone)."""
    loss64 = np.asarray(loss, dtype=np.float64)
    return np.where(y > 0.5, np.exp(-loss64), -np.expm1(-loss64))


class LivelearnStep(Row):
    """``Network.train_step`` per event; its returned loss is the pre-update score."""

    def __init__(self) -> None:
        import livelearn

        self.version = livelearn.__version__

    def reset(self) -> None:
        self.net = _livelearn_network()

    def learn(self, batch: Any) -> list[float]:
        X, ys = batch
        step = self.net.train_step
        out = []
        for x, t in zip(X, ys, strict=True):
            out.append(step(x, t))
        return out

    def to_proba(self, out: Any, y: FloatArray) -> FloatArray:
        return _proba_from_bce(np.asarray(out), y)


class LivelearnBatch(LivelearnStep):
    """``Network.train_batch`` on the whole stream in one call: still one step per event."""

    chunk = None

    def convert(self, X: Any, y: Any, start: int, stop: int) -> Any:
        return X[start:stop], y[start:stop]

    def learn(self, batch: Any) -> Any:
        X, Y = batch
        return self.net.train_batch(X, Y)


class LivelearnEngine(Row):
    """``Engine.train_step`` end to end: features, queue, native steps, Futures resolved."""

    chunk = None  # submit all, then wait for all

    def __init__(self) -> None:
        import livelearn
        from livelearn.datasets import load_sample

        self.version = livelearn.__version__
        self.items = load_sample()
        self.engine: Any = None

    def reset(self) -> None:
        from livelearn import Engine

        if self.engine is not None:
            self.engine.close()
        self.engine = Engine(
            hidden_layers=LAYERS[1:-1],
            activation="tanh",
            loss="bce",
            optimizer="sgd",
            learning_rate=LR,
            seed=SEED,
        ).initialize()

    def convert(self, X: Any, y: Any, start: int, stop: int) -> Any:
        return self.items[start:stop]

    def learn(self, batch: Any) -> list[float]:
        submit = self.engine.train_step
        futures = [submit(item) for item in batch]
        return [f.result().prediction for f in futures]


class NumpyMLP(Row):
    """A plain-numpy 4-16-8-1 MLP (float64), hand-written backprop, one SGD step per event."""

    def __init__(self) -> None:
        self.version = np.__version__

    def reset(self) -> None:
        rng = np.random.default_rng(SEED)
        pairs = list(itertools.pairwise(LAYERS))
        # Glorot-uniform, the default of most frameworks for tanh layers.
        self.w = [rng.uniform(-1, 1, (a, b)) * math.sqrt(6.0 / (a + b)) for a, b in pairs]
        self.b = [np.zeros(b) for _, b in pairs]

    def convert(self, X: Any, y: Any, start: int, stop: int) -> Any:
        return X[start:stop].astype(np.float64), y[start:stop].tolist()

    def learn(self, batch: Any) -> list[float]:
        X, ys = batch
        (W1, W2, W3), (b1, b2, b3) = self.w, self.b
        w3 = W3[:, 0]  # a view: updating it updates W3
        out = []
        for x, t in zip(X, ys, strict=True):
            h1 = np.tanh(x @ W1 + b1)
            h2 = np.tanh(h1 @ W2 + b2)
            z = float(h2 @ w3) + float(b3[0])
            p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else 1.0 - 1.0 / (1.0 + math.exp(z))
            out.append(p)
            g = p - t  # dBCE/dz for a sigmoid output
            d2 = (g * w3) * (1.0 - h2 * h2)
            d1 = (W2 @ d2) * (1.0 - h1 * h1)  # before W2 changes
            w3 -= LR * g * h2
            b3 -= LR * g
            W2 -= LR * np.outer(h1, d2)
            b2 -= LR * d2
            W1 -= LR * np.outer(x, d1)
            b1 -= LR * d1
        return out


def _torch_mlp(torch: Any, layers: Sequence[int]) -> Any:
    """Linear/Tanh stack ending in a plain Linear (logits)."""
    mods: list[Any] = []
    for a, b in itertools.pairwise(layers[:-1]):
        mods += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    mods.append(torch.nn.Linear(layers[-2], layers[-1]))
    return torch.nn.Sequential(*mods)


def _import_torch() -> Any:
    import torch

    # One thread: an online learner is one thread per stream (and livelearn is).
    torch.set_num_threads(1)
    return torch


class TorchLoop(Row):
    """Plain PyTorch: forward, BCEWithLogitsLoss, backward, SGD step, per event."""

    def __init__(self) -> None:
        self.torch = _import_torch()
        self.version = self.torch.__version__

    def reset(self) -> None:
        torch = self.torch
        torch.manual_seed(SEED)
        self.model = _torch_mlp(torch, LAYERS)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.loss = torch.nn.BCEWithLogitsLoss()

    def convert(self, X: Any, y: Any, start: int, stop: int) -> Any:
        t = self.torch
        return t.from_numpy(X[start:stop].copy()), t.from_numpy(y[start:stop].reshape(-1, 1).copy())

    def learn(self, batch: Any) -> list[float]:
        Xt, Yt = batch
        model, opt, loss_fn = self.model, self.opt, self.loss
        out = []
        for i in range(len(Xt)):
            z = model(Xt[i : i + 1])
            loss = loss_fn(z, Yt[i : i + 1])
            out.append(z.item())  # the logit, scored before the update
            opt.zero_grad()
            loss.backward()
            opt.step()
        return out

    def to_proba(self, out: Any, y: FloatArray) -> FloatArray:
        return sigmoid(np.asarray(out, dtype=np.float64))


def _dicts(X: Any, start: int, stop: int) -> list[dict[str, float]]:
    names = ("x0", "x1", "x2", "x3")
    return [dict(zip(names, row, strict=True)) for row in X[start:stop].tolist()]


class DeepRiver(Row):
    """deep-river ``Classifier`` around a 4-16-8-2 torch module (softmax cross-entropy)."""

    def __init__(self) -> None:
        self.torch = _import_torch()
        import deep_river
        from deep_river.classification import Classifier

        self.cls = Classifier
        self.version = getattr(deep_river, "__version__", "?")

    def reset(self) -> None:
        self.torch.manual_seed(SEED)
        # Two logits + cross-entropy: deep-river's documented binary set-up. Its
        # one-output path one-hot encodes the label against one column, which
        # trains label False towards 1, so 1 logit + BCE is not usable here.
        module = _torch_mlp(self.torch, (*LAYERS[:-1], 2))
        self.model = self.cls(
            module=module, loss_fn="cross_entropy", optimizer_fn="sgd", lr=LR, seed=SEED
        )

    def convert(self, X: Any, y: Any, start: int, stop: int) -> Any:
        return _dicts(X, start, stop), [bool(v) for v in y[start:stop]]

    def learn(self, batch: Any) -> list[float]:
        xs, ys = batch
        model = self.model
        out = []
        for x, t in zip(xs, ys, strict=True):
            out.append(model.predict_proba_one(x).get(True, 0.5))
            model.learn_one(x, t)
        return out


class RiverLR(Row):
    """River ``linear_model.LogisticRegression``, SGD(0.05), intercept lr 0.05, no L2."""

    def __init__(self) -> None:
        import river
        from river import linear_model, optim

        self.version = getattr(river, "__version__", "?")
        self.make: Callable[[], Any] = lambda: linear_model.LogisticRegression(
            optimizer=optim.SGD(LR), intercept_lr=LR, l2=0.0
        )

    def reset(self) -> None:
        self.model = self.make()

    def convert(self, X: Any, y: Any, start: int, stop: int) -> Any:
        return _dicts(X, start, stop), [bool(v) for v in y[start:stop]]

    def learn(self, batch: Any) -> list[float]:
        xs, ys = batch
        model = self.model
        out = []
        for x, t in zip(xs, ys, strict=True):
            out.append(model.predict_proba_one(x).get(True, 0.5))
            model.learn_one(x, t)
        return out

    def learn_only(self, batch: Any) -> None:
        """``learn_one`` alone (no prediction), for the Engine-vs-learn_one target."""
        xs, ys = batch
        model = self.model
        for x, t in zip(xs, ys, strict=True):
            model.learn_one(x, t)


class RiverMLP(Row):
    """River ``neural_net.MLPRegressor``: (16, 8) sigmoid hidden, sigmoid out, squared loss."""

    def __init__(self) -> None:
        import river

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from river import neural_net, optim
        self.version = getattr(river, "__version__", "?")
        sig = neural_net.activations.Sigmoid
        self.make: Callable[[], Any] = lambda: neural_net.MLPRegressor(
            hidden_dims=LAYERS[1:-1],
            activations=(sig, sig, sig),
            optimizer=optim.SGD(LR),
            seed=SEED,
        )

    def reset(self) -> None:
        self.model = self.make()

    def convert(self, X: Any, y: Any, start: int, stop: int) -> Any:
        return _dicts(X, start, stop), y[start:stop].tolist()

    def learn(self, batch: Any) -> list[float]:
        xs, ys = batch
        model = self.model
        out = []
        for x, t in zip(xs, ys, strict=True):
            # Weights are created by the first learn_one; before that, no opinion.
            out.append(float(model.predict_one(x)) if hasattr(model, "w") else 0.5)
            model.learn_one(x, t)
        return out


class SklearnRow(Row):
    """``partial_fit`` on one row per call, ``predict_proba`` before it."""

    def __init__(self, make: Callable[[], Any]) -> None:
        import sklearn

        self.version = sklearn.__version__
        self.make = make

    def reset(self) -> None:
        self.model = self.make()

    def convert(self, X: Any, y: Any, start: int, stop: int) -> Any:
        return X[start:stop], y[start:stop].astype(np.int64)

    def learn(self, batch: Any) -> list[float]:
        X, Y = batch
        model = self.model
        out = []
        for i in range(len(X)):
            x, t = X[i : i + 1], Y[i : i + 1]
            if hasattr(model, "classes_"):
                out.append(float(model.predict_proba(x)[0, 1]))
                model.partial_fit(x, t)
            else:  # the first call must name the classes
                out.append(0.5)
                model.partial_fit(x, t, classes=np.array([0, 1]))
        return out


def _sklearn_mlp() -> SklearnRow:
    from sklearn.neural_network import MLPClassifier

    return SklearnRow(
        lambda: MLPClassifier(
            hidden_layer_sizes=LAYERS[1:-1],
            activation="tanh",
            solver="sgd",
            learning_rate="constant",
            learning_rate_init=LR,
            momentum=0.0,
            alpha=0.0,
            random_state=SEED,
        )
    )


def _sklearn_sgd() -> SklearnRow:
    from sklearn.linear_model import SGDClassifier

    return SklearnRow(
        lambda: SGDClassifier(
            loss="log_loss", penalty=None, learning_rate="constant", eta0=LR, random_state=SEED
        )
    )


class VowpalWabbit(Row):
    """``vowpalwabbit.Workspace`` with logistic loss and link, default learning rate."""

    def __init__(self, extra: str) -> None:
        import vowpalwabbit

        self.vw = vowpalwabbit
        self.version = getattr(vowpalwabbit, "__version__", "?")
        self.args = f"--loss_function logistic --link logistic --quiet {extra}".strip()
        self.ws: Any = None

    def reset(self) -> None:
        if self.ws is not None:
            self.ws.finish()
        self.ws = self.vw.Workspace(self.args)

    def convert(self, X: Any, y: Any, start: int, stop: int) -> Any:
        rows = X[start:stop].tolist()
        labels = y[start:stop].tolist()
        return [
            f"{1 if t > 0.5 else -1} |f a:{r[0]:.7g} b:{r[1]:.7g} c:{r[2]:.7g} d:{r[3]:.7g}"
            for r, t in zip(rows, labels, strict=True)
        ]

    def learn(self, batch: Any) -> list[float]:
        ws = self.ws
        out = []
        for line in batch:
            ex = ws.parse(line)
            ws.learn(ex)  # VW predicts, then updates: the prediction is pre-update
            out.append(ex.get_simplelabel_prediction())
            ws.finish_example(ex)
        return out


@dataclass(frozen=True)
class Spec:
    """A row of the table: how to build it and what to say about it."""

    key: str
    label: str
    make: Callable[[], Row]
    note: str
    speed: str = "fast"  # "fast" | "medium" | "slow": picks the Budget caps
    workloads: tuple[str, ...] = WORKLOADS
    livelearn: bool = False


SPECS: tuple[Spec, ...] = (
    Spec(
        "livelearn-batch",
        "livelearn Network.train_batch (per row)",
        LivelearnBatch,
        "whole stream in one call; still one SGD step per event",
        livelearn=True,
    ),
    Spec(
        "livelearn-step",
        "livelearn Network.train_step",
        LivelearnStep,
        "Python loop, one call per event",
        livelearn=True,
    ),
    Spec(
        "livelearn-engine",
        "livelearn Engine.train_step (end to end)",
        LivelearnEngine,
        "InteractionData in, features + Futures included (submit all, wait all); "
        "OBD only: the synthetic stream has no interactions",
        workloads=("obd",),
        livelearn=True,
    ),
    Spec(
        "numpy", "plain numpy MLP", NumpyMLP, "hand-written in this script, float64", speed="medium"
    ),
    Spec(
        "river-lr",
        "River LogisticRegression",
        RiverLR,
        "linear model (closest River has to the MLP); dicts built untimed",
    ),
    Spec(
        "river-mlp",
        "River neural_net.MLPRegressor",
        RiverMLP,
        "closest: no tanh and no classifier in River's MLP -> sigmoid hidden, sigmoid out, "
        "squared loss; deprecated module",
        speed="slow",
    ),
    Spec(
        "deep-river",
        "deep-river Classifier",
        DeepRiver,
        "4-16-8-2 softmax cross-entropy (= sigmoid BCE on the logit difference); torch 1 thread",
        speed="slow",
    ),
    Spec(
        "torch",
        "PyTorch per-event loop",
        TorchLoop,
        "CPU, torch.set_num_threads(1), .item() on the logit per event",
        speed="slow",
    ),
    Spec(
        "sklearn-mlp",
        "scikit-learn MLPClassifier.partial_fit",
        _sklearn_mlp,
        "one row per call; predict_proba + partial_fit",
        speed="slow",
    ),
    Spec(
        "sklearn-sgd",
        "scikit-learn SGDClassifier.partial_fit",
        _sklearn_sgd,
        "closest: linear; learning_rate='constant', eta0=0.05, penalty=None",
        speed="slow",
    ),
    Spec(
        "vw",
        "Vowpal Wabbit (linear)",
        lambda: VowpalWabbit(""),
        "closest: linear; VW default update (adaptive, normalized, invariant), -l 0.5 "
        "(default); text examples built untimed",
        speed="medium",
    ),
    Spec(
        "vw-nn",
        "Vowpal Wabbit --nn 16",
        lambda: VowpalWabbit("--nn 16"),
        "closest: one hidden layer of 16 tanh units; VW default update, -l 0.5 (default)",
        speed="medium",
    ),
)
FLOOR_KEY = "floor"


# ----------------------------------------------------------------------------- child side
@dataclass
class Run:
    """One progressive pass: timed wall and CPU seconds, and the predictions made."""

    wall_s: float
    cpu_s: float
    preds: FloatArray | None


def _wall_over_cpu(run: Run) -> float:
    return run.wall_s / run.cpu_s if run.cpu_s > 0 else math.inf


def _progressive(row: Row, data: dict[str, Any], wl: str, n: int, method: str = "learn") -> Run:
    """Learn the first ``n`` events from a fresh model, timing only ``row.<method>``."""
    X, y = data[f"{wl}_X"], data[f"{wl}_y"]
    row.reset()
    gc.collect()  # no collection of the previous run's garbage inside this run's clock
    learn = getattr(row, method)
    step = row.chunk or n
    run, outs = Run(0.0, 0.0, None), []
    for start in range(0, n, step):
        stop = min(n, start + step)
        batch = row.convert(X, y, start, stop)
        t0, c0 = time.perf_counter(), time.process_time()
        out = learn(batch)
        run.wall_s += time.perf_counter() - t0
        # CPU time of the whole process: next to wall time it shows whether other
        # work on the machine stole this run's core (wall >> CPU for one thread).
        run.cpu_s += time.process_time() - c0
        if method == "learn":
            outs.append(row.to_proba(out, y[start:stop].astype(np.float64)))
    run.preds = np.concatenate(outs) if outs else None
    return run


def _steady(
    once: Callable[[], T], ratio: Callable[[T], float], repeats: int
) -> tuple[list[T], int, int]:
    """Run ``once`` until ``repeats`` runs were undisturbed, trying at most 3 x ``repeats``.

    A run is disturbed when its wall time exceeds its CPU time by more than
    ``STEADY``: the machine is shared and another job took the core. Returns
    the undisturbed runs if there are enough of them (else every run), the
    number of runs made and the number of them that were disturbed.
    """
    runs: list[T] = []
    clean: list[T] = []
    while len(clean) < repeats and len(runs) < 3 * repeats:
        runs.append(once())
        if ratio(runs[-1]) <= STEADY:
            clean.append(runs[-1])
    used = clean if len(clean) >= repeats else runs
    return used, len(runs), len(runs) - len(clean)


def _timed(
    row: Row, data: dict[str, Any], wl: str, n: int, repeats: int, method: str = "learn"
) -> tuple[list[Run], int, int]:
    """Fresh runs of ``n`` events after a short warm-up (see ``_steady``)."""
    _progressive(row, data, wl, min(n, 300), method)  # lazy init, caches, allocator
    return _steady(lambda: _progressive(row, data, wl, n, method), _wall_over_cpu, repeats)


def _measure(spec: Spec, row: Row, data: dict[str, Any], wl: str, budget: Budget) -> dict[str, Any]:
    n_total = len(data[f"{wl}_y"])
    time_cap = budget.time_cap[spec.speed]
    quality_cap = budget.quality_cap[spec.speed][wl]
    n_time = n_total if time_cap is None else min(time_cap, n_total)
    n_quality = n_total if quality_cap is None else min(quality_cap, n_total)
    repeats = budget.repeats[spec.speed]
    runs, n_runs, n_disturbed = _timed(row, data, wl, n_time, repeats)
    preds = runs[0].preds if n_quality == n_time else _progressive(row, data, wl, n_quality).preds
    assert preds is not None
    y = data[f"{wl}_y"].astype(np.float64)
    reps = [r.wall_s / n_time * 1e6 for r in runs]
    result: dict[str, Any] = {
        "us_per_event": statistics.median(reps),
        "us_per_event_reps": reps,
        "us_per_event_best": min(reps),
        "cpu_us_per_event": statistics.median(r.cpu_s / n_time * 1e6 for r in runs),
        "runs": n_runs,
        "runs_disturbed": n_disturbed,
        "events_timed": n_time,
        "events_total": n_total,
        **_scores(y, preds, budget, wl),
    }
    if hasattr(row, "learn_only"):
        only, _, _ = _timed(row, data, wl, n_time, repeats, method="learn_only")
        result["learn_only_us_per_event"] = statistics.median(r.wall_s / n_time * 1e6 for r in only)
    return result


def _peak_rss_mib() -> dict[str, float]:
    """ru_maxrss (KiB on Linux) and, as a cross-check, this image's VmHWM."""
    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["vm_hwm_mib"] = int(line.split()[1]) / 1024.0
    return out


def _run_row(key: str, data_path: Path, budget: Budget) -> dict[str, Any]:
    spec = next(s for s in SPECS if s.key == key)
    try:
        row = spec.make()
    except ImportError as exc:  # an optional peer that is not installed
        return {"status": "skipped", "reason": f"not installed ({exc})"}
    with np.load(data_path) as npz:
        data = {k: npz[k] for k in npz.files}
    result: dict[str, Any] = {"status": "ok", "version": row.version, "workloads": {}}
    for wl in spec.workloads:
        result["workloads"][wl] = _measure(spec, row, data, wl, budget)
    return result


def _child(args: argparse.Namespace) -> int:
    _bind_numpy()
    warnings.filterwarnings("ignore")  # peers' deprecation/convergence chatter
    budget = QUICK if args.quick else FULL
    data_path = Path(args.data)
    if args.child == "_prepare":
        result = _prepare(data_path, budget)
    elif args.child == "_baseline":
        with np.load(data_path) as npz:
            _ = {k: npz[k] for k in npz.files}
        result = {"status": "ok"}
    elif args.child == "_scaling":
        result = _scaling(budget)
    else:
        result = _run_row(args.child, data_path, budget)
    result.update(_peak_rss_mib())
    Path(args.out).write_text(json.dumps(result))
    return 0


# ----------------------------------------------------------------------------- scaling
def _params(layers: Sequence[int]) -> int:
    return sum(a * b + b for a, b in itertools.pairwise(layers))


def _median_ns(run: Callable[[int], float], rep_s: float, repeats: int) -> float:
    """Median ns/step; the step count makes one repeat last about ``rep_s`` seconds."""
    run(20)  # warm-up
    pilot = max(run(50), 1e-9)
    n = int(min(200_000, max(200, rep_s / pilot)))

    def once() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        per_step = run(n)
        return per_step, (time.perf_counter() - t0) / max(time.process_time() - c0, 1e-9)

    runs, _, _ = _steady(once, lambda r: r[1], repeats)
    return statistics.median(r[0] for r in runs) * 1e9


def _scaling_case(layers: Sequence[int], torch: Any, budget: Budget) -> dict[str, Any]:
    from livelearn import Network

    rng = np.random.default_rng(SEED)
    pool_X = rng.standard_normal((4096, layers[0])).astype(np.float32)
    pool_Y = (rng.random((4096, layers[-1])) < 0.5).astype(np.float32)

    def rows(n: int) -> tuple[Any, Any]:
        idx = np.arange(n) % len(pool_X)
        return np.ascontiguousarray(pool_X[idx]), np.ascontiguousarray(pool_Y[idx])

    def ll_step(n: int) -> float:
        net, (X, Y) = Network(layers=list(layers), learning_rate=LR, seed=SEED), rows(n)
        step = net.train_step
        t0 = time.perf_counter()
        for x, t in zip(X, Y, strict=True):
            step(x, t)
        return (time.perf_counter() - t0) / n

    def ll_batch(n: int) -> float:
        net, (X, Y) = Network(layers=list(layers), learning_rate=LR, seed=SEED), rows(n)
        t0 = time.perf_counter()
        net.train_batch(X, Y)
        return (time.perf_counter() - t0) / n

    def torch_step(n: int) -> float:
        # The bare step (no .item()): the most favourable per-event torch loop.
        model = _torch_mlp(torch, layers)
        opt, loss_fn = torch.optim.SGD(model.parameters(), lr=LR), torch.nn.BCEWithLogitsLoss()
        X, Y = (torch.from_numpy(a) for a in rows(n))
        t0 = time.perf_counter()
        for i in range(n):
            loss = loss_fn(model(X[i : i + 1]), Y[i : i + 1])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return (time.perf_counter() - t0) / n

    case: dict[str, Any] = {"layers": list(layers), "params": _params(layers)}
    impls = {"livelearn_train_step": ll_step, "livelearn_train_batch": ll_batch}
    if torch is not None:
        impls["torch_per_event"] = torch_step
    for name, run in impls.items():
        # Five repeats: cheap here, and the median then shrugs off two noisy ones.
        case[f"{name}_ns"] = _median_ns(run, budget.scaling_rep_s, 5)
    return case


def _scaling(budget: Budget) -> dict[str, Any]:
    try:
        torch: Any = _import_torch()
        torch_version = torch.__version__
    except ImportError:
        torch, torch_version = None, None
    cases = [_scaling_case(layers, torch, budget) for layers in SCALING_LAYERS]
    return {"status": "ok", "torch_version": torch_version, "cases": cases}


def crossover(cases: list[dict[str, Any]], ours: str, theirs: str) -> str:
    """Where ``theirs`` ns/step / ``ours`` ns/step falls through 1, interpolated in log-log."""
    pts = [(c["params"], c[f"{theirs}_ns"] / c[f"{ours}_ns"]) for c in cases if f"{theirs}_ns" in c]
    if not pts:
        return "n/a (torch not installed)"
    for (p0, r0), (p1, r1) in itertools.pairwise(pts):
        if r0 >= 1.0 > r1:
            f = math.log(r0) / (math.log(r0) - math.log(r1))
            at = math.exp(math.log(p0) + f * (math.log(p1) - math.log(p0)))
            return (
                f"crossover at about {at:,.0f} parameters: livelearn is faster below, "
                f"PyTorch above ({_fmt_ratio(r0)} at {p0:,} -> {_fmt_ratio(r1)} at {p1:,})"
            )
    if all(r >= 1.0 for _, r in pts):
        return (
            f"no crossover in the measured range: livelearn faster at every size, "
            f"{_fmt_ratio(pts[0][1])} at {pts[0][0]:,} params down to {_fmt_ratio(pts[-1][1])} at "
            f"{pts[-1][0]:,}"
        )
    return "PyTorch faster at " + ", ".join(
        f"{p:,} params ({_fmt_ratio(r)})" for p, r in pts if r < 1
    )


# ----------------------------------------------------------------------------- parent side
def _child_env() -> dict[str, str]:
    """Children import the checkout's livelearn if it is built in place, else the installed one."""
    env = dict(os.environ)
    if any((REPO / "python" / "livelearn").glob("_core*.so")):
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO / "python"), env.get("PYTHONPATH")])
        )
    return env


def _spawn(name: str, data: Path, tmp: Path, quick: bool) -> dict[str, Any]:
    """Run one child (its own process: its own peak RSS); failures become a status."""
    out = tmp / f"{name}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        name,
        "--data",
        str(data),
        "--out",
        str(out),
    ] + (["--quick"] if quick else [])
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=_child_env(),
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {CHILD_TIMEOUT_S} s"}
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "reason": f"exit {proc.returncode}: {tail[:300]}"}
    result: dict[str, Any] = json.loads(out.read_text())
    result["wall_s"] = time.monotonic() - t0
    return result


def _cxx_version(cxx: str) -> str:
    proc = subprocess.run([cxx, "-dumpfullversion"], capture_output=True, text=True, check=False)
    return f"g++ {proc.stdout.strip()}" if proc.returncode == 0 else "g++"


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _native_floor(tmp: Path, steps: int, repeats: int) -> dict[str, Any]:
    """Compile benchmarks/native_floor.cpp and run it; median of its best-of-5 outputs."""
    cxx = shutil.which("g++")
    if cxx is None:
        return {"status": "skipped", "reason": "g++ not found"}
    exe = tmp / "native_floor"
    flags = ["-O3", "-march=native", "-ffast-math"]
    build = subprocess.run(
        [cxx, *flags, "-o", str(exe), str(HERE / "native_floor.cpp")],
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        return {"status": "failed", "reason": f"g++ failed: {build.stderr.strip()[-300:]}"}

    def once() -> tuple[float, float]:
        cpu0, t0 = _children_cpu_s(), time.perf_counter()
        proc = subprocess.run([str(exe), str(steps)], capture_output=True, text=True, check=True)
        ratio = (time.perf_counter() - t0) / max(_children_cpu_s() - cpu0, 1e-9)
        return json.loads(proc.stdout)["floor_ns_per_step"] / 1000.0, ratio

    runs, n_runs, n_disturbed = _steady(once, lambda r: r[1], repeats)
    us = [r[0] for r in runs]
    timing = {
        "us_per_event": statistics.median(us),
        "us_per_event_reps": us,
        "us_per_event_best": min(us),
        "events_timed": steps,
        "wall_over_cpu": statistics.median(r[1] for r in runs),
        "runs": n_runs,
        "runs_disturbed": n_disturbed,
    }
    return {
        "status": "ok",
        "version": _cxx_version(cxx),
        "compiler": cxx,
        "workloads": {wl: dict(timing) for wl in WORKLOADS},
    }


def _machine() -> dict[str, Any]:
    model, cpus = platform.processor() or "?", os.cpu_count()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "CPU(s)":
                cpus = int(value.strip())
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": cpus,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_start": os.getloadavg(),
    }


def _selected(only: str | None) -> list[str]:
    """Row keys to run; ``--only`` takes keys or key prefixes (``river`` = river-lr, river-mlp)."""
    keys = [FLOOR_KEY] + [s.key for s in SPECS]
    if not only:
        return keys
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if not any(k == w or k.startswith(w + "-") for k in keys)]
    if unknown:
        raise SystemExit(f"--only: unknown {unknown}; choose from {', '.join(keys)}")
    return [k for k in keys if any(k == w or k.startswith(w + "-") for w in wanted)]


def _note(key: str, res: dict[str, Any], budget: Budget) -> str:
    if key == FLOOR_KEY:
        base = (
            "hand-written fixed-size C++ loop, its own random data; median of "
            f"{budget.repeats['slow']} runs of best-of-5 x {budget.floor_steps:,} steps"
        )
    else:
        spec = next(s for s in SPECS if s.key == key)
        base = spec.note
        capped = [
            f"{WL_TITLE[wl]} timed on first {w['events_timed']:,}"
            for wl, w in res.get("workloads", {}).items()
            if w.get("events_timed", 0) < w.get("events_total", 0)
        ]
        if capped:
            base += "; " + ", ".join(capped)
        alone = [
            f"{WL_TITLE[wl]} {_fmt_us(w['learn_only_us_per_event'])} µs"
            for wl, w in res.get("workloads", {}).items()
            if "learn_only_us_per_event" in w
        ]
        if alone:
            base += "; learn_one alone (no predict): " + ", ".join(alone)
    if res.get("status") != "ok":
        return f"{res.get('status', '?').upper()}: {res.get('reason', '')}"
    return base


# ----------------------------------------------------------------------------- report
def _label(key: str) -> str:
    if key == FLOOR_KEY:
        return "native floor (C++, -O3 -march=native -ffast-math)"
    return next(s.label for s in SPECS if s.key == key)


def _us(rows: dict[str, Any], key: str, wl: str, field: str = "us_per_event") -> float | None:
    res = rows.get(key, {})
    value = res.get("workloads", {}).get(wl, {}).get(field) if res.get("status") == "ok" else None
    return None if value is None else float(value)


def _fmt(v: float | None, spec: str = ".3g", suffix: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:{spec}}{suffix}"


def _fmt_ratio(r: float | None) -> str:
    """Ratios to 3 significant digits, never in exponent notation."""
    if r is None or math.isnan(r):
        return "—"
    return f"{r:.2f}{TIMES}" if r < 10 else f"{r:.1f}{TIMES}" if r < 100 else f"{r:,.0f}{TIMES}"


def _fmt_us(us: float | None) -> str:
    if us is None:
        return "—"
    return f"{us:.3f}" if us < 1 else f"{us:.2f}" if us < 100 else f"{us:,.0f}"


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None or den == 0 else num / den


def speed_table(rows: dict[str, Any], budget: Budget) -> list[str]:
    head = (
        "| row | version | OBD µs/event | OBD events/s | synthetic µs/event | "
        "synthetic events/s | ÷ train_step (OBD / synth) | ÷ Engine (OBD) | "
        "peak RSS MiB | note |"
    )
    lines = [head, "|" + "---|" * 10]
    for key, res in rows.items():
        cells = [_label(key), res.get("version", "—")]
        for wl in WORKLOADS:
            us = _us(rows, key, wl)
            cells += [_fmt_us(us), _fmt(None if us is None else 1e6 / us, ",.0f")]
        r_obd = _ratio(_us(rows, key, "obd"), _us(rows, "livelearn-step", "obd"))
        r_syn = _ratio(_us(rows, key, "synthetic"), _us(rows, "livelearn-step", "synthetic"))
        cells.append(f"{_fmt_ratio(r_obd)} / {_fmt_ratio(r_syn)}")
        cells.append(
            _fmt_ratio(_ratio(_us(rows, key, "obd"), _us(rows, "livelearn-engine", "obd")))
        )
        ok = res.get("status") == "ok"
        cells.append(_fmt(res.get("peak_rss_mib") if ok else None, ".0f"))
        cells.append(_note(key, res, budget))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def quality_table(
    rows: dict[str, Any], refs: dict[str, Any], budget: Budget, events: dict[str, int]
) -> list[str]:
    cols: list[tuple[str, str]] = []  # (workload, "all" | "prefix")
    titles = []
    for wl in WORKLOADS:
        n, prefix = events[wl], budget.prefix(wl, events[wl])
        if prefix < n:
            cols.append((wl, "prefix"))
            titles += [f"{WL_TITLE[wl]} log loss (first {prefix:,})", "AUC"]
        cols.append((wl, "all"))
        titles += [f"{WL_TITLE[wl]} log loss (all {n:,})", "AUC"]
    lines = ["| row | " + " | ".join(titles) + " |", "|" + "---|" * (len(titles) + 1)]
    entries = [
        (_label(k), r.get("workloads", {}))
        for k, r in rows.items()
        if k != FLOOR_KEY and r.get("status") == "ok"
    ]
    entries += [(f"*reference: {name}*", wls) for name, wls in refs.items()]
    for label, wls in entries:
        cells = [label]
        for wl, part in cols:
            q = wls.get(wl, {}).get(part, {})
            full = part == "prefix" or q.get("events") == events[wl]
            cells += (
                [_fmt(q.get("log_loss"), ".5f"), _fmt(q.get("auc"), ".4f")]
                if full and q
                else ["—", "—"]
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


@dataclass
class Target:
    name: str
    required: str
    measured: str
    met: bool | None  # None: could not be measured

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "n/a"}[self.met]


def _faster_than(
    rows: dict[str, Any],
    peer: str,
    ours: str,
    need: float,
    wls: Sequence[str] = WORKLOADS,
    field: str = "us_per_event",
) -> Target:
    parts, oks = [], []
    for wl in wls:
        r = _ratio(_us(rows, peer, wl, field), _us(rows, ours, wl))
        if r is not None:
            parts.append(f"{WL_TITLE[wl]} {_fmt_ratio(r)}")
            oks.append(r >= need)
    verb = "faster" if need > 1 else "at least as fast"
    return Target(
        f"{_label(ours)} vs {_label(peer)}",
        f"≥ {need:g}{TIMES} {verb}" if need > 1 else "faster",
        ", ".join(parts) or "not measured",
        all(oks) if oks else None,
    )


def _floor_target(rows: dict[str, Any]) -> Target:
    # Best run against best run: the floor binary reports its best of 5, and for
    # two compute-only loops of ~0.1 µs the fastest run is the least disturbed one.
    parts, oks = [], []
    for wl in WORKLOADS:
        field = "us_per_event_best"
        r = _ratio(_us(rows, "livelearn-batch", wl, field), _us(rows, FLOOR_KEY, wl, field))
        if r is not None:
            parts.append(f"{WL_TITLE[wl]} {r:.2f}{TIMES} the floor")
            oks.append(r <= 1.5)
    return Target(
        "livelearn Network.train_batch per row vs native floor (best run vs best run)",
        f"≤ 1.5{TIMES} the floor",
        ", ".join(parts) or "not measured",
        all(oks) if oks else None,
    )


def _quality_target(rows: dict[str, Any], events: dict[str, int]) -> Target:
    def full_obd(key: str) -> float | None:
        q = rows[key].get("workloads", {}).get("obd", {}).get("all", {})
        return float(q["log_loss"]) if q.get("events") == events["obd"] else None

    ours = full_obd("livelearn-step") if "livelearn-step" in rows else None
    peers: list[tuple[float | None, str]] = [
        (full_obd(k), k)
        for k in rows
        if k != FLOOR_KEY and not k.startswith("livelearn") and rows[k].get("status") == "ok"
    ]
    scored = [(v, k) for v, k in peers if v is not None and not math.isnan(v)]
    if ours is None or not scored:
        return Target(
            "OBD progressive log loss vs best peer", "≤ best peer + 1 %", "not measured", None
        )
    best, who = min(scored)
    gap = ours / best - 1.0
    return Target(
        "OBD progressive log loss (Network.train_step) vs best peer",
        "≤ best peer + 1 %",
        f"livelearn {ours:.5f} vs {_label(who)} {best:.5f} ({gap:+.2%})",
        gap <= 0.01,
    )


def _scaling_target(scaling: dict[str, Any] | None) -> Target:
    name, need = "largest network (256-512-512-8): train_step vs PyTorch per-event", f"≥ 1{TIMES}"
    cases = (scaling or {}).get("cases", [])
    if not cases or "torch_per_event_ns" not in cases[-1]:
        return Target(name, need, "not measured", None)
    c = cases[-1]
    r = c["torch_per_event_ns"] / c["livelearn_train_step_ns"]
    return Target(
        name,
        need,
        f"{r:.2f}{TIMES} ({c['livelearn_train_step_ns'] / 1e3:,.1f} µs vs "
        f"{c['torch_per_event_ns'] / 1e3:,.1f} µs per step)",
        r >= 1.0,
    )


def targets(
    rows: dict[str, Any], scaling: dict[str, Any] | None, events: dict[str, int]
) -> list[Target]:
    step, engine = "livelearn-step", "livelearn-engine"
    return [
        _faster_than(rows, "torch", step, 300),
        _faster_than(rows, "deep-river", step, 300),
        _faster_than(rows, "vw-nn", step, 20),
        _faster_than(rows, "river-lr", step, 3),
        _faster_than(rows, "torch", engine, 50, wls=("obd",)),
        _faster_than(rows, "river-lr", engine, 1, wls=("obd",), field="learn_only_us_per_event"),
        _floor_target(rows),
        _quality_target(rows, events),
        _scaling_target(scaling),
    ]


def scaling_table(scaling: dict[str, Any] | None) -> list[str]:
    if not scaling or scaling.get("status") != "ok":
        reason = (scaling or {}).get("reason", "skipped (--skip-scaling)")
        return [f"Scaling not measured: {reason}."]
    lines = [
        "| layers | parameters | train_step ns/step | train_batch ns/step | "
        "PyTorch per-event ns/step | PyTorch ÷ train_step | PyTorch ÷ train_batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in scaling["cases"]:
        torch_ns = c.get("torch_per_event_ns")
        lines.append(
            "| "
            + " | ".join(
                [
                    "-".join(map(str, c["layers"])),
                    f"{c['params']:,}",
                    f"{c['livelearn_train_step_ns']:,.0f}",
                    f"{c['livelearn_train_batch_ns']:,.0f}",
                    _fmt(torch_ns, ",.0f"),
                    _fmt_ratio(_ratio(torch_ns, c["livelearn_train_step_ns"])),
                    _fmt_ratio(_ratio(torch_ns, c["livelearn_train_batch_ns"])),
                ]
            )
            + " |"
        )
    lines += [
        "",
        "- train_step: " + crossover(scaling["cases"], "livelearn_train_step", "torch_per_event"),
        "- train_batch: " + crossover(scaling["cases"], "livelearn_train_batch", "torch_per_event"),
        "- PyTorch step here is the bare loop (forward, loss, zero_grad, backward, step; "
        "no .item()), torch.set_num_threads(1); 256-512-512-8 has 8 sigmoid outputs, BCE "
        "averaged over them in both.",
    ]
    return lines


def contention(rows: dict[str, Any]) -> str:
    """How disturbed the timed runs were: wall ÷ CPU time is about 1 when nothing else ran."""
    ratios, runs, disturbed = [], 0, 0
    for key, res in rows.items():
        if res.get("status") != "ok":
            continue
        for wl, w in res["workloads"].items():
            if key == FLOOR_KEY and wl != WORKLOADS[0]:
                continue  # the floor's figures are shared by both workloads
            runs, disturbed = runs + w.get("runs", 0), disturbed + w.get("runs_disturbed", 0)
            # The Engine runs two threads (CPU time may exceed wall time): not a signal.
            if w.get("cpu_us_per_event") and key != "livelearn-engine":
                ratios.append((w["us_per_event"] / w["cpu_us_per_event"], f"{key} {wl}"))
            elif "wall_over_cpu" in w:
                ratios.append((w["wall_over_cpu"], key))
    if not ratios:
        return "no single-threaded rows measured"
    worst = max(ratios)
    return (
        f"{disturbed} of {runs} timed runs were disturbed (wall > {STEADY:g} x CPU: another "
        "job took the core) and re-run, up to 3 x the repeats; in the runs used, wall ÷ CPU is "
        f"median {statistics.median(r for r, _ in ratios):.2f}, worst {worst[0]:.2f} "
        f"({worst[1]}; above {STEADY:g}: that row never got enough undisturbed runs)"
    )


def markdown(report: dict[str, Any], budget: Budget) -> str:
    m, rows = report["machine"], report["rows"]
    ev = report["events"]
    out = [
        "# livelearn vs peers (issue 5)",
        "",
        f"- Date: {report['date']}; machine: {m['cpu']}, {m['cores']} cores; Python "
        f"{m['python']}; load average at start {m['load_avg_start'][0]:.2f}, at end "
        f"{m['load_avg_end'][0]:.2f}; whole run {report['runtime_s']:.0f} s"
        + (" (--quick)" if report["quick"] else "")
        + ".",
        f"- Workloads: Open Bandit sample, {ev['obd']:,} real events in timestamp order, "
        f"livelearn FeatureEncoder (4 inputs), label = click; synthetic, {ev['synthetic']:,} "
        f"events, 4 N(0,1) features, labels from sigmoid(x·{list(SYN_WEIGHTS)} {SYN_BIAS:+g}).",
        "- Model: 4-16-8-1, tanh hidden, sigmoid output, BCE, plain SGD lr 0.05, batch 1, "
        "one step per event, predict-before-learn (progressive validation).",
        f"- µs/event: median of {budget.repeats['fast']} (fast rows) or "
        f"{budget.repeats['slow']} fresh runs after a warm-up, learning "
        "(predict + update) timed, input conversion to the peer's native format untimed. "
        "Peak RSS: ru_maxrss of the row's own child process (interpreter + numpy + workloads "
        f"alone: {report['baseline_rss_mib']:.0f} MiB).",
        f"- Contention check, wall ÷ CPU time per timed run: {contention(rows)}.",
        "",
        "## Speed",
        "",
        *speed_table(rows, budget),
        "",
        "## Quality (progressive validation)",
        "",
        *quality_table(rows, report["references"], budget, ev),
        "",
        "## Targets",
        "",
        "| target | required | measured | verdict |",
        "|---|---|---|---|",
        *[
            f"| {t['name']} | {t['required']} | {t['measured']} | {t['verdict']} |"
            for t in report["targets"]
        ],
        "",
        "## Scaling: ns per training step against parameter count",
        "",
        *scaling_table(report.get("scaling")),
        "",
    ]
    return "\n".join(out)


def plot(report: dict[str, Any], path: Path) -> str | None:
    """Bar chart of µs/event (log scale), plus the scaling curves when measured."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no PNG"
    rows = {k: r for k, r in report["rows"].items() if r.get("status") == "ok"}
    cases = (report.get("scaling") or {}).get("cases", [])
    fig, axes = plt.subplots(
        1, 2 if cases else 1, figsize=(15 if cases else 10, 6.5), squeeze=False
    )
    ax = axes[0][0]
    labels = [_label(k) for k in rows]
    height = 0.4
    for i, wl in enumerate(WORKLOADS):
        vals = [_us(rows, k, wl) or 0.0 for k in rows]
        pos = [j + (i - 0.5) * height for j in range(len(rows))]
        ax.barh(pos, vals, height=height, label=WL_TITLE[wl])
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("µs per event (log scale; lower is faster)")
    ax.set_title("4-16-8-1 online SGD, one step per event")
    ax.legend()
    ax.grid(axis="x", which="both", alpha=0.3)
    if cases:
        ax2 = axes[0][1]
        params = [c["params"] for c in cases]
        for field, name in (
            ("livelearn_train_step_ns", "livelearn train_step"),
            ("livelearn_train_batch_ns", "livelearn train_batch"),
            ("torch_per_event_ns", "PyTorch per-event"),
        ):
            if all(field in c for c in cases):
                ax2.plot(params, [c[field] for c in cases], marker="o", label=name)
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("parameters")
        ax2.set_ylabel("ns per step")
        ax2.set_title("Scaling")
        ax2.legend()
        ax2.grid(which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _run_all(args: argparse.Namespace, budget: Budget, tmp: Path) -> dict[str, Any]:
    data = tmp / "workloads.npz"
    prep = _spawn("_prepare", data, tmp, args.quick)
    if prep.get("status") == "failed":
        raise SystemExit(f"preparing the workloads failed: {prep['reason']}")
    rows: dict[str, Any] = {}
    for key in _selected(args.only):
        _progress(f"[peers] {key} ...")
        if key == FLOOR_KEY:
            rows[key] = _native_floor(tmp, budget.floor_steps, budget.repeats["slow"])
        else:
            rows[key] = _spawn(key, data, tmp, args.quick)
        res = rows[key]
        summary = ", ".join(f"{wl} {_fmt_us(_us(rows, key, wl))} µs" for wl in WORKLOADS)
        _progress(f"[peers]   {res.get('status')}: {summary} {res.get('reason', '')}")
    baseline = _spawn("_baseline", data, tmp, args.quick)
    scaling: dict[str, Any] = {"status": "skipped", "reason": "skipped (--skip-scaling)"}
    if not args.skip_scaling:
        _progress("[peers] scaling ...")
        scaling = _spawn("_scaling", data, tmp, args.quick)
    return {
        "rows": rows,
        "references": prep["references"],
        "events": prep["events"],
        "baseline_rss_mib": baseline.get("peak_rss_mib", math.nan),
        "scaling": scaling,
    }


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small streams and caps (smoke run)")
    ap.add_argument("--only", help="comma-separated row keys or prefixes, e.g. torch,river")
    ap.add_argument("--skip-scaling", action="store_true", help="skip the scaling section")
    ap.add_argument("--results", default=str(HERE / "results"), help="output directory")
    ap.add_argument("--list", action="store_true", help="list row keys and exit")
    # Internal: run one row in this (child) process.
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.child:
        return _child(args)
    if args.list:
        print("\n".join(f"{k:18s} {_label(k)}" for k in _selected(None)))
        return 0
    budget = QUICK if args.quick else FULL
    t0 = time.monotonic()
    machine = _machine()
    with tempfile.TemporaryDirectory(prefix="livelearn-peers-") as tmp:
        report = _run_all(args, budget, Path(tmp))
    machine["load_avg_end"] = os.getloadavg()
    report.update(
        budget=dataclasses.asdict(budget),
        machine=machine,
        quick=args.quick,
        runtime_s=time.monotonic() - t0,
        date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    report["targets"] = [
        dict(vars(t), verdict=t.verdict)
        for t in targets(report["rows"], report["scaling"], report["events"])
    ]
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    scaling = report.pop("scaling")
    text = markdown({**report, "scaling": scaling}, budget)
    (results / "peers.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / "scaling.json").write_text(json.dumps(scaling, indent=2) + "\n")
    (results / "peers.md").write_text(text)
    problem = plot({**report, "scaling": scaling}, results / "peers.png")
    print(text)
    if problem:
        _progress(f"[peers] {problem}")
    _progress(
        f"[peers] wrote {results}/peers.{{json,md,png}} and scaling.json "
        f"in {time.monotonic() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
