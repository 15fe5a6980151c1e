"""A leaner ``concurrent.futures.Future`` for one training step each.

A stock ``Future()`` builds its own ``threading.Condition`` (about 2 µs, more
than the training step) and ``set_result`` takes that lock once per Future.
:class:`StepFuture` is a real ``Future`` subclass (``wait``, ``as_completed``,
``add_done_callback`` and ``asyncio.wrap_future`` work unchanged) whose
Futures share their engine's condition, so a whole batch is resolved under
one lock acquisition and one ``notify_all``. Waiting methods loop until their
own Future is done, since a shared condition also wakes them for others.

Private CPython internals, measured as necessary: this module sets the
attributes ``Future``'s own methods read (``_condition``, ``_state``,
``_result``, ``_exception``, ``_waiters``, ``_done_callbacks``), imports the
state names from ``concurrent.futures._base`` and calls ``_invoke_callbacks``.
The public alternative (``Future()``, ``set_running_or_notify_cancel()``,
``set_result()`` per step) was timed against this one with ``timeit`` (64
Futures created and resolved per batch, best of 5 x 2,000 batches, Python
3.11, the shared 2-core development machine under load, 2026-12-01):
13.2 µs vs 1.8 µs and 23.3 µs vs 3.8 µs per Future in two runs -- the public
path costs 6-7x more, more than the whole training step it stands for (about
2.5 µs per event unloaded). ``tests/test_engine_concurrency.py`` holds
``wait``, ``as_completed``, ``add_done_callback`` and ``asyncio.wrap_future``
to this behaviour, so a CPython change that broke it would fail there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, TimeoutError
from concurrent.futures._base import FINISHED, RUNNING
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")

__all__ = ["RowResults", "StepFuture", "new_future", "new_futures", "resolve_all", "resolve_rows"]


class StepFuture(Future[T], Generic[T]):
    """A Future that is already running (a submitted step cannot be cancelled)."""

    _state: str
    _exception: BaseException | None
    # The result: ``_r`` once built; until then, for a Future resolved by
    # :func:`resolve_rows`, row ``_j`` of the batch outcome ``_o`` builds it on
    # first read (see :class:`RowResults`), so the dispatcher never builds a
    # result object nobody reads, and the cyclic GC has one object less per step.
    _r: Any
    _o: RowResults | None
    _j: int
    # The waiter and callback lists of Future are created on first use:
    # most step Futures never get either, and every list is one more
    # object for the cyclic garbage collector to scan.
    _w: list[Any] | None
    _cb: list[Any] | None

    def __init__(self, condition: threading.Condition) -> None:
        # Deliberately not calling Future.__init__: it would build a Condition.
        # Every attribute ever set is set here, in this order: on CPython 3.11
        # an instance that gains several attributes after ``__init__`` (or is
        # made with ``object.__new__``) gets a materialised ``__dict__``, one
        # more object per step for the cyclic GC (3 tracked objects per
        # resolved Future instead of 1, counted with ``gc.get_objects()``).
        self._condition = condition
        self._state = RUNNING
        self._r = None
        self._o = None
        self._j = 0
        self._exception = None
        self._w = None
        self._cb = None

    # Future's own methods (``__repr__``, ``_invoke_callbacks``'s callers) read
    # ``_result``: a property, so they see the lazily built result too.
    @property
    def _result(self) -> Any:
        r = self._r
        if r is None:
            source = self._o  # read once: another thread may build it meanwhile
            if source is not None:
                r = self._r = source.result_of(self._j)
                self._o = None
        return r

    @_result.setter
    def _result(self, value: Any) -> None:
        self._r = value

    # Future's own methods and concurrent.futures.wait() use these two names;
    # both are only touched under the (shared) condition.
    @property
    def _waiters(self) -> list[Any]:
        if self._w is None:
            self._w = []
        return self._w

    @_waiters.setter
    def _waiters(self, value: list[Any]) -> None:
        self._w = value

    @property
    def _done_callbacks(self) -> list[Any]:
        if self._cb is None:
            self._cb = []
        return self._cb

    @_done_callbacks.setter
    def _done_callbacks(self, value: list[Any]) -> None:
        self._cb = value

    def _wait_done(self, timeout: float | None) -> None:
        if self._state == FINISHED:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while self._state != FINISHED:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError()
                self._condition.wait(remaining)

    def result(self, timeout: float | None = None) -> T:
        """The step's result, waiting up to ``timeout`` seconds (forever if None)."""
        self._wait_done(timeout)
        if self._exception is not None:
            try:
                raise self._exception
            finally:
                self = None  # type: ignore[assignment]  # break the traceback cycle (as Future)
        r = self._r
        return r if r is not None else self._result  # type: ignore[no-any-return]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The step's exception (None if it succeeded), waiting like :meth:`result`."""
        self._wait_done(timeout)
        return self._exception


def new_future(condition: threading.Condition) -> StepFuture[Any]:
    """``StepFuture(condition)``.

    >>> import threading
    >>> new_future(threading.Condition()).running()
    True
    """
    return StepFuture(condition)


def new_futures(condition: threading.Condition, n: int) -> list[StepFuture[Any]]:
    """``n`` new Futures sharing ``condition``."""
    return [StepFuture(condition) for _ in range(n)]


class RowResults(Protocol):
    """A batch outcome that builds the result of one of its rows on demand."""

    def result_of(self, row: int) -> Any: ...


def resolve_rows(
    condition: threading.Condition, futures: Sequence[StepFuture[Any]], outcome: RowResults
) -> None:
    """Finish every Future of a batch under one lock, the ``j``-th with row
    ``j`` of ``outcome`` (built when first read): two attribute writes per
    Future, no result object. Like :func:`resolve_all` otherwise."""
    special: list[StepFuture[Any]] = []
    with condition:
        for j, future in enumerate(futures):
            future._o = outcome
            future._j = j
            future._state = FINISHED
            if future._w or future._cb:
                special.append(future)
        for future in special:
            for waiter in future._w or ():
                waiter.add_result(future)
        condition.notify_all()
    for future in special:
        if future._cb:
            future._invoke_callbacks()  # type: ignore[attr-defined]


def resolve_all(
    condition: threading.Condition,
    futures: Sequence[StepFuture[Any]],
    results: Sequence[object],
) -> None:
    """Finish every Future of a batch under one lock; a result that is a
    ``BaseException`` becomes that Future's exception."""
    with_callbacks: list[StepFuture[Any]] = []
    with condition:
        for future, result in zip(futures, results, strict=True):
            waiters = future._w
            if isinstance(result, BaseException):
                future._exception = result
                if waiters:
                    for waiter in waiters:
                        waiter.add_exception(future)
            else:
                future._r = result
                if waiters:
                    for waiter in waiters:
                        waiter.add_result(future)
            future._state = FINISHED
            if future._cb:
                with_callbacks.append(future)
        condition.notify_all()
    for future in with_callbacks:
        future._invoke_callbacks()  # type: ignore[attr-defined]
