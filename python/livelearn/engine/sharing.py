"""``Engine(share="NAME")``: many processes of one machine, one model.

Every engine (or :class:`~livelearn.Network`) created with the same ``share``
name and the same network configuration trains and predicts **one** model whose
weights, optimizer state, step counter and version live in one POSIX
shared-memory segment (``/dev/shm/livelearn-NAME``), guarded by a robust
process-shared mutex in the segment (see ``cpp/include/livelearn/shared_segment.hpp``
and ``docs/sharing.md``). Each process keeps its own queue, dispatcher, Futures,
history and counters.

This module holds the Python side: :class:`SharedNetwork` (the engine's model
when shared), :class:`SharedAutoSaver` (one process autosaves at a time),
:func:`load_shared` (``Engine.load(path, share=...)``) and the exit hook that
releases every share this process still holds.

Example:
    >>> from livelearn import Engine, InteractionData
    >>> a = Engine(targets={"click": 1.0, "skip": 0.0}, share="doc-example").initialize()
    >>> b = Engine(targets={"click": 1.0, "skip": 0.0}, share="doc-example").initialize()
    >>> _ = a.train_step(InteractionData("click", 0.0, "u1")).result()
    >>> b.network.steps, b.stats().model_steps, b.stats().steps
    (1, 1, 0)
    >>> a.close(); b.close()
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import logging
import os
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from numpy.typing import NDArray

from livelearn import persistence
from livelearn.autosave import AutoSaver
from livelearn.network import Network
from livelearn.targets import TargetFn

__all__ = ["SharedAutoSaver", "SharedNetwork", "check_share", "load_shared", "open_shared"]

logger = logging.getLogger("livelearn")

E = TypeVar("E", bound=persistence.EngineState)

#: True while ``Engine.load(path, share=...)`` builds an engine that attached to a
#: share other live processes use: the checkpoint's model is then not written.
_KEEP_LIVE_MODEL: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "livelearn_keep_live_model", default=False
)

_OPEN: weakref.WeakSet[SharedNetwork] = weakref.WeakSet()


def check_share(share: object) -> str:
    """The share name, checked: a non-empty ``str`` of letters, digits, ``.``,
    ``_`` and ``-`` (at most 200); ``TypeError``/``ValueError`` otherwise.

    Example:
        >>> check_share("recs-v1")
        'recs-v1'
    """
    if not isinstance(share, str):
        raise TypeError(f"share: expected a str, got {type(share).__name__}")
    ok = share and len(share) <= 200 and not share.startswith(".")
    if not ok or any(not (c.isascii() and (c.isalnum() or c in "._-")) for c in share):
        raise ValueError(
            f"share: {share!r} must be 1 to 200 letters, digits, '.', '_' or '-' "
            "(not starting with '.')"
        )
    return share


class SharedNetwork(Network):
    """A :class:`~livelearn.Network` whose state lives in a shared-memory segment.

    Built by :func:`open_shared` (``Engine(share=...)``); every computing method
    is the native one. ``share_info`` says whether this process created the
    segment, took over a stale one (``recovered``), how many processes use it
    and how many half-written steps of killed processes were rolled back
    (``repairs``).
    """

    def set_state(self, state: dict[str, NDArray[Any]]) -> None:
        """Load a state into the shared model (all processes see it at once),
        except while ``Engine.load(path, share=...)`` attaches to a share that
        other live processes use: the live model is then kept (the checkpoint
        has already been checked against its configuration)."""
        if _KEEP_LIVE_MODEL.get():
            return
        super().set_state(state)


def open_shared(config: Mapping[str, Any], share: str) -> SharedNetwork:
    """Create or attach the shared model ``share`` for a :func:`network_config`.

    Raises :class:`~livelearn.errors.ShareError` for an incompatible
    configuration of a share in use (or any failure of the segment).
    """
    net = SharedNetwork(**config, share=check_share(share))
    info = net.share_info
    assert info is not None
    if info["rebuilt"]:
        logger.warning(
            "share %r: a stale segment of an incompatible configuration was rebuilt", share
        )
    elif info["recovered"]:
        logger.warning(
            "share %r: every process of the previous segment is dead; its model "
            "(%d steps) was taken over",
            share,
            net.steps,
        )
    _OPEN.add(net)
    return net


class SharedAutoSaver(AutoSaver):
    """Periodic checkpoints of a shared model: one process at a time saves.

    The role is claimed in the segment (``claim_autosave``: taken when free or
    held by a dead process); the period counts the shared model's steps.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        every: int | None,
        interval: float | None,
        network: SharedNetwork,
    ) -> None:
        super().__init__(path, every, interval)
        self._network = network

    def maybe_save(self, steps: int, save: Callable[[str], object]) -> None:
        """Save if due and this process holds the autosave role (``steps`` is
        ignored: the shared model's step counter is used)."""
        del steps
        if self._network.claim_autosave():
            super().maybe_save(self._network.steps, save)


def load_shared(
    path: str | os.PathLike[str],
    cls: Callable[..., E],
    share: str,
    *,
    targets: TargetFn | None,
    initialize: bool,
) -> E:
    """``Engine.load(path, share=...)``: the first live process loads the
    checkpoint into the share; a process that attaches to a share other live
    processes use keeps the live model (the checkpoint must match its
    configuration) and starts its own counters and history from the file.
    """
    share = check_share(share)
    meta = persistence.read_checkpoint(path).meta
    network_meta = meta.get("network") if isinstance(meta, dict) else None
    probe: SharedNetwork | None = None
    if isinstance(network_meta, dict) and "layers" in network_meta:
        try:  # hold the share while the engine is built: then no one else creates it
            probe = open_shared(network_meta, share)
        except (TypeError, ValueError):
            probe = None  # the engine's own construction reports a bad file
    info = None if probe is None else probe.share_info
    alone = info is None or bool(info["created"] or info["recovered"])
    build = functools.partial(cls, share=share)
    token = _KEEP_LIVE_MODEL.set(not alone)
    try:
        engine = persistence.load_engine(path, build, targets=targets, initialize=initialize)
    finally:
        _KEEP_LIVE_MODEL.reset(token)
        if probe is not None:
            probe.release_share()
            _OPEN.discard(probe)
    if not alone:
        logger.info(
            "share %r: attached to the live model; the checkpoint's model was not loaded", share
        )
    return engine


def shared_counts(network: Network) -> tuple[int, int] | None:
    """``(steps, version)`` of a shared model, or None for a local one."""
    if network.share is None:
        return None
    return int(network.steps), int(network.version)


def _release_all() -> None:
    """At exit: deregister every share of this process (the last removes it)."""
    for net in list(_OPEN):
        try:
            net.release_share()
        except Exception:  # pragma: no cover - never fail the interpreter's exit
            logger.exception("share: release at exit failed")


atexit.register(_release_all)
