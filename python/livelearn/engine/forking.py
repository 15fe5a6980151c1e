"""Fork safety: call each registered object's fork hooks around ``os.fork()``.

This module knows no locks: every fork-aware object (an :class:`Engine`)
implements the three hooks for its own state, and this module only keeps the
(weak) registry and installs ``os.register_at_fork`` once.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "register"]


class ForkAware(Protocol):
    """What ``os.fork()`` calls on a registered object, like ``os.register_at_fork``."""

    def before_fork(self) -> None:
        """Make the state safe to copy (e.g. wait for a native step in flight)."""

    def after_fork_in_parent(self) -> None:
        """Undo :meth:`before_fork` in the parent."""

    def after_fork_in_child(self) -> None:
        """Repair the copy: no other thread of the parent exists in the child."""


_REGISTERED: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(obj: ForkAware) -> None:
    """Call ``obj``'s hooks at every fork of this process while ``obj`` lives."""
    _REGISTERED.add(obj)


def _before() -> None:
    for obj in list(_REGISTERED):
        obj.before_fork()


def _after_in_parent() -> None:
    for obj in list(_REGISTERED):
        obj.after_fork_in_parent()


def _after_in_child() -> None:
    for obj in list(_REGISTERED):
        obj.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
