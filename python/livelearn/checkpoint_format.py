"""The checkpoint file format: bytes on disk, nothing about engines or networks.

A checkpoint is one `safetensors <https://github.com/huggingface/safetensors>`_ file:

* every array is a named tensor (little-endian ``F32``, ``F64``, ``I32`` or ``I64``);
* everything else is in the safetensors ``__metadata__`` string map: ``format``
  (:data:`FORMAT`), ``format_version`` (:data:`FORMAT_VERSION`), ``kind`` (what the
  file holds: ``"engine"`` or ``"network"``), ``livelearn`` (canonical JSON, the
  caller's description of the content) and ``sha256``;
* ``sha256`` (:func:`digest`) covers the other metadata entries and every tensor's
  name, dtype, shape and bytes, in name order, so any damage or hand edit is
  detected before anything is parsed further.

No pickle anywhere: reading a file never executes code. :func:`write` goes to a
temporary file in the same folder, flushed and fsynced, then atomically renamed over
the target (and the folder fsynced), so a crash at any moment -- ``kill -9``
included -- leaves either the old or the new file, both readable.

:func:`read` opens regular files only (a FIFO, a device such as ``/dev/zero`` or a
folder is refused before anything is read), reads the header first and refuses a
file whose size the header does not account for exactly (truncated, or with bytes
after the tensors) before reading it whole; then it checks the magic, the version,
the tensor layout of the file and the checksum, and only then parses the tensors.
Any problem raises :class:`FormatError` saying what is wrong.

This module imports nothing from livelearn (the layer above translates
:class:`FormatError` into :class:`livelearn.CheckpointError`).

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "x.safetensors")
    >>> write(path, "network", {"note": "hi"}, {"w": np.arange(3, dtype=np.float32)})
    >>> ckpt = read(path)
    >>> ckpt.kind, ckpt.meta, ckpt.tensors["w"].tolist()
    ('network', {'note': 'hi'}, [0.0, 1.0, 2.0])
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import stat
import struct
import tempfile
import time
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeGuard

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DTYPES",
    "FORMAT",
    "FORMAT_VERSION",
    "KINDS",
    "READ_VERSIONS",
    "Checkpoint",
    "FormatError",
    "atomic_write",
    "digest",
    "encode",
    "read",
    "verify",
    "write",
]

#: The value of the ``format`` metadata entry of every livelearn checkpoint.
FORMAT = "livelearn.checkpoint"
#: The newest format version this library writes and reads. Version 2 adds an
#: engine's examples awaiting their outcome (``join.*`` tensors, a ``join``
#: section); files without them are still written as version 1.
FORMAT_VERSION = 2
#: Every version this library reads.
READ_VERSIONS = (1, 2)
#: What a checkpoint may hold (the ``kind`` metadata entry).
KINDS = ("engine", "network")
#: The tensor dtypes a checkpoint may hold, by safetensors code.
DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}
_CODES = {dt: code for code, dt in DTYPES.items()}
_HASH_DOMAIN = b"livelearn.checkpoint/sha256\n"
_MAX_HEADER_BYTES = 16 * 1024 * 1024  # our headers are a few KiB
_MAX_TENSORS = 100_000
_STALE_SECONDS = 3600.0


class FormatError(ValueError):
    """A file that is not a valid checkpoint, or content that cannot be written as one."""


class Checkpoint(NamedTuple):
    """A verified checkpoint file, not yet turned into an engine or a network.

    ``kind`` is ``"engine"`` or ``"network"``; ``meta`` the decoded ``livelearn``
    metadata (JSON); ``tensors`` every array by name; ``size`` the file's size in bytes.
    """

    kind: str
    format_version: int
    meta: dict[str, Any]
    tensors: dict[str, NDArray[Any]]
    size: int


# --------------------------------------------------------------------------- writing
def write(
    path: str | os.PathLike[str],
    kind: str,
    meta: Mapping[str, Any],
    tensors: Mapping[str, Any],
) -> None:
    """:func:`encode` then :func:`atomic_write` to ``path``."""
    atomic_write(os.fspath(path), encode(kind, meta, tensors))


def encode(
    kind: str, meta: Mapping[str, Any], tensors: Mapping[str, Any], version: int = FORMAT_VERSION
) -> bytes:
    """The bytes of a checkpoint of ``kind`` holding ``meta`` (JSON) and ``tensors``,
    marked with format ``version`` (one of :data:`READ_VERSIONS`).

    Raises:
        FormatError: ``meta`` is not JSON-serialisable (or holds NaN/infinity), or a
            tensor's dtype is not one of :data:`DTYPES`.
    """
    from safetensors.numpy import save as st_save

    if not isinstance(kind, str) or kind not in KINDS:  # JSON may hold a list here
        raise FormatError(f"cannot save: unknown checkpoint kind {kind!r}")
    if version not in READ_VERSIONS:
        raise FormatError(f"cannot save: unknown format version {version!r}")
    arrays = {name: _little_endian(np.asarray(a), name) for name, a in tensors.items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(version),
        "kind": kind,
        "livelearn": _canonical_json(meta),
    }
    described = {
        name: (_CODES[a.dtype], list(a.shape), a.reshape(-1).view(np.uint8))
        for name, a in arrays.items()
    }
    metadata["sha256"] = digest(metadata, described)
    data: bytes = st_save(arrays, metadata=metadata)
    return data


def _canonical_json(value: Any) -> str:
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True
        )
    except (TypeError, ValueError) as exc:
        raise FormatError(f"cannot save: the state is not JSON-serialisable ({exc})") from exc


def _little_endian(array: NDArray[Any], name: str) -> NDArray[Any]:
    dtype = array.dtype.newbyteorder("<")
    if dtype not in _CODES:
        raise FormatError(f"cannot save tensor {name!r}: unsupported dtype {array.dtype}")
    return np.asarray(array, dtype=dtype, order="C")  # ascontiguousarray makes 0-d 1-d


def digest(metadata: Mapping[str, str], tensors: Mapping[str, tuple[str, list[int], Any]]) -> str:
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


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, whole.

    An ``OSError`` (disk full, file too large, read-only or missing folder, a folder
    at ``path``...) is raised again with the same errno and ``OSError`` subclass and a
    message that names ``path`` (a bare "File too large" names nothing); the
    temporary file is removed and a file already at ``path`` is left as it was.
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
def read(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify the checkpoint at ``path`` (see the module docstring).

    Raises:
        FormatError: the file is missing, unreadable, not a regular file, empty,
            truncated, longer than its header says, damaged, edited, not a
            livelearn checkpoint, or from a newer format.
    """
    name = os.fspath(path)
    try:
        raw = _read_regular_file(name)
    except OSError as exc:
        raise FormatError(f"cannot read checkpoint {name!r}: {exc.strerror or exc}") from exc
    return verify(raw, name)


_NOT_REGULAR = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_regular_file(name: str) -> bytes:
    """The bytes of ``name``, a regular file whose header accounts for its size.

    Opened without blocking (a FIFO with no writer would block ``open`` forever)
    and checked with ``fstat`` on the open descriptor, so a symlink swapped
    meanwhile cannot slip a device in; the header is read and checked against the
    size before the rest, so a huge or endless file is refused, not read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(name, flags)
    try:
        info = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        what = next((w for test, w in _NOT_REGULAR if test(info.st_mode)), "something else")
        raise FormatError(f"cannot read checkpoint {name!r}: it is {what}, not a regular file")
    size = info.st_size
    with os.fdopen(fd, "rb", buffering=0) as f:
        prefix = _read_exactly(f, min(size, 8))
        if len(prefix) == 8:
            (header_len,) = struct.unpack("<Q", prefix)
            _check_header_len(header_len, size, name)
            prefix += _read_exactly(f, header_len)
            _, _, data_start, data_end = _parse_header(prefix, size, name)
            _check_data_end(data_start, data_end, size, name)
        rest = _read_exactly(f, size - len(prefix))
        if f.read(1):  # the file grew while it was read
            raise FormatError(f"{name}: the file changed while it was read")
    raw = prefix + rest
    if len(raw) != size:
        raise FormatError(f"{name}: the file changed while it was read")
    return raw


def _read_exactly(f: Any, n: int) -> bytes:
    chunks: list[bytes] = []
    while n > 0:
        chunk = f.read(n)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _fail(where: str, message: str) -> FormatError:
    return FormatError(f"{where}: {message}")


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


def _check_header_len(header_len: int, size: int, where: str) -> None:
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


def _check_data_end(data_start: int, data_end: int, size: int, where: str) -> None:
    data_len = size - data_start
    if data_end > data_len:
        raise _fail(
            where,
            f"the file is truncated: {data_start + data_end} bytes expected, {size} found",
        )
    if data_end < data_len:
        raise _fail(
            where, f"corrupt file: {data_len - data_end} unexpected bytes after the tensors"
        )


def _parse_header(
    raw: bytes, size: int, where: str
) -> tuple[dict[str, Any], dict[str, str], int, int]:
    """The header's tensor entries and metadata, the data's start and the end of
    the last tensor (relative to the data's start), from the file's first bytes
    (``raw`` holds at least the length prefix and the header; ``size`` is the
    file's). Checks the JSON, the magic, the version, the kind and each entry."""
    (header_len,) = struct.unpack("<Q", raw[:8])
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
    if version not in READ_VERSIONS:
        raise _fail(
            where, f"unsupported format version {version} (expected one of {READ_VERSIONS})"
        )
    kind = metadata.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:  # JSON may hold a list here
        raise _fail(where, f"corrupt header: unknown checkpoint kind {kind!r}")
    if len(header) > _MAX_TENSORS:
        raise _fail(where, f"corrupt header: {len(header)} tensors")

    # Tensor entries: known dtype, sane shape, byte ranges that tile the data.
    spans: list[tuple[int, int]] = []
    for tname, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _fail(where, f"corrupt header: malformed entry for tensor {tname!r}")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(code, str) or code not in DTYPES:  # a list is unhashable
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
        nbytes = math.prod(shape) * DTYPES[code].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise _fail(
                where,
                f"corrupt header: tensor {tname!r} of shape {shape} needs {nbytes} bytes, "
                f"the header gives it {offsets[1] - offsets[0]}",
            )
        spans.append((offsets[0], offsets[1]))
    data_start = 8 + header_len
    data_end = max((hi for _, hi in spans), default=0)
    _check_data_end(data_start, data_end, size, where)
    spans.sort()
    position = 0
    for lo, hi in spans:
        if lo != position:
            raise _fail(where, "corrupt header: tensor byte ranges overlap or leave gaps")
        position = hi
    return header, metadata, data_start, data_end


def verify(raw: bytes, where: str) -> Checkpoint:
    """Everything :func:`read` promises, on a file's bytes (``where`` names it in errors)."""
    size = len(raw)
    if size == 0:
        raise _fail(where, "the file is empty (0 bytes); not a livelearn checkpoint")
    if size < 8:
        raise _fail(where, f"the file is only {size} bytes; not a livelearn checkpoint")
    (header_len,) = struct.unpack("<Q", raw[:8])
    _check_header_len(header_len, size, where)
    header, metadata, data_start, _ = _parse_header(raw, size, where)

    view = memoryview(raw)
    described: dict[str, tuple[str, list[int], memoryview]] = {}
    for tname, entry in header.items():
        lo, hi = entry["data_offsets"]
        described[tname] = (entry["dtype"], entry["shape"], view[data_start + lo : data_start + hi])
    checksum = metadata.get("sha256", "")
    if digest(metadata, described) != checksum:
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
            or array.dtype != DTYPES[entry["dtype"]]
            or list(array.shape) != entry["shape"]
        ):
            raise _fail(where, f"corrupt tensors: {tname!r} does not match its header entry")
    if set(tensors) != set(header):
        raise _fail(where, "corrupt tensors: the tensor set does not match the header")
    version = int(metadata["format_version"])  # checked by _parse_header
    return Checkpoint(str(metadata["kind"]), version, meta, dict(tensors), size)
