"""Type stubs for the native module ``livelearn._core`` (bound in cpp/bindings/, one unit per class)."""

from typing import Any, Literal, overload, type_check_only

import numpy as np
from numpy.typing import ArrayLike, NDArray

STATUS_NAMES: tuple[str, str, str, str, str]
RUNTIME_DISPATCH: bool

class StepRejected(ValueError):
    """A training step was refused (non-finite input, loss or update, or a bce target
    outside [0, 1]); the model is unchanged."""

class ShareError(RuntimeError):
    """A shared model (``share=``) cannot be created, attached or locked: a bad name,
    an incompatible configuration, a lock held past the timeout."""

@type_check_only
class _Pybind11Type(type):
    """The metaclass of every pybind11 class (``pybind11_builtins.pybind11_type``),
    named here so that ``mypy.stubtest`` sees the same metaclass as at runtime."""

class Network(metaclass=_Pybind11Type):
    def __init__(
        self,
        layers: list[int] | tuple[int, ...] = ...,
        activation: str = "tanh",
        output: str = "sigmoid",
        loss: str = "bce",
        optimizer: str = "sgd",
        learning_rate: float = 0.05,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        seed: int = 0,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-08,
        *,
        share: str | None = None,
        share_timeout: float = 10.0,
        running_bias: bool = False,
    ) -> None: ...
    def train_step(self, x: ArrayLike, y: float | ArrayLike, weight: float = 1.0) -> float: ...
    def train_step_sparse(
        self, indices: ArrayLike, values: ArrayLike, y: float | ArrayLike, weight: float = 1.0
    ) -> float: ...
    def train_batch(
        self, X: ArrayLike, Y: ArrayLike, *, weights: ArrayLike | None = None
    ) -> NDArray[np.float64]: ...
    def train_batch_sparse(
        self,
        indptr: ArrayLike,
        indices: ArrayLike,
        values: ArrayLike,
        Y: ArrayLike,
        *,
        weights: ArrayLike | None = None,
    ) -> NDArray[np.float64]: ...
    @overload
    def train_batch_detailed(
        self,
        X: ArrayLike,
        Y: ArrayLike,
        *,
        weights: ArrayLike | None = None,
        return_steps: Literal[False] = False,
    ) -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.uint8]]: ...
    @overload
    def train_batch_detailed(
        self,
        X: ArrayLike,
        Y: ArrayLike,
        *,
        weights: ArrayLike | None = None,
        return_steps: Literal[True],
    ) -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.uint8], NDArray[np.int64]]: ...
    @overload
    def train_batch_sparse_detailed(
        self,
        indptr: ArrayLike,
        indices: ArrayLike,
        values: ArrayLike,
        Y: ArrayLike,
        *,
        weights: ArrayLike | None = None,
        return_steps: Literal[False] = False,
    ) -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.uint8]]: ...
    @overload
    def train_batch_sparse_detailed(
        self,
        indptr: ArrayLike,
        indices: ArrayLike,
        values: ArrayLike,
        Y: ArrayLike,
        *,
        weights: ArrayLike | None = None,
        return_steps: Literal[True],
    ) -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.uint8], NDArray[np.int64]]: ...
    def predict(self, X: ArrayLike) -> NDArray[np.float32]: ...
    def predict_sparse(
        self, indptr: ArrayLike, indices: ArrayLike, values: ArrayLike
    ) -> NDArray[np.float32]: ...
    def _state_layout(self) -> list[tuple[str, tuple[int, ...]]]: ...
    def get_state(self) -> dict[str, NDArray[Any]]: ...
    def set_state(self, state: dict[str, NDArray[Any]]) -> None: ...
    def apply_delta(self, delta: dict[str, NDArray[Any]], weight: float = 1.0) -> None: ...
    @property
    def version(self) -> int: ...
    @property
    def share(self) -> str | None: ...
    @property
    def share_info(self) -> dict[str, Any] | None: ...
    @property
    def share_lock_owner(self) -> int: ...
    def release_share(self) -> None: ...
    def claim_autosave(self) -> bool: ...
    def _hold_lock_for_test(self, seconds: float, poison: bool = False) -> None: ...
    @property
    def steps(self) -> int: ...
    @property
    def rejected_steps(self) -> int: ...
    @property
    def n_inputs(self) -> int: ...
    @property
    def n_outputs(self) -> int: ...
    @property
    def n_parameters(self) -> int: ...
    @property
    def layers(self) -> list[int]: ...
    @property
    def activation(self) -> str: ...
    @property
    def output(self) -> str: ...
    @property
    def loss(self) -> str: ...
    @property
    def optimizer(self) -> str: ...
    @property
    def learning_rate(self) -> float: ...
    @learning_rate.setter
    def learning_rate(self, value: float) -> None: ...
    @property
    def running_bias(self) -> bool: ...
    @property
    def momentum(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def clip_norm(self) -> float | None: ...
    @property
    def seed(self) -> int: ...
    @property
    def beta1(self) -> float: ...
    @property
    def beta2(self) -> float: ...
    @property
    def epsilon(self) -> float: ...

class FieldModel(metaclass=_Pybind11Type):
    """Field-aware sparse model (wide + factorization machine + optional MLP over the
    pooled per-field embeddings and dense inputs), trained one example per step.
    See cpp/include/livelearn/field_model.hpp."""

    def __init__(
        self,
        n_buckets: int,
        n_fields: int,
        embedding_dim: int = 8,
        n_dense: int = 0,
        hidden_layers: list[int] | tuple[int, ...] = (),
        activation: str = "relu",
        loss: str = "bce",
        optimizer: str = "adagrad",
        learning_rate: float = 0.1,
        embedding_learning_rate: float = 0.2,
        mlp_learning_rate: float = 0.02,
        bias_learning_rate: float = 1.0,
        l1: float = 0.0,
        l2: float = 0.02,
        embedding_l2: float = 0.01,
        ftrl_beta: float = 1.0,
        initial_accumulator: float = 0.1,
        epsilon: float = 1e-08,
        init_std: float = 0.05,
        bias_init: float = 0.0,
        seed: int = 0,
        dense_factors: bool = False,
        running_bias: bool = True,
        bias_prior: float = 2.0,
        bias_window: float = 100000.0,
    ) -> None: ...
    def train_batch(
        self,
        indptr: ArrayLike,
        indices: ArrayLike,
        values: ArrayLike,
        fields: ArrayLike,
        dense: ArrayLike | None,
        Y: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.uint8], NDArray[np.int64]]: ...
    def train_step(
        self,
        indices: ArrayLike,
        values: ArrayLike,
        fields: ArrayLike,
        dense: ArrayLike | None = None,
        y: float = 0.0,
        weight: float = 1.0,
    ) -> tuple[float, float, int, int]: ...
    def predict_batch(
        self,
        indptr: ArrayLike,
        indices: ArrayLike,
        values: ArrayLike,
        fields: ArrayLike,
        dense: ArrayLike | None = None,
    ) -> NDArray[np.float32]: ...
    def predict(
        self,
        indices: ArrayLike,
        values: ArrayLike,
        fields: ArrayLike,
        dense: ArrayLike | None = None,
    ) -> float: ...
    def _state_layout(self) -> list[tuple[str, tuple[int, ...]]]: ...
    def get_state(self) -> dict[str, NDArray[Any]]: ...
    def set_state(self, state: dict[str, NDArray[Any]]) -> None: ...
    def apply_delta(self, delta: dict[str, NDArray[Any]], weight: float = 1.0) -> None: ...
    def get_config(self) -> dict[str, Any]: ...
    @property
    def steps(self) -> int: ...
    @property
    def rejected_steps(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def n_parameters(self) -> int: ...
    @property
    def n_buckets(self) -> int: ...
    @property
    def n_fields(self) -> int: ...
    @property
    def n_dense(self) -> int: ...

HASH_NAME: str

def stable_hash64(data: str | bytes) -> int:
    """BLAKE2b-64 (digest_size=8, little-endian) of a str's UTF-8 or of bytes."""

class HashedEncoder(metaclass=_Pybind11Type):
    """The arithmetic of HashedFeatureEncoder; None from a method: some value needs
    the Python reference path (which raises its usual error)."""

    def __init__(
        self,
        *,
        n_buckets: int,
        action: bool,
        user: bool,
        time: bool,
        bias: bool,
        context_keys: list[str] | None,
        numeric_keys: list[str],
        crosses: list[tuple[str, str]],
        utc_offset: float | None,
    ) -> None: ...
    @property
    def n_inputs(self) -> int: ...
    @property
    def n_dense(self) -> int: ...
    def encode_sparse_many(
        self, interactions: Any, local: ArrayLike | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.float32]] | None: ...
    def encode_sparse(
        self, interaction: Any, local: float | None = None
    ) -> tuple[NDArray[np.int32], NDArray[np.float32]] | None: ...
    def encode_fields_many(
        self, interactions: Any, local: ArrayLike | None = None
    ) -> (
        tuple[
            NDArray[np.int64],
            NDArray[np.int32],
            NDArray[np.float32],
            NDArray[np.int32],
            NDArray[np.float32],
        ]
        | None
    ): ...

class DenseEncoder(metaclass=_Pybind11Type):
    """The arithmetic of FeatureEncoder; None: the Python reference path decides."""

    def __init__(self, *, action: bool, utc_offset: float | None) -> None: ...
    def encode_many(
        self, interactions: Any, local: ArrayLike | None = None
    ) -> NDArray[np.float32] | None: ...
    def encode(
        self, interaction: Any, local: float | None = None
    ) -> NDArray[np.float32] | None: ...
