"""The :class:`Engine` facade: arguments, lifecycle, submission, reading, persistence.

It owns the pieces of :mod:`livelearn.engine` (queue, dispatcher, ledger) and
wires them together; the pieces never reference the engine itself, so an
engine nobody references is garbage-collected and its dispatcher drains.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from livelearn import persistence, tables
from livelearn.autosave import AutoSaver
from livelearn.engine.bookkeeping import Ledger
from livelearn.engine.dispatcher import Dispatcher
from livelearn.engine.forking import ForkHooks
from livelearn.engine.forking import register as register_for_fork
from livelearn.engine.inputs import outcome_blind
from livelearn.engine.joining import Joiner, wait_idle
from livelearn.engine.sharing import SharedAutoSaver, load_shared, open_shared, shared_counts
from livelearn.engine.submission import (
    FORKED_MESSAGE,
    POLICIES,
    ChunkFuture,
    OverloadPolicy,
    SubmissionQueue,
    TableChunk,
    rows_of,
)
from livelearn.errors import EngineClosed, EngineNotInitialized
from livelearn.features import Encoder, FeatureEncoder, HashedFeatureEncoder
from livelearn.feedback import Clock, EventId
from livelearn.field_network import FieldNetwork
from livelearn.futures import StepFuture, new_futures, resolve_all
from livelearn.history import History
from livelearn.interaction import InteractionData, InvalidInteraction
from livelearn.network import Network, network_config
from livelearn.results import (
    EngineStats,
    FeedbackStats,
    StepResult,
    StepStatus,
    TrainingExample,
)
from livelearn.targets import TargetFn, TargetMapper, TargetValue
from livelearn.validation import check_choice, check_int, check_name, check_sizes

__all__ = ["TABLE_CHUNK_ROWS", "Engine", "OverloadPolicy", "SubmitHook"]

#: Rows of a table per queue entry and native call in :meth:`Engine.train_table`
#: (at least ``batch_size``): other queued steps wait at most one chunk.
TABLE_CHUNK_ROWS = 4096

logger = logging.getLogger("livelearn")

_FORKED_MESSAGE = FORKED_MESSAGE
_SKIPPED_CLOSED = "skipped: the engine was closed before this step was queued"
_SKIPPED_FORKED = (
    "skipped in this child process: the parent process trains it (queued before os.fork())"
)
_SKIPPED_UNINITIALIZED = "skipped: the engine is not initialised (call initialize())"
_WORKERS_WARNING = (
    "workers={workers}: extra dispatcher threads only overlap the Python part of a "
    "batch (encoding, targets) with the native training of another; on this engine "
    "they were measured not to pay (see docs/concurrency.md)"
)

#: Called in the submitting thread with the Futures of one ``train_step`` or
#: ``train_many`` call, right after they were queued (see :meth:`Engine.add_submit_hook`).
SubmitHook = Callable[[Sequence[StepFuture[StepResult]]], None]

_MODELS = ("auto", "mlp", "field")


class _OneRowIndptr(dict[int, NDArray[np.int64]]):
    """``[0, n]`` as an int64 array, built once per ``n`` (a one-row CSR)."""

    def __missing__(self, n: int) -> NDArray[np.int64]:
        value = np.array([0, n], dtype=np.int64)
        value.flags.writeable = False
        if len(self) < 4096:
            self[n] = value
        return value


_ONE_ROW = _OneRowIndptr()


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
            interaction's own ``label`` always wins. **The outcome is never an
            input**: with ``targets`` given, the network does not see the action
            type (the built-in encoders leave it out, see
            :mod:`livelearn.engine.inputs`; a custom encoder that uses it is
            refused with ``ValueError``), so :meth:`predict` answers "how likely
            is a positive outcome for this user, in this context, now" whatever
            action type the query carries. Put the item or candidate in
            ``context``. Without ``targets`` (explicit labels) the action type
            may stay an input.
        history_size: how many trained examples :attr:`history` keeps.
        log_every: log the loss at INFO every this many trained steps (0: never).
        max_pending: most interactions queued at once; see ``overload``.
        workers: dispatcher threads. With more than one, one batch is encoded
            and its targets computed (in Python) while another is inside its
            GIL-free native call; batches are still trained one at a time, in
            the order they enter the native call, which may differ from
            submission order (within a batch, submission order holds); target
            functions and encoders may then run in several threads at once.
            1 (default) trains in submission order. Above 1 a
            ``RuntimeWarning`` says it was measured not to pay on a 2-core
            machine (see the concurrency docs).
        overload: what ``train_step`` does when ``max_pending`` are queued:
            ``"block"`` waits for room, ``"raise"`` raises
            :class:`EngineOverloaded`, ``"drop_oldest"`` drops the oldest queued
            step (its Future resolves as skipped).
        batch_size: most interactions per native call. Smaller batches give
            shorter GIL-held stretches (lower caller latency), larger ones more
            throughput.
        n_outputs: network outputs (default: the targets' ``n_outputs``, else 1).
        momentum, weight_decay, clip_norm: optimizer options of :class:`Network`.

        checkpoint_path: where periodic checkpoints go (see :meth:`save`); needs
            ``checkpoint_every`` and/or ``checkpoint_interval``.
        checkpoint_every: save after every this many trained steps.
        model: ``"mlp"`` (the :class:`Network` over the encoder's inputs),
            ``"field"`` (a :class:`FieldNetwork`: wide + factorization machine
            over the hashed fields of a :class:`HashedFeatureEncoder`, AdaGrad,
            one output) or ``"auto"`` (default): the field model when
            ``features`` is a :class:`HashedFeatureEncoder`, there is one
            output and ``hidden_layers``, ``activation``, ``optimizer``,
            ``learning_rate``, ``momentum``, ``weight_decay`` and
            ``clip_norm`` are at their defaults (those arguments configure
            the MLP only); else the MLP. ``Engine()`` is the seed's 4-input MLP.
        embedding_dim: the field model's embedding size per hashed feature.
        share: a name (letters, digits, ``.``, ``_``, ``-``): every engine of this
            machine with the same ``share`` and the same network configuration
            trains and predicts one model in shared memory (see
            :mod:`livelearn.engine.sharing` and the sharing docs); each keeps its
            own queue, Futures, history and counters, ``network.steps`` counts
            every process's steps and :meth:`stats` shows both. The MLP only
            (``model="auto"`` picks it). Raises
            :class:`~livelearn.errors.ShareError` if the share holds another
            configuration.
        running_bias: whether the network's output bias is a running mean of
            the target (see :class:`~livelearn.network.Network`) rather than a
            gradient step; ``None``: the model's default (off for the MLP, on
            for the field model). Not with ``share``.
        checkpoint_interval: save when this many seconds passed since the last save
            (checked after each batch). A due save runs in a background thread
            (one at a time); training only pauses while the state is copied.
            Call :meth:`save` yourself for a final checkpoint after :meth:`close`.

        Delayed feedback (see :meth:`feedback` and :mod:`livelearn.engine.joining`):

        feedback_timeout: seconds a prediction made with ``predict(it,
            event_id=...)`` waits for its outcome; None (default) turns the loop off.
        default_label: the label an example trains with when no outcome came
            within the timeout (0.0: "no click"); None drops it instead.
        max_awaiting: at most this many examples wait; when full, the one with
            the earliest deadline leaves early under the same rule (evicted).
        late_policy: an outcome after the window closed: ``"ignore"`` (counted)
            or ``"correct"`` (trains the late label once, weight 1, when it
            differs from the default label that trained: the fake-negative
            correction).
        duplicate_policy: ``"first"`` (the first outcome trains at once, later
            ones are duplicates) or ``"max"``, ``"sum"``, ``"last"`` (aggregate
            until the window closes, then train the aggregate).
        clock: ``"wall"`` (default, POSIX seconds), ``"event"`` (the events'
            own time: ``interaction.timestamp`` at predict, ``timestamp=`` at
            feedback; replays are deterministic) or an object with ``now()``.
        negative_sampling: keep a label-0 example of the delayed-feedback loop
            (an expiry with ``default_label=0.0``, or a 0 outcome) with this
            probability and train it with weight ``1/r`` (predictions stay
            calibrated); ``train_step`` examples are not sampled.
        awaiting_on_close: what :meth:`close` does with awaiting examples:
            ``"keep"`` (default: they stay, and a :meth:`save` after
            :meth:`close` keeps them for :meth:`load`) or ``"expire"`` (their
            windows close now, under the timeout rule).
        quality_window: how many recent outcomes the live quality of
            ``stats().feedback`` covers.

    After ``os.fork()`` the child's copy of an engine refuses ``train_step``,
    ``train_many`` and ``predict`` with :class:`EngineClosed` (its dispatcher
    thread does not survive a fork; the fork waits for the native call in flight, so no
    lock is inherited mid-step); ``stats()``, ``history`` and ``save()`` still
    work there. Create engines after forking, e.g. in each worker of a
    pre-forking server.

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
        model: str = "auto",
        embedding_dim: int = 8,
        feedback_timeout: float | None = None,
        default_label: float | None = 0.0,
        max_awaiting: int = 100_000,
        late_policy: str = "ignore",
        duplicate_policy: str = "first",
        clock: str | Clock | None = "wall",
        negative_sampling: float | None = None,
        awaiting_on_close: str = "keep",
        quality_window: int = 10_000,
        share: str | None = None,
        running_bias: bool | None = None,
    ) -> None:
        hidden = check_sizes("hidden_layers", hidden_layers)
        if running_bias is not None and not isinstance(running_bias, bool):
            raise TypeError(f"running_bias: expected a bool or None, got {running_bias!r}")
        check_choice("model", model, _MODELS)
        embedding_dim = check_int("embedding_dim", embedding_dim, 1, 1024)
        self._history_size = check_int("history_size", history_size, 0, 10_000_000)
        self._log_every = check_int("log_every", log_every, 0)
        self._max_pending = check_int("max_pending", max_pending, 1)
        self._workers = check_int("workers", workers, 1, 64)
        self._batch_size = check_int("batch_size", batch_size, 1, 1_000_000)
        self._overload = cast("OverloadPolicy", check_choice("overload", overload, POLICIES))
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
        self._encoder = outcome_blind(self._encoder, mapper)
        # The native constructor would answer a non-str with pybind11's
        # multi-line overload listing; unknown names it rejects itself.
        check_name("activation", activation, "tanh")
        check_name("loss", loss, "bce")
        check_name("optimizer", optimizer, "sgd")
        mlp_defaults = (
            tuple(hidden) == (16, 8)
            and activation == "tanh"
            and optimizer == "sgd"
            and learning_rate == 0.05
            and momentum == 0.0
            and weight_decay == 0.0
            and clip_norm is None
        )
        if share is not None and model == "field":
            raise ValueError("share: the field model cannot be shared yet; use model='mlp'")
        if model == "auto":
            auto_field = share is None and (
                isinstance(self._encoder, HashedFeatureEncoder)
                and mlp_defaults
                and mapper.n_outputs == 1
            )
            model = "field" if auto_field else "mlp"
        self._model = model
        self._embedding_dim = embedding_dim
        self._mlp_args: dict[str, Any] = {
            "activation": activation,
            "optimizer": optimizer,
            "learning_rate": learning_rate,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "clip_norm": clip_norm,
            "seed": seed,
        }
        self._network: Network | FieldNetwork
        if model == "field":
            enc = self._encoder
            if not isinstance(enc, HashedFeatureEncoder) or mapper.n_outputs != 1:
                raise ValueError(
                    "model: 'field' needs a HashedFeatureEncoder and one output "
                    f"(got {type(enc).__name__}, n_outputs={mapper.n_outputs})"
                )
            self._network_config = {
                "n_buckets": enc.get_config()["n_buckets"],
                "n_fields": len(enc.field_names),
                "embedding_dim": embedding_dim,
                "n_dense": enc.n_dense,
                "loss": loss,
                "seed": seed,
            }
            if running_bias is not None:
                self._network_config["running_bias"] = running_bias
            self._network = FieldNetwork(**self._network_config)
        else:
            # Building the network validates every optimizer argument now, not later.
            self._network_config = network_config(
                self._encoder.n_inputs,
                hidden,
                mapper.n_outputs,
                activation=activation,
                loss=loss,
                optimizer=optimizer,
                learning_rate=learning_rate,
                momentum=momentum,
                weight_decay=weight_decay,
                clip_norm=clip_norm,
                seed=seed,
                running_bias=bool(running_bias),
            )
            if share is None:
                self._network = Network(**self._network_config)
            else:
                self._network = open_shared(self._network_config, share)
        self._share = share
        self._hidden_layers = hidden
        if self._workers > 1:
            warnings.warn(
                _WORKERS_WARNING.format(workers=self._workers), RuntimeWarning, stacklevel=2
            )

        self._done = threading.Condition()  # shared by every Future of this engine
        self._ledger = Ledger(
            History(
                self._history_size, self._encoder.n_inputs, mapper.n_outputs, self._encoder.sparse
            ),
            self._log_every,
        )
        self._queue = SubmissionQueue(
            self._max_pending, self._overload, self._batch_size, self._ledger, self._done
        )
        self._autosave: AutoSaver | None = None  # None: no cost on the hot path
        if (checkpoint_path, checkpoint_every, checkpoint_interval) != (None, None, None):
            if share is None:
                self._autosave = AutoSaver(checkpoint_path, checkpoint_every, checkpoint_interval)
            else:  # one process of the share saves at a time
                self._autosave = SharedAutoSaver(
                    checkpoint_path,
                    checkpoint_every,
                    checkpoint_interval,
                    cast("Any", self._network),
                )
        self._dispatcher = Dispatcher(
            self._queue,
            self._encoder,
            mapper,
            self._network,
            self._ledger,
            self._done,
            self._workers,
            self._autosave,
            weakref.ref(self),
        )
        self._joins: Joiner | None = None
        self._feedback_config: dict[str, Any] = {"feedback_timeout": None}
        if feedback_timeout is not None:
            self._joins = Joiner(
                timeout=feedback_timeout,
                default_label=default_label,
                max_awaiting=max_awaiting,
                late_policy=late_policy,
                duplicate_policy=duplicate_policy,
                clock=clock,
                negative_sampling=negative_sampling,
                awaiting_on_close=awaiting_on_close,
                quality_window=quality_window,
                seed=seed,
                encoder=self._encoder,
                network=self._network,
                targets=mapper,
                loss=self._network_config["loss"],
                queue=self._queue,
                ledger=self._ledger,
                done=self._done,
                batch_size=self._batch_size,
            )
            self._dispatcher.joins = self._joins
            if not self._joins.event_time:
                self._dispatcher.tick = self._joins.tick
            self._feedback_config = {
                "feedback_timeout": self._joins.store.timeout,
                "default_label": self._joins.store.default_label,
                "max_awaiting": max_awaiting,
                "late_policy": late_policy,
                "duplicate_policy": duplicate_policy,
                "clock": self._joins.clock_name,
                "negative_sampling": self._joins.negative_sampling,
                "awaiting_on_close": awaiting_on_close,
                "quality_window": quality_window,
            }
        elif negative_sampling is not None:
            raise ValueError(
                "negative_sampling: needs the delayed-feedback loop (feedback_timeout)"
            )
        self._submit_hooks: list[SubmitHook] = []
        self._initialized = False
        self._closed = False
        self._started_at: float | None = None
        self._state_lock = threading.Lock()  # initialize/close transitions
        register_for_fork(self, _FORK_HOOKS)

    # Names the persistence glue below reads (kept so it stays verbatim).
    @property
    def _batch_lock(self) -> threading.Lock:
        return self._dispatcher.train_lock

    @property
    def _book(self) -> threading.Lock:
        return self._ledger.lock

    @property
    def _history(self) -> History:
        return self._ledger.history

    @property
    def _counters(self) -> Any:
        return self._ledger.counters

    @property
    def _closing(self) -> bool:
        return self._queue.closing

    @property
    def _forked(self) -> bool:
        return self._queue.forked

    # ------------------------------------------------------------------ lifecycle
    def initialize(self) -> Engine:
        """Start the dispatcher; idempotent. Returns the engine for chaining."""
        with self._state_lock:
            if self._closed or self._closing:
                raise EngineClosed("this engine was closed; create a new one")
            if self._initialized:
                return self
            self._started_at = time.time()
            self._initialized = True
            self._dispatcher.start()
            # A forgotten engine stops its dispatcher, which drains the queue;
            # the finaliser itself trains nothing. Exit is the dispatcher's job.
            finalizer = weakref.finalize(self, self._dispatcher.stop)
            finalizer.atexit = False
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
        with self._state_lock:
            if self._joins is not None and self._initialized:
                self._joins.close()  # awaiting examples: awaiting_on_close
            self._queue.close()
        if wait:
            self._closed = self._dispatcher.join(timeout)
            if self._closed and isinstance(self._network, Network) and self._share is not None:
                self._network.release_share()  # still readable here; the last removes it

    def __enter__(self) -> Engine:
        return self.initialize()

    def __exit__(self, *exc: object) -> None:
        self.close(wait=True)

    def __repr__(self) -> str:
        state = "closed" if self._closing else "running" if self._initialized else "new"
        if self._model == "field":
            cfg = self._network.get_config()
            return (
                f"Engine(model='field', n_fields={cfg['n_fields']}, "
                f"embedding_dim={cfg['embedding_dim']}, loss={cfg['loss']!r}, "
                f"optimizer={cfg['optimizer']!r}, "
                f"features={type(self._encoder).__name__}, state={state}, "
                f"steps={self._counters.trained})"
            )
        return (
            f"Engine(layers={self._network_config['layers']}, "
            f"activation={self._network_config['activation']!r}, "
            f"loss={self._network_config['loss']!r}, "
            f"optimizer={self._network_config['optimizer']!r}, "
            f"features={type(self._encoder).__name__}, state={state}, "
            f"steps={self._counters.trained})"
        )

    # ------------------------------------------------------------------ fork
    def _before_fork(self) -> None:
        """Fork hook (see :mod:`livelearn.engine.forking`): wait for the native
        call in flight and for a batch being resolved."""
        self._dispatcher.before_fork()
        self._done.acquire()

    def _after_fork_in_parent(self) -> None:
        """Fork hook: undo :meth:`_before_fork`."""
        self._done.release()
        self._dispatcher.after_fork_in_parent()

    def _after_fork_in_child(self) -> None:
        """Fork hook. The child has no dispatcher threads; every lock is replaced
        (another thread of the parent may have held one). The engine stays
        readable (stats, history, save) and refuses new work with a clear error.
        Steps the parent had queued or in flight are the parent's to train:
        their copies here are resolved as skipped, so nothing waits forever."""
        self._done.release()  # the same condition: the child's Futures keep it
        self._state_lock = threading.Lock()
        self._ledger.after_fork_in_child()
        if self._joins is not None:
            self._joins.after_fork_in_child()
        inherited = self._queue.after_fork_in_child()
        inherited += self._dispatcher.after_fork_in_child()
        if inherited:
            self._skip(inherited, _SKIPPED_FORKED)

    # ------------------------------------------------------------------ submit
    def add_submit_hook(self, hook: SubmitHook) -> None:
        """Call ``hook(futures)`` for every ``train_step``/``train_many`` call.

        It runs in the submitting thread, with the Futures that call returns,
        right after they were queued (some may already be resolved). An
        exception from a hook is logged, never raised to the submitter. Used
        by :mod:`livelearn.metrics` to time submissions.

        Example:
            >>> from livelearn import Engine, InteractionData
            >>> seen = []
            >>> with Engine(targets={"click": 1.0}) as engine:
            ...     engine.add_submit_hook(lambda futures: seen.append(len(futures)))
            ...     _ = engine.train_step(InteractionData("click", 0.0, "u"))
            ...     _ = engine.train_many([InteractionData("click", 0.0, "u")] * 3)
            >>> seen
            [1, 3]
        """
        if not callable(hook):
            raise ValueError(f"hook: must be callable, got {type(hook).__name__}")
        self._submit_hooks = [*self._submit_hooks, hook]  # copy: readers never lock

    def remove_submit_hook(self, hook: SubmitHook) -> None:
        """Undo :meth:`add_submit_hook` (``ValueError`` if ``hook`` is not installed)."""
        hooks = list(self._submit_hooks)
        try:
            hooks.remove(hook)
        except ValueError:
            raise ValueError("hook: not installed on this engine") from None
        self._submit_hooks = hooks

    def _notify_submit(self, futures: Sequence[StepFuture[StepResult]]) -> None:
        for hook in self._submit_hooks:
            try:
                hook(futures)
            except Exception:
                logger.exception("submit hook %r failed", hook)

    def train_step(self, interaction: InteractionData) -> StepFuture[StepResult]:
        """Queue one training step; returns at once with its Future.

        The Future's result is a :class:`StepResult`. Invalid input makes the
        Future raise :class:`InvalidInteraction` (the model is untouched).
        Before :meth:`initialize` the step is skipped (an already finished
        Future says so). Raises :class:`EngineClosed` after :meth:`close`, and
        :class:`EngineOverloaded` under the ``"raise"`` policy when full.
        """
        if self._initialized:
            future = self._queue.put(interaction)
        elif self._closing:
            raise EngineClosed("train_step after close()")
        else:
            future = StepFuture(self._done)
            self._skip_uninitialized([future])
        if self._submit_hooks:
            self._notify_submit((future,))
        return future

    def train_many(self, interactions: Iterable[InteractionData]) -> list[StepFuture[StepResult]]:
        """Queue one step per interaction, in order; returns one Future each.

        One Future per interaction (not one for the batch), so each caller can
        wait for, and score, its own event. Cheaper per event than calling
        :meth:`train_step` in a loop.
        """
        if self._closing:
            raise EngineClosed(self._queue.closed_message("train_many"))
        items = list(interactions)
        done = self._done
        futures: list[StepFuture[StepResult]] = new_futures(done, len(items))
        if not self._initialized:
            self._skip_uninitialized(futures)
        else:
            n = len(items)
            queued = self._queue.put_many(items, futures)
            if queued < n:
                if queued == 0:
                    raise EngineClosed(self._queue.closed_message("train_many"))
                # Closed midway: the queued part trains and keeps its Futures; the
                # rest is resolved as skipped, so the caller still gets one per item.
                logger.warning("%d step(s) %s", n - queued, _SKIPPED_CLOSED)
                self._submit_skipped(futures[queued:], _SKIPPED_CLOSED)
        if self._submit_hooks:
            self._notify_submit(futures)
        return futures

    def _skip(self, futures: list[StepFuture[StepResult]], reason: str) -> None:
        """Resolve already-counted Futures as skipped (never trained)."""
        self._ledger.skipped(rows_of(futures))  # a table chunk's Future counts its rows
        result = StepResult(None, None, None, StepStatus.SKIPPED, reason)
        resolve_all(self._done, futures, [result] * len(futures))

    def _skip_uninitialized(self, futures: list[StepFuture[StepResult]]) -> None:
        logger.warning("%d step(s) %s", len(futures), _SKIPPED_UNINITIALIZED)
        self._submit_skipped(futures, _SKIPPED_UNINITIALIZED)

    def _submit_skipped(self, futures: list[StepFuture[StepResult]], reason: str) -> None:
        """Count Futures handed out for steps that will never be queued, and
        resolve them as skipped."""
        self._queue.count(len(futures))
        self._skip(futures, reason)

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
        clock: Clock | None = None,
        share: str | None = None,
    ) -> Engine:
        """Rebuild an engine from :meth:`save` output, exactly where it stopped.

        ``targets`` supplies the function when the saved engine used a callable
        target (functions are not stored). Raises
        :class:`~livelearn.checkpoint.CheckpointError` for any damaged or
        foreign file; nothing half-loaded is ever returned. ``clock`` supplies
        the clock object of an engine saved with a custom one; examples that
        awaited their outcome at the save await it again. With ``share``, the
        first live process of the share loads the file into the shared model;
        later ones attach and keep the live model (see
        :func:`livelearn.engine.sharing.load_shared`).
        """
        if share is not None:
            return load_shared(path, cls, share, targets=targets, initialize=initialize)
        return persistence.load_engine(
            path, cls, targets=targets, initialize=initialize, clock=clock
        )

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
            if self._joins is not None:
                join_tensors, meta["join"] = self._joins.export_state()
                tensors.update({f"join.{k}": v for k, v in join_tensors.items()})
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
            check_int(f"counters.{name}", counters[name], 0)
        n_hist = len(hist.get("steps", ()))
        if n_hist > self._history_size:
            raise ValueError(
                f"history: {n_hist} examples saved but history_size is {self._history_size}"
            )
        join = meta.get("join")
        if join is not None and self._joins is None:
            raise ValueError("join: awaiting examples saved but feedback_timeout is not set")
        with self._batch_lock, self._book:
            probe = History(
                self._history_size,
                self._encoder.n_inputs,
                self._targets.n_outputs,
                self._encoder.sparse,
            )
            probe.restore(hist)  # validates shapes before the network is touched
            if join is not None and self._joins is not None:  # validates, then replaces
                self._joins.import_state(
                    {k[5:]: v for k, v in tensors.items() if k.startswith("join.")}, join
                )
            self._network.set_state(net_state)
            self._ledger.history = probe
            c = self._counters
            c.trained, c.skipped, c.rejected, c.failed = (int(counters[n]) for n in names)
            c.loss_sum = float(counters["loss_sum"])
            c.last_loss = counters["last_loss"]
            c.recent_loss = counters["recent_loss"]
            c.last_example_time = counters["last_example_time"]
            done = c.trained + c.skipped + c.rejected + c.failed
            with self._queue.lock:
                pending = self._queue.submitted - self._ledger.resolved
                self._queue.submitted = done + pending
            self._ledger.resolved = done
            if self._autosave is not None:  # the next periodic save counts from here
                self._autosave.mark_saved(c.trained)

    # ------------------------------------------------------------------ read side
    def predict(
        self, interaction: InteractionData, *, event_id: EventId | None = None
    ) -> float | NDArray[np.float32]:
        """The model's current output for ``interaction``: a float for one
        output (a probability with ``loss="bce"``), else an array.

        With ``event_id`` (needs ``feedback_timeout``) the encoded features,
        the prediction and the time also wait for the outcome, which
        :meth:`feedback` supplies. Raises
        :class:`~livelearn.errors.DuplicateEventId` when ``event_id`` already
        awaits its outcome, :class:`~livelearn.errors.InvalidFeedback` for an
        ill-typed id (nothing is kept then).

        Runs in the caller's thread, concurrently with training: it waits for
        at most one native training step. Raises :class:`InvalidInteraction`
        for bad input and :class:`EngineNotInitialized` before
        :meth:`initialize`.
        """
        if event_id is not None:
            return self._joiner("predict(event_id=...)").predict(interaction, event_id)
        if not self._initialized:
            raise EngineNotInitialized("predict() before initialize()")
        if self._forked:
            raise EngineClosed(_FORKED_MESSAGE)
        enc = self._encoder
        kind = type(enc)
        if kind is FeatureEncoder or kind is HashedFeatureEncoder:
            # One row, the lean way: the built-in encoders' one-row form and a
            # single native forward pass (same values as predict_many).
            if not isinstance(interaction, InteractionData):
                raise InvalidInteraction(
                    "interaction", f"expected InteractionData, got {type(interaction).__name__}"
                )
            network = self._network
            if isinstance(network, FieldNetwork):
                hashed = cast("HashedFeatureEncoder", enc)
                _, indices, values, fields, dense = hashed.encode_fields_many((interaction,))
                return network.predict_row(
                    indices, values, fields, dense[0] if hashed.n_dense else None
                )
            if kind is FeatureEncoder:
                row = network.predict(enc.encode(interaction))
            else:
                indices, values = enc.encode_sparse(interaction)
                row = network.predict_sparse(_ONE_ROW[len(indices)], indices, values)[0]
            return float(row[0]) if len(row) == 1 else row
        out = self.predict_many([interaction])
        return float(out[0, 0]) if out.shape[1] == 1 else out[0]

    def feedback(
        self,
        event_id: EventId,
        label: float | None = None,
        *,
        action_type: str | None = None,
        timestamp: float | None = None,
    ) -> StepFuture[StepResult]:
        """The outcome of ``predict(..., event_id=event_id)``: queues its training
        step (the row the network saw then) like :meth:`train_step`.

        ``label`` is the target, or ``action_type`` names one through the
        ``targets`` map; ``timestamp`` is the outcome's time (default: the
        clock's now). Returns at once; the Future's :class:`StepResult` says
        what happened: the step's result, or ``DUPLICATE``, ``LATE``,
        ``UNKNOWN`` (never an exception for those); an invalid label, id or
        time makes the Future raise :class:`~livelearn.errors.InvalidFeedback`.
        Raises :class:`EngineClosed` after :meth:`close`.

        Example:
            >>> from livelearn import Engine, InteractionData
            >>> with Engine(feedback_timeout=60.0, default_label=0.0) as engine:
            ...     p = engine.predict(InteractionData("view", 0.0, "u1"), event_id="imp-1")
            ...     first = engine.feedback("imp-1", 1.0).result()
            ...     again = engine.feedback("imp-1", 1.0).result()
            >>> first.status, again.status, 0.0 < p < 1.0
            (<StepStatus.TRAINED: 'trained'>, <StepStatus.DUPLICATE: 'duplicate'>, True)
        """
        return self._joiner("feedback").feedback(event_id, label, action_type, timestamp)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no step is pending (every queued step resolved, join
        steps included); True unless ``timeout`` seconds passed first. A replay
        that waits before each ``predict`` serves the same predictions on every
        run (see :mod:`livelearn.engine.joining`).

        Example:
            >>> from livelearn import Engine, InteractionData
            >>> with Engine(targets={"click": 1.0}) as engine:
            ...     _ = engine.train_step(InteractionData("click", 0.0, "u"))
            ...     engine.wait_idle(), engine.stats().pending
            (True, 0)
        """
        return wait_idle(self._queue, self._ledger, self._done, timeout)

    def _joiner(self, call: str) -> Joiner:
        joins = self._joins
        if joins is None:
            raise ValueError(f"{call}: delayed feedback is off (set Engine(feedback_timeout=...))")
        if self._forked:
            raise EngineClosed(_FORKED_MESSAGE)
        if self._closing:
            raise EngineClosed(f"{call} after close()")
        if not self._initialized:
            raise EngineNotInitialized(f"{call} before initialize()")
        return joins

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

        if self._overload == "block" and len(self._queue.items) >= self._max_pending:
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
        network = self._network
        if isinstance(network, FieldNetwork):
            enc = cast("HashedFeatureEncoder", self._encoder)
            indptr, indices, values, fields, dense = enc.encode_fields_many(items)
            return network.predict(indptr, indices, values, fields, dense if enc.n_dense else None)
        if self._encoder.sparse:
            indptr, indices, values = self._encoder.encode_sparse_many(items)
            return network.predict_sparse(indptr, indices, values)
        X = self._encoder.encode_many(items)
        return network.predict(X)

    def stats(self) -> EngineStats:
        """A consistent snapshot of the counters (taken between two batches);
        ``feedback`` holds the delayed-feedback loop's counters and live quality."""
        fb: FeedbackStats | None = None if self._joins is None else self._joins.stats()
        with self._book:
            c = self._counters
            submitted = self._queue.submitted
            return EngineStats(
                steps=c.trained,
                interactions=submitted,
                skipped=c.skipped,
                rejected=c.rejected,
                failed=c.failed,
                pending=submitted - self._ledger.resolved,
                last_loss=c.last_loss,
                mean_loss=c.loss_sum / c.trained if c.trained else None,
                recent_loss=c.recent_loss,
                last_example_time=c.last_example_time,
                started_at=self._started_at,
                feedback=fb,
                **self._model_counts(),
            )

    def _model_counts(self) -> dict[str, int]:
        """The shared model's counters for :meth:`stats` (none when not shared)."""
        counts = shared_counts(cast("Network", self._network)) if self._share else None
        if counts is None:
            return {}
        return {"model_steps": counts[0], "model_version": counts[1]}

    @property
    def history(self) -> list[TrainingExample]:
        """The newest ``history_size`` trained examples, oldest first (a copy)."""
        with self._book:
            return self._history.examples()

    @property
    def network(self) -> Network | FieldNetwork:
        """The engine's model: a :class:`Network` (the MLP) or, with
        ``model="field"``, a :class:`FieldNetwork` (thread-safe; shared with
        the dispatcher)."""
        return self._network

    @property
    def features(self) -> Encoder:
        """The engine's encoder: ``engine.features.encode(x)`` is what the network sees
        (with ``targets`` given, a built-in encoder's form without the action type)."""
        return self._encoder

    @property
    def targets(self) -> TargetMapper:
        """The engine's target generator."""
        return self._targets

    @property
    def config(self) -> dict[str, Any]:
        """The engine's settings (JSON-serialisable except a callable target)."""
        mlp = self._mlp_args if self._model == "field" else self._network_config
        learning_rate = (
            self._mlp_args["learning_rate"]
            if self._model == "field"
            else self._network.get_config()["learning_rate"]
        )
        return {
            "model": self._model,
            "embedding_dim": self._embedding_dim,
            "hidden_layers": list(self._hidden_layers),
            "activation": mlp["activation"],
            "loss": self._network_config["loss"],
            "optimizer": mlp["optimizer"],
            "learning_rate": learning_rate,
            "seed": self._network_config["seed"],
            "history_size": self._history_size,
            "log_every": self._log_every,
            "max_pending": self._max_pending,
            "workers": self._workers,
            "overload": self._overload,
            "batch_size": self._batch_size,
            "momentum": mlp["momentum"],
            "weight_decay": mlp["weight_decay"],
            "clip_norm": mlp["clip_norm"],
            "n_outputs": self._targets.n_outputs,
            "checkpoint_path": None if self._autosave is None else self._autosave.path,
            "checkpoint_every": None if self._autosave is None else self._autosave.every,
            "checkpoint_interval": None if self._autosave is None else self._autosave.interval,
            **self._feedback_config,
        }

    # ------------------------------------------------------------------ tables
    def train_table(
        self, table: tables.Table, *, strict: bool = False
    ) -> Future[tables.TableResult]:
        """Train on every row of a table, in order, one step per row; returns at
        once with a Future of the :class:`~livelearn.tables.TableResult`.

        ``table``: a pandas DataFrame, a pyarrow Table or a mapping of column
        name -> array, with columns named like the ``InteractionData`` fields
        and ``context.<key>`` for context values (see :mod:`livelearn.tables`).
        Each row is validated like ``InteractionData``; an invalid row is
        skipped, logged and reported by index (status ``"invalid"``), or with
        ``strict=True`` the whole call is refused with
        :class:`InvalidInteraction` (``field`` reads ``"row <i>: <field>"``)
        and nothing is queued. The valid rows are queued in chunks (one queue
        entry and one native call per chunk of up to ``TABLE_CHUNK_ROWS``
        rows, in order with other queued steps), prepared and booked exactly
        like :meth:`train_many` steps: the same counters, history, logs,
        rejections and non-finite guard. With ``overload="raise"`` the whole
        table must fit in ``max_pending``; the other policies queue it past
        the bound (one call).

        Example:
            >>> from livelearn import Engine
            >>> with Engine(targets={"click": 1.0, "skip": 0.0}) as engine:
            ...     result = engine.train_table({
            ...         "action_type": ["click", "skip", "click"],
            ...         "timestamp": [1.0, 2.0, -3.0], "user_id": ["u1", "u2", "u1"],
            ...         "context.page": ["home", None, "cart"]}).result()
            >>> result.status.tolist(), result.step.tolist()
            (['trained', 'trained', 'invalid'], [1, 2, -1])
        """
        rows, errors = tables.interactions_from_table(table)
        tables.check_rows(errors, strict, "train_table")
        valid: list[object] = [it for it in rows if it is not None]
        if self._closing:
            raise EngineClosed(self._queue.closed_message("train_table"))
        if not self._initialized or self._submit_hooks or not valid:
            # Per-step Futures: skipped as train_many skips them, or seen by the hooks.
            futures = self.train_many(cast("list[InteractionData]", valid))
            return tables.collect(rows, errors, futures, self._targets.n_outputs)
        size = max(self._batch_size, TABLE_CHUNK_ROWS)
        chunks = [TableChunk(valid[i : i + size]) for i in range(0, len(valid), size)]
        chunk_futures = [ChunkFuture(self._done, len(c.items)) for c in chunks]
        if not self._queue.put_chunks(chunks, chunk_futures):
            raise EngineClosed(self._queue.closed_message("train_table"))
        return tables.collect_chunks(rows, errors, chunk_futures, self._targets.n_outputs)

    def predict_table(self, table: tables.Table, *, strict: bool = False) -> NDArray[np.float32]:
        """Outputs for every row of a table (as :meth:`train_table` reads it),
        shape ``(n_rows, n_outputs)``; NaN for an invalid row (logged), or with
        ``strict=True`` :class:`InvalidInteraction` naming the row.

        Example:
            >>> from livelearn import Engine
            >>> with Engine(targets={"click": 1.0}) as engine:
            ...     engine.predict_table({"action_type": ["click"] * 2,
            ...         "timestamp": [0.0, 1.0], "user_id": [1, 2]}).shape
            (2, 1)
        """
        rows, errors = tables.interactions_from_table(table)
        tables.check_rows(errors, strict, "predict_table")
        valid = [it for it in rows if it is not None]
        return tables.spread_predictions(rows, self.predict_many(valid))


_FORK_HOOKS = ForkHooks(
    Engine._before_fork, Engine._after_fork_in_parent, Engine._after_fork_in_child
)
