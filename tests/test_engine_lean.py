"""The engine's lean paths (issue 14): lazily built step results, bulk
resolution, the sparse history kept in CSR chunks, the one-row predict."""

from __future__ import annotations

import concurrent.futures
import threading

import numpy as np
import pytest

from livelearn import Engine, FeatureEncoder, HashedFeatureEncoder, InteractionData
from livelearn.futures import StepFuture, new_future, new_futures, resolve_rows
from livelearn.history import History
from livelearn.results import StepResult, StepStatus, TrainedRows

TARGETS = {"click": 1.0, "skip": 0.0}


def _items(n: int, seed: int = 0) -> list[InteractionData]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ctx = {"page": f"p{rng.integers(0, 7)}"} if i % 3 else None
        action = "click" if rng.random() < 0.4 else "skip"
        out.append(InteractionData(action, 1_700_000_000.0 + i, f"u{rng.integers(0, 50)}", ctx))
    return out


def test_lazy_results_equal_the_eager_ones() -> None:
    steps = np.array([3, 4, 5], dtype=np.int64)
    losses = np.array([0.5, 0.25, 1e300], dtype=np.float64)
    preds = np.array([[0.1], [0.2], [0.3]], dtype=np.float32)
    rows = TrainedRows(steps, losses, preds)
    eager = [
        StepResult(s, loss, p, StepStatus.TRAINED)
        for s, loss, p in zip(steps.tolist(), losses.tolist(), preds[:, 0].tolist(), strict=True)
    ]
    lazy = [rows.result_of(j) for j in range(3)]
    assert lazy == eager
    assert all(type(r) is StepResult for r in lazy)
    assert [type(r.step) for r in lazy] == [int] * 3
    assert [type(r.prediction) for r in lazy] == [float] * 3
    multi = TrainedRows(steps, losses, np.arange(6, dtype=np.float32).reshape(3, 2))
    assert multi.result_of(2).prediction.tolist() == [4.0, 5.0]


def test_resolve_rows_finishes_each_future_once_with_its_row() -> None:
    done = threading.Condition()
    futures = new_futures(done, 4)
    assert all(f.running() and not f.done() for f in futures)
    seen: list[StepResult] = []
    futures[1].add_done_callback(lambda f: seen.append(f.result()))
    rows = TrainedRows(
        np.arange(1, 5, dtype=np.int64),
        np.linspace(0.1, 0.4, 4),
        np.linspace(0.5, 0.8, 4, dtype=np.float32).reshape(4, 1),
    )
    waiter = threading.Thread(target=lambda: concurrent.futures.wait(futures))
    waiter.start()
    resolve_rows(done, futures, rows)
    waiter.join(10)
    assert not waiter.is_alive()
    assert [f.result().step for f in futures] == [1, 2, 3, 4]
    assert seen == [futures[1].result()]  # the callback ran once
    assert futures[2].result() is futures[2].result()  # built once, then kept
    assert "finished returned StepResult" in repr(futures[3])
    with pytest.raises(concurrent.futures.InvalidStateError):
        futures[0].set_result(None)


def test_new_future_is_a_running_step_future() -> None:
    f = new_future(threading.Condition())
    assert isinstance(f, StepFuture) and f.running() and not f.done()
    with pytest.raises(concurrent.futures.TimeoutError):
        f.result(timeout=0.01)


@pytest.mark.parametrize("kind", ["dense", "field", "sparse_mlp"])
def test_train_many_results_match_history_and_predict_one_matches_many(kind: str) -> None:
    features = {
        "dense": None,
        "field": HashedFeatureEncoder(n_buckets=1024),
        "sparse_mlp": HashedFeatureEncoder(n_buckets=1024),
    }[kind]
    kwargs = {"model": "mlp"} if kind == "sparse_mlp" else {}
    items = _items(300)
    with Engine(targets=TARGETS, features=features, batch_size=16, **kwargs) as engine:
        results = [f.result() for f in engine.train_many(items)]
        assert [r.step for r in results] == list(range(1, 301))
        assert all(r.status is StepStatus.TRAINED and r.reason is None for r in results)
        history = engine.history
        assert [h.step for h in history] == list(range(1, 301))
        assert [float(h.prediction[0]) for h in history] == [r.prediction for r in results]
        assert [h.loss for h in history] == [r.loss for r in results]
        queries = _items(50, seed=1)
        many = engine.predict_many(queries)
        one = [engine.predict(x) for x in queries]
        assert [type(v) for v in one] == [float] * 50
        assert one == many[:, 0].tolist()


def test_sparse_history_keeps_the_newest_rows_across_chunks() -> None:
    encoder = HashedFeatureEncoder(n_buckets=512)
    with Engine(targets=TARGETS, features=encoder, history_size=37, batch_size=10) as engine:
        items = _items(203)
        for f in engine.train_many(items):
            f.result()
        history = engine.history
        assert [h.step for h in history] == list(range(167, 204))
        for example, x in zip(history, items[-37:], strict=True):
            dense = engine.features.encode(x)
            assert np.array_equal(example.features.to_dense(), dense)
        arrays = engine._history.arrays()
        assert arrays["indptr"][0] == 0 and len(arrays["indptr"]) == 38
        assert arrays["indptr"][-1] == len(arrays["indices"]) == len(arrays["values"])
        probe = History(37, encoder.n_inputs, 1, True)
        probe.restore(arrays)
        assert all(
            np.array_equal(a.features.indices, b.features.indices)
            and np.array_equal(a.features.values, b.features.values)
            for a, b in zip(probe.examples(), history, strict=True)
        )


def test_a_batch_with_a_rejected_row_still_resolves_eagerly() -> None:
    with Engine(features=FeatureEncoder(), batch_size=8) as engine:
        good = InteractionData("click", 1.0, "u", label=1.0)
        bad = InteractionData("click", 2.0, "u", label=2.0)  # bce target outside [0, 1]
        futures = engine.train_many([good, bad, good])
        results = [f.result() for f in futures]
    assert [r.status for r in results] == [
        StepStatus.TRAINED,
        StepStatus.REJECTED,
        StepStatus.TRAINED,
    ]
    assert [r.step for r in results] == [1, None, 2]
    assert engine.stats().rejected == 1 and engine.stats().steps == 2


def test_a_resolved_unread_future_is_one_object_for_the_cyclic_gc() -> None:
    import gc

    items = _items(2000)
    with Engine(targets=TARGETS) as engine:
        for f in engine.train_many(items[:100]):
            f.result()
        gc.collect()
        gc.disable()
        try:
            before = len(gc.get_objects())
            futures = [engine.train_step(x) for x in items]
            futures[-1].result()
            engine.close()
            tracked = len(gc.get_objects()) - before
        finally:
            gc.enable()
    # One StepFuture each (no __dict__, no StepResult until read), plus a few
    # objects per batch (a TrainedRows) and the list itself.
    assert tracked < 1.2 * len(items)
    assert futures[5].result().step == 106
