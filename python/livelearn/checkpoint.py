"""Checkpoints: save and load engines and networks, safely (the public entry points).

Three layers do the work, each importing only the one below: the file format
(:mod:`livelearn.checkpoint_format`: framing, checksum, atomic writes, reading
regular files only), the mapping of engines and networks to it through their public
state API (:mod:`livelearn.persistence`), and this module, which fills in the
usual classes (``Engine``, ``Network``). Periodic saving is :mod:`livelearn.autosave`.

A checkpoint is one `safetensors <https://github.com/huggingface/safetensors>`_ file:

* every array (weights, optimizer buffers such as Adam's moments, the network's step
  counters, the engine's history) is a named tensor (``network.*``, ``history.*``);
* everything else is JSON in the safetensors ``__metadata__`` string map: ``format``
  (``"livelearn.checkpoint"``), ``format_version`` (``"1"``), ``kind`` (``"engine"``
  or ``"network"``), ``livelearn`` (canonical JSON: library version, time of saving,
  the exact network configuration, and for engines the engine, encoder and target
  configuration, the counters and a history summary) and ``sha256``;
* ``sha256`` covers the other metadata entries and every tensor's name, dtype, shape
  and bytes, in name order, so any damage or hand edit is detected before anything
  is parsed further.

No pickle anywhere: loading a file never executes code. Files are written to a
temporary file in the same folder, flushed and fsynced, then atomically renamed over
the target (and the folder fsynced), so a crash at any moment -- ``kill -9`` included
-- leaves either the old or the new checkpoint, both loadable.

Loading opens regular files only (a FIFO, a device or a folder is refused), reads
the header and checks that it accounts for the file's size exactly before reading
the rest, checks the magic and version, that the tensors tile the file, and the
checksum; only then parses the tensors (safetensors), checks the configuration
and that every network tensor is finite float32 (int64 counters), and leaves the
state's layout (names and shapes) to the native core's ``set_state``. Any problem
raises :class:`CheckpointError` saying what is wrong; nothing is ever half-loaded.

Example:
    >>> import os, tempfile
    >>> from livelearn import Engine, InteractionData
    >>> from livelearn.checkpoint import load_engine, save_engine
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "model.safetensors")
    >>> with Engine(targets={"click": 1.0, "skip": 0.0}) as engine:
    ...     _ = engine.train_step(InteractionData("click", 1.7e9, "u1")).result()
    ...     save_engine(engine, path)
    >>> restored = load_engine(path)
    >>> restored.stats().steps
    1
    >>> restored.close()
"""

from __future__ import annotations

import os

from livelearn import persistence
from livelearn.autosave import AutoSaver
from livelearn.checkpoint_format import FORMAT, FORMAT_VERSION, Checkpoint
from livelearn.engine import Engine
from livelearn.errors import CheckpointError
from livelearn.network import Network
from livelearn.persistence import save_engine, save_network
from livelearn.targets import TargetFn

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "AutoSaver",
    "Checkpoint",
    "CheckpointError",
    "load_engine",
    "load_network",
    "read_checkpoint",
    "save_engine",
    "save_network",
]


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint file without building anything from it.

    Checks that it is a regular file whose size the header accounts for, the
    header, the format magic and version, and the checksum; then parses the
    tensors. Used by :func:`load_engine`, :func:`load_network` and
    ``livelearn inspect``.

    Raises:
        CheckpointError: the file is missing, unreadable, not a regular file,
            empty, truncated, damaged, edited, not a livelearn checkpoint, or
            from a newer format.

    Example:
        >>> import os, tempfile
        >>> from livelearn import Network
        >>> path = os.path.join(tempfile.mkdtemp(), "net.safetensors")
        >>> Network(layers=[2, 1]).save(path)
        >>> ckpt = read_checkpoint(path)
        >>> ckpt.kind, ckpt.format_version, sorted(ckpt.tensors)[:2]
        ('network', 1, ['network.counters.rejected_steps', 'network.counters.steps'])
    """
    return persistence.read_checkpoint(path)


def load_network(path: str | os.PathLike[str]) -> Network:
    """Read a network saved by :func:`save_network` (or the network of an engine
    checkpoint): same weights, optimizer state and counters, bit for bit.

    Raises:
        CheckpointError: for any damaged, foreign or invalid file.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> from livelearn import Network
        >>> net = Network(layers=[2, 4, 1], seed=3)
        >>> _ = net.train_step(np.array([0.5, -1.0], np.float32), 1.0)
        >>> path = os.path.join(tempfile.mkdtemp(), "net.safetensors")
        >>> save_network(net, path)
        >>> x = np.ones((1, 2), np.float32)
        >>> bool((load_network(path).predict(x) == net.predict(x)).all())
        True
    """
    return persistence.load_network(path, Network)


def load_engine(
    path: str | os.PathLike[str],
    targets: TargetFn | None = None,
    initialize: bool = True,
) -> Engine:
    """Rebuild an engine saved by :func:`save_engine`, exactly where it stopped.

    The result has the same configuration, weights, optimizer state (momentum or
    Adam moments), counters and history; its predictions are bit-identical and
    further training continues as if it had never stopped.

    Args:
        path: the checkpoint file.
        targets: the target function, required if (and only if) the saved engine
            used a callable target (functions are never stored).
        initialize: start the engine's dispatcher before returning it.

    Raises:
        CheckpointError: for any damaged, foreign or invalid file; nothing is
            half-loaded.

    Example:
        >>> import os, tempfile
        >>> from livelearn import Engine, InteractionData
        >>> path = os.path.join(tempfile.mkdtemp(), "engine.safetensors")
        >>> with Engine(targets={"click": 1.0}, optimizer="adam") as engine:
        ...     _ = engine.train_step(InteractionData("click", 1.7e9, "u1")).result()
        ...     save_engine(engine, path)
        >>> with load_engine(path) as restored:
        ...     restored.stats().steps, restored.config["optimizer"]
        (1, 'adam')
    """
    return persistence.load_engine(path, Engine, targets=targets, initialize=initialize)
