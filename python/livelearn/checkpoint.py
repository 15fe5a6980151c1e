"""Checkpoints: save and load engines and networks, safely.

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

Loading reads the file once, checks the header's size and structure, the magic and
version, that every tensor lies inside the file, and the checksum; only then parses
the tensors (safetensors), checks every expected tensor is present with the right
shape and dtype and all values are finite, and validates the configuration. Any
problem raises :class:`CheckpointError` saying what is wrong; nothing is ever
half-loaded.

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

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import struct
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeGuard

import numpy as np
from numpy.typing import NDArray

from livelearn.errors import CheckpointError
from livelearn.features import encoder_from_config
from livelearn.network import Network
from livelearn.targets import TargetFn, TargetMapper

if TYPE_CHECKING:
    from livelearn.engine import Engine

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

logger = logging.getLogger("livelearn")

#: The value of the ``format`` metadata entry of every livelearn checkpoint.
FORMAT = "livelearn.checkpoint"
#: The format version this library writes (and the newest it reads).
FORMAT_VERSION = 1

_MAX_HEADER_BYTES = 16 * 1024 * 1024  # our headers are a few KiB
_MAX_TENSORS = 100_000
_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}
_CODES = {dt: code for code, dt in _DTYPES.items()}
_HASH_DOMAIN = b"livelearn.checkpoint/sha256\n"
_FLOAT_KEYS = ("learning_rate", "momentum", "weight_decay", "beta1", "beta2", "epsilon")
_ENGINE_OPTIONAL = ("checkpoint_path", "checkpoint_every", "checkpoint_interval")


class Checkpoint(NamedTuple):
    """A verified checkpoint file, not yet turned into an engine or a network.

    ``kind`` is ``"engine"`` or ``"network"``; ``meta`` the decoded ``livelearn``
    metadata (see the module docstring); ``tensors`` every array by name.
    """

    kind: str
    format_version: int
    meta: dict[str, Any]
    tensors: dict[str, NDArray[Any]]
    size: int


# --------------------------------------------------------------------------- saving
def save_engine(engine: Engine, path: str | os.PathLike[str]) -> None:
    """Write ``engine``'s complete state to ``path`` (atomic and durable).

    The snapshot is taken at a batch boundary (:meth:`Engine.export_state`), so
    it is consistent even while other threads keep training; training waits
    only while the arrays are copied, not while the file is written.

    Raises:
        CheckpointError: the state cannot be described in JSON (for example an
            encoder timezone given as a ``tzinfo`` without an IANA name).
        OSError: the file cannot be written (the old checkpoint, if any, is kept); the
            message names ``path``.

    Example:
        >>> import os, tempfile
        >>> from livelearn import Engine
        >>> path = os.path.join(tempfile.mkdtemp(), "engine.safetensors")
        >>> with Engine() as engine:
        ...     save_engine(engine, path)
        >>> read_checkpoint(path).kind
        'engine'
    """
    try:
        tensors, state = engine.export_state()
        network = _exact_config(engine.network)
    except ValueError as exc:
        raise CheckpointError(f"cannot save this engine: {exc}") from exc
    engine_config = dict(state["engine"])  # as given; "network" has the exact float32 values
    n_history = int(tensors["history.steps"].shape[0])
    meta: dict[str, Any] = {
        "engine": engine_config,
        "network": network,
        "features": state["features"],
        "targets": state["targets"],
        "counters": state["counters"],
        "history": {"size": n_history, "sparse": bool(engine.features.sparse)},
    }
    _write(path, "engine", meta, tensors)


def save_network(network: Network, path: str | os.PathLike[str]) -> None:
    """Write a :class:`Network` (weights, optimizer state, counters) to ``path``.

    Atomic and durable like :func:`save_engine`; consistent even while other
    threads train the network (the native state export takes its lock).

    Example:
        >>> import os, tempfile
        >>> from livelearn import Network
        >>> path = os.path.join(tempfile.mkdtemp(), "net.safetensors")
        >>> save_network(Network(layers=[4, 8, 1], optimizer="adam"), path)
        >>> load_network(path).optimizer
        'adam'
    """
    state = network.get_state()
    tensors = {f"network.{k}": v for k, v in state.items()}
    _write(path, "network", {"network": _exact_config(network)}, tensors)


def _exact_config(network: Network) -> dict[str, Any]:
    """``get_config()`` with the float32 hyperparameters at full precision, so a
    rebuilt network has bit-identical settings (``get_config`` rounds for display)."""
    config = network.get_config()
    for key in _FLOAT_KEYS:
        config[key] = float(getattr(network, key))
    clip = network.clip_norm
    config["clip_norm"] = None if clip is None else float(clip)
    return config


def _canonical_json(value: Any) -> str:
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot save: the state is not JSON-serialisable ({exc})") from exc


def _little_endian(array: NDArray[Any], name: str) -> NDArray[Any]:
    dtype = array.dtype.newbyteorder("<")
    if dtype not in _CODES:
        raise CheckpointError(f"cannot save tensor {name!r}: unsupported dtype {array.dtype}")
    return np.asarray(array, dtype=dtype, order="C")  # ascontiguousarray makes 0-d 1-d


def _digest(metadata: Mapping[str, str], tensors: Mapping[str, tuple[str, list[int], Any]]) -> str:
    """SHA-256 over the metadata (but ``sha256``) and every tensor, in a canonical order.

    ``tensors`` maps a name to ``(dtype code, shape, bytes-like)``.
    """
    h = hashlib.sha256(_HASH_DOMAIN)
    for key in sorted(metadata):
        if key == "sha256":
            continue
        for part in (key, metadata[key]):
            raw = part.encode("utf-8")
            h.update(struct.pack("<Q", len(raw)))
            h.update(raw)
    for name in sorted(tensors):
        code, shape, data = tensors[name]
        head = json.dumps([name, code, shape], separators=(",", ":")).encode("utf-8")
        h.update(struct.pack("<Q", len(head)))
        h.update(head)
        h.update(struct.pack("<Q", memoryview(data).nbytes))
        h.update(data)
    return h.hexdigest()


def _write(
    path: str | os.PathLike[str], kind: str, meta: dict[str, Any], tensors: Mapping[str, Any]
) -> None:
    from safetensors.numpy import save as st_save

    import livelearn

    body = {"library_version": livelearn.__version__, "saved_at": time.time(), **meta}
    arrays = {name: _little_endian(np.asarray(a), name) for name, a in tensors.items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": kind,
        "livelearn": _canonical_json(body),
    }
    described = {
        name: (_CODES[a.dtype], list(a.shape), a.reshape(-1).view(np.uint8))
        for name, a in arrays.items()
    }
    metadata["sha256"] = _digest(metadata, described)
    data = st_save(arrays, metadata=metadata)
    _atomic_write(os.fspath(path), data)


def _atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, whole.

    An ``OSError`` (disk full, file too large, read-only or missing folder, a folder
    at ``path``...) is raised again with the same errno and ``OSError`` subclass and a
    message that names ``path`` (a bare "File too large" names nothing); the
    temporary file is removed and a checkpoint already at ``path`` is left as it was.
    """
    if not path:
        raise FileNotFoundError(errno.ENOENT, "cannot write checkpoint: the path is empty", path)
    base = os.path.basename(path)
    if base in ("", ".", ".."):  # "models/" would put the temporary file beside "models"
        raise IsADirectoryError(
            errno.EISDIR, "cannot write checkpoint: the path names a folder, not a file", path
        )
    folder = os.path.dirname(os.path.abspath(path))
    tmp: str | None = None
    try:
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:
            # OSError(errno, ...) picks the matching subclass (PermissionError, ...).
            raise OSError(exc.errno, f"cannot write checkpoint: {exc.strerror}", path) from exc
        raise
    _fsync_folder(folder)
    _remove_stale(folder, base)


_STALE_SECONDS = 3600.0


def _remove_stale(folder: str, base: str) -> None:
    """Delete temporary files of saves that were killed mid-write (an hour old or more)."""
    prefix = f".{base}."
    now = time.time()
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        full = os.path.join(folder, name)
        with contextlib.suppress(OSError):
            if now - os.stat(full).st_mtime > _STALE_SECONDS:
                os.unlink(full)


def _fsync_folder(folder: str) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint file without building anything from it.

    Checks the header, the format magic and version, that the file is complete,
    and the checksum; then parses the tensors. Used by :func:`load_engine`,
    :func:`load_network` and ``livelearn inspect``.

    Raises:
        CheckpointError: the file is missing, unreadable, empty, truncated,
            damaged, edited, not a livelearn checkpoint, or from a newer format.

    Example:
        >>> import os, tempfile
        >>> from livelearn import Network
        >>> path = os.path.join(tempfile.mkdtemp(), "net.safetensors")
        >>> Network(layers=[2, 1]).save(path)
        >>> ckpt = read_checkpoint(path)
        >>> ckpt.kind, ckpt.format_version, sorted(ckpt.tensors)[:2]
        ('network', 1, ['network.counters.rejected_steps', 'network.counters.steps'])
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {name!r}: {exc.strerror or exc}") from exc
    return _verify(raw, name)


def _fail(where: str, message: str) -> CheckpointError:
    return CheckpointError(f"{where}: {message}")


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (native errors can span several)."""
    return " ".join(str(exc).split())


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _verify(raw: bytes, where: str) -> Checkpoint:
    """Everything :func:`read_checkpoint` promises, on the file's bytes."""
    size = len(raw)
    if size == 0:
        raise _fail(where, "the file is empty (0 bytes); not a livelearn checkpoint")
    if size < 8:
        raise _fail(where, f"the file is only {size} bytes; not a livelearn checkpoint")
    (header_len,) = struct.unpack("<Q", raw[:8])
    if header_len == 0 or header_len > _MAX_HEADER_BYTES:
        raise _fail(
            where,
            f"not a livelearn checkpoint (implausible safetensors header size {header_len})",
        )
    if header_len > size - 8:
        raise _fail(
            where,
            f"the file is truncated or not a checkpoint (header of {header_len} bytes, "
            f"but only {size - 8} bytes follow)",
        )
    try:
        text = raw[8 : 8 + header_len].decode("utf-8")
        header, end = json.JSONDecoder(object_pairs_hook=_reject_duplicates).raw_decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        message = f"corrupt or foreign file: the header is not valid JSON ({exc})"
        raise _fail(where, message) from exc
    if text[end:].strip(" "):
        raise _fail(where, "corrupt header: unexpected bytes after the JSON header")
    if not isinstance(header, dict):
        raise _fail(where, "corrupt header: not a JSON object")

    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise _fail(where, f"not a livelearn checkpoint (no {FORMAT!r} format marker)")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise _fail(where, "corrupt header: metadata entries must be strings")
    version_text = metadata.get("format_version", "")
    if not version_text.isdigit():
        raise _fail(where, f"corrupt header: bad format_version {version_text!r}")
    version = int(version_text)
    if version > FORMAT_VERSION:
        raise _fail(
            where,
            f"format version {version} was written by a newer livelearn; this one reads "
            f"version {FORMAT_VERSION} (upgrade livelearn)",
        )
    if version != FORMAT_VERSION:
        raise _fail(where, f"unsupported format version {version} (expected {FORMAT_VERSION})")
    kind = metadata.get("kind")
    if kind not in ("engine", "network"):
        raise _fail(where, f"corrupt header: unknown checkpoint kind {kind!r}")
    if len(header) > _MAX_TENSORS:
        raise _fail(where, f"corrupt header: {len(header)} tensors")

    # Tensor entries: known dtype, sane shape, byte range inside the file.
    data_start = 8 + header_len
    data_len = size - data_start
    spans: list[tuple[int, int]] = []
    described: dict[str, tuple[str, list[int], memoryview]] = {}
    view = memoryview(raw)
    expected_end = 0
    for tname, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _fail(where, f"corrupt header: malformed entry for tensor {tname!r}")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if code not in _DTYPES:
            raise _fail(where, f"corrupt header: tensor {tname!r} has unsupported dtype {code!r}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise _fail(where, f"corrupt header: tensor {tname!r} has a bad shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise _fail(where, f"corrupt header: tensor {tname!r} has bad offsets {offsets!r}")
        nbytes = math.prod(shape) * _DTYPES[code].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise _fail(
                where,
                f"corrupt header: tensor {tname!r} of shape {shape} needs {nbytes} bytes, "
                f"the header gives it {offsets[1] - offsets[0]}",
            )
        expected_end = max(expected_end, offsets[1])
        spans.append((offsets[0], offsets[1]))
        if offsets[1] <= data_len:
            chunk = view[data_start + offsets[0] : data_start + offsets[1]]
            described[tname] = (code, shape, chunk)
    if expected_end > data_len:
        raise _fail(
            where,
            f"the file is truncated: {data_start + expected_end} bytes expected, {size} found",
        )
    if expected_end < data_len:
        raise _fail(
            where, f"corrupt file: {data_len - expected_end} unexpected bytes after the tensors"
        )
    spans.sort()
    position = 0
    for lo, hi in spans:
        if lo != position:
            raise _fail(where, "corrupt header: tensor byte ranges overlap or leave gaps")
        position = hi

    checksum = metadata.get("sha256", "")
    if _digest(metadata, described) != checksum:
        raise _fail(
            where,
            "checksum mismatch: the file was damaged or edited after it was written",
        )
    del described, view  # release the memoryviews before parsing

    try:
        meta = json.loads(
            metadata.get("livelearn", ""),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError) as exc:
        raise _fail(where, f"corrupt metadata: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise _fail(where, "corrupt metadata: not a JSON object")

    from safetensors.numpy import load as st_load

    try:
        tensors = st_load(raw)
    except Exception as exc:  # the parser's own error types vary between versions
        raise _fail(where, f"corrupt tensors: {exc}") from exc
    for tname, array in tensors.items():
        entry = header.get(tname)
        if (
            entry is None
            or array.dtype != _DTYPES[entry["dtype"]]
            or list(array.shape) != entry["shape"]
        ):
            raise _fail(where, f"corrupt tensors: {tname!r} does not match its header entry")
    if set(tensors) != set(header):
        raise _fail(where, "corrupt tensors: the tensor set does not match the header")
    return Checkpoint(str(kind), version, meta, dict(tensors), size)


# --------------------------------------------------------------------------- validation
def _section(meta: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = meta.get(key)
    if not isinstance(value, dict):
        raise _fail(where, f"invalid metadata: {key!r} is missing or not an object")
    return value


def _check_tensor(
    tensors: Mapping[str, NDArray[Any]],
    name: str,
    dtype: np.dtype[Any] | tuple[np.dtype[Any], ...],
    shape: tuple[int, ...],
    where: str,
) -> NDArray[Any]:
    """The tensor ``name``, checked; ``dtype`` may list every accepted dtype."""
    allowed = dtype if isinstance(dtype, tuple) else (dtype,)
    array = tensors.get(name)
    if array is None:
        raise _fail(where, f"missing tensor {name!r}")
    if array.dtype not in allowed:
        expected = " or ".join(str(d) for d in allowed)
        raise _fail(where, f"tensor {name!r} has dtype {array.dtype}, expected {expected}")
    if tuple(array.shape) != shape:
        raise _fail(where, f"tensor {name!r} has shape {tuple(array.shape)}, expected {shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise _fail(where, f"tensor {name!r} holds non-finite values")
    return array


def _network_config(
    meta: Mapping[str, Any], tensors: Mapping[str, NDArray[Any]], where: str
) -> dict[str, Any]:
    """The saved network configuration, its layer sizes checked against the weight
    tensors before anything is allocated from it."""
    config = _section(meta, "network", where)
    layers = config.get("layers")
    if (
        not isinstance(layers, list)
        or len(layers) < 2
        or not all(_is_int(n) and n >= 1 for n in layers)
    ):
        raise _fail(where, f"invalid network configuration: layers {layers!r}")
    f32 = _DTYPES["F32"]
    for i in range(len(layers) - 1):
        shape = (layers[i], layers[i + 1])
        _check_tensor(tensors, f"network.layers.{i}.weight", f32, shape, where)
    return config


def _network_state(
    network: Network, tensors: Mapping[str, NDArray[Any]], where: str
) -> dict[str, NDArray[Any]]:
    state: dict[str, NDArray[Any]] = {}
    for name, shape in network._state_layout():
        state[name] = _check_tensor(tensors, f"network.{name}", _DTYPES["F32"], tuple(shape), where)
    for name in ("counters.steps", "counters.rejected_steps"):
        counter = _check_tensor(tensors, f"network.{name}", _DTYPES["I64"], (), where)
        if int(counter) < 0:
            raise _fail(where, f"tensor 'network.{name}' is negative")
        state[name] = counter
    return state


def _check_names(tensors: Mapping[str, NDArray[Any]], expected: set[str], where: str) -> None:
    extra = sorted(set(tensors) - expected)
    if extra:
        shown = ", ".join(repr(e) for e in extra[:5])
        raise _fail(where, f"unexpected tensors for this configuration: {shown}")


def _history(
    tensors: Mapping[str, NDArray[Any]],
    n_inputs: int,
    n_outputs: int,
    sparse: bool,
    capacity: int,
    network_steps: int,
    where: str,
) -> dict[str, NDArray[Any]]:
    steps_array = tensors.get("history.steps")
    if steps_array is None or steps_array.ndim != 1:
        raise _fail(where, "missing or malformed tensor 'history.steps'")
    n = int(steps_array.shape[0])
    if n > capacity:
        raise _fail(where, f"history holds {n} examples but history_size is {capacity}")
    f32, f64, i64, i32 = (_DTYPES[c] for c in ("F32", "F64", "I64", "I32"))
    out = {
        "steps": _check_tensor(tensors, "history.steps", i64, (n,), where),
        "targets": _check_tensor(tensors, "history.targets", f32, (n, n_outputs), where),
        "predictions": _check_tensor(tensors, "history.predictions", f32, (n, n_outputs), where),
        # float64 since losses are computed in double; float32 in older checkpoints.
        "losses": _check_tensor(tensors, "history.losses", (f64, f32), (n,), where),
        "timestamps": _check_tensor(tensors, "history.timestamps", f64, (n,), where),
    }
    steps = out["steps"]
    if n and (steps[0] < 1 or (np.diff(steps) <= 0).any() or steps[-1] > network_steps):
        raise _fail(where, "history steps are not increasing within the network's steps")
    if sparse:
        indptr = _check_tensor(tensors, "history.indptr", i64, (n + 1,), where)
        nnz = int(indptr[-1])
        if indptr[0] != 0 or (np.diff(indptr) < 0).any() or nnz < 0:
            raise _fail(where, "tensor 'history.indptr' is not a valid CSR row pointer")
        indices = _check_tensor(tensors, "history.indices", i32, (nnz,), where)
        if nnz and (indices.min() < 0 or indices.max() >= n_inputs):
            raise _fail(where, "tensor 'history.indices' holds out-of-range feature indices")
        out["indptr"] = indptr
        out["indices"] = indices
        out["values"] = _check_tensor(tensors, "history.values", f32, (nnz,), where)
    else:
        out["features"] = _check_tensor(tensors, "history.features", f32, (n, n_inputs), where)
    return out


def _counters(meta: Mapping[str, Any], where: str) -> dict[str, Any]:
    counters = _section(meta, "counters", where)
    for key in ("trained", "skipped", "rejected", "failed"):
        value = counters.get(key)
        if not _is_int(value) or value < 0:
            raise _fail(where, f"invalid counters: {key!r} must be a non-negative int")
    loss_sum = counters.get("loss_sum")
    if not isinstance(loss_sum, (int, float)) or isinstance(loss_sum, bool):
        raise _fail(where, "invalid counters: 'loss_sum' must be a number")
    if not math.isfinite(loss_sum) or loss_sum < 0:
        raise _fail(where, "invalid counters: 'loss_sum' must be finite and >= 0")
    for key in ("last_loss", "recent_loss", "last_example_time"):
        value = counters.get(key, None)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise _fail(where, f"invalid counters: {key!r} must be a finite number or null")
    return counters


# --------------------------------------------------------------------------- loading
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
        >>> net.save(path)
        >>> x = np.ones((1, 2), np.float32)
        >>> bool((Network.load(path).predict(x) == net.predict(x)).all())
        True
    """
    where = os.fspath(path)
    ckpt = read_checkpoint(path)
    config = _network_config(ckpt.meta, ckpt.tensors, where)
    try:
        network = Network.from_config(config)
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"invalid network configuration: {exc}") from exc
    if _exact_config(network) != config:
        raise _fail(where, "invalid network configuration: it does not rebuild the same network")
    state = _network_state(network, ckpt.tensors, where)
    if ckpt.kind == "network":
        _check_names(ckpt.tensors, {f"network.{k}" for k in state}, where)
    try:
        network.set_state(state)
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"invalid network state: {exc}") from exc
    return network


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
        ...     engine.save(path)
        >>> with Engine.load(path) as restored:
        ...     restored.stats().steps, restored.config["optimizer"]
        (1, 'adam')
    """
    from livelearn.engine import Engine

    where = os.fspath(path)
    ckpt = read_checkpoint(path)
    if ckpt.kind != "engine":
        raise _fail(where, "this is a Network checkpoint (Network.save); use Network.load")
    meta = ckpt.meta
    engine_config = _section(meta, "engine", where)
    network_config = _network_config(meta, ckpt.tensors, where)
    counters = _counters(meta, where)
    try:
        encoder = encoder_from_config(_section(meta, "features", where))
        mapper = TargetMapper.from_config(_section(meta, "targets", where), callable=targets)
    except (TypeError, ValueError) as exc:
        if targets is None and _section(meta, "targets", where).get("type") == "callable":
            raise _fail(
                where,
                "the engine used a callable target; pass it: Engine.load(path, targets=fn)",
            ) from exc
        raise _fail(where, f"invalid configuration: {_one_line(exc)}") from exc
    layers = network_config["layers"]
    if layers[0] != encoder.n_inputs or layers[-1] != mapper.n_outputs:
        raise _fail(where, "invalid configuration: layers do not match the encoder and targets")
    # The engine builds its network from hidden_layers: check them against the
    # layers the weight tensors were verified to have *before* anything is
    # allocated, so an edited size cannot make loading allocate gigabytes.
    hidden = engine_config.get("hidden_layers")
    if not isinstance(hidden, list) or hidden != layers[1:-1]:
        raise _fail(
            where,
            f"invalid configuration: engine hidden_layers {hidden!r} do not match the "
            f"network's layers {layers!r}",
        )
    for key in ("activation", "loss", "optimizer"):  # the native constructor's error is unclear
        if key in engine_config and not isinstance(engine_config[key], str):
            raise _fail(
                where,
                f"invalid engine configuration: {key} must be a string, got {engine_config[key]!r}",
            )
    try:
        engine = Engine(features=encoder, targets=mapper, **engine_config)
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"invalid engine configuration: {_one_line(exc)}") from exc
    try:
        # Engine.config rounds the learning rate for display; restore it exactly.
        learning_rate = network_config.get("learning_rate")
        if isinstance(learning_rate, float) and math.isfinite(learning_rate) and learning_rate > 0:
            try:
                engine.network.learning_rate = learning_rate
            except (TypeError, ValueError) as exc:
                raise _fail(where, f"invalid network configuration: {_one_line(exc)}") from exc
        rebuilt = engine.config
        same = all(rebuilt.get(k) == v for k, v in engine_config.items())
        if _exact_config(engine.network) != network_config or not same:
            raise _fail(where, "invalid configuration: the engine does not rebuild the same way")
        net_state = _network_state(engine.network, ckpt.tensors, where)
        steps = int(net_state["counters.steps"])
        history = _history(
            ckpt.tensors,
            encoder.n_inputs,
            mapper.n_outputs,
            encoder.sparse,
            int(engine.config["history_size"]),
            steps,
            where,
        )
        expected = {f"network.{k}" for k in net_state} | {f"history.{k}" for k in history}
        _check_names(ckpt.tensors, expected, where)
        tensors: dict[str, NDArray[Any]] = {f"network.{k}": v for k, v in net_state.items()}
        tensors.update({f"history.{k}": v for k, v in history.items()})
        try:
            engine.import_state(tensors, {"counters": counters})
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(where, f"invalid engine state: {exc}") from exc
        saver: AutoSaver | None = getattr(engine, "_autosave", None)
        if saver is not None:
            saver.mark_saved(int(counters["trained"]))
        if initialize:
            engine.initialize()
    except BaseException:
        engine.close(wait=True)
        raise
    return engine


# --------------------------------------------------------------------------- autosave
class AutoSaver:
    """Periodic checkpoints for ``Engine(checkpoint_path=..., checkpoint_every=N)``.

    A save is due after ``every`` more trained steps and/or ``interval`` more
    seconds since the last one. The engine's dispatcher calls :meth:`maybe_save`
    after each batch; a due save runs in a background thread (one at a time), so
    training only pauses while the state is copied.

    Example:
        >>> saver = AutoSaver("model.safetensors", every=1000, interval=None)
        >>> saver.config()["checkpoint_every"]
        1000
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        every: int | None,
        interval: float | None,
    ) -> None:
        if path is None:
            raise ValueError(
                "checkpoint_path: required with checkpoint_every or checkpoint_interval"
            )
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"checkpoint_path: must be a non-empty path, got {path!r}")
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1
        ):
            raise ValueError(f"checkpoint_every: must be an int >= 1 or None, got {every!r}")
        if interval is not None and (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not math.isfinite(interval)
            or interval <= 0
        ):
            raise ValueError(
                f"checkpoint_interval: must be a number of seconds > 0 or None, got {interval!r}"
            )
        if every is None and interval is None:
            raise ValueError(
                "checkpoint_path: give checkpoint_every (steps) and/or checkpoint_interval "
                "(seconds) to say how often to save"
            )
        self.path = os.fspath(path)
        self.every = None if every is None else int(every)
        self.interval = None if interval is None else float(interval)
        self._last_steps = 0
        self._last_time = time.monotonic()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self.saves = 0
        self.failures = 0

    def config(self) -> dict[str, Any]:
        """The ``checkpoint_*`` entries of :attr:`Engine.config`."""
        return {
            "checkpoint_path": self.path,
            "checkpoint_every": self.every,
            "checkpoint_interval": self.interval,
        }

    def mark_saved(self, steps: int) -> None:
        """Count the next period from ``steps`` trained steps and now."""
        self._last_steps = steps
        self._last_time = time.monotonic()

    def maybe_save(self, engine: Engine) -> None:
        """Start a background save if one is due and none is running."""
        if self._busy.locked():
            return
        steps = engine.stats().steps
        due = (self.every is not None and steps - self._last_steps >= self.every) or (
            self.interval is not None and time.monotonic() - self._last_time >= self.interval
        )
        if not due or not self._busy.acquire(blocking=False):
            return
        self.mark_saved(steps)
        thread = threading.Thread(
            target=self._save, args=(engine,), name="livelearn-autosave", daemon=False
        )
        thread.start()
        self._thread = thread  # published once started: wait() may join it at once

    def _save(self, engine: Engine) -> None:
        try:
            save_engine(engine, self.path)
            self.saves += 1
        except Exception as exc:  # never take the dispatcher down; say so loudly
            self.failures += 1
            logger.error("autosave to %s failed: %s: %s", self.path, type(exc).__name__, exc)
        finally:
            self._busy.release()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a running background save to finish."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
