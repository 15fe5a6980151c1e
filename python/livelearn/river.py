"""River adapters: :class:`MLPClassifier` and :class:`MLPRegressor` on the native network.

Requires the optional ``river`` extra (``pip install "livelearn[river]"``). The
estimators follow River's protocol (``learn_one``/``predict_one``/
``predict_proba_one``, plus ``learn_many``/``predict_many`` on pandas frames), so
they work inside :mod:`river.compose` pipelines and with
:func:`river.evaluate.progressive_val_score`, and pass
``river.checks.check_estimator``.

Features: each ``{name: value}`` dict is hashed by
:class:`~livelearn.dict_features.DictHasher` into ``n_features`` sparse inputs
(numbers as values, strings one-hot as ``name=value``; ``None``/NaN missing). New
features need nothing; numbers are used as given, so scale them (e.g.
``river.preprocessing.StandardScaler() | MLPClassifier()``).

Learning: one ``learn_one`` is exactly one native training step (forward, loss,
backward, one optimizer update), a sparse one: with Adam, momentum or weight decay
only the weights of the active inputs are updated (lazy, like
``torch.optim.SparseAdam``). A step whose input, loss or update is not finite
changes nothing and is counted in :attr:`~MLPClassifier.rejected_steps` instead of
raising, so one bad event does not stop a stream.

Example:
    >>> from river import compose, datasets, evaluate, metrics, preprocessing
    >>> from livelearn.river import MLPClassifier
    >>> model = preprocessing.StandardScaler() | MLPClassifier(n_features=1024, seed=0)
    >>> metric = evaluate.progressive_val_score(
    ...     datasets.Phishing().take(300), model, metrics.Accuracy())
    >>> metric.get() > 0.75
    True
"""

# This module is ``livelearn.river``; ``import river`` below is the absolute
# import of the River package (Python 3 has no implicit relative imports).
from __future__ import annotations

import contextlib
import random
from collections.abc import Hashable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray
from river import base

from livelearn._adapters import (
    MODELS,
    class_probabilities,
    network_from_state,
    network_state,
)
from livelearn.dict_features import DictHasher
from livelearn.field_network import FieldNetwork
from livelearn.network import Network, StepRejected, network_config
from livelearn.validation import check_choice, check_int, check_optional_int, check_sizes

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

__all__ = ["MLPClassifier", "MLPRegressor"]


class _NetworkEstimator:
    """Shared plumbing: parameters, the lazily built network, hashing, pickling."""

    hidden_layers: tuple[int, ...]
    activation: str
    optimizer: str
    learning_rate: float
    momentum: float
    weight_decay: float
    clip_norm: float | None
    n_features: int
    seed: int | None
    model: str
    n_fields: int
    embedding_dim: int
    _net: Network | FieldNetwork | None
    _hasher: DictHasher
    _seed: int

    _LOSS = "bce"  # the output layer follows: network_config

    def _setup(
        self,
        hidden_layers: tuple[int, ...],
        activation: str,
        optimizer: str,
        learning_rate: float,
        momentum: float,
        weight_decay: float,
        clip_norm: float | None,
        n_features: int,
        seed: int | None,
        model: str = "mlp",
        n_fields: int = 8,
        embedding_dim: int = 8,
    ) -> None:
        self.model = check_choice("model", model, MODELS)
        self.n_fields = check_int("n_fields", n_fields, 1, 2**20)
        self.embedding_dim = check_int("embedding_dim", embedding_dim, 1, 1024)
        self.hidden_layers = check_sizes("hidden_layers", hidden_layers)
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.n_features = n_features
        self.seed = seed
        check_optional_int("seed", seed, low=0)
        # An unseeded model draws its seed once, so copies of it (deepcopy, pickle) agree.
        self._seed = random.randrange(2**31) if seed is None else int(seed)
        self._hasher = DictHasher(n_features)  # validates n_features
        # A tiny network validates every other argument now rather than at the first event.
        Network(**self._config(1, n_inputs=1))
        self._net = None

    def _new_network(self, n_outputs: int) -> Network | FieldNetwork:
        if self.model == "field":
            return FieldNetwork(
                n_buckets=self.n_features,
                n_fields=self.n_fields,
                embedding_dim=self.embedding_dim,
                loss=self._LOSS,
                seed=self._seed,
            )
        return Network(**self._config(n_outputs))

    def _fit_rows(self, rows: list[Mapping[Any, Any]], targets: NDArray[np.float32]) -> None:
        """One step per row, in order (``targets``: one row of outputs per row)."""
        net = self._net
        assert net is not None
        if isinstance(net, FieldNetwork):
            indptr, idx, values, fields = self._hasher.encode_fields_many(rows, self.n_fields)
            net.train_batch(indptr, idx, values, fields, None, targets.reshape(-1))
        else:
            indptr, cols, values = self._hasher.encode_many(rows)
            net.train_batch_sparse(indptr, cols, values, targets)

    def _config(self, n_outputs: int, n_inputs: int | None = None) -> dict[str, Any]:
        return network_config(
            self.n_features if n_inputs is None else n_inputs,
            self.hidden_layers,
            n_outputs,
            activation=self.activation,
            loss=self._LOSS,
            optimizer=self.optimizer,
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            clip_norm=self.clip_norm,
            seed=self._seed,
        )

    @property
    def network(self) -> Network | FieldNetwork | None:
        """The native network (None until the first ``learn_one``/``learn_many``): a
        :class:`~livelearn.Network`, or a :class:`~livelearn.FieldNetwork` (``model="field"``)."""
        return self._net

    @property
    def rejected_steps(self) -> int:
        """Training steps refused because an input, loss or update was not finite."""
        return 0 if self._net is None else self._net.rejected_steps

    @property
    def steps(self) -> int:
        """Training steps taken (one per ``learn_one``, one per row of ``learn_many``)."""
        return 0 if self._net is None else self._net.steps

    def _train_one(
        self,
        features: tuple[NDArray[np.int32], NDArray[np.float32]],
        target: float | NDArray[np.float32],
    ) -> None:
        net = self._net
        assert isinstance(net, Network)
        # A rejected step leaves the model unchanged; it is counted in rejected_steps.
        with contextlib.suppress(StepRejected):
            net.train_step_sparse(features[0], features[1], target)

    def _outputs(self, rows: list[Mapping[Any, Any]]) -> NDArray[np.float32]:
        net = self._net
        assert net is not None
        if isinstance(net, FieldNetwork):
            indptr, idx, vals, fields = self._hasher.encode_fields_many(rows, self.n_fields)
            return net.predict(indptr, idx, vals, fields, None)
        indptr, indices, values = self._hasher.encode_many(rows)
        return net.predict_sparse(indptr, indices, values)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        net = state.pop("_net")
        state["_net"] = None if net is None else network_state(net)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.get("_net")
        if saved is not None:
            state = {**state, "_net": network_from_state(saved)}
        self.__dict__.update(state)


def _records(X: pd.DataFrame) -> list[Mapping[Any, Any]]:
    records: list[Mapping[Any, Any]] = X.to_dict(orient="records")
    return records


def _widen_outputs(net: Network | FieldNetwork, n_outputs: int, from_binary: bool) -> Network:
    """A copy of ``net`` with ``n_outputs`` outputs: the existing output columns are
    kept, new ones freshly initialised (optimizer buffers zero).

    With ``from_binary`` the single logistic output ``z`` (probability of the
    second class) becomes two one-vs-rest outputs ``-z`` and ``z``: exactly the
    same probabilities, since ``sigmoid(-z) = 1 - sigmoid(z)``.
    """
    if isinstance(net, FieldNetwork):
        raise ValueError("model='field' has one output: a binary classifier (two classes)")
    config = net.get_config()
    last = len(config["layers"]) - 2
    config["layers"] = [*config["layers"][:-1], n_outputs]
    wider = Network.from_config(config)
    state = wider.get_state()
    old_state = net.get_state()
    suffixes = (f"layers.{last}.weight", f"layers.{last}.bias")
    for key, old in old_state.items():
        if not any(key == s or key.endswith("." + s) for s in suffixes):
            state[key] = old
            continue
        new = state[key].copy()
        if from_binary:
            # Parameters and first-moment buffers flip sign; second moments do not.
            sign = 1.0 if key.startswith("optimizer.exp_avg_sq.") else -1.0
            new[..., 0] = sign * old[..., 0]
            new[..., 1] = old[..., 0]
        else:
            new[..., : old.shape[-1]] = old
        state[key] = new
    wider.set_state(state)
    return wider


class MLPClassifier(_NetworkEstimator, base.MiniBatchClassifier):
    """Multi-class neural network classifier for River, trained one example per step.

    Classes are discovered online, in order of appearance. While at most two are
    known the network has one sigmoid output, the probability of the second class
    (a plain binary classifier trained with binary cross-entropy). From the third
    class on it has one sigmoid output per class, each trained with binary
    cross-entropy against the one-hot target (one-vs-rest, sharing the hidden
    layers); when the third class arrives the binary output ``z`` becomes the
    outputs ``-z`` and ``z`` (the same two sigmoid probabilities, since
    ``sigmoid(-z) = 1 - sigmoid(z)``) next to a freshly initialised one.
    ``predict_proba_one`` then normalises the per-class sigmoids to sum to 1, as
    scikit-learn's one-vs-rest logistic regression does: these are not softmax
    probabilities. Before any ``learn_one`` it returns ``{}`` (and
    ``predict_one`` ``None``); with one known class, ``{that_class: 1.0}``.

    Args:
        hidden_layers: sizes of the hidden layers.
        activation: hidden activation: ``"tanh"``, ``"relu"``, ``"sigmoid"`` or
            ``"identity"``.
        optimizer: ``"sgd"`` (optionally with ``momentum``) or ``"adam"``.
        learning_rate: step size, > 0.
        momentum: SGD momentum in ``[0, 1)``.
        weight_decay: L2 weight decay per step.
        clip_norm: clip each step's gradient to this L2 norm (None: no clipping).
        n_features: hashed input columns (see :class:`~livelearn.dict_features.DictHasher`).
        seed: seeds the initial weights; None draws one at construction.
        model: ``"mlp"`` (default), or ``"field"``: the field-aware model of
            :class:`~livelearn.FieldNetwork` (wide + factorization machine over the
            hashed features, AdaGrad, the bias a running mean), what
            ``Engine(features=HashedFeatureEncoder())`` trains. Each feature key is
            a field (hashed onto ``n_fields`` slots); the MLP arguments above do
            not apply to it.
        n_fields: ``model="field"``: field slots the feature keys hash onto.
        embedding_dim: ``model="field"``: embedding size per hashed feature.

    Example:
        >>> from river import datasets
        >>> from livelearn.river import MLPClassifier
        >>> model = MLPClassifier(n_features=1024, seed=42)
        >>> for x, y in datasets.Phishing().take(100):
        ...     model.learn_one(x, y)
        >>> sorted(model.predict_proba_one(x))
        [False, True]
        >>> model.steps
        100
    """

    def __init__(
        self,
        hidden_layers: tuple[int, ...] = (16, 8),
        activation: str = "tanh",
        optimizer: str = "sgd",
        learning_rate: float = 0.05,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        n_features: int = 2**18,
        seed: int | None = None,
        model: str = "mlp",
        n_fields: int = 8,
        embedding_dim: int = 8,
    ) -> None:
        self._classes: list[Hashable] = []
        self._index: dict[Hashable, int] = {}
        self._setup(
            hidden_layers,
            activation,
            optimizer,
            learning_rate,
            momentum,
            weight_decay,
            clip_norm,
            n_features,
            seed,
            model,
            n_fields,
            embedding_dim,
        )

    @property
    def _multiclass(self) -> bool:
        return True

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {"n_features": 1024, "seed": 0}

    @property
    def classes(self) -> list[Hashable]:
        """The labels seen so far, in order of first appearance (a copy)."""
        return list(self._classes)

    def _class_index(self, y: Hashable) -> int:
        """The output index of label ``y``, adding the class (and an output) if new."""
        index = self._index.get(y)
        if index is not None:
            return index
        if self.model == "field" and len(self._classes) == 2:
            raise ValueError(
                f"model='field' is a binary classifier (one output): a third class {y!r} "
                "needs model='mlp'"
            )
        index = len(self._classes)
        self._classes.append(y)
        self._index[y] = index
        n = len(self._classes)
        if self._net is None:
            self._net = self._new_network(1)
        elif n >= 3:
            self._net = _widen_outputs(self._net, n, from_binary=n == 3)
        return index

    def _target(self, index: int) -> NDArray[np.float32]:
        n = len(self._classes)
        if n <= 2:
            return np.array([1.0 if index == 1 else 0.0], dtype=np.float32)
        target = np.zeros(n, dtype=np.float32)
        target[index] = 1.0
        return target

    def learn_one(self, x: dict[base.typing.FeatureName, Any], y: base.typing.ClfTarget) -> None:
        """One training step on features ``x`` and label ``y``."""
        features = self._hasher.encode_one(x)  # before the label: bad x changes nothing
        index = self._class_index(y)
        if isinstance(self._net, FieldNetwork):
            self._fit_rows([x], self._target(index).reshape(1, -1))
            return
        self._train_one(features, self._target(index))

    def _proba_matrix(self, rows: list[Mapping[Any, Any]]) -> NDArray[np.float64]:
        """Per-class probabilities ``(len(rows), n_classes)``; rows sum to 1."""
        n = len(self._classes)
        if n == 1:
            return np.ones((len(rows), 1))
        return class_probabilities(self._outputs(rows))

    def predict_proba_one(
        self, x: dict[base.typing.FeatureName, Any], **kwargs: Any
    ) -> dict[base.typing.ClfTarget, float]:
        """Probability of each known class (``{}`` before any learning)."""
        if not self._classes:
            return {}
        row = self._proba_matrix([x])[0].tolist()
        proba = dict(zip(self._classes, row, strict=True))
        return cast("dict[base.typing.ClfTarget, float]", proba)

    def learn_many(self, X: pd.DataFrame, y: pd.Series) -> None:
        """One training step per row, in order: exactly what ``learn_one`` on
        each row would do (River checks this).

        Rows are hashed as by ``learn_one`` and trained in native calls of
        consecutive rows; a class seen for the first time is added (growing
        the outputs) at its own row, so earlier rows train with the classes
        known then.
        """
        records = _records(X)
        indptr, cols, values = self._hasher.encode_many(records)
        labels = y.tolist()
        start, n = 0, len(labels)
        while start < n:
            self._class_index(labels[start])  # the one row that may add a class
            end = start + 1
            while end < n and labels[end] in self._index:
                end += 1
            targets = np.stack([self._target(self._index[label]) for label in labels[start:end]])
            lo, hi = int(indptr[start]), int(indptr[end])
            assert self._net is not None
            if isinstance(self._net, FieldNetwork):
                self._fit_rows(records[start:end], targets)
                start = end
                continue
            self._net.train_batch_sparse(
                indptr[start : end + 1] - lo, cols[lo:hi], values[lo:hi], targets
            )
            start = end

    def predict_proba_many(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-class probabilities, one column per known class."""
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]

        if not self._classes:
            return pd.DataFrame(index=X.index)
        proba = self._proba_matrix(_records(X))
        return pd.DataFrame(proba, index=X.index, columns=list(self._classes))

    def predict_many(self, X: pd.DataFrame) -> pd.Series:
        """The most probable known class per row (first class on ties, as ``predict_one``)."""
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]

        if not self._classes:
            return pd.Series([None] * len(X), index=X.index, dtype=object)
        proba = self._proba_matrix(_records(X))
        labels = [self._classes[i] for i in np.argmax(proba, axis=1).tolist()]
        return pd.Series(labels, index=X.index)


class MLPRegressor(_NetworkEstimator, base.MiniBatchRegressor):
    """Neural network regressor for River, trained one example per step.

    One identity output trained with the squared error. Targets are used as
    given: scale large ones (for instance with
    ``river.compose.TargetTransformRegressor``). Predicts ``0.0`` before the first
    ``learn_one``.

    Args:
        hidden_layers: sizes of the hidden layers.
        activation: hidden activation: ``"tanh"``, ``"relu"``, ``"sigmoid"`` or
            ``"identity"``.
        optimizer: ``"sgd"`` (optionally with ``momentum``) or ``"adam"``.
        learning_rate: step size, > 0.
        momentum: SGD momentum in ``[0, 1)``.
        weight_decay: L2 weight decay per step.
        clip_norm: clip each step's gradient to this L2 norm (None: no clipping).
        n_features: hashed input columns (see :class:`~livelearn.dict_features.DictHasher`).
        seed: seeds the initial weights; None draws one at construction.
        model: ``"mlp"`` (default), or ``"field"``: the field-aware model of
            :class:`~livelearn.FieldNetwork` (wide + factorization machine over the
            hashed features, AdaGrad, the bias a running mean), what
            ``Engine(features=HashedFeatureEncoder())`` trains. Each feature key is
            a field (hashed onto ``n_fields`` slots); the MLP arguments above do
            not apply to it.
        n_fields: ``model="field"``: field slots the feature keys hash onto.
        embedding_dim: ``model="field"``: embedding size per hashed feature.

    Example:
        >>> from river import datasets, evaluate, metrics, preprocessing
        >>> from livelearn.river import MLPRegressor
        >>> model = preprocessing.StandardScaler() | MLPRegressor(n_features=1024, seed=0)
        >>> for x, y in datasets.TrumpApproval().take(50):
        ...     model.learn_one(x, y / 100)
        >>> isinstance(model.predict_one(x), float)
        True
    """

    _LOSS = "mse"

    def __init__(
        self,
        hidden_layers: tuple[int, ...] = (16, 8),
        activation: str = "tanh",
        optimizer: str = "sgd",
        learning_rate: float = 0.01,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        n_features: int = 2**18,
        seed: int | None = None,
        model: str = "mlp",
        n_fields: int = 8,
        embedding_dim: int = 8,
    ) -> None:
        self._setup(
            hidden_layers,
            activation,
            optimizer,
            learning_rate,
            momentum,
            weight_decay,
            clip_norm,
            n_features,
            seed,
            model,
            n_fields,
            embedding_dim,
        )

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {"n_features": 1024, "seed": 0}

    def _ensure_network(self) -> None:
        if self._net is None:
            self._net = self._new_network(1)

    def learn_one(self, x: dict[base.typing.FeatureName, Any], y: base.typing.RegTarget) -> None:
        """One training step on features ``x`` and target ``y``."""
        features = self._hasher.encode_one(x)
        self._ensure_network()
        if isinstance(self._net, FieldNetwork):
            self._fit_rows([x], np.array([[float(y)]], dtype=np.float32))
            return
        self._train_one(features, float(y))

    def predict_one(self, x: dict[base.typing.FeatureName, Any]) -> base.typing.RegTarget:
        """The network's output for ``x`` (``0.0`` before any learning)."""
        if self._net is None:
            return 0.0
        return float(self._outputs([x])[0, 0])

    def learn_many(self, X: pd.DataFrame, y: pd.Series) -> None:
        """One training step per row, in order, in one native call."""
        if len(X) == 0:
            return
        self._ensure_network()
        assert self._net is not None
        targets = np.asarray(y, dtype=np.float32).reshape(-1, 1)
        self._fit_rows(_records(X), targets)

    def predict_many(self, X: pd.DataFrame) -> pd.Series:
        """The network's output per row (``0.0`` before any learning)."""
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]

        if self._net is None:
            return pd.Series(np.zeros(len(X)), index=X.index, dtype=np.float64)
        out = self._outputs(_records(X))
        return pd.Series(out[:, 0].astype(np.float64), index=X.index)
