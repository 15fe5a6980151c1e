"""``livelearn.Network``: the native multi-layer perceptron, with Python conveniences.

Every computing method is inherited unchanged from the native class (no Python
frame on the hot path); this module adds the exact configuration export
(``get_config``), ``repr``, ``save``/``load`` (through :mod:`livelearn.persistence`,
which sits below this module and is handed the class to build) and
:func:`network_config`, the one place where engine and adapter arguments become a
network configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livelearn import _core, persistence
from livelearn.params import subtract

__all__ = ["STATUS_NAMES", "Network", "StepRejected", "network_config", "output_for"]

StepRejected = _core.StepRejected
STATUS_NAMES: tuple[str, ...] = tuple(_core.STATUS_NAMES)
"""The name of every status code of ``train_batch_detailed``, indexed by code:
``0`` trained, ``1`` non-finite input, ``2`` non-finite loss, ``3`` non-finite
gradient or update, ``4`` target outside [0, 1] for bce."""


def output_for(loss: str) -> str:
    """The output layer a loss needs: ``"sigmoid"`` for ``"bce"`` (its target is a
    probability, computed from the logits), ``"identity"`` for anything else.

    Example:
        >>> output_for("bce"), output_for("mse")
        ('sigmoid', 'identity')
    """
    return "sigmoid" if loss == "bce" else "identity"


def network_config(
    n_inputs: int,
    hidden_layers: Sequence[int],
    n_outputs: int,
    *,
    activation: str = "tanh",
    loss: str = "bce",
    optimizer: str = "sgd",
    learning_rate: float = 0.05,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    seed: int = 0,
    running_bias: bool = False,
) -> dict[str, Any]:
    """The :class:`Network` constructor arguments for a model built from engine or
    adapter arguments: ``layers`` is ``[n_inputs, *hidden_layers, n_outputs]`` and
    the output layer follows the loss (:func:`output_for`).

    The one place that turns ``Engine``/River/scikit-learn arguments into a
    network configuration; the values are passed on as given (the native
    constructor validates them), so ``Network(**network_config(...))`` is where
    a bad argument is reported.

    Example:
        >>> config = network_config(4, (8,), 1, loss="mse", seed=3)
        >>> config["layers"], config["output"]
        ([4, 8, 1], 'identity')
        >>> Network(**config).output
        'identity'
    """
    return {
        "layers": [n_inputs, *hidden_layers, n_outputs],
        "activation": activation,
        "output": output_for(loss),
        "loss": loss,
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "clip_norm": clip_norm,
        "seed": seed,
        "running_bias": running_bias,
    }


class Network(_core.Network):
    """A multi-layer perceptron trained one example at a time, in C++, GIL released.

    ``layers`` lists every layer's size, input first and output last. Hidden
    layers use ``activation`` (``"tanh"``, ``"relu"``, ``"sigmoid"``,
    ``"identity"``); the output layer uses ``output`` (``"sigmoid"`` or
    ``"identity"``). ``loss="bce"`` is binary cross-entropy computed from the
    logits (numerically stable; needs ``output="sigmoid"``), ``loss="mse"`` the
    mean squared error. Losses are averaged over the outputs of one example and
    computed and returned in double precision (``float`` from ``train_step``,
    ``float64`` arrays from the batch methods; predictions are ``float32``), so a
    large but finite error is reported as it is rather than as an overflow.

    One *step* is exactly one example: forward pass, loss, backward pass, one
    optimizer update (``"sgd"`` with optional ``momentum``, or ``"adam"``).
    With ``running_bias=True`` the output bias is not a gradient step but a
    running mean of the target: under ``loss="bce"`` each example moves the
    prediction ``w (y - p) / N`` of the way toward its target
    (``b += logit(p + w (y - p) / N) - logit(p)``, at most one logit a step),
    under ``"mse"`` ``b += w (y - z) / N``; ``N`` (the state tensor
    ``optimizer.bias.N``) counts the examples' weight from a prior of 2 up to a
    window of 100000. The model then learns the base rate from its first events
    instead of starting at p = 0.5. Not yet supported with ``share``.
    ``train_batch`` runs ``n`` such steps in order (the same result as ``n``
    calls of ``train_step``), not one averaged mini-batch step.

    A step whose input, loss, gradient or update is not finite, or (with
    ``loss="bce"``, whose target is a probability) whose target lies outside
    [0, 1], changes nothing except ``rejected_steps``; ``train_step`` then raises
    :class:`StepRejected`, ``train_batch`` reports ``nan`` for that row and
    ``train_batch_detailed`` its status code (see :data:`STATUS_NAMES`).

    Thread-safe: any number of threads may train and predict at once. A
    training step holds the network's lock for one step, so a concurrent
    ``predict`` waits for at most one step.

    ``share="NAME"`` (keyword only) puts the state in shared memory: every
    process of the machine that builds a network with the same name and
    configuration trains and predicts this one model, under a robust
    process-shared lock (``share_timeout`` seconds at most per wait; see
    :mod:`livelearn.engine.sharing`). ``share_info`` describes the segment,
    ``release_share()`` detaches (the last one removes it).

    Example:
        >>> import numpy as np
        >>> from livelearn import Network
        >>> net = Network(layers=[4, 16, 8, 1], seed=0)
        >>> x = np.array([0.5, 0.1, -0.3, 1.0], dtype=np.float32)
        >>> loss = net.train_step(x, 1.0)
        >>> p = net.predict(x)          # shape (1,): probability of y = 1
        >>> net.steps
        1
    """

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this network exactly (JSON-serialisable).

        The native core stores hyperparameters as float32; each is given as the
        shortest decimal that is that same float32 (``0.05``, not
        ``0.05000000074505806``), so ``Network.from_config(net.get_config())``
        has bit-identical settings and the values read as they were typed.

        Example:
            >>> net = Network(layers=[2, 1], learning_rate=0.0123456789)
            >>> net.get_config()["learning_rate"]
            0.012345679
            >>> Network.from_config(net.get_config()).learning_rate == net.learning_rate
            True
        """
        return {
            "layers": list(self.layers),
            "activation": self.activation,
            "output": self.output,
            "loss": self.loss,
            "optimizer": self.optimizer,
            "learning_rate": _exact(self.learning_rate),
            "momentum": _exact(self.momentum),
            "weight_decay": _exact(self.weight_decay),
            "clip_norm": None if self.clip_norm is None else _exact(self.clip_norm),
            "seed": self.seed,
            "beta1": _exact(self.beta1),
            "beta2": _exact(self.beta2),
            "epsilon": _exact(self.epsilon),
            "running_bias": bool(self.running_bias),
        }

    #: Options added after the first network files: a config without them was
    #: written by a network that behaved as these values do.
    LEGACY_DEFAULTS: Mapping[str, Any] = {"running_bias": False}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Network:
        """Build a fresh (untrained) network from :meth:`get_config` output (a
        config from before ``running_bias`` existed rebuilds the network it came from).

        Example:
            >>> Network.from_config({"layers": [2, 1]}).get_config()["running_bias"]
            False
        """
        return cls(**{**cls.LEGACY_DEFAULTS, **dict(config)})

    def parameters(self) -> dict[str, NDArray[np.float32]]:
        """A consistent copy of the weights and biases (no optimizer state, no counters)."""
        return {k: v for k, v in self.get_state().items() if k.startswith("layers.")}

    def delta_since(self, base: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[np.float32]]:
        """The change of every parameter since ``base`` (a :meth:`parameters` or
        :meth:`get_state` snapshot): what this replica learned meanwhile.

        Example:
            >>> import numpy as np
            >>> net = Network(layers=[2, 1], output="identity", loss="mse")
            >>> base = net.parameters()
            >>> _ = net.train_step(np.ones(2, np.float32), 1.0)
            >>> other = Network(layers=[2, 1], output="identity", loss="mse")
            >>> other.apply_delta(net.delta_since(base))
            >>> bool(np.allclose(other.predict(np.ones(2)), net.predict(np.ones(2))))
            True
        """
        current = self.parameters()
        missing = sorted(set(current) - set(base))
        if missing:
            raise ValueError(f"base: missing tensors {missing}")
        return subtract(current, {name: base[name] for name in current})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the network (weights, optimizer state, counters) to a checkpoint.

        safetensors + JSON metadata, written atomically; see :mod:`livelearn.checkpoint`.
        """
        persistence.save_network(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Network:
        """Read a network written by :meth:`save`; raises ``CheckpointError`` on any damage."""
        return persistence.load_network(path, cls)

    def __repr__(self) -> str:
        c = self.get_config()
        extra = ""
        if c["optimizer"] == "sgd" and c["momentum"]:
            extra += f", momentum={c['momentum']}"
        if c["weight_decay"]:
            extra += f", weight_decay={c['weight_decay']}"
        if c["clip_norm"] is not None:
            extra += f", clip_norm={c['clip_norm']}"
        if c["running_bias"]:
            extra += ", running_bias=True"
        return (
            f"Network(layers={c['layers']}, activation={c['activation']!r}, "
            f"output={c['output']!r}, loss={c['loss']!r}, optimizer={c['optimizer']!r}, "
            f"learning_rate={c['learning_rate']}{extra}, seed={c['seed']}, "
            f"steps={self.steps}, rejected_steps={self.rejected_steps})"
        )


def _exact(value: float) -> float:
    """The shortest decimal that is the same float32 as ``value`` (the core's storage)."""
    return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))
