"""The training engine: one asynchronous training step per user interaction.

``Engine.train_step(interaction)`` returns at once with a Future. A
background dispatcher takes the queued interactions in batches, turns them
into features and targets, runs the native training steps for the whole batch
in one GIL-free call (one step per interaction, in order, the network's lock
taken per step), then resolves the batch's Futures together and updates the
counters, the bounded history and the loss log.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray

from livelearn import persistence
from livelearn.autosave import AutoSaver
from livelearn.errors import EngineClosed, EngineNotInitialized, EngineOverloaded
from livelearn.features import Encoder, FeatureEncoder
from livelearn.futures import StepFuture, resolve_all
from livelearn.history import History
from livelearn.interaction import InteractionData, InvalidInteraction
from livelearn.network import STATUS_NAMES, Network
from livelearn.results import EngineStats, StepResult, StepStatus, TrainingExample
from livelearn.targets import TargetFn, TargetMapper, TargetValue

__all__ = ["Engine", "OverloadPolicy"]

logger = logging.getLogger("livelearn")

OverloadPolicy = Literal["block", "raise", "drop_oldest"]
_POLICIES = ("block", "raise", "drop_oldest")
_RECENT_WEIGHT = 0.01
_NATIVE_REASONS = tuple(f"rejected by the network: {name}" for name in STATUS_NAMES)

# Engines alive in this process, closed (drained) at interpreter exit so no
# submitted step is silently lost when a service shuts down.
_LIVE: weakref.WeakSet[Engine] = weakref.WeakSet()


# Engines that exist in this process, for the fork handlers below.
_ALL: weakref.WeakSet[Engine] = weakref.WeakSet()
_FORKED_MESSAGE = (
    "this engine belongs to the parent process (it existed before os.fork()); "
    "its dispatcher thread did not survive the fork. Create a new Engine in the "
    "child, e.g. Engine.load(checkpoint)"
)


_HELD_FOR_FORK: list[threading.Lock] = []


def _before_fork() -> None:
    # No native training step may be in flight when the process is copied:
    # the child would inherit the network's lock held by a thread that does
    # not exist there. Holding every batch lock waits for the current batch;
    # holding every Future condition waits for a batch being resolved. A
    # batch lock this very thread holds (os.fork() from a target function) is
    # left alone: its native step is not running, and waiting would deadlock.
    mine = getattr(_DISPATCHER, "batch_of", None)
    for engine in list(_ALL):
        if engine is not mine:
            engine._batch_lock.acquire()
            _HELD_FOR_FORK.append(engine._batch_lock)
        engine._done.acquire()


def _after_fork_in_parent() -> None:
    for engine in list(_ALL):
        engine._done.release()
    while _HELD_FOR_FORK:
        _HELD_FOR_FORK.pop().release()


def _after_fork_in_child() -> None:
    # The child has no dispatcher threads; every lock is replaced (another
    # thread of the parent may have held one). The engine stays readable
    # (stats, history, save) and refuses new work with a clear error. Steps
    # the parent had queued or in flight are the parent's to train: their
    # copies here are resolved as skipped, so nothing in the child waits forever.
    _HELD_FOR_FORK.clear()
    me = threading.get_ident()
    for engine in list(_ALL):
        engine._done.release()  # the same condition: the child's Futures keep it
        engine._batch_lock = threading.Lock()
        engine._book = threading.Lock()
        engine._submit_lock = threading.Lock()
        engine._state_lock = threading.Lock()
        engine._room = threading.Condition()
        engine._forked = True
        engine._closing = True
        engine._threads = []
        inherited = [f for _, f in engine._queue]
        engine._queue.clear()
        for thread_id, batch in list(engine._inflight.items()):
            if thread_id != me:  # this thread's own batch goes on here
                inherited += [f for _, f in batch if not f.done()]
                del engine._inflight[thread_id]
        if inherited:
            engine._skip(inherited, _SKIPPED_FORKED)
    _LIVE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


@atexit.register
def _close_all_at_exit() -> None:
    for engine in list(_LIVE):
        engine.close(wait=True)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: must be an int, got {type(value).__name__}")
    v = int(value)
    if v < low or (high is not None and v > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}: must be {bound}, got {v}")
    return v


class _Counters:
    """Counters written by the dispatcher under the engine's bookkeeping lock."""

    __slots__ = (
        "failed",
        "last_example_time",
        "last_loss",
        "loss_sum",
        "recent_loss",
        "rejected",
        "skipped",
        "trained",
    )

    def __init__(self) -> None:
        self.trained = 0
        self.skipped = 0
        self.rejected = 0
        self.failed = 0
        self.loss_sum = 0.0
        self.last_loss: float | None = None
        self.recent_loss: float | None = None
        self.last_example_time: float | None = None


class Engine:
    """Learns live from interactions: ``train_step`` returns a Future at once.

    Args:
        hidden_layers: sizes of the hidden layers; the input size follows the
            encoder and the output size the targets.
        activation: hidden activation (``"tanh"``, ``"relu"``, ``"sigmoid"``,
            ``"identity"``).
        loss: ``"bce"`` (output is a probability) or ``"mse"`` (a real value).
        optimizer: ``"sgd"`` or ``"adam"``.
        learning_rate: step size, > 0.
        seed: seeds the network's weights.
        features: the encoder; default :class:`FeatureEncoder` (4 inputs). A
            sparse encoder such as :class:`HashedFeatureEncoder` feeds the
            network sparse examples.
        targets: a mapping from action type to target (``{"click": 1.0,
            "skip": 0.0}``), a callable, a :class:`TargetMapper`, or None. An
            interaction's own ``label`` always wins.
        history_size: how many trained examples :attr:`history` keeps.
        log_every: log the loss at INFO every this many trained steps (0: never).
        max_pending: most interactions queued at once; see ``overload``.
        workers: dispatcher threads. With more than one, steps of different
            batches may interleave (no global order); 1 keeps submission order.
        overload: what ``train_step`` does when ``max_pending`` are queued:
            ``"block"`` waits for room, ``"raise"`` raises
            :class:`EngineOverloaded`, ``"drop_oldest"`` drops the oldest queued
            step (its Future resolves as skipped).
        batch_size: most interactions per native call. Smaller batches give
            shorter GIL-held stretches (lower caller latency), larger ones more
            throughput.
        n_outputs: network outputs (default: the targets' ``n_outputs``, else 1).
        momentum, weight_decay, clip_norm: optimizer options of :class:`Network`.

    After ``os.fork()`` the child's copy of an engine refuses ``train_step``,
    ``train_many`` and ``predict`` with :class:`EngineClosed` (its dispatcher
    thread does not survive a fork; the fork waits for the current batch, so no
    lock is inherited mid-step); ``stats()``, ``history`` and ``save()`` still
    work there. Create engines after forking, e.g. in each worker of a
    pre-forking server.
        checkpoint_path: where periodic checkpoints go (see :meth:`save`); needs
            ``checkpoint_every`` and/or ``checkpoint_interval``.
        checkpoint_every: save after every this many trained steps.
        checkpoint_interval: save when this many seconds passed since the last save
            (checked after each batch). A due save runs in a background thread
            (one at a time); training only pauses while the state is copied.
            Call :meth:`save` yourself for a final checkpoint after :meth:`close`.

    Example:
        >>> from livelearn import Engine, InteractionData
        >>> with Engine(targets={"click": 1.0, "skip": 0.0}) as engine:
        ...     future = engine.train_step(InteractionData("click", 1700000000.0, "u1"))
        ...     result = future.result()
        >>> result.status, result.step
        (<StepStatus.TRAINED: 'trained'>, 1)
    """

    def __init__(
        self,
        hidden_layers: Sequence[int] = (16, 8),
        activation: str = "tanh",
        loss: str = "bce",
        optimizer: str = "sgd",
        learning_rate: float = 0.05,
        seed: int = 0,
        features: Encoder | None = None,
        targets: Mapping[str, TargetValue] | TargetFn | TargetMapper | None = None,
        history_size: int = 1000,
        log_every: int = 10,
        max_pending: int = 100_000,
        workers: int = 1,
        *,
        overload: OverloadPolicy = "block",
        batch_size: int = 64,
        n_outputs: int | None = None,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        checkpoint_interval: float | None = None,
    ) -> None:
        if isinstance(hidden_layers, (str, bytes)) or not isinstance(hidden_layers, Sequence):
            raise ValueError("hidden_layers: must be a sequence of ints such as (16, 8)")
        hidden = tuple(_check_int("hidden_layers", h, 1) for h in hidden_layers)
        self._history_size = _check_int("history_size", history_size, 0, 10_000_000)
        self._log_every = _check_int("log_every", log_every, 0)
        self._max_pending = _check_int("max_pending", max_pending, 1)
        self._workers = _check_int("workers", workers, 1, 64)
        self._batch_size = _check_int("batch_size", batch_size, 1, 1_000_000)
        if overload not in _POLICIES:
            raise ValueError(f"overload: must be one of {_POLICIES}, got {overload!r}")
        self._overload: OverloadPolicy = overload
        self._encoder: Encoder = FeatureEncoder() if features is None else features
        for attr in ("n_inputs", "sparse", "encode"):
            if not hasattr(self._encoder, attr):
                raise ValueError(f"features: {type(self._encoder).__name__} is not an encoder")
        if isinstance(targets, TargetMapper):
            mapper = targets
        else:
            mapper = TargetMapper(targets, 1 if n_outputs is None else n_outputs)
        if n_outputs is not None and n_outputs != mapper.n_outputs:
            raise ValueError(
                f"n_outputs: {n_outputs} does not match the targets' n_outputs={mapper.n_outputs}"
            )
        self._targets = mapper
        for name, value, example in (
            ("activation", activation, "tanh"),
            ("loss", loss, "bce"),
            ("optimizer", optimizer, "sgd"),
        ):
            # The native constructor would answer a non-str with pybind11's
            # multi-line overload listing; unknown names it rejects itself.
            if not isinstance(value, str) or not value.isascii():
                raise ValueError(f"{name}: must be a name such as {example!r}, got {value!r}")
        output = "sigmoid" if loss == "bce" else "identity"
        # Building the network validates every optimizer argument now, not later.
        self._network_config: dict[str, Any] = {
            "layers": [self._encoder.n_inputs, *hidden, mapper.n_outputs],
            "activation": activation,
            "output": output,
            "loss": loss,
            "optimizer": optimizer,
            "learning_rate": learning_rate,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "clip_norm": clip_norm,
            "seed": seed,
        }
        self._network = Network(**self._network_config)
        self._hidden_layers = hidden

        self._queue: deque[tuple[object, StepFuture[StepResult]]] = deque()
        self._done = threading.Condition()  # shared by every Future of this engine
        self._room = threading.Condition()  # producers blocked on a full queue wait here
        self._wake = threading.Event()
        self._book = threading.Lock()  # counters + history, one batch at a time
        # Held for a whole batch (native steps + bookkeeping): a snapshot taken
        # under it sits exactly on a batch boundary, consistent with the counters.
        self._batch_lock = threading.Lock()
        self._submitted = itertools.count()  # next() is atomic under the GIL
        self._resolved = 0
        self._counters = _Counters()
        self._history = History(
            self._history_size, self._encoder.n_inputs, mapper.n_outputs, self._encoder.sparse
        )
        self._threads: list[threading.Thread] = []
        self._initialized = False
        self._closing = False
        self._closed = False
        self._idle = [False] * self._workers
        self._started_at: float | None = None
        self._state_lock = threading.Lock()  # initialize/close transitions
        # Orders "is the engine closing?" against queue appends, so close()
        # can never miss an item appended just before it.
        self._submit_lock = threading.Lock()
        self._blocked_producers = 0  # producers waiting for queue room
        # Batches taken from the queue and not yet resolved, by dispatcher thread.
        self._inflight: dict[int, list[tuple[object, StepFuture[StepResult]]]] = {}
        self._forked = False  # True in a child process created by os.fork()
        _ALL.add(self)
        self._autosave: AutoSaver | None = None  # None: no cost on the hot path
        if (checkpoint_path, checkpoint_every, checkpoint_interval) != (None, None, None):
            self._autosave = AutoSaver(checkpoint_path, checkpoint_every, checkpoint_interval)

    # ------------------------------------------------------------------ lifecycle
    def initialize(self) -> Engine:
        """Start the dispatcher; idempotent. Returns the engine for chaining."""
        with self._state_lock:
            if self._closed or self._closing:
                raise EngineClosed("this engine was closed; create a new one")
            if self._initialized:
                return self
            ref = weakref.ref(self)
            for i in range(self._workers):
                thread = threading.Thread(
                    target=_dispatch_loop,
                    args=(ref, i, self._queue, self._wake, self._idle),
                    name=f"livelearn-dispatcher-{i}",
                    daemon=True,
                )
                self._threads.append(thread)
            self._started_at = time.time()
            self._initialized = True
            _LIVE.add(self)
            for thread in self._threads:
                thread.start()
        return self

    @property
    def is_initialized(self) -> bool:
        """True between :meth:`initialize` and :meth:`close`."""
        return self._initialized and not self._closing

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closing

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting steps, train every queued one, then stop the dispatcher.

        Every Future already returned is resolved, and a periodic checkpoint
        still being written is finished. With ``wait=False`` the queue drains
        in the background. Idempotent.
        """
        with self._state_lock, self._submit_lock:
            first = not self._closing
            self._closing = True
        if first:
            with self._room:
                self._room.notify_all()  # blocked producers see EngineClosed
            self._wake.set()
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for thread in self._threads:
                if thread is threading.current_thread():
                    continue
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
            if not self._threads:
                self._drain_uninitialized()
            if self._autosave is not None:  # the last batch may have started one
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._autosave.wait(remaining)
            self._closed = all(not t.is_alive() for t in self._threads)
        _LIVE.discard(self)

    def __enter__(self) -> Engine:
        return self.initialize()

    def __exit__(self, *exc: object) -> None:
        self.close(wait=True)

    def __del__(self) -> None:
        # The dispatcher holds only a weak reference between batches, so a
        # forgotten engine is collected: train what is still queued (every
        # Future gets resolved), then let the dispatcher thread exit.
        try:
            if not self._closing:
                with self._submit_lock:
                    self._closing = True
                while self._queue:
                    self._run_batch()
                self._wake.set()
        except Exception:  # never raise from a finalizer
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closing else "running" if self._initialized else "new"
        return (
            f"Engine(layers={self._network_config['layers']}, "
            f"activation={self._network_config['activation']!r}, "
            f"loss={self._network_config['loss']!r}, "
            f"optimizer={self._network_config['optimizer']!r}, "
            f"features={type(self._encoder).__name__}, state={state}, "
            f"steps={self._counters.trained})"
        )

    # ------------------------------------------------------------------ submit
    def train_step(self, interaction: InteractionData) -> StepFuture[StepResult]:
        """Queue one training step; returns at once with its Future.

        The Future's result is a :class:`StepResult`. Invalid input makes the
        Future raise :class:`InvalidInteraction` (the model is untouched).
        Before :meth:`initialize` the step is skipped (an already finished
        Future says so). Raises :class:`EngineClosed` after :meth:`close`, and
        :class:`EngineOverloaded` under the ``"raise"`` policy when full.
        """
        future: StepFuture[StepResult] = StepFuture(self._done)
        if not self._initialized:
            if self._closing:
                raise EngineClosed("train_step after close()")
            self._skip_uninitialized([future])
            return future
        queue = self._queue
        overflow = False
        while True:
            # The bound is checked under the lock that guards the append, so
            # concurrent producers can never overfill the queue together.
            with self._submit_lock:
                if self._closing:
                    raise EngineClosed(
                        _FORKED_MESSAGE if self._forked else "train_step after close()"
                    )
                if overflow or len(queue) < self._max_pending:
                    seq = next(self._submitted)
                    queue.append((interaction, future))
                    break
            overflow = self._make_room(1)
        idle = self._idle
        if idle[0] or (self._workers > 1 and any(idle)):
            # Wake a sleeping dispatcher once, not on every call until it runs.
            idle[:] = [False] * len(idle)
            self._wake.set()
        elif seq % (2 * self._batch_size) == 0 and len(queue) >= self._batch_size:
            # A busy producer holds the GIL; without a hand-over the dispatcher
            # would wait for the interpreter's switch interval (5 ms) after every
            # native call. Yield once per two batches of submissions: often
            # enough to keep the dispatcher fed, rare enough (< 1% of calls)
            # that the call which yields stays out of the p99 latency.
            time.sleep(0)
        return future

    def train_many(self, interactions: Iterable[InteractionData]) -> list[StepFuture[StepResult]]:
        """Queue one step per interaction, in order; returns one Future each.

        One Future per interaction (not one for the batch), so each caller can
        wait for, and score, its own event. Cheaper per event than calling
        :meth:`train_step` in a loop.
        """
        if self._closing:
            raise EngineClosed(_FORKED_MESSAGE if self._forked else "train_many after close()")
        items = list(interactions)
        done = self._done
        futures: list[StepFuture[StepResult]] = [StepFuture(done) for _ in items]
        if not self._initialized:
            self._skip_uninitialized(futures)
            return futures
        n = len(items)
        start = 0
        overflow = False
        while start < n:
            with self._submit_lock:
                if self._closing:
                    break
                queued = len(self._queue)
                if start == 0 and self._overload == "raise" and queued + n > self._max_pending:
                    # All or nothing: the caller never loses Futures of queued steps.
                    raise EngineOverloaded(
                        f"{n} steps do not fit: {queued} pending (max_pending={self._max_pending})"
                    )
                end = n if overflow else min(n, start + max(0, self._max_pending - queued))
                if end > start:
                    for _ in range(end - start):
                        next(self._submitted)
                    self._queue.extend(zip(items[start:end], futures[start:end], strict=True))
            if end > start:
                self._wake.set()
                start = end
                continue
            try:
                overflow = self._make_room(min(n - start, self._max_pending))
            except EngineClosed:
                break
        if start < n:
            if start == 0:
                raise EngineClosed(_FORKED_MESSAGE if self._forked else "train_many after close()")
            # Closed midway: the queued part trains and keeps its Futures; the
            # rest is resolved as skipped, so the caller still gets one per item.
            logger.warning("%d step(s) %s", n - start, _SKIPPED_CLOSED)
            self._submit_skipped(futures[start:], _SKIPPED_CLOSED)
        return futures

    def _make_room(self, needed: int) -> bool:
        """Apply the overload policy until ``needed`` more items fit. Returns
        True when the caller must queue them even though they do not fit."""
        if self._overload == "raise":
            raise EngineOverloaded(
                f"{len(self._queue)} steps pending (max_pending={self._max_pending})"
            )
        if self._overload == "drop_oldest":
            dropped: list[StepFuture[StepResult]] = []
            while len(self._queue) + needed > self._max_pending:
                try:
                    _, future = self._queue.popleft()
                except IndexError:
                    break
                dropped.append(future)
            if dropped:
                reason = "dropped: the queue was full (overload='drop_oldest')"
                logger.warning("%d queued steps skipped: %s", len(dropped), reason)
                self._skip(dropped, reason)
            return False
        if getattr(_DISPATCHER, "active", False):
            # Called from a dispatcher thread (a done callback submitting more
            # work): waiting for room only this thread can make would deadlock,
            # so the queue may exceed max_pending by these items instead.
            return True
        self._wake.set()
        with self._room:
            self._blocked_producers += 1
            try:
                while len(self._queue) + needed > self._max_pending:
                    if self._closing:
                        raise EngineClosed("engine closed while waiting for queue room")
                    self._room.wait(0.1)
            finally:
                self._blocked_producers -= 1
        return False

    def _skip_uninitialized(self, futures: list[StepFuture[StepResult]]) -> None:
        reason = "skipped: the engine is not initialised (call initialize())"
        logger.warning("%d step(s) %s", len(futures), reason)
        self._submit_skipped(futures, reason)

    def _submit_skipped(self, futures: list[StepFuture[StepResult]], reason: str) -> None:
        """Count Futures handed out for steps that will never be queued, and
        resolve them as skipped."""
        for _ in futures:
            next(self._submitted)
        self._skip(futures, reason)

    def _skip(self, futures: list[StepFuture[StepResult]], reason: str) -> None:
        """Resolve already-counted Futures as skipped (never trained)."""
        with self._book:
            self._counters.skipped += len(futures)
            self._resolved += len(futures)
        result = StepResult(None, None, None, StepStatus.SKIPPED, reason)
        resolve_all(self._done, futures, [result] * len(futures))

    def _drain_uninitialized(self) -> None:
        """close() on an engine that never started: nothing can be queued."""

    # ------------------------------------------------------------------ dispatcher
    def _run_batch(self) -> None:
        """Take up to ``batch_size`` queued steps and train them."""
        queue = self._queue
        batch: list[tuple[object, StepFuture[StepResult]]] = []
        try:
            for _ in range(min(len(queue), self._batch_size)):
                batch.append(queue.popleft())
        except IndexError:  # another worker or drop_oldest took the rest
            pass
        if not batch:
            return
        inflight = self._inflight
        me = threading.get_ident()
        inflight[me] = batch  # for a fork meanwhile: the child resolves its copies
        try:
            with self._batch_lock:
                _DISPATCHER.batch_of = self
                try:
                    results, any_rejected = self._process(batch)
                finally:
                    _DISPATCHER.batch_of = None
            # Resolved after the batch lock is released: a done callback may
            # call save(), export_state() or os.fork(), which take that lock.
            resolve_all(self._done, [f for _, f in batch], results)
            if any_rejected:
                self._log_rejections([it for it, _ in batch], results)
        except BaseException as exc:  # never leave a Future unresolved
            self._fail(batch, exc)
        finally:
            inflight.pop(me, None)
        if self._autosave is not None:
            self._autosave.maybe_save(self.stats().steps, self.save)
        if self._blocked_producers:
            with self._room:
                self._room.notify_all()

    def _fail(self, batch: list[tuple[object, StepFuture[StepResult]]], exc: BaseException) -> None:
        logger.error("%d step(s) failed: %s: %s", len(batch), type(exc).__name__, exc)
        pending = [f for _, f in batch if not f.done()]
        with self._book:
            self._counters.failed += len(pending)
            self._resolved += len(pending)
        resolve_all(self._done, pending, [exc] * len(pending))

    def _encode(
        self, items: list[object]
    ) -> tuple[NDArray[np.float32] | tuple[Any, Any, Any], list[BaseException | None]]:
        """Features of a batch and, per item, the error that made it invalid."""
        n = len(items)
        errors: list[BaseException | None] = [None] * n
        if set(map(type, items)) != {InteractionData}:
            for i, it in enumerate(items):
                if not isinstance(it, InteractionData):
                    errors[i] = InvalidInteraction(
                        "interaction", f"expected InteractionData, got {type(it).__name__}"
                    )
        valid = _valid_items(items, errors)
        try:
            return self._encode_valid(valid), errors
        except Exception:
            pass
        # Some interaction broke the encoder: find which, one by one.
        for i, it in enumerate(items):
            if errors[i] is None:
                try:
                    self._encode_valid([it])  # type: ignore[list-item]
                except InvalidInteraction as exc:
                    errors[i] = exc
                except Exception as exc:
                    errors[i] = InvalidInteraction(
                        "features", f"the encoder failed: {type(exc).__name__}: {exc}"
                    )
        return self._encode_valid(_valid_items(items, errors)), errors

    def _encode_valid(
        self, items: list[InteractionData]
    ) -> NDArray[np.float32] | tuple[Any, Any, Any]:
        if self._encoder.sparse:
            return self._encoder.encode_sparse_many(items)
        return self._encoder.encode_many(items)

    def _process(
        self, batch: list[tuple[object, StepFuture[StepResult]]]
    ) -> tuple[list[object], bool]:
        """Train a batch and book it; returns each step's result (a
        :class:`StepResult` or the error that made it invalid) and whether any
        step was rejected. The caller resolves the Futures."""
        items = [it for it, _ in batch]
        n = len(items)
        features, errors = self._encode(items)
        encoded = [i for i in range(n) if errors[i] is None] if any(errors) else list(range(n))
        # Targets of the encodable interactions; rows without one are dropped.
        Y_all, target_errors = self._targets.targets_many(
            cast(
                "list[InteractionData]", [items[i] for i in encoded] if len(encoded) != n else items
            )
        )
        if any(target_errors):
            keep = [j for j, e in enumerate(target_errors) if e is None]
            for j, e in enumerate(target_errors):
                if e is not None:
                    errors[encoded[j]] = e
            rows = [encoded[j] for j in keep]  # batch positions that will train
            Y = Y_all[keep]
            features = _select_rows(features, keep, self._encoder.sparse)
        else:
            rows = encoded
            Y = Y_all
        network = self._network
        if isinstance(features, tuple):
            indptr, indices, values = features
            losses, preds, status = network.train_batch_sparse_detailed(indptr, indices, values, Y)
        else:
            losses, preds, status = network.train_batch_detailed(features, Y)

        trained = status == 0
        n_trained = int(np.count_nonzero(trained))
        all_trained = n_trained == len(rows)
        loss_list = losses.tolist()
        pred_list: list[Any] = preds[:, 0].tolist() if Y.shape[1] == 1 else list(preds)
        row_items = items if len(rows) == n else [items[i] for i in rows]
        timestamps = np.array([it.timestamp for it in row_items], dtype=np.float64)  # type: ignore[attr-defined]

        with self._book:
            c = self._counters
            first_step = network.steps - n_trained + 1  # this batch's steps, in order
            if all_trained:
                steps = np.arange(first_step, first_step + n_trained, dtype=np.int64)
            else:
                steps = np.zeros(len(rows), dtype=np.int64)
                steps[trained] = np.arange(first_step, first_step + n_trained)
            row_results = list(
                map(
                    _new_result,
                    zip(steps.tolist(), loss_list, pred_list, repeat(StepStatus.TRAINED)),
                )
            )
            if not all_trained:
                for j, code in enumerate(status.tolist()):
                    if code:
                        loss_j = loss_list[j]
                        row_results[j] = StepResult(
                            None,
                            loss_j if math.isfinite(loss_j) else None,
                            None,
                            StepStatus.REJECTED,
                            _NATIVE_REASONS[code],
                        )
            results: list[object]
            if len(rows) == n:
                results = row_results  # type: ignore[assignment]
            else:
                results = list(errors)
                for j, i in enumerate(rows):
                    results[i] = row_results[j]
            n_rejected_native = len(rows) - n_trained
            n_invalid = n - len(rows)
            if n_trained:
                trained_losses = losses if all_trained else losses[trained]
                c.loss_sum += float(trained_losses.sum(dtype=np.float64))
                c.last_loss = loss_list[-1] if all_trained else float(trained_losses[-1])
                c.recent_loss = _ema(c.recent_loss, trained_losses)
                stamps = timestamps if all_trained else timestamps[trained]
                c.last_example_time = float(stamps[-1])
                before, sum_before = (
                    c.trained,
                    c.loss_sum - float(trained_losses.sum(dtype=np.float64)),
                )
                c.trained += n_trained
                self._history.append_batch(
                    steps if all_trained else steps[trained],
                    None
                    if isinstance(features, tuple)
                    else (features if all_trained else features[trained]),
                    _sparse_rows(features, trained) if isinstance(features, tuple) else None,
                    Y if all_trained else Y[trained],
                    preds if all_trained else preds[trained],
                    trained_losses,
                    stamps,
                )
                self._log_losses(before, sum_before, trained_losses)
            c.rejected += n_rejected_native + n_invalid
            self._resolved += n
        return results, bool(n_invalid or n_rejected_native)

    def _log_losses(self, before: int, sum_before: float, losses: NDArray[np.float64]) -> None:
        """INFO line at every multiple of ``log_every`` reached by this batch,
        with the loss of that step and the mean loss of steps 1..that step."""
        every = self._log_every
        if not every or not logger.isEnabledFor(logging.INFO):
            return
        first = (before // every + 1) * every
        steps = range(first, before + len(losses) + 1, every)
        if not steps:
            return
        prefix = sum_before + np.cumsum(losses, dtype=np.float64)
        for step in steps:
            j = step - before - 1
            logger.info(
                "step %d loss %.6f mean_loss %.6f", step, float(losses[j]), prefix[j] / step
            )

    def _log_rejections(self, items: list[object], results: list[object]) -> None:
        if not logger.isEnabledFor(logging.WARNING):
            return
        for item, result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("step rejected: %s (%r)", result, _short(item))
            elif isinstance(result, StepResult) and result.status is StepStatus.REJECTED:
                logger.warning("step rejected: %s (%r)", result.reason, _short(item))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a checkpoint (safetensors + JSON metadata, atomic and durable).

        Training may continue meanwhile: the snapshot is taken at a batch
        boundary and holds the dispatcher only for the copy.
        See :mod:`livelearn.checkpoint` for the format.
        """
        persistence.save_engine(self, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        targets: TargetFn | None = None,
        initialize: bool = True,
    ) -> Engine:
        """Rebuild an engine from :meth:`save` output, exactly where it stopped.

        ``targets`` supplies the function when the saved engine used a callable
        target (functions are not stored). Raises
        :class:`~livelearn.checkpoint.CheckpointError` for any damaged or
        foreign file; nothing half-loaded is ever returned.
        """
        return persistence.load_engine(path, cls, targets=targets, initialize=initialize)

    def export_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """A consistent snapshot: tensors (network state, history) and metadata
        (configuration and counters). Used by checkpoints and replicas."""
        with self._batch_lock, self._book:
            tensors: dict[str, NDArray[Any]] = {
                f"network.{k}": v for k, v in self._network.get_state().items()
            }
            tensors.update({f"history.{k}": v for k, v in self._history.arrays().items()})
            c = self._counters
            meta: dict[str, Any] = {
                "engine": self.config,
                "network": self._network.get_config(),
                "features": self._encoder.get_config(),
                "targets": self._targets.get_config(),
                "counters": {
                    "trained": c.trained,
                    "skipped": c.skipped,
                    "rejected": c.rejected,
                    "failed": c.failed,
                    "interactions": c.trained + c.skipped + c.rejected + c.failed,
                    "loss_sum": c.loss_sum,
                    "last_loss": c.last_loss,
                    "recent_loss": c.recent_loss,
                    "last_example_time": c.last_example_time,
                },
            }
        return tensors, meta

    def import_state(self, tensors: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> None:
        """Load :meth:`export_state` output into this (same-shaped) engine.

        Validates everything before changing anything; raises ``ValueError``.
        Queued steps still pending are trained afterwards, on the loaded model.
        """
        net_state = {k[8:]: v for k, v in tensors.items() if k.startswith("network.")}
        hist = {k[8:]: v for k, v in tensors.items() if k.startswith("history.")}
        counters = meta["counters"]
        names = ("trained", "skipped", "rejected", "failed")
        for name in names:
            _check_int(f"counters.{name}", counters[name], 0)
        n_hist = len(hist.get("steps", ()))
        if n_hist > self._history_size:
            raise ValueError(
                f"history: {n_hist} examples saved but history_size is {self._history_size}"
            )
        with self._batch_lock, self._book:
            probe = History(
                self._history_size,
                self._encoder.n_inputs,
                self._targets.n_outputs,
                self._encoder.sparse,
            )
            probe.restore(hist)  # validates shapes before the network is touched
            self._network.set_state(net_state)
            self._history = probe
            c = self._counters
            c.trained, c.skipped, c.rejected, c.failed = (int(counters[n]) for n in names)
            c.loss_sum = float(counters["loss_sum"])
            c.last_loss = counters["last_loss"]
            c.recent_loss = counters["recent_loss"]
            c.last_example_time = counters["last_example_time"]
            done = c.trained + c.skipped + c.rejected + c.failed
            pending = self._peek_submitted() - self._resolved
            self._submitted = itertools.count(done + pending)
            self._resolved = done
            if self._autosave is not None:  # the next periodic save counts from here
                self._autosave.mark_saved(c.trained)

    # ------------------------------------------------------------------ read side
    def predict(self, interaction: InteractionData) -> float | NDArray[np.float32]:
        """The model's current output for ``interaction``: a float for one
        output (a probability with ``loss="bce"``), else an array.

        Runs in the caller's thread, concurrently with training: it waits for
        at most one native training step. Raises :class:`InvalidInteraction`
        for bad input and :class:`EngineNotInitialized` before
        :meth:`initialize`.
        """
        out = self.predict_many([interaction])
        return float(out[0, 0]) if out.shape[1] == 1 else out[0]

    async def train_step_async(self, interaction: InteractionData) -> StepResult:
        """``await`` one training step from asyncio code without blocking the loop.

        Submitting never blocks on training (under the ``"block"`` overload
        policy a full queue is waited for in a worker thread, not on the loop).

        Example:
            >>> import asyncio
            >>> from livelearn import Engine, InteractionData
            >>> async def main():
            ...     with Engine(targets={"click": 1.0}) as engine:
            ...         return await engine.train_step_async(InteractionData("click", 0.0, "u"))
            >>> asyncio.run(main()).status
            <StepStatus.TRAINED: 'trained'>
        """
        import asyncio

        if self._overload == "block" and len(self._queue) >= self._max_pending:
            loop = asyncio.get_running_loop()
            future = await loop.run_in_executor(None, self.train_step, interaction)
        else:
            future = self.train_step(interaction)
        return await asyncio.wrap_future(future)

    async def predict_async(self, interaction: InteractionData) -> float | NDArray[np.float32]:
        """``await`` a prediction; runs in the loop's default executor, since a
        prediction may wait for one native training step."""
        import asyncio

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.predict, interaction)

    def predict_many(self, interactions: Sequence[InteractionData]) -> NDArray[np.float32]:
        """Outputs for a batch, shape ``(n, n_outputs)``."""
        if not self._initialized:
            raise EngineNotInitialized("predict() before initialize()")
        if self._forked:
            raise EngineClosed(_FORKED_MESSAGE)
        items = list(interactions)
        for it in items:
            if not isinstance(it, InteractionData):
                raise InvalidInteraction(
                    "interaction", f"expected InteractionData, got {type(it).__name__}"
                )
        if self._encoder.sparse:
            indptr, indices, values = self._encoder.encode_sparse_many(items)
            return self._network.predict_sparse(indptr, indices, values)
        X = self._encoder.encode_many(items)
        return self._network.predict(X)

    def stats(self) -> EngineStats:
        """A consistent snapshot of the counters (taken between two batches)."""
        with self._book:
            c = self._counters
            submitted = self._peek_submitted()
            return EngineStats(
                steps=c.trained,
                interactions=submitted,
                skipped=c.skipped,
                rejected=c.rejected,
                failed=c.failed,
                pending=submitted - self._resolved,
                last_loss=c.last_loss,
                mean_loss=c.loss_sum / c.trained if c.trained else None,
                recent_loss=c.recent_loss,
                last_example_time=c.last_example_time,
                started_at=self._started_at,
            )

    def _peek_submitted(self) -> int:
        # itertools.count has no getter; its repr holds the next value.
        return int(repr(self._submitted)[6:-1])

    @property
    def history(self) -> list[TrainingExample]:
        """The newest ``history_size`` trained examples, oldest first (a copy)."""
        with self._book:
            return self._history.examples()

    @property
    def network(self) -> Network:
        """The engine's :class:`Network` (thread-safe; shared with the dispatcher)."""
        return self._network

    @property
    def features(self) -> Encoder:
        """The engine's encoder: ``engine.features.encode(x)`` is what the network sees."""
        return self._encoder

    @property
    def targets(self) -> TargetMapper:
        """The engine's target generator."""
        return self._targets

    @property
    def config(self) -> dict[str, Any]:
        """The engine's settings (JSON-serialisable except a callable target)."""
        return {
            "hidden_layers": list(self._hidden_layers),
            "activation": self._network_config["activation"],
            "loss": self._network_config["loss"],
            "optimizer": self._network_config["optimizer"],
            "learning_rate": self._network.get_config()["learning_rate"],
            "seed": self._network_config["seed"],
            "history_size": self._history_size,
            "log_every": self._log_every,
            "max_pending": self._max_pending,
            "workers": self._workers,
            "overload": self._overload,
            "batch_size": self._batch_size,
            "momentum": self._network_config["momentum"],
            "weight_decay": self._network_config["weight_decay"],
            "clip_norm": self._network_config["clip_norm"],
            "n_outputs": self._targets.n_outputs,
            "checkpoint_path": None if self._autosave is None else self._autosave.path,
            "checkpoint_every": None if self._autosave is None else self._autosave.every,
            "checkpoint_interval": None if self._autosave is None else self._autosave.interval,
        }


_SKIPPED_CLOSED = "skipped: the engine was closed before this step was queued"
_SKIPPED_FORKED = (
    "skipped in this child process: the parent process trains it (queued before os.fork())"
)
# .active: True inside dispatcher threads; .batch_of: the engine whose batch
# lock this thread holds (read by the fork handler).
_DISPATCHER = threading.local()


def _dispatch_loop(
    ref: weakref.ref[Engine],
    worker: int,
    queue: deque[tuple[object, StepFuture[StepResult]]],
    wake: threading.Event,
    idle: list[bool],
) -> None:
    """A dispatcher thread. It holds the engine only while training a batch,
    so an engine nobody references any more is garbage-collected (its
    finaliser drains the queue) instead of being kept alive by this thread."""
    _DISPATCHER.active = True
    while True:
        if not queue:
            engine = ref()
            if engine is None:
                return
            closing = engine._closing  # read before the queue: see _submit_lock
            del engine
            if closing and not queue:
                return
            idle[worker] = True
            if not queue:  # re-check: a producer may have appended meanwhile
                wake.wait(0.05)
            idle[worker] = False
            wake.clear()
            continue
        engine = ref()
        if engine is None:
            return
        engine._run_batch()
        del engine


def _ema(recent: float | None, losses: NDArray[np.float64]) -> float:
    """Fold ``losses`` one by one into an exponential moving average
    (weight ``_RECENT_WEIGHT`` per step), in closed form."""
    x = losses.astype(np.float64)
    if recent is None:
        recent, x = float(x[0]), x[1:]
    keep = 1.0 - _RECENT_WEIGHT
    n = len(x)
    weights = _RECENT_WEIGHT * keep ** np.arange(n - 1, -1, -1, dtype=np.float64)
    return float(recent * keep**n + weights @ x)


def _valid_items(items: list[object], errors: list[BaseException | None]) -> list[InteractionData]:
    """The items whose error is None (each checked to be an InteractionData)."""
    return cast(
        "list[InteractionData]",
        [it for it, e in zip(items, errors, strict=True) if e is None],
    )


def _new_result(fields: tuple[int, float, Any, StepStatus]) -> StepResult:
    """A trained step's result; tuple.__new__ skips NamedTuple's argument parsing."""
    return tuple.__new__(StepResult, (*fields, None))


def _select_rows(
    features: NDArray[np.float32] | tuple[Any, Any, Any], keep: list[int], sparse: bool
) -> NDArray[np.float32] | tuple[Any, Any, Any]:
    if not isinstance(features, tuple):
        return features[keep]
    indptr, indices, values = features
    parts_i = [indices[indptr[r] : indptr[r + 1]] for r in keep]
    parts_v = [values[indptr[r] : indptr[r + 1]] for r in keep]
    lengths = np.array([len(p) for p in parts_i], dtype=np.int64)
    new_indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    if parts_i:
        return new_indptr, np.concatenate(parts_i), np.concatenate(parts_v)
    return new_indptr, np.zeros(0, np.int32), np.zeros(0, np.float32)


def _sparse_rows(
    features: Any, mask: NDArray[np.bool_]
) -> list[tuple[NDArray[np.int32], NDArray[np.float32]]]:
    indptr, indices, values = features
    return [
        (indices[indptr[r] : indptr[r + 1]].copy(), values[indptr[r] : indptr[r + 1]].copy())
        for r in np.flatnonzero(mask).tolist()
    ]


def _short(item: object) -> str:
    text = repr(item)
    return text if len(text) <= 200 else text[:197] + "..."


Callback = Callable[[StepFuture[StepResult]], None]
