"""livelearn.sklearn: scikit-learn's estimator checks and the adapters' own behaviour."""

from __future__ import annotations

import doctest
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

from livelearn import Network  # noqa: E402
from livelearn.sklearn import MLPClassifier, MLPRegressor, expected_failed_checks  # noqa: E402

# Short max_iter values keep these tests fast; "not converged" is expected then.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.mark.parametrize(
    "estimator", [MLPClassifier(), MLPRegressor()], ids=lambda e: type(e).__name__
)
def test_passes_sklearn_check_estimator(estimator: MLPClassifier | MLPRegressor) -> None:
    expected = expected_failed_checks(estimator)
    assert all(isinstance(reason, str) and reason for reason in expected.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        results = check_estimator(
            estimator, expected_failed_checks=expected, on_fail=None, on_skip=None
        )
    failed = {r["check_name"]: r["exception"] for r in results if r["status"] == "failed"}
    assert not failed
    # The only skip is the array-API check (needs SCIPY_ARRAY_API=1 set at startup).
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {"check_array_api_input"}
    assert len(results) > 40


def test_binary_uses_one_output_multiclass_one_per_class() -> None:
    X, y = make_classification(n_samples=200, n_features=6, random_state=0)
    binary = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0).fit(X, y)
    assert binary.network_.n_outputs == 1
    proba = binary.predict_proba(X)
    assert proba.shape == (200, 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(binary.predict(X), binary.classes_[(proba[:, 1] > 0.5) * 1])

    X3, y3 = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y3]
    multi = make_pipeline(StandardScaler(), MLPClassifier(max_iter=100, random_state=0))
    multi.fit(X3, labels)
    clf = multi[-1]
    assert clf.network_.n_outputs == 3
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    proba3 = multi.predict_proba(X3)
    np.testing.assert_allclose(proba3.sum(axis=1), 1.0)
    assert multi.score(X3, labels) > 0.9


def test_partial_fit_streams_one_step_per_row() -> None:
    X, y = make_classification(n_samples=120, n_features=4, random_state=1)
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X[:10], y[:10])
    clf.partial_fit(X[:60], y[:60], classes=[0, 1])
    clf.partial_fit(X[60:], y[60:])
    assert clf.network_.steps == 120 and clf.n_iter_ == 2
    with pytest.raises(ValueError, match="labels not in classes_"):
        clf.partial_fit(X[:2], np.array([0, 7]))
    with pytest.raises(ValueError, match="differs"):
        clf.partial_fit(X[:2], y[:2], classes=[0, 1, 2])
    # A stream of partial_fit calls equals one pass of fit without shuffling.
    one_pass = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, shuffle=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one_pass.fit(X, y)
    streamed = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    for start in range(0, 120, 30):
        streamed.partial_fit(X[start : start + 30], y[start : start + 30], classes=[0, 1])
    np.testing.assert_array_equal(one_pass.predict_proba(X), streamed.predict_proba(X))


def test_multi_output_regression_and_shapes() -> None:
    X, Y = make_regression(n_samples=150, n_features=5, n_targets=3, random_state=0)
    Y = Y / Y.std(axis=0)
    reg = MLPRegressor(hidden_layer_sizes=(16,), random_state=0).fit(X, Y)
    assert reg.n_outputs_ == 3 and reg.predict(X).shape == (150, 3)
    assert reg.score(X, Y) > 0.8
    single = MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert single.fit(X, Y[:, 0]).predict(X).shape == (150,)
        assert single.fit(X, Y[:, :1]).predict(X).shape == (150, 1)


def test_sparse_and_dense_inputs_agree() -> None:
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 30)) * (rng.random((80, 30)) < 0.2)
    y = X[:, :3].sum(axis=1)
    # Plain SGD: with Adam, momentum or weight decay the core's sparse update is lazy
    # (rows of inactive inputs are not touched), so the two fits differ by design.
    kwargs = {
        "hidden_layer_sizes": (8,),
        "optimizer": "sgd",
        "learning_rate": 0.01,
        "max_iter": 20,
        "random_state": 0,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = MLPRegressor(**kwargs).fit(X, y)
        sparse = MLPRegressor(**kwargs).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(dense.predict(X), sparse.predict(sp.csc_matrix(X)), atol=1e-6)


def test_pickle_clone_and_grid_search() -> None:
    X, y = make_classification(n_samples=100, n_features=5, random_state=2)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    assert isinstance(restored.network_, Network)
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert not hasattr(clone(clf), "network_")
    search = GridSearchCV(
        MLPClassifier(max_iter=20, random_state=0),
        {"hidden_layer_sizes": [(4,), (8,)], "learning_rate": [0.001, 0.01]},
        cv=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert search.best_params_["hidden_layer_sizes"] in [(4,), (8,)]


def test_invalid_parameters_are_reported_at_fit() -> None:
    X, y = make_classification(n_samples=20, n_features=5, random_state=0)
    bad = MLPClassifier(activation="softplus")  # construction never validates (sklearn rule)
    with pytest.raises(ValueError, match="activation"):
        bad.fit(X, y)
    with pytest.raises(ValueError, match="learning_rate"):
        MLPClassifier(learning_rate=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier().fit(X, np.zeros(20))


def test_docstring_examples() -> None:
    import livelearn.sklearn

    assert doctest.testmod(livelearn.sklearn).failed == 0


# ------------------------------------------------------- model="field"
def test_field_model_fits_pickles_and_matches_sparse_input() -> None:
    import scipy.sparse as sp

    X, y = make_classification(n_samples=300, random_state=0)
    clf = MLPClassifier(model="field", random_state=0, max_iter=15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        sparse = MLPClassifier(model="field", random_state=0, max_iter=15).fit(sp.csr_matrix(X), y)
    assert type(clf.network_).__name__ == "FieldNetwork"
    assert clf.score(X, y) > 0.85
    np.testing.assert_array_equal(sparse.predict_proba(X), clf.predict_proba(X))
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    assert clone(clf).get_params()["model"] == "field"


def test_field_model_has_one_output() -> None:
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="one output"):
        MLPClassifier(model="field").fit(X, y)
    with pytest.raises(ValueError, match="model"):
        MLPClassifier(model="deep").fit(X, y)
