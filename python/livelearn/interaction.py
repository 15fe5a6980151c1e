"""A single user interaction, validated once where it enters the library.

Everything downstream (encoders, target mappers, the native core) relies on the
invariants checked here, so they never re-validate on the hot path.

Example:
    >>> from datetime import datetime, timezone
    >>> it = InteractionData("click", datetime(2024, 1, 1, tzinfo=timezone.utc), "u1",
    ...                      context={"page": "home"}, label=1)
    >>> it.timestamp, it.label
    (1704067200.0, 1.0)
    >>> try:
    ...     InteractionData("click", float("nan"), "u1")
    ... except InvalidInteraction as err:
    ...     print(err)
    invalid interaction: timestamp: must be finite, got nan
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MAX_ACTION_TYPE_LEN",
    "MAX_CONTEXT_KEYS",
    "MAX_CONTEXT_KEY_LEN",
    "MAX_CONTEXT_STR_LEN",
    "MAX_LABEL_LEN",
    "MAX_TIMESTAMP",
    "MAX_USER_ID_LEN",
    "ContextValue",
    "InteractionData",
    "InvalidInteraction",
    "Label",
]

MAX_ACTION_TYPE_LEN = 256
MAX_USER_ID_LEN = 1024
MAX_CONTEXT_KEYS = 256
MAX_CONTEXT_KEY_LEN = 256
MAX_CONTEXT_STR_LEN = 4096
MAX_LABEL_LEN = 1024
#: 2100-01-01T00:00:00Z.  Later values are almost always milliseconds passed as seconds.
MAX_TIMESTAMP = 4102444800.0
_MAX_TIMESTAMP_INT = 4102444800
_MAX_EXACT_INT = 2**53

ContextValue: TypeAlias = "str | int | float | bool | None"
Label: TypeAlias = "float | tuple[float, ...]"

_FIELDS = ("action_type", "timestamp", "user_id", "context", "label")
_REQUIRED = ("action_type", "timestamp", "user_id")
_set = object.__setattr__
_isfinite = math.isfinite


class InvalidInteraction(ValueError):  # noqa: N818 -- public name fixed by the API
    """An interaction field failed validation.

    Attributes:
        field: the offending field, e.g. ``"timestamp"`` or ``"context['page']"``.
        reason: what is wrong with it, in words.

    Example:
        >>> err = InvalidInteraction("timestamp", "must be finite, got nan")
        >>> str(err), err.field
        ('invalid interaction: timestamp: must be finite, got nan', 'timestamp')
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid interaction: {field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidInteraction], tuple[str, str]]:
        # Default exception pickling replays args == (message,), which misses `reason`.
        return (type(self), (self.field, self.reason))


def _short_repr(value: object, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # a user object with a broken __repr__ must not mask the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_text(value: str, field: str, max_len: int) -> None:
    """Length and UTF-8 encodability; emptiness is checked by callers (rules differ)."""
    if len(value) > max_len:
        raise InvalidInteraction(field, f"must be at most {max_len} characters, got {len(value)}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidInteraction(
                field, "must be UTF-8 encodable (contains a lone surrogate)"
            ) from None


def _real(value: object) -> float | None:
    """``value`` as a float if it is a real number other than a bool, else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:  # ints beyond the float range
        return -math.inf if value < 0 else math.inf
    except (TypeError, ValueError):
        return None


def _timestamp(value: object) -> float:
    if type(value) is float:
        ts = value
    elif isinstance(value, datetime):
        ts = _datetime_seconds(value)
    else:
        real = _real(value)
        if real is None:
            raise InvalidInteraction(
                "timestamp",
                "must be POSIX seconds (float or int) or a timezone-aware datetime, "
                f"got {type(value).__name__}",
            )
        ts = real
    if not 0.0 <= ts < MAX_TIMESTAMP:  # also catches NaN
        if not _isfinite(ts):
            raise InvalidInteraction("timestamp", f"must be finite, got {ts}")
        if ts < 0.0:
            raise InvalidInteraction("timestamp", f"must not be before 1970-01-01, got {ts}")
        raise InvalidInteraction(
            "timestamp",
            f"must be before 2100-01-01 ({MAX_TIMESTAMP}), got {ts} (milliseconds? divide by 1000)",
        )
    return ts


def _datetime_seconds(value: datetime) -> float:
    try:
        offset = value.utcoffset()
    except Exception as exc:  # user tzinfo implementations can raise anything
        raise InvalidInteraction("timestamp", f"tzinfo.utcoffset() failed: {exc}") from exc
    if offset is None:
        # Interpreting naive datetimes as local time would make models machine-dependent.
        raise InvalidInteraction(
            "timestamp",
            "naive datetime is ambiguous; attach a tzinfo, "
            "e.g. dt.replace(tzinfo=timezone.utc) or dt.astimezone()",
        )
    try:
        return value.timestamp()  # exact for aware datetimes: (dt - epoch) / 1 s
    except Exception as exc:
        raise InvalidInteraction("timestamp", f"cannot convert {value!r}: {exc}") from exc


def _action_type(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInteraction("action_type", f"must be a str, got {type(value).__name__}")
    if not value or value.isspace():
        raise InvalidInteraction("action_type", "must not be empty or whitespace-only")
    _check_text(value, "action_type", MAX_ACTION_TYPE_LEN)
    return value


def _user_id(value: object) -> str | int:
    if type(value) is int:
        return value
    if isinstance(value, str):
        if not value:
            raise InvalidInteraction("user_id", "must not be empty")
        _check_text(value, "user_id", MAX_USER_ID_LEN)
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return operator.index(value)  # numpy integers -> int
    raise InvalidInteraction("user_id", f"must be a str or int, got {type(value).__name__}")


def _context(value: object) -> Mapping[str, ContextValue] | None:
    if value is None:
        return None
    if type(value) is not dict and not isinstance(value, Mapping):
        raise InvalidInteraction(
            "context", f"must be a mapping or None, got {type(value).__name__}"
        )
    if len(value) > MAX_CONTEXT_KEYS:
        raise InvalidInteraction(
            "context", f"must have at most {MAX_CONTEXT_KEYS} keys, got {len(value)}"
        )
    out: dict[str, ContextValue] = {}
    for key, item in value.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise InvalidInteraction(
                    f"context[{_short_repr(key)}]", f"keys must be str, got {type(key).__name__}"
                )
            key = str.__str__(key)  # plain str keeps the copy JSON-friendly
        if not key:
            raise InvalidInteraction("context['']", "keys must not be empty")
        if len(key) > MAX_CONTEXT_KEY_LEN or not key.isascii():
            _check_text(key, f"context[{_short_repr(key)}]", MAX_CONTEXT_KEY_LEN)
        tp = type(item)
        # Fast paths first: these are nearly all real-world values.
        if tp is str:
            if len(item) > MAX_CONTEXT_STR_LEN or not item.isascii():
                _check_text(item, f"context[{_short_repr(key)}]", MAX_CONTEXT_STR_LEN)
        elif tp is float:
            if not _isfinite(item):
                raise InvalidInteraction(
                    f"context[{_short_repr(key)}]", f"must be finite, got {item}"
                )
        elif not (tp is int or tp is bool or item is None):
            item = _context_scalar(key, item)
        out[key] = item
    return MappingProxyType(out)


def _context_scalar(key: str, item: object) -> ContextValue:
    """Slow path: normalise subclasses and numpy scalars to plain builtins."""
    field = f"context[{_short_repr(key)}]"
    if isinstance(item, str):
        _check_text(item, field, MAX_CONTEXT_STR_LEN)
        return str.__str__(item)
    if isinstance(item, (bool, np.bool_)):
        return bool(item)
    if isinstance(item, numbers.Integral):
        return operator.index(item)
    real = _real(item)
    if real is not None:
        if not _isfinite(real):
            raise InvalidInteraction(field, f"must be finite, got {real}")
        return real
    if isinstance(item, (Mapping, list, tuple, set, frozenset)):
        raise InvalidInteraction(
            field, f"nested {type(item).__name__} is not allowed; values must be flat scalars"
        )
    raise InvalidInteraction(
        field, f"must be a str, int, float, bool or None, got {type(item).__name__}"
    )


def _label_number(value: object) -> float | None:
    if type(value) is int:
        return float(value) if -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT else _real(value)
    if isinstance(value, (bool, np.bool_)):
        return 1.0 if value else 0.0
    return _real(value)


def _label(value: object) -> Label | None:
    if value is None:
        return None
    if type(value) is float:
        if not _isfinite(value):
            raise InvalidInteraction("label", f"must be finite, got {value}")
        return value
    if type(value) is int and -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT:
        return float(value)
    if type(value) is list or type(value) is tuple:
        return _label_sequence(value)
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            value = value.item()
        elif value.ndim != 1:
            raise InvalidInteraction("label", f"array must be 1-D, got shape {value.shape}")
        elif value.dtype.kind not in "biuf":
            raise InvalidInteraction("label", f"array must be numeric, got dtype {value.dtype}")
        else:
            value = value.tolist()
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        raise InvalidInteraction(
            "label", f"must be a number or a sequence of numbers, got {type(value).__name__}"
        )
    if isinstance(value, Sequence):
        return _label_sequence(value)
    number = _label_number(value)
    if number is None:
        raise InvalidInteraction(
            "label", f"must be a number or a sequence of numbers, got {type(value).__name__}"
        )
    if not _isfinite(number):
        raise InvalidInteraction("label", f"must be finite, got {number}")
    return number


def _label_sequence(value: Sequence[object]) -> tuple[float, ...]:
    n = len(value)
    if n == 0:
        raise InvalidInteraction("label", "sequence must not be empty")
    if n > MAX_LABEL_LEN:
        raise InvalidInteraction("label", f"must have at most {MAX_LABEL_LEN} items, got {n}")
    out: list[float] = []
    for i, item in enumerate(value):
        number = item if type(item) is float else _label_number(item)
        if number is None:
            raise InvalidInteraction(
                "label", f"item {i} must be a real number, got {type(item).__name__}"
            )
        if not _isfinite(number):
            raise InvalidInteraction("label", f"item {i} must be finite, got {number}")
        out.append(number)
    return tuple(out)


@dataclass(frozen=True, slots=True, init=False, repr=False)
class InteractionData:
    """One validated, immutable user interaction.

    Args:
        action_type: what the user did, e.g. ``"click"``; non-empty, not only
            whitespace, at most 256 characters, UTF-8 encodable.
        timestamp: POSIX seconds (``int``/``float``/numpy scalar) or a
            timezone-aware ``datetime``.  Naive datetimes are rejected on purpose:
            guessing the machine's local zone would make models machine-dependent.
            Stored as ``float`` seconds since the epoch (UTC), in ``[0, 4102444800)``.
        user_id: non-empty ``str`` (at most 1024 characters) or ``int``.  Stored as
            given; an ``int`` hashes like its decimal string.
        context: optional flat mapping ``str -> str | int | float | bool | None``
            (at most 256 keys).  An immutable copy is stored.
        label: optional explicit target: a finite number or a non-empty sequence of
            at most 1024 finite numbers.  Stored as ``float`` or ``tuple[float, ...]``.

    Raises:
        InvalidInteraction: naming the first invalid field.

    Example:
        >>> it = InteractionData("purchase", 1_700_000_000, 42, label=[1, 0.5])
        >>> it
        InteractionData(action_type='purchase', timestamp=1700000000.0, user_id=42, \
label=(1.0, 0.5))
        >>> InteractionData.from_dict(it.to_dict()) == it
        True
    """

    action_type: str
    timestamp: float
    user_id: str | int
    context: Mapping[str, ContextValue] | None
    label: Label | None

    def __init__(
        self,
        action_type: str,
        timestamp: float | int | datetime | np.floating[Any] | np.integer[Any],
        user_id: str | int | np.integer[Any],
        context: Mapping[str, Any] | None = None,
        label: float | Sequence[float] | NDArray[Any] | None = None,
    ) -> None:
        # Common exact types are checked inline; helpers only run on the slow path.
        if (
            type(action_type) is not str
            or not action_type
            or len(action_type) > MAX_ACTION_TYPE_LEN
            or not action_type.isascii()  # ASCII cannot hold lone surrogates
            or action_type.isspace()
        ):
            action_type = _action_type(action_type)
        _set(self, "action_type", action_type)
        if type(timestamp) is float and 0.0 <= timestamp < MAX_TIMESTAMP:
            _set(self, "timestamp", timestamp)
        elif type(timestamp) is int and 0 <= timestamp < _MAX_TIMESTAMP_INT:
            _set(self, "timestamp", float(timestamp))
        else:
            _set(self, "timestamp", _timestamp(timestamp))
        if (
            type(user_id) is not str
            or not user_id
            or len(user_id) > MAX_USER_ID_LEN
            or not user_id.isascii()
        ):
            user_id = _user_id(user_id)
        _set(self, "user_id", user_id)
        _set(self, "context", None if context is None else _context(context))
        if label is None or (type(label) is float and _isfinite(label)):
            _set(self, "label", label)
        else:
            _set(self, "label", _label(label))

    def __hash__(self) -> int:
        ctx = self.context
        # mappingproxy is unhashable; its values are hashable scalars, so hash the items.
        return hash(
            (
                self.action_type,
                self.timestamp,
                self.user_id,
                None if ctx is None else frozenset(ctx.items()),
                self.label,
            )
        )

    def __reduce__(self) -> tuple[type[InteractionData], tuple[Any, ...]]:
        # mappingproxy cannot be pickled; rebuild (and re-validate) from plain values.
        ctx = None if self.context is None else dict(self.context)
        return (type(self), (self.action_type, self.timestamp, self.user_id, ctx, self.label))

    def __repr__(self) -> str:
        parts = [
            f"action_type={self.action_type!r}",
            f"timestamp={self.timestamp!r}",
            f"user_id={self.user_id!r}",
        ]
        if self.context is not None:
            parts.append(f"context={dict(self.context)!r}")
        if self.label is not None:
            parts.append(f"label={self.label!r}")
        return f"InteractionData({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict: timestamp as float, context as dict, label as list.

        Example:
            >>> InteractionData("click", 1.5, "u1").to_dict()
            {'action_type': 'click', 'timestamp': 1.5, 'user_id': 'u1', 'context': None, \
'label': None}
        """
        label = self.label
        return {
            "action_type": self.action_type,
            "timestamp": self.timestamp,
            "user_id": self.user_id,
            "context": None if self.context is None else dict(self.context),
            "label": list(label) if isinstance(label, tuple) else label,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InteractionData:
        """Build from a mapping with the constructor's field names (e.g. parsed JSON).

        ``context`` and ``label`` may be omitted; unknown keys are rejected so that
        typos (``"user"`` for ``"user_id"``) do not pass silently.

        Example:
            >>> InteractionData.from_dict({"action_type": "view", "timestamp": 0, "user_id": 1})
            InteractionData(action_type='view', timestamp=0.0, user_id=1)
        """
        if not isinstance(data, Mapping):
            raise InvalidInteraction("data", f"must be a mapping, got {type(data).__name__}")
        for key in data:
            if key not in _FIELDS:
                raise InvalidInteraction(
                    _short_repr(key), f"unknown field; expected one of {', '.join(_FIELDS)}"
                )
        for key in _REQUIRED:
            if key not in data:
                raise InvalidInteraction(key, "is required")
        return cls(
            data["action_type"],
            data["timestamp"],
            data["user_id"],
            data.get("context"),
            data.get("label"),
        )
