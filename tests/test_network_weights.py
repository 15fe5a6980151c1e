"""Sample weights on the native network's train steps (``weight=``, ``weights=``).

The weight multiplies the example's loss and its whole gradient (weight decay
included); the returned loss is the weighted one. A weight-0 example is an
accepted step that writes no parameter; a NaN, infinite or negative weight is
refused like a non-finite input.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from livelearn import STATUS_NAMES, Network, StepRejected

NON_FINITE_INPUT = STATUS_NAMES.index("non-finite input")
COUNTERS = ("counters.steps", "counters.rejected_steps")


def params_bytes(net: Network) -> dict[str, bytes]:
    """Every tensor (parameters and optimizer buffers), counters left out."""
    return {k: v.tobytes() for k, v in net.get_state().items() if k not in COUNTERS}


# ------------------------------------------------ float64 weighted reference


def weighted_reference_step(
    net: Network, x: np.ndarray, y: np.ndarray, weight: float
) -> tuple[float, dict[str, np.ndarray]]:
    """One weighted step of ``net`` (tanh hidden layers) in float64, from its
    exact float32 state: the weighted loss and every tensor after the step."""
    s = {k: v.astype(np.float64) for k, v in net.get_state().items()}
    n = len(net.layers) - 1
    W = [s[f"layers.{i}.weight"] for i in range(n)]
    b = [s[f"layers.{i}.bias"] for i in range(n)]
    a = [x.astype(np.float64)]
    for i in range(n - 1):
        a.append(np.tanh(a[-1] @ W[i] + b[i]))
    z = a[-1] @ W[-1] + b[-1]
    t = y.astype(np.float64)
    k = z.size
    if net.loss == "bce":
        loss = float(np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))))
        d = (1.0 / (1.0 + np.exp(-z)) - t) / k
    else:
        loss = float(np.mean((z - t) ** 2))
        d = 2.0 * (z - t) / k
    grads: dict[str, np.ndarray] = {}
    for i in range(n - 1, -1, -1):
        grads[f"layers.{i}.weight"] = np.outer(a[i], d)
        grads[f"layers.{i}.bias"] = d.copy()
        if i:
            d = (W[i] @ d) * (1.0 - a[i] * a[i])
    wd = float(np.float32(net.weight_decay))
    lr = float(np.float32(net.learning_rate))
    out: dict[str, np.ndarray] = {}
    for name, g in grads.items():
        g = weight * (g + (wd * s[name] if name.endswith("weight") else 0.0))
        if net.optimizer == "adam":
            b1, b2 = float(np.float32(net.beta1)), float(np.float32(net.beta2))
            eps = float(np.float32(net.epsilon))
            step = int(s["counters.steps"]) + 1
            m = b1 * s["optimizer.exp_avg." + name] + (1 - b1) * g
            v = b2 * s["optimizer.exp_avg_sq." + name] + (1 - b2) * g * g
            bc1, bc2 = 1 - b1**step, 1 - b2**step
            out[name] = s[name] - lr / bc1 * m / (np.sqrt(v) / math.sqrt(bc2) + eps)
            out["optimizer.exp_avg." + name] = m
            out["optimizer.exp_avg_sq." + name] = v
        else:
            out[name] = s[name] - lr * g
    return weight * loss, out


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("head", [("bce", "sigmoid"), ("mse", "identity")], ids=["bce", "mse"])
@pytest.mark.parametrize("weight", [0.3, 2.5])
def test_weighted_step_matches_float64_reference(optimizer, head, weight):
    loss, output = head
    net = Network(
        layers=[5, 6, 4, 2],
        output=output,
        loss=loss,
        optimizer=optimizer,
        learning_rate=0.05,
        weight_decay=0.01,
        seed=4,
    )
    rng = np.random.default_rng(3)
    for step in range(4):  # a few steps, so Adam's moments are not zero
        x = rng.normal(size=5).astype(np.float32)
        y = (rng.random(2) < 0.5).astype(np.float32)
        before = {k: v.astype(np.float64) for k, v in net.get_state().items()}
        want_loss, want = weighted_reference_step(net, x, y, weight)
        got_loss = net.train_step(x, y, weight=weight)
        assert got_loss == pytest.approx(want_loss, rel=1e-5, abs=1e-7), f"step {step}"
        after = net.get_state()
        for name, value in want.items():
            d_native = after[name] - before[name]
            d_ref = value - before[name]
            atol = 4e-7 * np.abs(before[name]) + 1e-5 * np.abs(d_ref).max() + 1e-12
            err = np.abs(d_native - d_ref) - (atol + 1e-4 * np.abs(d_ref))
            assert not (err > 0).any(), f"step {step} {name}: {d_native} vs {d_ref}"


def test_weighted_losses_are_weight_times_loss_in_batches():
    X = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    Y = np.array([1, 0, 1, 1, 0, 0], np.float32)
    weights = np.array([0.5, 3.0, 1.0, 0.0, 7.25, 1e-3], np.float32)
    for i in range(len(X)):  # loss before the row's update: compare from one state
        a, b = Network(seed=2), Network(seed=2)
        a.train_batch(X[:i], Y[:i], weights=weights[:i])
        b.train_batch(X[:i], Y[:i], weights=weights[:i])
        weighted = a.train_batch(X[i : i + 1], Y[i : i + 1], weights=weights[i : i + 1])
        plain = b.train_batch(X[i : i + 1], Y[i : i + 1])
        assert weighted[0] == pytest.approx(float(weights[i]) * plain[0], rel=1e-6)


# ------------------------------------------------------ weight scaling


def test_weight_two_equals_doubled_learning_rate():
    """Plain SGD: one step with weight 2 is one step with learning rate 2 lr,
    bit for bit (scaling by 2 is exact), for every entry point."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 6)).astype(np.float32)
    Y = (X[:, 0] > 0).astype(np.float32)
    kw = {"layers": [6, 5, 1], "weight_decay": 0.01, "seed": 8}
    weighted = Network(learning_rate=0.05, **kw)
    faster = Network(learning_rate=0.1, **kw)
    for x, y in zip(X[:10], Y[:10], strict=True):
        assert weighted.train_step(x, float(y), weight=2.0) == 2.0 * faster.train_step(x, float(y))
    idx = np.array([0, 3, 5], np.int32)
    for x, y in zip(X[10:20], Y[10:20], strict=True):
        assert weighted.train_step_sparse(idx, x[idx], float(y), 2.0) == (
            2.0 * faster.train_step_sparse(idx, x[idx], float(y))
        )
    lw = weighted.train_batch(X[20:], Y[20:], weights=np.full(10, 2.0))
    lf = faster.train_batch(X[20:], Y[20:])
    np.testing.assert_array_equal(lw, 2.0 * lf)
    assert params_bytes(weighted) == params_bytes(faster)


def test_weights_of_one_and_none_are_the_unweighted_batch():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(20, 4)).astype(np.float32)
    Y = (rng.random(20) < 0.5).astype(np.float32)
    nets = [Network(optimizer="adam", seed=1) for _ in range(3)]
    la = nets[0].train_batch(X, Y)
    lb = nets[1].train_batch(X, Y, weights=None)
    lc = nets[2].train_batch(X, Y, weights=[1] * 20)  # ints convert too
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(la, lc)
    assert params_bytes(nets[0]) == params_bytes(nets[1]) == params_bytes(nets[2])


# ----------------------------------------------------------- weight zero

OPTIMIZERS = {
    "sgd": {"weight_decay": 0.1},
    "momentum": {"momentum": 0.9, "weight_decay": 0.1},
    "adam": {"optimizer": "adam", "weight_decay": 0.1},
}


def warmed(kw: dict[str, object]) -> Network:
    net = Network(layers=[4, 6, 1], seed=3, **kw)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 4)).astype(np.float32)
    net.train_batch(X, (X[:, 0] > 0).astype(np.float32))  # non-zero optimizer buffers
    return net


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("entry", ["step", "sparse", "batch", "detailed", "sparse_detailed"])
def test_weight_zero_changes_nothing_but_the_step_counter(opt, entry):
    net = warmed(OPTIMIZERS[opt])
    x = np.array([0.5, -1.0, 0.25, 2.0], np.float32)
    before, steps, version = params_bytes(net), net.steps, net.version
    rejected = net.rejected_steps
    expected_prediction = net.predict(x[None, :])
    ptr, idx = np.array([0, 4]), np.arange(4, dtype=np.int32)
    if entry == "step":
        assert net.train_step(x, 1.0, weight=0.0) == 0.0
    elif entry == "sparse":
        assert net.train_step_sparse(idx, x, 1.0, weight=0) == 0.0
    elif entry == "batch":
        np.testing.assert_array_equal(net.train_batch(x[None, :], [1.0], weights=[0.0]), [0.0])
    else:
        call = net.train_batch_detailed if entry == "detailed" else net.train_batch_sparse_detailed
        args = (x[None, :], [1.0]) if entry == "detailed" else (ptr, idx, x, [1.0])
        losses, preds, status, st = call(*args, weights=[0.0], return_steps=True)
        assert (losses.tolist(), status.tolist(), st.tolist()) == ([0.0], [0], [steps + 1])
        np.testing.assert_array_equal(preds, expected_prediction)
    assert params_bytes(net) == before
    assert net.steps == steps + 1  # an accepted step: counted
    assert net.version == version  # no parameter changed
    assert net.rejected_steps == rejected


# ------------------------------------------------------------ bad weights

BAD_WEIGHTS = [math.nan, math.inf, -math.inf, -1.0, -1e-30, 1e300, 10**400, -(10**400)]


@pytest.mark.parametrize("bad", BAD_WEIGHTS, ids=repr)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_bad_weight_is_refused_and_changes_nothing(bad, sparse):
    """1e300 and 10**400 lie beyond float32: they are inf there, refused too."""
    net = warmed({"optimizer": "adam"})
    before, steps, rejected = params_bytes(net), net.steps, net.rejected_steps
    x = np.array([0.5, -1.0, 0.25, 2.0], np.float32)
    with pytest.raises(StepRejected, match="non-finite input"):
        if sparse:
            net.train_step_sparse(np.arange(4), x, 1.0, weight=bad)
        else:
            net.train_step(x, 1.0, weight=bad)
    assert params_bytes(net) == before
    assert (net.steps, net.rejected_steps) == (steps, rejected + 1)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_bad_weights_in_a_batch_reject_those_rows_only(sparse, opt):
    """Each bad row: status non-finite input, NaN loss and prediction, step 0;
    the other rows (weight 0 among them) byte-identical to the batch without it."""
    rng = np.random.default_rng(9)
    n = 12
    X = rng.normal(size=(n, 4)).astype(np.float32)
    Y = (rng.random(n) < 0.5).astype(np.float32)
    W = rng.uniform(0.1, 3.0, size=n)
    W[2] = 0.0
    bad = [1, 6, 7, 11]
    W[bad] = [math.nan, -2.0, math.inf, 1e300]
    keep = [r for r in range(n) if r not in bad]

    def run(net: Network, rows: list[int]) -> tuple[np.ndarray, ...]:
        if not sparse:
            return net.train_batch_detailed(X[rows], Y[rows], weights=W[rows], return_steps=True)
        ptr = np.arange(len(rows) + 1) * 4
        idx = np.tile(np.arange(4, dtype=np.int32), len(rows))
        return net.train_batch_sparse_detailed(
            ptr, idx, X[rows].ravel(), Y[rows], weights=W[rows], return_steps=True
        )

    a, b = Network(optimizer=opt, seed=5), Network(optimizer=opt, seed=5)
    la, pa, sa, na = run(a, list(range(n)))
    lb, pb, sb, nb = run(b, keep)
    assert sa[bad].tolist() == [NON_FINITE_INPUT] * len(bad)
    assert np.isnan(la[bad]).all() and np.isnan(pa[bad]).all()
    assert na[bad].tolist() == [0] * len(bad)
    assert la[keep].tobytes() == lb.tobytes()
    assert pa[keep].tobytes() == pb.tobytes()
    assert sa[keep].tolist() == sb.tolist() == [0] * len(keep)
    assert na[keep].tolist() == nb.tolist() == list(range(1, len(keep) + 1))
    assert params_bytes(a) == params_bytes(b)
    assert (a.steps, a.rejected_steps) == (len(keep), len(bad))


# --------------------------------------------------- argument conversion


@pytest.mark.parametrize(
    ("call", "name", "match"),
    [
        (
            lambda n: n.train_batch(np.zeros((3, 4)), np.zeros(3), weights=np.ones(2)),
            "weights",
            r"expected shape \(3,\), got \(2,\)",
        ),
        (
            lambda n: n.train_batch(np.zeros((3, 4)), np.zeros(3), weights=np.ones((3, 1))),
            "weights",
            r"expected shape \(3,\), got \(3, 1\)",
        ),
        (
            lambda n: n.train_batch(np.zeros((3, 4)), np.zeros(3), weights=1.0),
            "weights",
            r"expected shape \(3,\), got \(\)",
        ),
        (
            lambda n: n.train_batch_sparse([0, 1], [0], [1.0], [1.0], weights=[1.0, 1.0]),
            "weights",
            r"expected shape \(1,\), got \(2,\)",
        ),
        (
            lambda n: n.train_batch_detailed(np.zeros((2, 4)), np.zeros(2), weights=[1, 2, 3]),
            "weights",
            r"expected shape \(2,\), got \(3,\)",
        ),
        (
            lambda n: n.train_batch_sparse_detailed(
                [0, 0], np.zeros(0, np.int32), [], [1.0], weights=[]
            ),
            "weights",
            r"expected shape \(1,\), got \(0,\)",
        ),
    ],
)
def test_batch_weights_of_the_wrong_shape_raise_value_error(call, name, match):
    net = Network(seed=0)
    before = params_bytes(net)
    with pytest.raises(ValueError, match=f"^{name}: {match}"):
        call(net)
    assert params_bytes(net) == before and net.steps == 0 and net.rejected_steps == 0


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda n: n.train_batch(np.zeros((1, 4)), [0.0], weights=["a"]), "weights"),
        (lambda n: n.train_batch(np.zeros((1, 4)), [0.0], weights=[1 + 2j]), "weights"),
        (lambda n: n.train_step(np.zeros(4), 0.0, weight="1"), "weight"),
        (lambda n: n.train_step(np.zeros(4), 0.0, weight=True), "weight"),
        (lambda n: n.train_step(np.zeros(4), 0.0, weight=None), "weight"),
        (lambda n: n.train_step_sparse([0], [1.0], 0.0, weight=[1.0]), "weight"),
    ],
)
def test_weights_of_the_wrong_type_raise_type_error(call, name):
    net = Network(seed=0)
    with pytest.raises(TypeError, match=f"^{name}: "):
        call(net)
    assert net.steps == 0 and net.rejected_steps == 0


def test_weights_is_keyword_only_and_numbers_of_any_kind_are_accepted():
    net = Network(seed=0)
    with pytest.raises(TypeError):
        net.train_batch(np.zeros((1, 4)), [0.0], [1.0])  # type: ignore[misc]
    for w in (2, np.float32(0.5), np.float64(1.5), np.int64(3)):
        net.train_step(np.zeros(4), 0.0, weight=w)  # type: ignore[arg-type]
    net.train_batch(np.zeros((2, 4)), [0.0, 1.0], weights=np.array([1, 2], np.int8))
    assert net.steps == 6


# ------------------------------------------------------------ concurrency


def test_concurrent_weighted_batches_count_every_step_once():
    """4 threads train weighted batches (weight 0 and NaN rows among them)
    while 2 predict: every accepted row gets a distinct step number, the
    counters add up, and predictions stay finite."""
    net = Network(layers=[8, 32, 1], seed=1)
    n_threads, rows, chunk = 4, 400, 50
    results: list[tuple[np.ndarray, np.ndarray]] = []
    lock = threading.Lock()
    done = threading.Event()
    bad_predictions: list[np.ndarray] = []

    def train(seed: int) -> None:
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(rows, 8)).astype(np.float32)
        Y = (X[:, 0] > 0).astype(np.float32)
        W = rng.uniform(0.0, 2.0, size=rows).astype(np.float32)
        W[::10] = 0.0
        W[5::40] = np.nan
        for lo in range(0, rows, chunk):
            _, _, status, steps = net.train_batch_detailed(
                X[lo : lo + chunk],
                Y[lo : lo + chunk],
                weights=W[lo : lo + chunk],
                return_steps=True,
            )
            with lock:
                results.append((status, steps))

    def predict() -> None:
        x = np.ones((4, 8), np.float32)
        while not done.is_set():
            p = net.predict(x)
            if not np.isfinite(p).all():
                bad_predictions.append(p)

    readers = [threading.Thread(target=predict) for _ in range(2)]
    trainers = [threading.Thread(target=train, args=(s,)) for s in range(n_threads)]
    for t in readers + trainers:
        t.start()
    for t in trainers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    status = np.concatenate([s for s, _ in results])
    steps = np.concatenate([st for _, st in results])
    trained = np.sort(steps[status == 0])
    n_rejected = n_threads * (rows // 40)
    assert (status[status != 0] == NON_FINITE_INPUT).all()
    assert int((status != 0).sum()) == n_rejected
    np.testing.assert_array_equal(trained, np.arange(1, n_threads * rows - n_rejected + 1))
    assert (net.steps, net.rejected_steps) == (n_threads * rows - n_rejected, n_rejected)
    assert not bad_predictions


# ------------------------------------------- what weights are for: sampling


def test_negative_sampling_with_inverse_weights_keeps_predictions_calibrated():
    """Keep each negative with probability r = 0.1 and train it with weight
    1/r: the mean prediction on fresh data stays at the base rate, while the
    unweighted model trained on the same sample over-predicts about 4-fold.
    A few passes with a decaying learning rate bring SGD near the optimum of
    the weighted loss (a fixed rate leaves the last iterate off by several
    percent, whatever the weights)."""
    rng = np.random.default_rng(42)
    n, r = 200_000, 0.1
    X = rng.normal(size=(n + 50_000, 3)).astype(np.float32)
    p_true = 1.0 / (1.0 + np.exp(-(X @ np.array([1.0, -0.5, 0.25]) - 2.5)))
    Y = (rng.random(len(X)) < p_true).astype(np.float32)
    X_eval, Y_eval, X, Y = X[n:], Y[n:], X[:n], Y[:n]
    kept = (Y == 1) | (rng.random(n) < r)
    W = np.where(Y == 1, 1.0, 1.0 / r).astype(np.float32)
    Xk, Yk, Wk = X[kept], Y[kept], W[kept]
    weighted = Network(layers=[3, 1], seed=0)
    plain = Network(layers=[3, 1], seed=0)
    for lr in (0.01, 0.002, 0.0004, 0.0001):
        weighted.learning_rate = plain.learning_rate = lr
        order = rng.permutation(len(Yk))
        weighted.train_batch(Xk[order], Yk[order], weights=Wk[order])
        plain.train_batch(Xk[order], Yk[order])
    calibration = float(weighted.predict(X_eval).mean()) / float(Y_eval.mean())
    biased = float(plain.predict(X_eval).mean()) / float(Y_eval.mean())
    assert abs(calibration - 1.0) < 0.05, calibration
    assert biased > 2.0, biased  # the test can tell calibrated from biased
