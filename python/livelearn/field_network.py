"""A thin, thread-safe face over the native :class:`livelearn._core.FieldModel`.

The engine's field-aware model (wide + factorization machine + optional MLP
over hashed fields, AdaGrad/FTRL): what :class:`~livelearn.Network` is to the
MLP. The native object already takes its own lock per call; this class adds
the configuration that rebuilds it (``get_config``) and a ``from_config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livelearn._core import FieldModel

__all__ = ["FieldNetwork"]


class FieldNetwork:
    """A field-aware sparse model; arguments are those of the native ``FieldModel``.

    Example:
        >>> import numpy as np
        >>> net = FieldNetwork(n_buckets=16, n_fields=2)
        >>> net.predict(np.array([0, 2]), np.array([3, 5], np.int32), np.ones(2, np.float32),
        ...             np.array([0, 1], np.int32), None).shape
        (1, 1)
    """

    def __init__(self, **config: Any) -> None:
        self._model = FieldModel(**config)
        self._config = dict(self._model.get_config())
        self._config["hidden_layers"] = list(self._config["hidden_layers"])

    #: Options added after the first field-model files: a config without them
    #: was written by a model that behaved as these values do.
    LEGACY_DEFAULTS: Mapping[str, Any] = {"dense_factors": False, "running_bias": False}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FieldNetwork:
        """Rebuild a network from :meth:`get_config` output (a config from before
        ``running_bias`` and ``dense_factors`` existed rebuilds the model it came from).

        Example:
            >>> old = {"n_buckets": 16, "n_fields": 2}
            >>> FieldNetwork.from_config(old).get_config()["running_bias"]
            False
        """
        return cls(**{**cls.LEGACY_DEFAULTS, **dict(config)})

    def __repr__(self) -> str:
        c = self._config
        return (
            f"FieldNetwork(n_buckets={c['n_buckets']}, n_fields={c['n_fields']}, "
            f"embedding_dim={c['embedding_dim']}, optimizer={c['optimizer']!r}, steps={self.steps})"
        )

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this network (JSON-serialisable)."""
        return dict(self._config)

    def get_state(self) -> dict[str, NDArray[Any]]:
        """Copies of every tensor, optimizer accumulator and counter."""
        return self._model.get_state()

    def set_state(self, state: Mapping[str, NDArray[Any]]) -> None:
        """Load :meth:`get_state` output (validated by the core before any change)."""
        self._model.set_state(dict(state))

    @property
    def steps(self) -> int:
        """Accepted training steps."""
        return self._model.steps

    @property
    def rejected_steps(self) -> int:
        """Steps refused because an input, loss or update was not finite."""
        return self._model.rejected_steps

    @property
    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return self._model.n_parameters

    def train_batch(
        self,
        indptr: NDArray[np.int64],
        indices: NDArray[np.integer[Any]],
        values: NDArray[np.float32],
        fields: NDArray[np.int32],
        dense: NDArray[np.float32] | None,
        Y: NDArray[np.float32],
        weights: NDArray[np.float32] | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.uint8], NDArray[np.int64]]:
        """One step per row: losses, predictions before each update, status codes
        (0 trained) and step numbers (0 when rejected). ``weights``: per-row
        sample weights (default 1)."""
        y = Y.reshape(-1) if Y.ndim == 2 else Y
        losses, preds, status, steps = self._model.train_batch(
            indptr, indices, values, fields, dense, y, weights
        )
        return losses, preds.reshape(-1, 1), status, steps

    def predict(
        self,
        indptr: NDArray[np.int64],
        indices: NDArray[np.integer[Any]],
        values: NDArray[np.float32],
        fields: NDArray[np.int32],
        dense: NDArray[np.float32] | None,
    ) -> NDArray[np.float32]:
        """Outputs of shape ``(n, 1)``."""
        out = self._model.predict_batch(indptr, indices, values, fields, dense)
        return np.asarray(out, dtype=np.float32).reshape(-1, 1)

    def predict_row(
        self,
        indices: NDArray[np.int32],
        values: NDArray[np.float32],
        fields: NDArray[np.int32],
        dense: NDArray[np.float32] | None,
    ) -> float:
        """The output for one row (one native forward pass, no batch arrays);
        the same value as :meth:`predict` gives that row."""
        return float(self._model.predict(indices, values, fields, dense))
