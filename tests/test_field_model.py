"""livelearn._core.FieldModel against a float64 numpy reference, and on tasks with
known answers (parity, planted low-rank affinity, FTRL sparsity)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from livelearn._core import STATUS_NAMES, FieldModel
from livelearn.hashing import stable_hash64

F64 = NDArray[np.float64]
State = dict[str, NDArray[Any]]

SMALL: dict[str, Any] = dict(n_buckets=16, n_fields=2, embedding_dim=3, n_dense=2, seed=5)


def random_state(model: FieldModel, seed: int = 0) -> State:
    """Random parameters and positive accumulators (a model mid-training)."""
    rng = np.random.default_rng(seed)
    state = model.get_state()
    for name, value in state.items():
        if name.startswith("counters."):
            continue
        if name.endswith((".G", ".n", ".N")):
            state[name] = rng.uniform(0.1, 2.0, value.shape).astype(np.float32)
        else:
            state[name] = rng.normal(0.0, 0.4, value.shape).astype(np.float32)
    return state


def ref_logit(
    p: dict[str, F64], idx: NDArray[np.int64], val: F64, fld: NDArray[np.int32], dense: F64,
    n_fields: int, activation: str = "relu",
) -> float:  # fmt: skip
    """The model's logit in float64: bias + wide + FM + MLP(pooled embeddings, dense)."""
    v = p["embedding"][idx] * val[:, None]  # (nnz, k)
    logit = p["bias"][0] + p["wide"][idx] @ val
    if "wide_dense" in p:
        logit += p["wide_dense"] @ dense
    s = v.sum(axis=0)
    logit += 0.5 * (s @ s - np.sum(v * v))
    pooled = np.zeros((n_fields, v.shape[1]))
    np.add.at(pooled, fld, v)
    h = np.concatenate([pooled.ravel(), dense])
    layer = 0
    while f"mlp.{layer}.weight" in p:
        z = h @ p[f"mlp.{layer}.weight"] + p[f"mlp.{layer}.bias"]
        last = f"mlp.{layer + 1}.weight" not in p
        h = z if last else (np.maximum(z, 0.0) if activation == "relu" else np.tanh(z))
        layer += 1
    if layer:
        logit += h[0]
    return float(logit)


def params64(state: State) -> dict[str, F64]:
    return {
        k: v.astype(np.float64)
        for k, v in state.items()
        if not k.startswith(("optimizer.", "counters."))
    }


def ref_loss(p: dict[str, F64], row: tuple[Any, ...], y: float, n_fields: int, act: str) -> float:
    z = ref_logit(p, *row, n_fields=n_fields, activation=act)
    return float(max(z, 0.0) - z * y + np.log1p(np.exp(-abs(z))))


def ref_gradient(
    p: dict[str, F64], row: tuple[Any, ...], y: float, n_fields: int, act: str
) -> dict[str, F64]:
    """Central differences of the float64 reference loss, for every parameter."""
    grads = {}
    for name, value in p.items():
        g = np.zeros_like(value)
        flat, gflat = value.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + 1e-6
            up = ref_loss(p, row, y, n_fields, act)
            flat[i] = keep - 1e-6
            down = ref_loss(p, row, y, n_fields, act)
            flat[i] = keep
            gflat[i] = (up - down) / 2e-6
        grads[name] = g
    return grads


ROW = (
    np.array([3, 7, 11, 7, 2], dtype=np.int64),  # index 7 twice: gradients add
    np.array([1.0, 0.5, -1.5, 0.25, 2.0]),
    np.array([0, 1, 1, 1, 0], dtype=np.int32),  # two entries in field 0: sum pooling
    np.array([0.3, -0.7]),
)


@pytest.mark.parametrize(("hidden", "act"), [((), "relu"), ((4,), "relu"), ((5, 3), "tanh")])
def test_forward_matches_numpy_reference(hidden: tuple[int, ...], act: str) -> None:
    m = FieldModel(**SMALL, hidden_layers=hidden, activation=act)
    m.set_state(random_state(m))
    p = params64(m.get_state())
    rng = np.random.default_rng(1)
    for _ in range(20):
        nnz = int(rng.integers(0, 6))
        idx = rng.integers(0, 16, nnz)
        val = rng.normal(0, 1, nnz)
        fld = rng.integers(0, 2, nnz).astype(np.int32)
        dense = rng.normal(0, 1, 2)
        z = ref_logit(p, idx, val, fld, dense, 2, act)
        assert m.predict(idx, val, fld, dense) == pytest.approx(1 / (1 + np.exp(-z)), rel=1e-5)


def test_mse_output_is_the_logit() -> None:
    m = FieldModel(**SMALL, loss="mse", hidden_layers=(3,))
    m.set_state(random_state(m))
    z = ref_logit(params64(m.get_state()), *ROW, n_fields=2)
    assert m.predict(*ROW) == pytest.approx(z, rel=1e-5, abs=1e-6)
    loss, _, status, step = m.train_step(*ROW, y=0.5)
    assert (status, step) == (0, 1)
    assert loss == pytest.approx((z - 0.5) ** 2, rel=1e-5)


@pytest.mark.parametrize("optimizer", ["adagrad", "ftrl", "sgd"])
@pytest.mark.parametrize(("hidden", "act"), [((), "relu"), ((4,), "tanh")])
def test_one_update_matches_reference(optimizer: str, hidden: tuple[int, ...], act: str) -> None:
    # running_bias=False: the optimizer's own bias update (the running bias: below).
    kw = dict(l1=0.05, l2=0.1, embedding_l2=0.2, learning_rate=0.3, embedding_learning_rate=0.2,
              running_bias=False)  # fmt: skip
    m = FieldModel(**SMALL, hidden_layers=hidden, activation=act, optimizer=optimizer, **kw)
    before = random_state(m)
    if optimizer == "ftrl":  # weights consistent with (z, n): w is FTRL's closed form
        for name, l1, l2, alpha in [("bias", 0.0, 0.0, 1.0), ("wide", 0.05, 0.1, 0.3),
                                    ("wide_dense", 0.05, 0.1, 0.3)]:  # fmt: skip
            z, n = before[f"optimizer.{name}.z"], before[f"optimizer.{name}.n"]
            w = -(z - np.sign(z) * l1) / ((1.0 + np.sqrt(n)) / alpha + l2)
            before[name] = np.where(np.abs(z) <= l1, 0.0, w).astype(np.float32)
    m.set_state(before)
    p = params64(before)
    grads = ref_gradient(p, ROW, 1.0, 2, act)
    loss, _, status, _ = m.train_step(*ROW, y=1.0)
    assert status == 0
    assert loss == pytest.approx(ref_loss(p, ROW, 1.0, 2, act), rel=1e-6)
    after = m.get_state()
    lr = {"bias": 1.0, "wide": 0.3, "wide_dense": 0.3, "embedding": 0.2}  # mlp: 0.02
    l2 = {"wide": 0.1, "wide_dense": 0.1, "embedding": 0.2}
    touched = np.zeros(16, dtype=bool)
    touched[ROW[0]] = True
    for name, w in p.items():
        g = grads[name]
        rate = lr.get(name, 0.02)
        reg = l2.get(name, 0.0)
        ftrl = optimizer == "ftrl" and name in ("bias", "wide", "wide_dense")
        if ftrl:
            z, n = before[f"optimizer.{name}.z"].astype(np.float64), before[f"optimizer.{name}.n"]
            n = n.astype(np.float64)
            sigma = (np.sqrt(n + g * g) - np.sqrt(n)) / rate
            z2, n2 = z + g - sigma * w, n + g * g
            l1 = 0.0 if name == "bias" else 0.05
            reg = 0.0 if name == "bias" else reg
            expect = np.where(
                np.abs(z2) <= l1, 0.0, -(z2 - np.sign(z2) * l1) / ((1 + np.sqrt(n2)) / rate + reg)
            )
            np.testing.assert_allclose(after[f"optimizer.{name}.z"], z2, rtol=1e-4, atol=1e-5)
        elif optimizer == "sgd":
            expect = w - rate * (g + reg * w)
        else:
            gg = g + reg * w
            acc = before[f"optimizer.{name}.G"].astype(np.float64) + gg * gg
            expect = w - rate * gg / (np.sqrt(acc) + 1e-8)
            if name in ("wide", "embedding"):  # lazy: untouched rows keep their G
                rows = touched if name == "wide" else touched[:, None]
                acc = np.where(rows, acc, before[f"optimizer.{name}.G"])
            np.testing.assert_allclose(after[f"optimizer.{name}.G"], acc, rtol=1e-5)
        if name in ("wide", "embedding"):  # lazy: untouched rows do not move (not even by L2)
            rows = touched if name == "wide" else touched[:, None]
            expect = np.where(rows, expect, w)
        np.testing.assert_allclose(after[name], expect, rtol=1e-4, atol=2e-5, err_msg=name)


def test_adagrad_first_update_has_size_learning_rate() -> None:
    m = FieldModel(8, 1, initial_accumulator=0.0, learning_rate=0.1, bias_learning_rate=0.5,
                   running_bias=False)  # fmt: skip
    # A tiny gradient (value 0.01) still moves the weight by the full rate, against it.
    m.train_step(np.array([5]), np.array([0.01]), np.array([0]), y=0.0)
    state = m.get_state()
    assert state["wide"][5] == pytest.approx(-0.1, rel=1e-5)
    assert state["bias"][0] == pytest.approx(-0.5, rel=1e-5)
    assert np.count_nonzero(state["wide"]) == 1


def test_bias_reaches_the_base_rate_within_tens_of_events() -> None:
    m = FieldModel(1024, 1)
    rng = np.random.default_rng(0)
    y = (rng.random(60) < 0.05).astype(np.float32)
    n = len(y)
    idx = rng.integers(0, 1024, n)
    m.train_batch(np.arange(n + 1), idx, np.ones(n), np.zeros(n, np.int32), None, y)
    assert (
        abs(m.predict(np.array([], np.int64), np.array([]), np.array([], np.int32)) - 0.05) < 0.05
    )


def test_ftrl_l1_zeroes_useless_and_unseen_weights() -> None:
    m = FieldModel(64, 2, optimizer="ftrl", l1=3.0, learning_rate=0.1)
    rng = np.random.default_rng(5)
    n = 1000
    good = rng.random(n) < 0.5
    idx = np.stack([np.where(good, 1, 2), rng.integers(10, 60, n)], axis=1).ravel()
    fld = np.tile([0, 1], n).astype(np.int32)
    y = (rng.random(n) < np.where(good, 0.9, 0.1)).astype(np.float32)
    m.train_batch(np.arange(0, 2 * n + 1, 2), idx, np.ones(2 * n), fld, None, y)
    w = m.get_state()["wide"]
    assert w[1] > 0.5 and w[2] < -0.5
    assert np.count_nonzero(w[10:60] == 0.0) >= 45  # noise features: exactly zero
    assert np.all(w[60:] == 0.0) and w[0] == 0.0  # never seen


def _pairs_csr(
    users: NDArray[np.int64], items: NDArray[np.int64], n_buckets: int
) -> tuple[NDArray[np.int64], ...]:
    uid = np.array([stable_hash64(f"user={u}") % n_buckets for u in range(int(users.max()) + 1)])
    iid = np.array([stable_hash64(f"item={i}") % n_buckets for i in range(int(items.max()) + 1)])
    n = len(users)
    idx = np.empty(2 * n, dtype=np.int64)
    idx[0::2], idx[1::2] = uid[users], iid[items]
    fld = np.tile(np.array([0, 1], dtype=np.int32), n)
    return np.arange(0, 2 * n + 1, 2, dtype=np.int64), idx, np.ones(2 * n, np.float32), fld


def test_parity_task_is_learned() -> None:
    """User clicks with probability 0.8 on items of its own parity, never on the others."""
    n_users, n_items, n = 100, 20, 20_000
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    y = ((users % 2 == items % 2) & (rng.random(n) < 0.8)).astype(np.float32)
    m = FieldModel(1 << 14, 2)
    _, _, status, steps = m.train_batch(*_pairs_csr(users, items, 1 << 14), None, y)
    assert not status.any() and steps[-1] == n
    uu, ii = (a.ravel() for a in np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij"))
    p = m.predict_batch(*_pairs_csr(uu, ii, 1 << 14), None)
    assert np.mean((p > 0.4) == (uu % 2 == ii % 2)) >= 0.95


def test_planted_low_rank_affinity_beats_a_linear_model() -> None:
    n_users, n_items, n = 60, 30, 15_000
    rng = np.random.default_rng(2)
    pu, qi = rng.normal(0, 1, (n_users, 2)), rng.normal(0, 1, (n_items, 2))
    users, items = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    truth = 1 / (1 + np.exp(-(np.sum(pu[users] * qi[items], axis=1) * 1.5 - 1.0)))
    y = (rng.random(n) < truth).astype(np.float32)
    csr = _pairs_csr(users, items, 1 << 12)
    losses = {}
    for name, kw in {"fm": {}, "linear": {"init_std": 0.0}}.items():  # zero embeddings: no FM
        m = FieldModel(1 << 12, 2, **kw)
        loss, _, _, _ = m.train_batch(*csr, None, y)
        losses[name] = float(loss[-5000:].mean())
    assert losses["fm"] < losses["linear"] - 0.03, losses


def test_non_finite_steps_change_nothing() -> None:
    m = FieldModel(**SMALL, hidden_layers=(4,))
    m.train_step(*ROW, y=1.0)
    before, version = m.get_state(), m.version
    idx, val, fld, dense = ROW
    cases = [
        ((idx, np.array([1, np.nan, 1, 1, 1]), fld, dense), 1.0, 1.0, 1),
        ((idx, val, fld, np.array([0.0, np.inf])), 1.0, 1.0, 1),
        (ROW, float("nan"), 1.0, 1),
        (ROW, 1.0, float("inf"), 1),
        (ROW, 1.5, 1.0, 4),
        ((idx, np.array([1e30, 1, 1, 1, 1]), fld, dense), 0.0, 1.0, None),
    ]
    for row, y, w, code in cases:
        _, _, status, step = m.train_step(*row, y=y, weight=w)
        assert status != 0 and step == 0
        assert (code is None and STATUS_NAMES[status].startswith("non-finite")) or status == code
    after = m.get_state()
    assert all(
        np.array_equal(before[k], after[k]) for k in before if not k.endswith("rejected_steps")
    )
    assert m.version == version and m.steps == 1 and m.rejected_steps == len(cases)


def test_bad_structure_is_refused_and_nothing_changes() -> None:
    m = FieldModel(**SMALL)
    before = m.get_state()
    idx, val, fld, dense = ROW
    with pytest.raises(ValueError, match=r"indices\[1\] = 16 is outside \[0, n_buckets = 16\)"):
        m.train_step(np.array([3, 16, 1, 1, 1]), val, fld, dense, y=1.0)
    with pytest.raises(ValueError, match="fields"):
        m.train_step(idx, val, np.array([0, 2, 0, 0, 0]), dense, y=1.0)
    with pytest.raises(ValueError, match="values"):
        m.train_step(idx, val[:3], fld, dense, y=1.0)
    with pytest.raises(ValueError, match="dense"):
        m.train_step(idx, val, fld, np.zeros(3), y=1.0)
    with pytest.raises(ValueError, match="dense"):
        m.train_step(idx, val, fld, None, y=1.0)
    with pytest.raises(ValueError, match="weight"):
        m.train_step(*ROW, y=1.0, weight=-1.0)
    with pytest.raises(TypeError, match="indices"):
        m.train_step(idx.astype(np.float32), val, fld, dense, y=1.0)
    # Batches: the bad row is found before any row trains.
    indptr = np.array([0, 2, 4])
    bidx, bval, bfld = np.array([1, 2, 3, 99]), np.ones(4), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"row 1: indices\[3\] = 99"):
        m.train_batch(indptr, bidx, bval, bfld, np.zeros((2, 2)), np.ones(2))
    good = np.array([1, 2, 3, 4])
    with pytest.raises(ValueError, match="indptr"):
        m.train_batch(np.array([0, 3, 2]), good, bval, bfld, np.zeros((2, 2)), np.ones(2))
    with pytest.raises(ValueError, match="indptr"):
        m.train_batch(np.array([0, 2, 5]), good, bval, bfld, np.zeros((2, 2)), np.ones(2))
    with pytest.raises(ValueError, match="Y"):
        m.train_batch(indptr, good, bval, bfld, np.zeros((2, 2)), np.ones(3))
    with pytest.raises(ValueError, match="dense"):
        m.train_batch(indptr, good, bval, bfld, np.zeros((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="weights"):
        m.train_batch(indptr, good, bval, bfld, np.zeros((2, 2)), np.ones(2), np.array([1, -1]))
    with pytest.raises(ValueError, match="weights"):
        m.train_batch(indptr, good, bval, bfld, np.zeros((2, 2)), np.ones(2), np.ones(3))
    after = m.get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert (m.steps, m.rejected_steps, m.version) == (0, 0, 0)


def test_state_round_trip_resumes_exactly() -> None:
    rng = np.random.default_rng(3)
    n = 600
    idx = rng.integers(0, 64, 3 * n)
    fld = np.tile([0, 1, 2], n).astype(np.int32)
    dense = rng.normal(0, 1, (n, 2)).astype(np.float32)
    y = (rng.random(n) < 0.3).astype(np.float32)
    csr = (np.arange(0, 3 * n + 1, 3), idx, np.ones(3 * n, np.float32), fld)
    half = (
        np.arange(0, 3 * (n // 2) + 1, 3),
        idx[: 3 * n // 2],
        csr[2][: 3 * n // 2],
        fld[: 3 * n // 2],
    )
    rest = (
        np.arange(0, 3 * (n // 2) + 1, 3),
        idx[3 * n // 2 :],
        csr[2][3 * n // 2 :],
        fld[3 * n // 2 :],
    )
    for optimizer in ("adagrad", "ftrl", "sgd"):
        kw: dict[str, Any] = dict(
            n_buckets=64, n_fields=3, n_dense=2, hidden_layers=(8,), optimizer=optimizer
        )
        a = FieldModel(**kw, seed=1)
        a.train_batch(*half, dense[: n // 2], y[: n // 2])
        b = FieldModel(**kw, seed=99)
        b.set_state(a.get_state())
        assert b.steps == n // 2
        out_a = a.train_batch(*rest, dense[n // 2 :], y[n // 2 :])
        out_b = b.train_batch(*rest, dense[n // 2 :], y[n // 2 :])
        for x, z in zip(out_a, out_b, strict=True):
            np.testing.assert_array_equal(x, z)
        assert out_a[3][-1] == n
        sa, sb = a.get_state(), b.get_state()
        assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
        assert [name for name, _ in a._state_layout()] == [
            k for k in sa if not k.startswith("counters.")
        ]


def test_set_state_and_apply_delta_check_the_layout_in_the_core() -> None:
    m = FieldModel(**SMALL, hidden_layers=(3,))
    state = m.get_state()
    before = m.get_state()
    with pytest.raises(ValueError, match="missing tensor 'embedding'"):
        m.set_state({k: v for k, v in state.items() if k != "embedding"})
    with pytest.raises(ValueError, match="unexpected tensor 'extra'"):
        m.set_state({**state, "extra": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match=r"'wide' has shape \(15,\), expected \(16,\)"):
        m.set_state({**state, "wide": np.zeros(15, np.float32)})
    with pytest.raises(ValueError, match="NaN"):
        m.set_state({**state, "bias": np.array([np.nan], np.float32)})
    with pytest.raises(ValueError, match="negative"):
        m.set_state({**state, "optimizer.wide.G": -np.ones(16, np.float32)})
    params = {k: np.full(v.shape, 0.5, np.float32) for k, v in state.items()
              if not k.startswith(("optimizer.", "counters."))}  # fmt: skip
    with pytest.raises(ValueError, match="missing tensor 'bias'"):
        m.apply_delta({k: v for k, v in params.items() if k != "bias"})
    with pytest.raises(ValueError, match=r"unexpected tensor 'optimizer\.wide\.G'"):
        m.apply_delta({**params, "optimizer.wide.G": np.zeros(16, np.float32)})
    with pytest.raises(ValueError, match="weight: must be finite"):
        m.apply_delta(params, weight=float("inf"))
    with pytest.raises(ValueError, match="'wide' non-finite"):
        m.apply_delta({**params, "wide": np.full(16, 3e38, np.float32)}, weight=2.0)
    after = m.get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before) and m.version == 0
    m.apply_delta(params, weight=2.0)
    moved = m.get_state()
    assert m.version == 1
    for k in params:
        np.testing.assert_allclose(moved[k], before[k] + 1.0, rtol=1e-6)


def test_sample_weights_scale_loss_and_gradient() -> None:
    a, b = FieldModel(**SMALL, optimizer="sgd"), FieldModel(**SMALL, optimizer="sgd")
    loss_a, *_ = a.train_step(*ROW, y=1.0, weight=1.0)
    loss_b, *_ = b.train_step(*ROW, y=1.0, weight=0.0)
    assert loss_b == 0.0 and loss_a > 0.0
    init = FieldModel(**SMALL, optimizer="sgd").get_state()
    sb = b.get_state()
    assert all(np.array_equal(init[k], sb[k]) for k in init if not k.startswith("counters."))
    losses, *_ = FieldModel(**SMALL).train_batch(
        np.array([0, 5]), *ROW[:3], ROW[3][None, :], np.ones(1), np.array([3.0])
    )
    assert losses[0] == pytest.approx(3 * loss_a, rel=1e-6)


def test_concurrent_predictions_never_see_a_torn_update() -> None:
    n = 3000
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 256, 3 * n)
    fld = np.tile([0, 1, 2], n).astype(np.int32)
    y = (rng.random(n) < 0.4).astype(np.float32)
    csr = (np.arange(0, 3 * n + 1, 3), idx, np.ones(3 * n, np.float32), fld)
    probe = (np.array([int(idx[0]), int(idx[1]), int(idx[2])]), np.ones(3), np.array([0, 1, 2]))
    kw: dict[str, Any] = dict(n_buckets=256, n_fields=3, hidden_layers=(16,))
    ref = FieldModel(**kw)
    serial = {ref.predict(*probe)}
    for r in range(n):
        ref.train_step(idx[3 * r : 3 * r + 3], np.ones(3), fld[:3], y=float(y[r]))
        serial.add(ref.predict(*probe))
    m = FieldModel(**kw)
    seen: list[float] = []
    done = threading.Event()

    def train() -> None:
        for start in range(0, n, 500):  # several GIL-free batches
            stop = start + 500
            rows = slice(3 * start, 3 * stop)
            indptr = np.arange(0, 3 * (stop - start) + 1, 3)
            m.train_batch(indptr, idx[rows], csr[2][rows], fld[rows], None, y[start:stop])
        done.set()

    worker = threading.Thread(target=train)
    worker.start()
    while not done.is_set():
        seen.append(m.predict(*probe))
    worker.join()
    seen.append(m.predict(*probe))
    assert m.steps == n
    assert all(p in serial for p in seen)
    assert seen[-1] == ref.predict(*probe)


def test_get_config_rebuilds_the_same_model() -> None:
    m = FieldModel(1000, 3, embedding_dim=4, n_dense=1, hidden_layers=(5, 2), activation="tanh",
                   optimizer="ftrl", learning_rate=0.3, l1=0.5, seed=7, bias_init=-2.0)  # fmt: skip
    cfg = m.get_config()
    assert cfg["hidden_layers"] == (5, 2) and cfg["optimizer"] == "ftrl" and cfg["seed"] == 7
    twin = FieldModel(**cfg)
    assert twin.get_config() == cfg
    a, b = m.get_state(), twin.get_state()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert m.predict(np.array([1]), np.ones(1), np.array([0]), np.zeros(1)) == pytest.approx(
        1 / (1 + np.exp(2.0)), rel=1e-6
    )
    assert m.n_parameters == 1 + 1000 + 1 + 4000 + (13 * 5 + 5) + (5 * 2 + 2) + (2 + 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"activation": "gelu"}, "activation"),
        ({"loss": "hinge"}, "loss"),
        ({"hidden_layers": (4, 0)}, "hidden_layers"),
        ({"l1": float("nan")}, "l1"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FieldModel(16, 2, **kwargs)


# ------------------------------------------------------------- running bias
EMPTY = (np.array([], np.int64), np.array([], np.float32), np.array([], np.int32))


@pytest.mark.parametrize("optimizer", ["adagrad", "ftrl"])
def test_running_bias_alone_is_the_running_mean(optimizer: str) -> None:
    # No features: every prediction is exactly the running mean of the labels so
    # far with bias_prior = 2 pseudo-events at sigmoid(0) = 0.5 (logit space).
    m = FieldModel(8, 1, optimizer=optimizer)
    y = (np.random.default_rng(3).random(300) < 0.3).astype(np.float32)
    n = len(y)
    empty = np.zeros(0, np.int64)
    _, preds, status, _ = m.train_batch(
        np.zeros(n + 1, np.int64), empty, np.zeros(0, np.float32), np.zeros(0, np.int32), None, y
    )
    assert not status.any()
    seen = np.concatenate(([0.0], np.cumsum(y, dtype=np.float64)[:-1]))
    expect = (1.0 + seen) / (2.0 + np.arange(n))
    np.testing.assert_allclose(preds, expect, rtol=1e-5, atol=1e-6)
    assert m.get_state()["optimizer.bias.N"][0] == pytest.approx(2.0 + n)


def test_running_bias_mse_is_the_running_mean_and_weights_count() -> None:
    m = FieldModel(8, 1, loss="mse", bias_prior=1.0)
    ys = [3.0, 5.0, -1.0]
    for y, w in zip(ys, [1.0, 2.0, 0.0], strict=True):
        m.train_step(*EMPTY, y=y, weight=w)
    # (1 pseudo-event at 0, 3 once, 5 twice; the weight-0 step changes nothing)
    assert m.predict(*EMPTY) == pytest.approx((0.0 + 3.0 + 2 * 5.0) / 4.0, rel=1e-6)
    assert m.get_state()["optimizer.bias.N"][0] == pytest.approx(4.0)


def test_running_bias_window_makes_a_moving_average() -> None:
    m = FieldModel(8, 1, loss="mse", bias_prior=1.0, bias_window=4.0)
    for _ in range(200):
        m.train_step(*EMPTY, y=10.0)
    for _ in range(40):
        m.train_step(*EMPTY, y=0.0)
    # 1/4 of the way per step: 10 * 0.75^40 is about 1e-4 (the running mean would be 8.3).
    assert abs(m.predict(*EMPTY)) < 1e-3
    assert m.get_state()["optimizer.bias.N"][0] == pytest.approx(4.0)


def test_running_bias_step_is_bounded() -> None:
    m = FieldModel(8, 1, bias_init=-30.0)  # an overconfident start, then a positive
    m.train_step(*EMPTY, y=1.0)
    assert m.get_state()["bias"][0] == pytest.approx(-29.0, abs=1e-5)


# ------------------------------------------------------------ dense factors
def test_dense_factors_gradient_matches_finite_differences() -> None:
    kw: dict[str, Any] = dict(SMALL, dense_factors=True, optimizer="sgd", embedding_l2=0.0,
                              l2=0.0, embedding_learning_rate=1.0, init_std=0.3)  # fmt: skip
    m = FieldModel(**kw)
    state = m.get_state()
    assert state["dense_embedding"].shape == (2, 3)
    idx, val, fld, dense = ROW
    y = 1.0

    def loss(s: State) -> float:
        probe = FieldModel(**kw)
        probe.set_state(s)
        p = float(np.float64(probe.predict(idx, val, fld, dense)))
        return -np.log(p) if y else -np.log1p(-p)

    numeric = np.zeros((2, 3))
    for i in range(2):
        for f in range(3):
            for sign in (1.0, -1.0):
                s = {k: v.copy() for k, v in state.items()}
                s["dense_embedding"][i, f] += sign * 1e-3
                numeric[i, f] += sign * loss(s) / 2e-3
    m.train_step(idx, val, fld, dense, y=y)
    analytic = state["dense_embedding"] - m.get_state()["dense_embedding"]  # lr 1, sgd
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-4)
    assert np.abs(numeric).max() > 1e-3  # the check is not vacuous


def test_dense_factors_add_the_fm_term_of_dense_inputs() -> None:
    m = FieldModel(**SMALL, dense_factors=True)
    m.set_state(random_state(m))
    idx, val, fld, dense = ROW
    p = params64(m.get_state())
    vx = [p["embedding"][j] * x for j, x in zip(idx, val, strict=True)]
    vx += [p["dense_embedding"][d] * float(dense[d]) for d in range(2)]
    fm = 0.5 * (np.sum(vx, axis=0) ** 2 - np.sum(np.square(vx), axis=0)).sum()
    linear = p["bias"][0] + p["wide"][idx] @ val + p["wide_dense"] @ dense
    prob = float(m.predict(idx, val, fld, dense))
    assert np.log(prob / (1.0 - prob)) == pytest.approx(linear + fm, rel=1e-4, abs=1e-4)
