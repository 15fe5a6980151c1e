"""Engine.train_table / predict_table and livelearn.tables: the same steps,
counters and history as train_many, bad rows reported by index or refused."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from livelearn import Engine, HashedFeatureEncoder, InteractionData
from livelearn.interaction import InvalidInteraction
from livelearn.tables import INVALID, interactions_from_table, table_columns

N = 60


def _table(n: int = N) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "action_type": [["click", "skip"][i % 2] for i in range(n)],
        "timestamp": 1_700_000_000.0 + np.arange(n, dtype=np.float64) * 37.0,
        "user_id": rng.integers(0, 7, n),
        "context.page": [["home", "cart", None][i % 3] for i in range(n)],
        "context.pos": np.arange(n) % 4,
    }


def _interactions(table: dict[str, Any]) -> list[InteractionData]:
    out = []
    for i in range(len(table["action_type"])):
        ctx = {"page": table["context.page"][i], "pos": int(table["context.pos"][i])}
        if ctx["page"] is None:
            del ctx["page"]
        out.append(
            InteractionData(
                table["action_type"][i],
                float(table["timestamp"][i]),
                int(table["user_id"][i]),
                ctx,
            )
        )
    return out


def _engine(**kwargs: Any) -> Engine:
    return Engine(targets={"click": 1.0, "skip": 0.0}, log_every=0, seed=3, **kwargs)


@pytest.mark.parametrize("features", [None, HashedFeatureEncoder(n_buckets=256)])
def test_train_table_equals_train_many(features: Any) -> None:
    table = _table()
    kwargs = {} if features is None else {"features": features}
    with _engine(**kwargs) as a, _engine(**kwargs) as b:
        result = a.train_table(table).result(timeout=30)
        steps = [f.result(timeout=30) for f in b.train_many(_interactions(table))]
        assert result.step.tolist() == [r.step for r in steps] == list(range(1, N + 1))
        np.testing.assert_array_equal(result.loss, [r.loss for r in steps])
        np.testing.assert_array_equal(result.prediction, np.float32([r.prediction for r in steps]))
        assert result.status.tolist() == ["trained"] * N
        assert result.reason.tolist() == [None] * N
        assert a.stats()._replace(started_at=None, last_example_time=None) == b.stats()._replace(
            started_at=None, last_example_time=None
        )
        assert [h.step for h in a.history] == [h.step for h in b.history]
        for x, y in zip(a.history, b.history, strict=True):
            np.testing.assert_array_equal(x.target, y.target)
        np.testing.assert_array_equal(a.predict_table(table), b.predict_many(_interactions(table)))


def test_pandas_and_arrow_tables() -> None:
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    table = _table(12)
    frame = pd.DataFrame(table)
    arrow = pa.table({k: list(v) if not isinstance(v, np.ndarray) else v for k, v in table.items()})
    expect, _ = interactions_from_table(table)
    assert interactions_from_table(frame)[0] == expect
    assert interactions_from_table(arrow)[0] == expect
    with _engine() as engine:
        assert engine.train_table(frame).result(timeout=30).step.tolist() == list(range(1, 13))
        assert engine.train_table(arrow).result(timeout=30).step.tolist() == list(range(13, 25))


def test_bad_rows_are_reported_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    table = _table(6)
    table["timestamp"] = table["timestamp"].copy()
    table["timestamp"][1] = np.nan
    table["action_type"] = list(table["action_type"])
    table["action_type"][4] = ""
    with _engine() as engine, caplog.at_level(logging.WARNING, "livelearn"):
        result = engine.train_table(table).result(timeout=30)
        assert result.status.tolist() == [
            "trained",
            INVALID,
            "trained",
            "trained",
            INVALID,
            "trained",
        ]
        assert result.invalid_rows.tolist() == [1, 4]
        assert result.step.tolist() == [1, -1, 2, 3, -1, 4]
        assert np.isnan(result.loss[[1, 4]]).all() and np.isfinite(result.loss[[0, 2]]).all()
        assert "timestamp: must be finite" in result.reason[1]
        assert "action_type" in result.reason[4]
        stats = engine.stats()
        assert (stats.steps, stats.interactions, stats.rejected) == (4, 4, 0)
        assert "train_table: 2 invalid row(s) skipped (first: row 1" in caplog.text
        predictions = engine.predict_table(table)
        assert predictions.shape == (6, 1) and np.isnan(predictions[[1, 4], 0]).all()
        assert np.isfinite(predictions[[0, 2, 3, 5], 0]).all()


def test_strict_refuses_the_whole_call() -> None:
    table = _table(5)
    table["user_id"] = [1, 2, True, 4, 5]
    with _engine() as engine:
        with pytest.raises(InvalidInteraction, match="row 2: user_id") as info:
            engine.train_table(table, strict=True)
        assert info.value.field == "row 2: user_id"
        with pytest.raises(InvalidInteraction, match="row 2: user_id"):
            engine.predict_table(table, strict=True)
        stats = engine.stats()
        assert (stats.steps, stats.interactions, stats.pending) == (0, 0, 0)
        assert engine.history == []


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"action_type": ["a"], "timestamp": [0.0]}, "user_id: is required"),
        (
            {"action_type": ["a"], "timestamp": [0.0], "user_id": [1], "page": ["x"]},
            "unknown column",
        ),
        ({"action_type": ["a", "b"], "timestamp": [0.0], "user_id": [1, 2]}, "differ in length"),
        ({"action_type": "ab", "timestamp": [0.0], "user_id": [1]}, "must be an array"),
        ({"action_type": np.zeros((1, 1)), "timestamp": [0.0], "user_id": [1]}, "1-D"),
        ([1, 2, 3], "expected a pandas DataFrame"),
    ],
)
def test_unusable_tables_are_refused(table: Any, match: str) -> None:
    with _engine() as engine:
        with pytest.raises(InvalidInteraction, match=match):
            engine.train_table(table)
        assert engine.stats().interactions == 0


def test_labels_and_missing_values() -> None:
    cols = table_columns(
        {"action_type": ["a", "b"], "timestamp": [0, 1], "user_id": ["u", "v"], "label": [1, None]}
    )
    assert cols["label"] == [1, None]
    rows, errors = interactions_from_table(
        {
            "action_type": ["a", "b", "c"],
            "timestamp": [0, 1, 2],
            "user_id": ["u", "v", "w"],
            "label": [0.5, float("nan"), [1, 2]],
            "context.x": [float("nan"), 2.5, None],
        }
    )
    assert not errors
    assert [r.label for r in rows if r] == [0.5, None, (1.0, 2.0)]
    assert [r.context for r in rows if r] == [None, {"x": 2.5}, None]


def test_empty_and_all_invalid_tables() -> None:
    with _engine() as engine:
        empty = engine.train_table({"action_type": [], "timestamp": [], "user_id": []})
        assert len(empty.result(timeout=5).step) == 0
        bad = engine.train_table({"action_type": [""], "timestamp": [0.0], "user_id": [1]})
        assert bad.result(timeout=5).status.tolist() == [INVALID]
        assert engine.predict_table(
            {"action_type": [""], "timestamp": [0.0], "user_id": [1]}
        ).shape == (1, 1)


def test_chunks_with_rejected_and_invalid_rows_match_train_many(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Several chunks (one queue entry and one native call each), rows rejected
    by the targets and rows refused by validation: the same results, counters,
    history and rejection logs as train_many on the valid rows."""
    import livelearn.engine.api as api

    monkeypatch.setattr(api, "TABLE_CHUNK_ROWS", 7)
    table = _table(40)
    table["action_type"] = [
        "other" if i % 9 == 4 else a for i, a in enumerate(table["action_type"])
    ]  # no target: rejected
    stamps = table["timestamp"].copy()
    stamps[[3, 17]] = -1.0  # invalid rows
    table["timestamp"] = stamps
    valid = [i for i in range(40) if i not in (3, 17)]
    a, b = _engine(batch_size=4), _engine(batch_size=4)
    a.initialize()
    b.initialize()
    good = {k: [v[i] for i in valid] for k, v in table.items()}
    with caplog.at_level(logging.WARNING, logger="livelearn"):
        result = a.train_table(table).result(timeout=30)
        a.close()  # the rejection logs follow the resolution: wait for the dispatcher
        logged_a = [r.getMessage() for r in caplog.records if "step rejected" in r.getMessage()]
        caplog.clear()
        steps = b.train_many(_interactions(good))
        b.close()
        logged_b = [r.getMessage() for r in caplog.records if "step rejected" in r.getMessage()]
    assert logged_a == logged_b and len(logged_a) == 4
    expected = {i: f.exception() or f.result() for i, f in zip(valid, steps, strict=True)}
    assert result.invalid_rows.tolist() == [3, 17]
    for i, r in expected.items():
        if isinstance(r, BaseException):
            assert result.status[i] == "rejected" and result.reason[i] == str(r)
            continue
        assert (result.status[i], result.reason[i]) == (r.status.value, r.reason)
        assert result.step[i] == (-1 if r.step is None else r.step)
        if r.loss is not None:
            assert result.loss[i] == r.loss
    # The loss sums and their moving average fold each booked batch at once
    # (chunks of 7 rows here, batches of 4 there): equal up to rounding.
    sa, sb = a.stats(), b.stats()
    assert sa.recent_loss == pytest.approx(sb.recent_loss, rel=1e-12)
    assert sa.mean_loss == pytest.approx(sb.mean_loss, rel=1e-12)
    loose = {"started_at": None, "last_example_time": None, "recent_loss": None, "mean_loss": None}
    assert sa._replace(**loose) == sb._replace(**loose)
    assert [h.step for h in a.history] == [h.step for h in b.history]


def test_uninitialized_engine_skips_every_valid_row() -> None:
    engine = Engine(targets={"click": 1.0})  # not initialised: not entered
    result = engine.train_table(_table(5)).result(timeout=30)
    assert set(result.status.tolist()) == {"skipped"}
    assert engine.stats().skipped == 5
    engine.close()


def test_column_checks_build_the_same_rows_as_interaction_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows built from the column checks equal (values and types) those built
    by InteractionData, and odd rows still get InteractionData's own errors."""
    import livelearn.tables as tables

    table = {
        "action_type": ["click", " ", "", "é", np.str_("view"), "x" * 300, "click", "a", "b", "c"],
        "timestamp": [1.0, 2.0, 3.0, 4.0, 5, 6.0, float("nan"), 7.0, 8.0, 9.0],
        "user_id": [1, "u", "", True, np.int64(3), "ü", 7, "w", 2**70, "v"],
        "label": [None, 1.0, float("nan"), 2, float("inf"), 0.5, None, -1.0, None, 3.0],
        "context.s": ["a", None, "é", "b" * 5000, "", "z", "q", "r", None, "t"],
        "context.n": [1.5, float("nan"), 2, True, None, float("inf"), 3.0, 0.0, 1, 2.0],
    }
    plain = ["a", None, "e", "", "b", "z", "q", "r", None, "t"]
    for drop, s in ((None, None), ("context.n", None), ("context.n", plain), ("label", plain)):
        t = {k: v for k, v in table.items() if k != drop}
        if s is not None:  # plain context columns: only the other fields are odd
            t["context.s"] = s
        fast = interactions_from_table(t)
        with monkeypatch.context() as m:
            m.setattr(tables, "_fast_checks", lambda *_: None)
            slow = interactions_from_table(t)
        assert [repr(r) for r in fast[0]] == [repr(r) for r in slow[0]]
        assert fast[0] == slow[0]
        assert [(i, str(e)) for i, e in fast[1]] == [(i, str(e)) for i, e in slow[1]]
        assert fast[1]


def test_dropped_and_raise_count_a_chunk_by_its_rows() -> None:
    """drop_oldest counts a dropped chunk's rows as skipped and resolves its one
    Future; overload="raise" refuses a table that does not fit, queuing nothing."""
    import threading

    from livelearn.engine.bookkeeping import Ledger
    from livelearn.engine.submission import ChunkFuture, SubmissionQueue, TableChunk
    from livelearn.errors import EngineOverloaded
    from livelearn.history import History

    done = threading.Condition()
    ledger = Ledger(History(0, 4, 1, False), 0)
    queue = SubmissionQueue(2, "drop_oldest", 4, ledger, done)
    chunk = ChunkFuture(done, 5)
    assert queue.put_chunks([TableChunk([object()] * 5)], [chunk])
    assert queue.submitted == 5
    queue.put_many([object(), object()], [ChunkFuture(done, 1), ChunkFuture(done, 1)])
    assert ledger.counters.skipped == 5 and ledger.resolved == 5
    assert chunk.result(timeout=5).status.value == "skipped"
    strict = SubmissionQueue(4, "raise", 4, Ledger(History(0, 4, 1, False), 0), done)
    with pytest.raises(EngineOverloaded):
        strict.put_chunks([TableChunk([object()] * 5)], [ChunkFuture(done, 5)])
    assert strict.submitted == 0 and not strict.items
