"""Argument checks shared by the engine, the adapters, the coordinator and the CLI.

One rule per kind of argument, the same everywhere: a check returns the value
normalised (``numpy`` integers become ``int``, numbers ``float``) or raises a
one-line :class:`ValueError` that starts with the argument's name, e.g.
``"workers: must be an int in [1, 64], got 0"``. Booleans are never numbers
here (``True`` is an ``int`` to Python, not a worker count), and floats are
never ints (``2.0`` layers is a mistake, not a size).

This module imports nothing from livelearn, so any module may use it.

Example:
    >>> check_int("batch_size", 64, low=1)
    64
    >>> check_int("batch_size", True, low=1)
    Traceback (most recent call last):
    ...
    ValueError: batch_size: must be an int >= 1, got True
    >>> check_interval("checkpoint_interval", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: checkpoint_interval: must be a finite number of seconds > 0 or None, got inf
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
import os
from collections.abc import Callable, Collection, Sequence
from typing import ParamSpec, TypeGuard, TypeVar

__all__ = [
    "check_choice",
    "check_int",
    "check_interval",
    "check_name",
    "check_number",
    "check_optional_int",
    "check_path",
    "check_positive",
    "check_sizes",
    "is_int",
]


def is_int(value: object) -> TypeGuard[numbers.Integral]:
    """True for ``int`` and ``numpy`` integers, False for ``bool`` and everything else.

    Example:
        >>> is_int(3), is_int(True), is_int(3.0)
        (True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _bound(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def check_int(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` within ``[low, high]`` (either bound optional).

    Example:
        >>> check_int("workers", 0, low=1, high=64)
        Traceback (most recent call last):
        ...
        ValueError: workers: must be an int in [1, 64], got 0
    """
    if not is_int(value):
        raise ValueError(f"{name}: must be an int{_bound(low, high)}, got {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name}: must be an int{_bound(low, high)}, got {v}")
    return v


def check_optional_int(
    name: str, value: object, low: int | None = None, high: int | None = None
) -> int | None:
    """Like :func:`check_int`, with ``None`` allowed (and returned) for "not set".

    Example:
        >>> check_optional_int("checkpoint_every", None, low=1) is None
        True
        >>> check_optional_int("checkpoint_every", 0, low=1)
        Traceback (most recent call last):
        ...
        ValueError: checkpoint_every: must be an int >= 1 or None, got 0
    """
    if value is None:
        return None
    if not is_int(value) or not _within(int(value), low, high):
        raise ValueError(f"{name}: must be an int{_bound(low, high)} or None, got {value!r}")
    return int(value)


def _within(v: int, low: int | None, high: int | None) -> bool:
    return (low is None or v >= low) and (high is None or v <= high)


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    strict: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a ``float``: a real number (not a bool), finite unless
    ``finite=False``, ``>= low`` (``> low`` with ``strict``). NaN never passes.

    Example:
        >>> check_number("tol", 1e-4, low=0.0)
        0.0001
        >>> check_number("tol", -1, low=0.0)
        Traceback (most recent call last):
        ...
        ValueError: tol: must be a finite number >= 0.0, got -1
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not ok or math.isnan(v) or (finite and not math.isfinite(v)):
        ok = False
    elif low is not None:
        ok = v > low if strict else v >= low
    if not ok:
        what = "a finite number" if finite else "a number"
        bound = "" if low is None else f" {'>' if strict else '>='} {low}"
        raise ValueError(f"{name}: must be {what}{bound}, got {value!r}")
    return v


def check_positive(name: str, value: object) -> float:
    """A finite number ``> 0`` (a learning rate, a scale), as a ``float``.

    Example:
        >>> check_positive("server_lr", float("nan"))
        Traceback (most recent call last):
        ...
        ValueError: server_lr: must be a finite number > 0, got nan
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return v


def check_interval(name: str, value: object) -> float | None:
    """A period in seconds: a finite number ``> 0``, or ``None`` for "no period".

    Used for ``checkpoint_interval`` (engine and coordinator) and ``sync_interval``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        ok = False
    else:
        ok = math.isfinite(float(value)) and float(value) > 0
    if not ok:
        raise ValueError(f"{name}: must be a finite number of seconds > 0 or None, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``.

    Example:
        >>> check_choice("merge", "mean", ("delta", "fedavg"))
        Traceback (most recent call last):
        ...
        ValueError: merge: must be one of ('delta', 'fedavg'), got 'mean'
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: must be one of {tuple(choices)}, got {value!r}")
    return value


def check_name(name: str, value: object, example: str) -> str:
    """An ASCII string naming something the native core checks itself (an
    activation, a loss, an optimizer): only its type is checked here, so the
    core's message lists the valid names, while a non-string never reaches it
    (pybind11 would answer with a multi-line overload listing).

    Example:
        >>> check_name("activation", 3, "tanh")
        Traceback (most recent call last):
        ...
        ValueError: activation: must be a name such as 'tanh', got 3
    """
    if not isinstance(value, str) or not value.isascii():
        raise ValueError(f"{name}: must be a name such as {example!r}, got {value!r}")
    return value


def check_sizes(name: str, value: object, *, allow_int: bool = False) -> tuple[int, ...]:
    """Layer sizes: a sequence (not a string) of ints ``>= 1``; with
    ``allow_int`` one int stands for a one-element tuple (scikit-learn's
    ``hidden_layer_sizes=100``). An empty sequence is allowed (no hidden layer).

    Example:
        >>> check_sizes("hidden_layers", [16, 8])
        (16, 8)
        >>> check_sizes("hidden_layers", (16, 0))
        Traceback (most recent call last):
        ...
        ValueError: hidden_layers: sizes must be ints >= 1, got 0
    """
    if allow_int and is_int(value):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name}: must be a sequence of ints such as (16, 8), got {value!r}")
    out: list[int] = []
    for size in value:
        if not is_int(size) or int(size) < 1:
            raise ValueError(f"{name}: sizes must be ints >= 1, got {size!r}")
        out.append(int(size))
    return tuple(out)


def check_path(name: str, value: object) -> str:
    """A non-empty ``str`` or ``os.PathLike`` path, as a ``str``."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"{name}: must be a non-empty path, got {value!r}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise ValueError(f"{name}: must be a str path, got {value!r}")
    return path


_P = ParamSpec("_P")
_R = TypeVar("_R")


def logs_refusals(
    error: type[Exception], what: str
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a method so that every ``error`` it raises is logged at WARNING on
    the "livelearn" logger (as ``"<what>: <message>"``) before it propagates:
    bad input gets a typed error *and* a log line.

    Example:
        >>> @logs_refusals(ValueError, "demo")
        ... def half(x: int) -> int:
        ...     if x % 2:
        ...         raise ValueError("x: must be even")
        ...     return x // 2
        >>> half(4)
        2
    """

    def decorate(method: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(method)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return method(*args, **kwargs)
            except error as exc:
                logging.getLogger("livelearn").warning("%s: %s", what, exc)
                raise

        return wrapper

    return decorate
