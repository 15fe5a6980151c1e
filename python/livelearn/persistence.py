"""Engines and networks to and from checkpoint files, through their public state API.

The layer between :mod:`livelearn.checkpoint_format` (bytes on disk) and the
classes that have ``save``/``load`` methods. It knows neither ``Engine`` nor
``Network``: it reads them through their public state API (``export_state``,
``import_state``, ``get_state``, ``set_state``, ``get_config``) and builds new ones
with the class it is given (``cls(**config)``), so :mod:`livelearn.network` and
:mod:`livelearn.engine` import it, never the other way round. The public entry
points with the usual classes filled in are in :mod:`livelearn.checkpoint`.

Who checks what when loading:

* the format module: the file (framing, magic, version, checksum);
* this module: what the file says about the content (sections present, the
  configuration rebuilds the same network, network tensors stored as float32
  with int64 counters and finite values, the history's layout, the counters), and
  that the sizes the configuration claims are those of the weight tensors in the
  file *before* anything is allocated from them;
* the native core (``set_state``): the network state's layout -- names and
  shapes -- against the network the configuration built. Its ``ValueError`` is
  reported as :class:`~livelearn.CheckpointError`, as every problem here is.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from livelearn import checkpoint_format as fmt
from livelearn._version import __version__
from livelearn.errors import CheckpointError
from livelearn.features import Encoder, encoder_from_config
from livelearn.targets import TargetFn, TargetMapper
from livelearn.validation import is_int

__all__ = [
    "EngineState",
    "NetworkState",
    "load_engine",
    "load_network",
    "read_checkpoint",
    "save_engine",
    "save_network",
]


class NetworkState(Protocol):
    """What this module needs of a network (``livelearn.Network`` has it)."""

    def get_config(self) -> dict[str, Any]: ...
    def get_state(self) -> dict[str, NDArray[Any]]: ...
    def set_state(self, state: dict[str, NDArray[Any]]) -> None: ...
    @property
    def steps(self) -> int: ...


class EngineState(Protocol):
    """What this module needs of an engine (``livelearn.Engine`` has it)."""

    def export_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]: ...
    def import_state(
        self, tensors: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]
    ) -> None: ...
    def initialize(self) -> Any: ...
    def close(self, wait: bool = True, timeout: float | None = None) -> None: ...
    @property
    def network(self) -> Any: ...
    @property
    def features(self) -> Encoder: ...
    @property
    def config(self) -> dict[str, Any]: ...


N = TypeVar("N", bound=NetworkState)
E = TypeVar("E", bound=EngineState)

_F32, _F64, _I32, _I64 = (fmt.DTYPES[c] for c in ("F32", "F64", "I32", "I64"))


@contextmanager
def _as_checkpoint_error() -> Iterator[None]:
    """The format module's errors are the user's CheckpointError."""
    try:
        yield
    except fmt.FormatError as exc:
        raise CheckpointError(str(exc)) from exc


def _fail(where: str, message: str) -> CheckpointError:
    return CheckpointError(f"{where}: {message}")


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (native errors can span several)."""
    return " ".join(str(exc).split())


# --------------------------------------------------------------------------- saving
def _write(
    path: str | os.PathLike[str],
    kind: str,
    meta: Mapping[str, Any],
    tensors: Mapping[str, Any],
    version: int = 1,
) -> None:
    body = {"library_version": __version__, "saved_at": time.time(), **meta}
    with _as_checkpoint_error():
        data = fmt.encode(kind, body, tensors, version=version)
    fmt.atomic_write(os.fspath(path), data)


def save_engine(engine: EngineState, path: str | os.PathLike[str]) -> None:
    """Write ``engine``'s complete state to ``path`` (atomic and durable).

    The snapshot is taken at a batch boundary (``export_state``), so it is
    consistent even while other threads keep training; training waits only while
    the arrays are copied, not while the file is written.

    Raises:
        CheckpointError: the state cannot be described in JSON (for example an
            encoder timezone given as a ``tzinfo`` without an IANA name).
        OSError: the file cannot be written (the old checkpoint, if any, is kept); the
            message names ``path``.
    """
    try:
        tensors, state = engine.export_state()
    except ValueError as exc:
        raise CheckpointError(f"cannot save this engine: {exc}") from exc
    meta: dict[str, Any] = {
        "engine": dict(state["engine"]),
        "network": _as_stored(state["network"]),
        "features": state["features"],
        "targets": state["targets"],
        "counters": state["counters"],
        "history": {
            "size": int(tensors["history.steps"].shape[0]),
            "sparse": bool(engine.features.sparse),
        },
    }
    # Version 2 adds the examples awaiting their outcome (delayed feedback); a
    # file without them stays version 1, readable by earlier livelearn.
    version = 1
    if state.get("join") is not None:
        meta["join"] = state["join"]
        version = 2
    _write(path, "engine", meta, tensors, version)


def save_network(
    network: NetworkState,
    path: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write a network (weights, optimizer state, counters) to ``path``.

    Atomic and durable like :func:`save_engine`; consistent even while other
    threads train the network (the native state export takes its lock).
    ``metadata`` adds JSON sections to the file (read back in
    :attr:`Checkpoint.meta <livelearn.checkpoint.Checkpoint>`); ``"network"`` is
    reserved.
    """
    extra = dict(metadata or {})
    if "network" in extra:
        raise ValueError("metadata: the 'network' section is reserved")
    tensors = {f"network.{k}": v for k, v in network.get_state().items()}
    _write(path, "network", {**extra, "network": _as_stored(network.get_config())}, tensors)


def _as_stored(config: Mapping[str, Any]) -> dict[str, Any]:
    """A network configuration as version-1 files hold it: each float32
    hyperparameter as the float64 of that float32 (``0.05000000074505806``).

    ``get_config()`` gives the shortest decimal of the same float32 (``0.05``);
    both rebuild the same network, and readers accept either, but earlier
    livelearn versions compare the float64 form exactly, so it is the one
    written: they keep reading new files, and the format version stays 1.
    """
    return {k: float(np.float32(v)) if isinstance(v, float) else v for k, v in config.items()}


# --------------------------------------------------------------------------- loading
def read_checkpoint(path: str | os.PathLike[str]) -> fmt.Checkpoint:
    """Read and verify a checkpoint file without building anything from it.

    Raises:
        CheckpointError: the file is missing, unreadable, not a regular file,
            empty, truncated, damaged, edited, not a livelearn checkpoint, or from
            a newer format.
    """
    with _as_checkpoint_error():
        return fmt.read(path)


def load_network(path: str | os.PathLike[str], cls: Callable[..., N]) -> N:
    """Build ``cls(**config)`` from the network checkpoint (or the network of an
    engine checkpoint) at ``path`` and load its state, bit for bit.

    Raises:
        CheckpointError: for any damaged, foreign or invalid file.
    """
    where = os.fspath(path)
    ckpt = read_checkpoint(path)
    config = _with_legacy(cls, _network_config(ckpt.meta, ckpt.tensors, where))
    state = _network_tensors(ckpt.tensors, where)
    if ckpt.kind == "network":
        _check_prefixes(ckpt.tensors, ("network.",), where)
    try:
        network = cls(**config)
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"invalid network configuration: {_one_line(exc)}") from exc
    if not _same_config(network.get_config(), config):
        raise _fail(where, "invalid network configuration: it does not rebuild the same network")
    _set_network_state(network, state, where)
    return network


#: Engine options whose value the network section holds too (and exactly).
_LEARNING_RATE = "learning_rate"


def load_engine(
    path: str | os.PathLike[str],
    cls: Callable[..., E],
    targets: TargetFn | None = None,
    initialize: bool = True,
    clock: Any = None,
) -> E:
    """Rebuild an engine saved by :func:`save_engine` with ``cls(**config)``,
    exactly where it stopped (configuration, weights, optimizer state, counters,
    history). ``targets`` supplies a callable target (functions are never stored).

    Raises:
        CheckpointError: for any damaged, foreign or invalid file; nothing is
            half-loaded (the engine built is closed again).
    """
    where = os.fspath(path)
    ckpt = read_checkpoint(path)
    if ckpt.kind != "engine":
        raise _fail(where, "this is a Network checkpoint (Network.save); use Network.load")
    meta = ckpt.meta
    engine_config = _section(meta, "engine", where)
    # A field-aware model (FieldNetwork) has no layers; files written before it
    # existed have no "model" and hold the MLP.
    field = "n_fields" in _section(meta, "network", where)
    if field != (engine_config.get("model") == "field"):
        raise _fail(where, "invalid configuration: engine model and network do not match")
    network_config = (
        _field_config(meta, ckpt.tensors, where)
        if field
        else _network_config(meta, ckpt.tensors, where)
    )
    net_state = _network_tensors(ckpt.tensors, where)
    counters = _counters(meta, where)
    target_config = _section(meta, "targets", where)
    try:
        encoder = encoder_from_config(_section(meta, "features", where))
        mapper = TargetMapper.from_config(target_config, callable=targets)
    except (TypeError, ValueError) as exc:
        if targets is None and target_config.get("type") == "callable":
            raise _fail(
                where,
                "the engine used a callable target; pass it: Engine.load(path, targets=fn)",
            ) from exc
        raise _fail(where, f"invalid configuration: {_one_line(exc)}") from exc
    if not field:
        _check_layers(network_config, engine_config, encoder.n_inputs, mapper.n_outputs, where)
    for key in ("activation", "loss", "optimizer"):  # the native constructor's error is unclear
        if key in engine_config and not isinstance(engine_config[key], str):
            raise _fail(
                where,
                f"invalid engine configuration: {key} must be a string, got {engine_config[key]!r}",
            )
    options = dict(engine_config)
    options.setdefault("model", "mlp")
    join = meta.get("join")
    if ckpt.format_version < 2 and join is not None:
        raise _fail(where, "a version-1 checkpoint cannot hold awaiting examples")
    if clock is not None:
        options["clock"] = clock
    elif options.get("clock") == "custom":
        raise _fail(where, "the engine used a custom clock; pass it: Engine.load(path, clock=...)")
    # The network section says whether the output bias is a running mean; a
    # file from before the option existed was written by one without it.
    options["running_bias"] = bool(network_config.get("running_bias", False))
    if _LEARNING_RATE in options and not field:
        # Files written before get_config() was exact hold the engine's learning
        # rate rounded to 7 digits; the network section holds it exactly.
        options[_LEARNING_RATE] = network_config.get(_LEARNING_RATE)
    try:
        engine = cls(features=encoder, targets=mapper, **options)
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"invalid engine configuration: {_one_line(exc)}") from exc
    try:
        rebuilt = engine.config
        if clock is not None and "clock" in engine_config:
            rebuilt = {**rebuilt, "clock": engine_config["clock"]}
        same = all(
            _same_value(rebuilt.get(k), v) for k, v in engine_config.items() if k != _LEARNING_RATE
        )
        if _LEARNING_RATE in engine_config and not field:
            same = same and _same_learning_rate(
                engine_config[_LEARNING_RATE], network_config.get(_LEARNING_RATE)
            )
        network_config = _with_legacy(type(engine.network), network_config)
        if not same or not _same_config(engine.network.get_config(), network_config):
            raise _fail(where, "invalid configuration: the engine does not rebuild the same way")
        # The native core checks the state's layout against the network just
        # built (a fresh one: nothing of the caller's is touched if it refuses).
        _set_network_state(engine.network, net_state, where)
        history = _history(
            ckpt.tensors,
            encoder.n_inputs,
            mapper.n_outputs,
            encoder.sparse,
            int(rebuilt["history_size"]),
            int(engine.network.steps),
            where,
        )
        prefixes = ("network.", "join.") if join is not None else ("network.",)
        _check_prefixes(ckpt.tensors, prefixes, where, allowed={f"history.{k}" for k in history})
        tensors: dict[str, NDArray[Any]] = {f"network.{k}": v for k, v in net_state.items()}
        tensors.update({f"history.{k}": v for k, v in history.items()})
        if join is not None:
            tensors.update({k: v for k, v in ckpt.tensors.items() if k.startswith("join.")})
        try:
            engine.import_state(tensors, {"counters": counters, "join": join})
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(where, f"invalid engine state: {_one_line(exc)}") from exc
        if initialize:
            engine.initialize()
    except BaseException:
        engine.close(wait=True)
        raise
    return engine


# --------------------------------------------------------------------------- checks
def _same_value(a: Any, b: Any) -> bool:
    """Equal, or two numbers that are the same float32 (the native core stores
    float32; files written before get_config() was exact hold the float64 of it)."""
    if a == b:
        return True
    numbers = (int, float)
    if (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        with np.errstate(over="ignore"):
            return bool(np.float32(a) == np.float32(b))
    return False


def _with_legacy(cls: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """A saved configuration with the options it predates at the values its
    model behaved as (``cls.LEGACY_DEFAULTS``, e.g. ``running_bias=False``)."""
    legacy: Mapping[str, Any] = getattr(cls, "LEGACY_DEFAULTS", {})
    return {**legacy, **config}


def _same_config(rebuilt: Mapping[str, Any], saved: Mapping[str, Any]) -> bool:
    return set(rebuilt) == set(saved) and all(_same_value(rebuilt[k], saved[k]) for k in saved)


def _same_learning_rate(engine_value: Any, network_value: Any) -> bool:
    """The engine section's learning rate agrees with the network section's: the
    same float32, or its 7-digit rounding (what files written before
    get_config() was exact hold)."""
    if _same_value(engine_value, network_value):
        return True
    if not isinstance(network_value, float) or not isinstance(engine_value, (int, float)):
        return False
    return math.isfinite(network_value) and float(f"{network_value:.7g}") == engine_value


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
    _check_finite(array, name, where)
    return array


def _check_finite(array: NDArray[Any], name: str, where: str) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise _fail(where, f"tensor {name!r} holds non-finite values")


def _network_config(
    meta: Mapping[str, Any], tensors: Mapping[str, NDArray[Any]], where: str
) -> dict[str, Any]:
    """The saved network configuration. Its layer sizes must be the shapes of
    the weight tensors in the file, so the network built from it is no larger
    than the file (the native core checks the whole state's layout later)."""
    config = _section(meta, "network", where)
    layers = config.get("layers")
    if (
        not isinstance(layers, list)
        or len(layers) < 2
        or not all(is_int(n) and int(n) >= 1 for n in layers)
    ):
        raise _fail(where, f"invalid network configuration: layers {layers!r}")
    for i in range(len(layers) - 1):
        name = f"network.layers.{i}.weight"
        weight = tensors.get(name)
        if weight is None:
            raise _fail(where, f"missing tensor {name!r}")
        expected = (layers[i], layers[i + 1])
        if tuple(weight.shape) != expected:
            raise _fail(
                where, f"tensor {name!r} has shape {tuple(weight.shape)}, expected {expected}"
            )
    return config


def _check_layers(
    network_config: Mapping[str, Any],
    engine_config: Mapping[str, Any],
    n_inputs: int,
    n_outputs: int,
    where: str,
) -> None:
    layers = network_config["layers"]
    if layers[0] != n_inputs or layers[-1] != n_outputs:
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


def _field_config(
    meta: Mapping[str, Any], tensors: Mapping[str, NDArray[Any]], where: str
) -> dict[str, Any]:
    """The saved field-model configuration; its table sizes must be the shapes
    of the tensors in the file (so loading allocates no more than the file holds)."""
    config = _section(meta, "network", where)
    n_buckets, dim = config.get("n_buckets"), config.get("embedding_dim")
    if not (is_int(n_buckets) and is_int(dim)):
        raise _fail(where, "invalid network configuration: n_buckets/embedding_dim")
    embedding = tensors.get("network.embedding")
    if embedding is None or tuple(embedding.shape) != (int(n_buckets), int(dim)):
        raise _fail(where, "tensor 'network.embedding' is missing or does not match the config")
    return config


def _network_tensors(tensors: Mapping[str, NDArray[Any]], where: str) -> dict[str, NDArray[Any]]:
    """The ``network.*`` tensors, prefix removed. Checkpoints store parameters and
    optimizer buffers as finite float32 and the counters as int64; which names
    and shapes there must be is the native core's to say (``set_state``)."""
    state: dict[str, NDArray[Any]] = {}
    for name, array in tensors.items():
        if not name.startswith("network."):
            continue
        expected = _I64 if name.startswith("network.counters.") else _F32
        if array.dtype != expected:
            raise _fail(where, f"tensor {name!r} has dtype {array.dtype}, expected {expected}")
        _check_finite(array, name, where)
        state[name[len("network.") :]] = array
    return state


def _set_network_state(network: NetworkState, state: dict[str, NDArray[Any]], where: str) -> None:
    try:
        network.set_state(state)
    except (TypeError, ValueError) as exc:
        raise _fail(where, f"invalid network state: {_one_line(exc)}") from exc


def _check_prefixes(
    tensors: Mapping[str, NDArray[Any]],
    prefixes: tuple[str, ...],
    where: str,
    allowed: set[str] | None = None,
) -> None:
    extra = sorted(
        n for n in tensors if not n.startswith(prefixes) and (allowed is None or n not in allowed)
    )
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
    out = {
        "steps": _check_tensor(tensors, "history.steps", _I64, (n,), where),
        "targets": _check_tensor(tensors, "history.targets", _F32, (n, n_outputs), where),
        "predictions": _check_tensor(tensors, "history.predictions", _F32, (n, n_outputs), where),
        # float64 since losses are computed in double; float32 in older checkpoints.
        "losses": _check_tensor(tensors, "history.losses", (_F64, _F32), (n,), where),
        "timestamps": _check_tensor(tensors, "history.timestamps", _F64, (n,), where),
    }
    steps = out["steps"]
    if n and (steps[0] < 1 or (np.diff(steps) <= 0).any() or steps[-1] > network_steps):
        raise _fail(where, "history steps are not increasing within the network's steps")
    if sparse:
        indptr = _check_tensor(tensors, "history.indptr", _I64, (n + 1,), where)
        nnz = int(indptr[-1])
        if indptr[0] != 0 or (np.diff(indptr) < 0).any() or nnz < 0:
            raise _fail(where, "tensor 'history.indptr' is not a valid CSR row pointer")
        indices = _check_tensor(tensors, "history.indices", _I32, (nnz,), where)
        if nnz and (indices.min() < 0 or indices.max() >= n_inputs):
            raise _fail(where, "tensor 'history.indices' holds out-of-range feature indices")
        out["indptr"] = indptr
        out["indices"] = indices
        out["values"] = _check_tensor(tensors, "history.values", _F32, (nnz,), where)
    else:
        out["features"] = _check_tensor(tensors, "history.features", _F32, (n, n_inputs), where)
    return out


def _counters(meta: Mapping[str, Any], where: str) -> dict[str, Any]:
    counters = _section(meta, "counters", where)
    for key in ("trained", "skipped", "rejected", "failed"):
        value = counters.get(key)
        if not is_int(value) or int(value) < 0:
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
