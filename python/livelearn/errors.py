"""Every error livelearn raises on purpose, importable from one place.

Bad input raises a typed error that says which field is wrong and why:

    >>> from livelearn import Engine, InteractionData
    >>> from livelearn.errors import EngineClosed, InvalidInteraction
    >>> try:
    ...     InteractionData("click", float("nan"), "user-1")
    ... except InvalidInteraction as err:
    ...     print(err.field, "|", err.reason)
    timestamp | must be finite, got nan

A closed engine refuses more work:

    >>> engine = Engine(targets={"click": 1.0}, log_every=0).initialize()
    >>> engine.close()
    >>> engine.train_step(InteractionData("click", 0.0, "user-1"))
    Traceback (most recent call last):
        ...
    livelearn.errors.EngineClosed: train_step after close()
"""

from __future__ import annotations

from livelearn._core import ShareError, StepRejected
from livelearn.feedback import DuplicateEventId, InvalidFeedback
from livelearn.interaction import InvalidInteraction

__all__ = [
    "CheckpointError",
    "DuplicateEventId",
    "EngineClosed",
    "EngineNotInitialized",
    "EngineOverloaded",
    "InvalidFeedback",
    "InvalidInteraction",
    "ShareError",
    "StepRejected",
]


class EngineClosed(RuntimeError):  # noqa: N818 -- public name fixed by the API
    """The engine was closed: it accepts no more steps."""


class EngineOverloaded(RuntimeError):  # noqa: N818 -- public name fixed by the API
    """``max_pending`` steps are already queued and the overload policy is ``"raise"``."""


class EngineNotInitialized(RuntimeError):  # noqa: N818 -- mirrors the other engine errors
    """The engine needs :meth:`Engine.initialize` (or ``with Engine(...)``) first."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be loaded (missing, truncated, corrupted, hand-edited,
    foreign or from an unsupported format version) or the state cannot be saved.

    The message says what is wrong. Nothing is half-loaded when it is raised.
    """
