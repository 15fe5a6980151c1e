"""livelearn.river: River's own estimator checks, pipelines, progressive validation."""

from __future__ import annotations

import copy
import doctest
import math
import pickle

import numpy as np
import pytest

river = pytest.importorskip("river")

from river import compose, datasets, evaluate, metrics, preprocessing  # noqa: E402

import livelearn.river  # noqa: E402
from livelearn.datasets import load_sample  # noqa: E402
from livelearn.dict_features import DictHasher  # noqa: E402
from livelearn.river import MLPClassifier, MLPRegressor  # noqa: E402


def _check_estimator(model: object) -> None:
    try:
        from river.checks import check_estimator
    except ImportError:  # older River
        from river.utils.estimator_checks import check_estimator  # type: ignore[no-redef]
    check_estimator(model)


def test_classifier_passes_river_check_estimator() -> None:
    # seed=None on purpose: River then also runs check_seeding_is_idempotent.
    _check_estimator(MLPClassifier(n_features=1024))


def test_regressor_passes_river_check_estimator() -> None:
    _check_estimator(MLPRegressor(n_features=1024))


def test_classifier_protocol_before_and_after_learning() -> None:
    model = MLPClassifier(n_features=256, seed=0)
    assert model.predict_proba_one({"a": 1.0}) == {}
    assert model.predict_one({"a": 1.0}) is None
    model.learn_one({"a": 1.0}, "spam")
    assert model.predict_proba_one({"a": 1.0}) == {"spam": 1.0}
    model.learn_one({"a": -1.0, "colour": "red"}, "ham")
    proba = model.predict_proba_one({"a": 0.5})
    assert set(proba) == {"spam", "ham"}
    assert math.isclose(sum(proba.values()), 1.0)
    assert model.network is not None and model.network.n_outputs == 1
    assert model.steps == 2


def test_third_class_keeps_the_binary_outputs_exactly() -> None:
    model = MLPClassifier(n_features=256, optimizer="adam", learning_rate=0.01, seed=1)
    rows = [({"x": float(i % 7) / 7, "c": f"k{i % 3}"}, i % 2 == 0) for i in range(50)]
    for x, y in rows:
        model.learn_one(x, y)
    probe = [x for x, _ in rows[:10]]
    assert model.network is not None
    hasher = DictHasher(256)
    p_binary = model.network.predict_sparse(*hasher.encode_many(probe))[:, 0]
    model._class_index("third")  # adds the class without training
    assert model.network.n_outputs == 3
    out = model.network.predict_sparse(*hasher.encode_many(probe))
    np.testing.assert_allclose(out[:, 0], 1.0 - p_binary, atol=1e-6)
    np.testing.assert_allclose(out[:, 1], p_binary, atol=1e-6)
    for x, y in rows:  # training goes on, with one-hot targets
        model.learn_one(x, "third" if x["c"] == "k0" else y)
    proba = model.predict_proba_one(probe[0])
    assert set(proba) == {True, False, "third"}
    assert math.isclose(sum(proba.values()), 1.0)


def test_learn_many_equals_learn_one() -> None:
    pd = pytest.importorskip("pandas")
    rows = list(datasets.Phishing().take(60))
    one = MLPClassifier(n_features=512, seed=3)
    many = MLPClassifier(n_features=512, seed=3)
    # Both classes first, so that learn_many's up-front class discovery changes nothing.
    first = [next(r for r in rows if r[1]), next(r for r in rows if not r[1])]
    for model in (one, many):
        for x, y in first:
            model.learn_one(x, y)
    for x, y in rows:
        one.learn_one(x, y)
    many.learn_many(pd.DataFrame([x for x, _ in rows]), pd.Series([y for _, y in rows]))
    X = pd.DataFrame([x for x, _ in rows[:20]])
    pd.testing.assert_frame_equal(one.predict_proba_many(X), many.predict_proba_many(X))

    reg_one = MLPRegressor(n_features=512, seed=3)
    reg_many = MLPRegressor(n_features=512, seed=3)
    for x, y in rows:
        reg_one.learn_one(x, float(y))
    reg_many.learn_many(pd.DataFrame([x for x, _ in rows]), pd.Series([float(y) for _, y in rows]))
    pd.testing.assert_series_equal(reg_one.predict_many(X), reg_many.predict_many(X))


def test_pipeline_and_progressive_validation() -> None:
    model = compose.Pipeline(preprocessing.StandardScaler(), MLPClassifier(n_features=1024, seed=0))
    accuracy = evaluate.progressive_val_score(
        datasets.Phishing().take(500), model, metrics.Accuracy()
    )
    assert accuracy.get() > 0.8  # deterministic: seeded, in-order data
    regressor = compose.TargetTransformRegressor(
        preprocessing.StandardScaler() | MLPRegressor(n_features=1024, seed=0),
        func=lambda y: y / 100,
        inverse_func=lambda y: y * 100,
    )
    mae = evaluate.progressive_val_score(
        datasets.TrumpApproval().take(300), regressor, metrics.MAE()
    )
    assert math.isfinite(mae.get())


def test_pickle_and_deepcopy_keep_predictions() -> None:
    model = MLPClassifier(n_features=512, seed=0)
    for x, y in datasets.ImageSegments().take(100):
        model.learn_one(x, y)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert clone.classes == model.classes
        assert clone.predict_proba_one(x) == model.predict_proba_one(x)
        clone.learn_one(x, y)
        assert clone.steps == model.steps + 1


def test_non_finite_steps_are_counted_not_raised() -> None:
    model = MLPRegressor(n_features=64, seed=0)
    model.learn_one({"a": 1.0}, 1.0)
    model.learn_one({"a": 3e38, "b": 3e38}, 3e38)  # overflows inside the network
    assert model.rejected_steps == 1
    assert model.steps == 1
    assert math.isfinite(model.predict_one({"a": 1.0}))


def test_invalid_parameters_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="momentum"):
        MLPClassifier(momentum=1.5)
    with pytest.raises(ValueError, match="n_features"):
        MLPRegressor(n_features=0)
    with pytest.raises(ValueError, match="hidden_layers"):
        MLPClassifier(hidden_layers=(0,))


def _open_bandit_stream() -> list[tuple[dict[str, str], bool]]:
    stream = []
    for it in load_sample():
        x = {"item": it.action_type, "user": str(it.user_id)}
        x.update({k: str(v) for k, v in (it.context or {}).items()})
        stream.append((x, it.label == 1.0))
    return stream


def test_open_bandit_progressive_log_loss(capsys: pytest.CaptureFixture[str]) -> None:
    stream = _open_bandit_stream()
    metric = evaluate.progressive_val_score(stream, MLPClassifier(seed=0), metrics.LogLoss())
    with capsys.disabled():
        print(f"\nOpen Bandit sample ({len(stream)} events): River progressive {metric}")
    assert math.isfinite(metric.get())


def test_docstring_examples() -> None:
    assert doctest.testmod(livelearn.river).failed == 0


# ------------------------------------------------------- model="field"
def _pairs_stream(n: int, seed: int = 0) -> list[tuple[dict[str, str], bool]]:
    """User x item parity (rank one): only a factorization learns it from ids."""
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, 60, n), rng.integers(0, 12, n)
    return [
        ({"user": f"u{u}", "item": f"i{i}"}, bool(u % 2 == i % 2 and rng.random() < 0.9))
        for u, i in zip(users, items, strict=True)
    ]


def test_field_model_classifier_learns_a_user_item_factorization() -> None:
    stream = _pairs_stream(6000)
    field = MLPClassifier(n_features=2**12, seed=0, model="field")
    for x, y in stream:
        field.learn_one(x, y)
    assert field.network is not None and type(field.network).__name__ == "FieldNetwork"
    assert field.steps == len(stream)
    right = sum(
        (field.predict_proba_one({"user": f"u{u}", "item": f"i{i}"})[True] > 0.45)
        == (u % 2 == i % 2)
        for u in range(60)
        for i in range(12)
    )
    assert right / 720 >= 0.95
    # learn_many is learn_one row by row, exactly.
    pd = pytest.importorskip("pandas")
    batch = MLPClassifier(n_features=2**12, seed=0, model="field")
    X = pd.DataFrame([x for x, _ in stream[:500]])
    batch.learn_many(X, pd.Series([y for _, y in stream[:500]]))
    one = MLPClassifier(n_features=2**12, seed=0, model="field")
    for x, y in stream[:500]:
        one.learn_one(x, y)
    assert one.predict_proba_one(stream[0][0]) == batch.predict_proba_one(stream[0][0])


def test_field_model_pickles_exactly_and_refuses_a_third_class() -> None:
    model = MLPClassifier(n_features=1024, seed=1, model="field")
    for x, y in _pairs_stream(200):
        model.learn_one(x, y)
    copy_ = pickle.loads(pickle.dumps(model))
    x = {"user": "u3", "item": "i5"}
    assert copy_.predict_proba_one(x) == model.predict_proba_one(x)
    before = model.network.get_state() if model.network is not None else {}
    with pytest.raises(ValueError, match="binary classifier"):
        model.learn_one(x, "third")
    assert model.classes == [True, False] or model.classes == [False, True]
    after = model.network.get_state() if model.network is not None else {}
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_field_model_regressor_learns_the_mean_from_the_first_events() -> None:
    model = MLPRegressor(n_features=1024, seed=0, model="field")
    for _ in range(50):
        model.learn_one({"user": "a"}, 4.0)
    # The running-mean bias carries most of it (an unseen user gets the bias alone).
    assert model.predict_one({"user": "a"}) == pytest.approx(4.0, rel=0.02)
    assert 3.0 < model.predict_one({"user": "never-seen"}) < 4.0


def test_model_argument_is_checked() -> None:
    with pytest.raises(ValueError, match="model"):
        MLPClassifier(model="deep")
