"""scikit-learn adapters: :class:`MLPClassifier` and :class:`MLPRegressor`.

Requires the optional ``sklearn`` extra (``pip install "livelearn[sklearn]"``,
scikit-learn >= 1.6). The estimators follow scikit-learn's conventions
(``fit``/``partial_fit``/``predict``/``predict_proba``/``score``,
``get_params``/``set_params``, ``clone``, pipelines, grid search) and pass
``sklearn.utils.estimator_checks.check_estimator``; :func:`expected_failed_checks`
lists the checks that do not apply (none at present).

Training is the native network's: one example = one step (forward, loss, backward,
one optimizer update), never an averaged mini-batch. ``fit`` runs up to
``max_iter`` epochs (passes over the shuffled data) and stops early once the mean
training loss has not improved by ``tol`` for ``n_iter_no_change`` epochs;
``partial_fit`` runs one pass over the given rows, in order, on the current model.
Dense and SciPy sparse inputs (any format, converted to CSR) are supported; sparse
rows train with sparse native steps. With Adam, momentum or weight decay the core's
sparse update is lazy (rows of inactive inputs are not touched, like
``torch.optim.SparseAdam``), so a sparse and a dense fit of the same data differ;
with plain SGD they are identical.

Pickling works (``__getstate__`` stores :meth:`Network.get_config` and
:meth:`Network.get_state`), but as everywhere in scikit-learn a pickle must only be
loaded from a trusted source and by the same library versions. For durable models
save :attr:`network_` with :meth:`livelearn.Network.save` (safetensors, no code
execution on load).

Example:
    >>> from sklearn.datasets import make_classification
    >>> from livelearn.sklearn import MLPClassifier
    >>> X, y = make_classification(n_samples=200, random_state=0)
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
"""

# This module is ``livelearn.sklearn``; ``import sklearn`` below is the absolute
# import of scikit-learn (Python 3 has no implicit relative imports).
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped,unused-ignore]
from numpy.typing import ArrayLike, NDArray
from sklearn.base import (  # type: ignore[import-untyped,unused-ignore]
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
)
from sklearn.exceptions import ConvergenceWarning  # type: ignore[import-untyped,unused-ignore]
from sklearn.utils import check_random_state  # type: ignore[import-untyped,unused-ignore]
from sklearn.utils.multiclass import (  # type: ignore[import-untyped,unused-ignore]
    check_classification_targets,
)
from sklearn.utils.validation import (  # type: ignore[import-untyped,unused-ignore]
    check_is_fitted,
    validate_data,
)

from livelearn._adapters import MODELS, class_probabilities, network_from_state, network_state
from livelearn.field_network import FieldNetwork
from livelearn.network import Network, network_config
from livelearn.validation import check_choice, check_int, check_number, check_sizes

__all__ = ["MLPClassifier", "MLPRegressor", "expected_failed_checks"]

_ACTIVATIONS = {
    "tanh": "tanh",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "logistic": "sigmoid",  # scikit-learn's name for the sigmoid
    "identity": "identity",
}

#: What ``X`` may be: anything :func:`sklearn.utils.check_array` accepts, dense or sparse.
Matrix: TypeAlias = "ArrayLike | sp.spmatrix | sp.sparray"


def expected_failed_checks(estimator: BaseEstimator) -> dict[str, str]:
    """The ``check_estimator`` checks that do not apply to ``estimator``, with reasons.

    Pass it to scikit-learn::

        check_estimator(est, expected_failed_checks=expected_failed_checks(est))

    Every check not listed passes. The list is empty for both estimators of this module.

    Example:
        >>> expected_failed_checks(MLPRegressor())
        {}
    """
    return {}


class _BaseMLP(BaseEstimator):  # type: ignore[misc,unused-ignore]
    """Shared parameters, training loop and pickling of the two estimators."""

    _LOSS = "bce"  # the output layer follows: network_config

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = (100,),
        activation: str = "relu",
        optimizer: str = "adam",
        learning_rate: float = 0.001,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        max_iter: int = 200,
        tol: float = 1e-4,
        n_iter_no_change: int = 10,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        model: str = "mlp",
        embedding_dim: int = 8,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.shuffle = shuffle
        self.random_state = random_state
        self.model = model
        self.embedding_dim = embedding_dim

    # -- tags and pickling ---------------------------------------------------------

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        net = state.get("network_")
        if isinstance(net, Network | FieldNetwork):
            state["network_"] = network_state(net)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.get("network_")
        if isinstance(saved, dict):
            state = {**state, "network_": network_from_state(saved)}
        super().__setstate__(state)

    # -- network -------------------------------------------------------------------

    def _network_config(self, n_inputs: int, n_outputs: int, seed: int) -> dict[str, Any]:
        hidden = check_sizes("hidden_layer_sizes", self.hidden_layer_sizes, allow_int=True)
        activation = check_choice("activation", self.activation, sorted(_ACTIVATIONS))
        check_int("max_iter", self.max_iter, low=1)
        check_int("n_iter_no_change", self.n_iter_no_change, low=1)
        check_number("tol", self.tol, low=0.0, finite=False)
        return network_config(
            n_inputs,
            hidden,
            n_outputs,
            activation=_ACTIVATIONS[activation],
            loss=self._LOSS,
            optimizer=self.optimizer,
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            clip_norm=self.clip_norm,
            seed=seed,
        )

    def _start(self, n_outputs: int, rng: np.random.RandomState) -> None:
        """Build a fresh network and reset the training record."""
        seed = int(rng.randint(0, 2**31 - 1))
        self.network_: Network | FieldNetwork
        if check_choice("model", self.model, MODELS) == "field":
            if n_outputs != 1:
                raise ValueError(
                    f"model='field' has one output; this problem needs {n_outputs} "
                    "(use model='mlp' for multi-class or multi-output)"
                )
            check_int("max_iter", self.max_iter, low=1)
            check_int("n_iter_no_change", self.n_iter_no_change, low=1)
            check_number("tol", self.tol, low=0.0, finite=False)
            self.network_ = FieldNetwork(
                n_buckets=max(1, self.n_features_in_),
                n_fields=1,
                embedding_dim=check_int("embedding_dim", self.embedding_dim, 1, 1024),
                loss=self._LOSS,
                seed=seed,
            )
        else:
            self.network_ = Network(**self._network_config(self.n_features_in_, n_outputs, seed))
        self.n_iter_ = 0
        self.loss_curve_: list[float] = []

    def _validate_x(self, X: Matrix, reset: bool) -> Any:
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, order="C", reset=reset)
        return _canonical(X)

    def _pass(self, X: Any, Y: NDArray[np.float32], order: NDArray[np.intp] | None) -> float:
        """One training step per row (in ``order``); returns the mean finite loss."""
        if order is not None:
            X, Y = X[order], Y[order]
        net = self.network_
        if isinstance(net, FieldNetwork):
            indptr, indices, values, fields = _field_rows(X)
            losses = net.train_batch(indptr, indices, values, fields, None, Y)[0]
        elif sp.issparse(X):
            losses = net.train_batch_sparse(
                X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data, Y
            )
        else:
            losses = net.train_batch(X, Y)
        finite = losses[np.isfinite(losses)]
        # A pass whose every step was rejected (non-finite) has no loss to report.
        loss = float(finite.mean(dtype=np.float64)) if finite.size else float("inf")
        self.n_iter_ += 1
        self.loss_curve_.append(loss)
        return loss

    def _fit_epochs(self, X: Any, Y: NDArray[np.float32], rng: np.random.RandomState) -> None:
        best = float("inf")
        stale = 0
        n = X.shape[0]
        for _ in range(self.max_iter):
            loss = self._pass(X, Y, rng.permutation(n) if self.shuffle else None)
            stale = stale + 1 if loss > best - self.tol else 0
            best = min(best, loss)
            if stale >= self.n_iter_no_change:
                return
        warnings.warn(
            f"{type(self).__name__}: max_iter={self.max_iter} epochs reached and the "
            "training loss is still improving; raise max_iter",
            ConvergenceWarning,
            stacklevel=3,
        )

    def _outputs(self, X: Matrix) -> NDArray[np.float64]:
        check_is_fitted(self)
        X = self._validate_x(X, reset=False)
        net = self.network_
        if isinstance(net, FieldNetwork):
            out = net.predict(*_field_rows(X), None)
        elif sp.issparse(X):
            out = net.predict_sparse(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data)
        else:
            out = net.predict(X)
        return out.astype(np.float64)


def _field_rows(
    X: Any,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32], NDArray[np.int32]]:
    """``X`` as the field model's CSR: every column a feature (zeros left out), one field."""
    csr = X if sp.issparse(X) else sp.csr_matrix(X)
    indices = csr.indices.astype(np.int64)
    return (
        csr.indptr.astype(np.int64),
        indices,
        np.asarray(csr.data, dtype=np.float32),
        np.zeros(len(indices), dtype=np.int32),
    )


def _canonical(X: Any) -> Any:
    """CSR with sorted, unique column indices per row (what the native core reads)."""
    if sp.issparse(X) and not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return X


def _validate_xy(
    estimator: BaseEstimator, X: Matrix, y: ArrayLike, reset: bool
) -> tuple[Any, NDArray[Any]]:
    X, y = validate_data(
        estimator, X, y, accept_sparse="csr", dtype=np.float32, order="C", reset=reset
    )
    check_classification_targets(y)
    return _canonical(X), np.asarray(y)


class MLPClassifier(ClassifierMixin, _BaseMLP):  # type: ignore[misc,unused-ignore]
    """Neural network classifier on the native livelearn network.

    Binary problems use one sigmoid output trained with binary cross-entropy.
    Multi-class problems (``K >= 3`` classes) use ``K`` sigmoid outputs, each
    trained with binary cross-entropy against the one-hot target (one-vs-rest
    sharing the hidden layers: the native core has no softmax).
    :meth:`predict_proba` normalises the ``K`` sigmoids to sum to 1, as
    scikit-learn's one-vs-rest ``LogisticRegression`` does; these are not softmax
    probabilities, and :meth:`predict` is their argmax.

    Args:
        hidden_layer_sizes: sizes of the hidden layers (``()``: a linear model).
        activation: ``"relu"``, ``"tanh"``, ``"sigmoid"`` (or ``"logistic"``) or
            ``"identity"``.
        optimizer: ``"adam"`` or ``"sgd"``.
        learning_rate: step size of every per-example update, > 0.
        momentum: SGD momentum in ``[0, 1)`` (``optimizer="sgd"`` only).
        weight_decay: L2 weight decay applied at each step.
        clip_norm: clip each step's gradient to this L2 norm (None: no clipping).
        max_iter: most epochs in :meth:`fit`.
        tol: an epoch improves when its mean loss drops by more than ``tol``.
        n_iter_no_change: stop :meth:`fit` after this many epochs without improvement.
        shuffle: shuffle the rows before each epoch of :meth:`fit`.
        random_state: seeds the weights and the shuffling.
        model: ``"mlp"`` (default) or ``"field"``: the field-aware model of
            :class:`~livelearn.FieldNetwork` (wide + factorization machine over the
            columns, AdaGrad, the bias a running mean), for sparse one-hot data;
            one output only (binary classification, one target). The MLP
            arguments above do not apply to it.
        embedding_dim: ``model="field"``: the factor size per column.

    Attributes:
        classes_: the class labels (sorted).
        network_: the trained :class:`~livelearn.Network` (or :class:`~livelearn.FieldNetwork`).
        n_features_in_: number of input features.
        n_iter_: epochs (``fit``) plus passes (``partial_fit``) run.
        loss_curve_: mean training loss of each epoch or pass.

    Example:
        >>> from sklearn.datasets import load_iris
        >>> from livelearn.sklearn import MLPClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = MLPClassifier(random_state=0, max_iter=50).fit(X, y)
        >>> clf.predict_proba(X[:2]).shape, clf.network_.n_outputs
        ((2, 3), 3)
    """

    def fit(self, X: Matrix, y: ArrayLike) -> MLPClassifier:
        """Train a fresh network for up to ``max_iter`` epochs; returns ``self``."""
        X, y = _validate_xy(self, X, y, reset=True)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes, "
                f"but the data contains only one class: {classes[0]!r}"
            )
        rng = check_random_state(self.random_state)
        self.classes_ = classes
        self._start(_n_outputs(len(classes)), rng)
        self._fit_epochs(X, self._targets(y), rng)
        return self

    def partial_fit(
        self, X: Matrix, y: ArrayLike, classes: ArrayLike | None = None
    ) -> MLPClassifier:
        """One training step per row, in order, on the current model; returns ``self``.

        ``classes`` (every label the stream will ever contain) is required on
        the first call and must not change afterwards.
        """
        first = not hasattr(self, "network_")
        X, y = _validate_xy(self, X, y, reset=first)
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            all_classes = np.unique(np.asarray(classes))
            if len(all_classes) < 2:
                raise ValueError(f"classes: needs at least 2 classes, got {all_classes!r}")
            self.classes_ = all_classes
            self._start(_n_outputs(len(all_classes)), check_random_state(self.random_state))
        elif classes is not None and not np.array_equal(
            np.unique(np.asarray(classes)), self.classes_
        ):
            raise ValueError(
                f"classes={classes!r} differs from the classes of the first call, {self.classes_!r}"
            )
        self._pass(X, self._targets(y), None)
        return self

    def _targets(self, y: NDArray[Any]) -> NDArray[np.float32]:
        classes = self.classes_
        index = np.searchsorted(classes, y)
        index = np.minimum(index, len(classes) - 1)
        unknown = classes[index] != y
        if unknown.any():
            raise ValueError(
                f"y contains labels not in classes_ {classes!r}: {np.unique(y[unknown])!r}"
            )
        if len(classes) == 2:
            binary: NDArray[np.float32] = (index == 1).astype(np.float32).reshape(-1, 1)
            return binary
        Y = np.zeros((len(y), len(classes)), dtype=np.float32)
        Y[np.arange(len(y)), index] = 1.0
        return Y

    def predict_proba(self, X: Matrix) -> NDArray[np.float64]:
        """Class probabilities, shape ``(n_samples, n_classes)``, rows summing to 1."""
        return class_probabilities(self._outputs(X))

    def predict(self, X: Matrix) -> NDArray[Any]:
        """The most probable class of each row."""
        proba = self.predict_proba(X)
        labels: NDArray[Any] = self.classes_[np.argmax(proba, axis=1)]
        return labels


def _n_outputs(n_classes: int) -> int:
    return 1 if n_classes == 2 else n_classes


class MLPRegressor(RegressorMixin, _BaseMLP):  # type: ignore[misc,unused-ignore]
    """Neural network regressor (single or multi-output) on the native network.

    Identity outputs trained with the squared error (averaged over the outputs of
    one example). Targets are used as given; standardise large ones (e.g. with
    :class:`sklearn.compose.TransformedTargetRegressor`). A 1-D ``y`` gives 1-D
    predictions, a 2-D ``y`` (even with one column) 2-D predictions.

    Args:
        hidden_layer_sizes: sizes of the hidden layers (``()``: a linear model).
        activation: ``"relu"``, ``"tanh"``, ``"sigmoid"`` (or ``"logistic"``) or
            ``"identity"``.
        optimizer: ``"adam"`` or ``"sgd"``.
        learning_rate: step size of every per-example update, > 0.
        momentum: SGD momentum in ``[0, 1)`` (``optimizer="sgd"`` only).
        weight_decay: L2 weight decay applied at each step.
        clip_norm: clip each step's gradient to this L2 norm (None: no clipping).
        max_iter: most epochs in :meth:`fit`.
        tol: an epoch improves when its mean loss drops by more than ``tol``.
        n_iter_no_change: stop :meth:`fit` after this many epochs without improvement.
        shuffle: shuffle the rows before each epoch of :meth:`fit`.
        random_state: seeds the weights and the shuffling.
        model: ``"mlp"`` (default) or ``"field"``: the field-aware model of
            :class:`~livelearn.FieldNetwork` (wide + factorization machine over the
            columns, AdaGrad, the bias a running mean), for sparse one-hot data;
            one output only (binary classification, one target). The MLP
            arguments above do not apply to it.
        embedding_dim: ``model="field"``: the factor size per column.

    Attributes:
        network_: the trained :class:`~livelearn.Network` (or :class:`~livelearn.FieldNetwork`).
        n_features_in_: number of input features.
        n_outputs_: number of targets.
        n_iter_: epochs (``fit``) plus passes (``partial_fit``) run.
        loss_curve_: mean training loss of each epoch or pass.

    Example:
        >>> import numpy as np
        >>> from livelearn.sklearn import MLPRegressor
        >>> X = np.random.default_rng(0).normal(size=(200, 3))
        >>> y = X @ [1.0, -2.0, 0.5]
        >>> reg = MLPRegressor(hidden_layer_sizes=(16,), random_state=0).fit(X, y)
        >>> reg.score(X, y) > 0.95
        True
    """

    _LOSS = "mse"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _validate_xy(self, X: Matrix, y: ArrayLike, reset: bool) -> tuple[Any, Any]:
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse="csr",
            dtype=np.float32,
            order="C",
            multi_output=True,
            y_numeric=True,
            reset=reset,
        )
        Y = np.asarray(y, dtype=np.float32)
        if not np.isfinite(Y).all():
            raise ValueError("y: every target must be finite in float32")
        return _canonical(X), Y

    def fit(self, X: Matrix, y: ArrayLike) -> MLPRegressor:
        """Train a fresh network for up to ``max_iter`` epochs; returns ``self``."""
        X, Y = self._validate_xy(X, y, reset=True)
        self._y_1d = Y.ndim == 1
        Y = Y.reshape(len(Y), -1)
        self.n_outputs_ = Y.shape[1]
        rng = check_random_state(self.random_state)
        self._start(self.n_outputs_, rng)
        self._fit_epochs(X, np.ascontiguousarray(Y), rng)
        return self

    def partial_fit(self, X: Matrix, y: ArrayLike) -> MLPRegressor:
        """One training step per row, in order, on the current model; returns ``self``."""
        first = not hasattr(self, "network_")
        X, Y = self._validate_xy(X, y, reset=first)
        if first:
            self._y_1d = Y.ndim == 1
            self.n_outputs_ = 1 if Y.ndim == 1 else Y.shape[1]
            self._start(self.n_outputs_, check_random_state(self.random_state))
        Y = Y.reshape(len(Y), -1)
        if Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} targets, but the model has {self.n_outputs_}")
        self._pass(X, np.ascontiguousarray(Y), None)
        return self

    def predict(self, X: Matrix) -> NDArray[np.float64]:
        """Predicted targets: shape ``(n_samples,)`` if fitted on 1-D ``y``, else 2-D."""
        out = self._outputs(X)
        return out[:, 0] if self._y_1d else out
