"""Periodic checkpoints: when a save is due, and running it off the training thread.

:class:`AutoSaver` knows nothing of engines or files: its owner tells it how many
steps are trained (:meth:`AutoSaver.maybe_save`) and hands it the ``save``
callable to run; the engine passes its own :meth:`~livelearn.Engine.save`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from livelearn.validation import check_interval, check_optional_int, check_path

__all__ = ["AutoSaver"]

logger = logging.getLogger("livelearn")


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
        >>> saved = []
        >>> saver.maybe_save(999, saved.append)
        >>> saver.maybe_save(1000, saved.append)
        >>> saver.wait()
        >>> saved, saver.saves
        (['model.safetensors'], 1)
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
        self.path = check_path("checkpoint_path", path)
        self.every = check_optional_int("checkpoint_every", every, low=1)
        self.interval = check_interval("checkpoint_interval", interval)
        if self.every is None and self.interval is None:
            raise ValueError(
                "checkpoint_path: give checkpoint_every (steps) and/or checkpoint_interval "
                "(seconds) to say how often to save"
            )
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

    def maybe_save(self, steps: int, save: Callable[[str], object]) -> None:
        """Start ``save(path)`` in a background thread if a save is due at
        ``steps`` trained steps and none is running."""
        if self._busy.locked():
            return
        due = (self.every is not None and steps - self._last_steps >= self.every) or (
            self.interval is not None and time.monotonic() - self._last_time >= self.interval
        )
        if not due or not self._busy.acquire(blocking=False):
            return
        self.mark_saved(steps)
        thread = threading.Thread(
            target=self._save, args=(save,), name="livelearn-autosave", daemon=False
        )
        thread.start()
        self._thread = thread  # published once started: wait() may join it at once

    def _save(self, save: Callable[[str], object]) -> None:
        try:
            save(self.path)
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
