"""Fork safety: call each registered object's fork hooks around ``os.fork()``.

This module knows no locks: every fork-aware object (an engine) passes the
three hooks for its own state, and this module only keeps the (weak)
registry and installs ``os.register_at_fork`` once.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["ForkHooks", "register"]


class ForkHooks(NamedTuple):
    """What ``os.fork()`` calls, with the registered object, like ``os.register_at_fork``."""

    before: Callable[[Any], None]
    """Make the state safe to copy (e.g. wait for a native step in flight)."""
    after_in_parent: Callable[[Any], None]
    """Undo ``before`` in the parent."""
    after_in_child: Callable[[Any], None]
    """Repair the copy: no other thread of the parent exists in the child."""


_REGISTERED: weakref.WeakKeyDictionary[Any, ForkHooks] = weakref.WeakKeyDictionary()


def register(obj: object, hooks: ForkHooks) -> None:
    """Call ``hooks`` with ``obj`` at every fork of this process while ``obj`` lives."""
    _REGISTERED[obj] = hooks


def _before() -> None:
    for obj, hooks in list(_REGISTERED.items()):
        hooks.before(obj)


def _after_in_parent() -> None:
    for obj, hooks in list(_REGISTERED.items()):
        hooks.after_in_parent(obj)


def _after_in_child() -> None:
    for obj, hooks in list(_REGISTERED.items()):
        hooks.after_in_child(obj)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
