"""livelearn: learn live from user interactions.

A thread-safe, GIL-free neural network in C++ (:class:`Network`), fed by an
engine that turns interactions into training steps and returns at once with a
:class:`concurrent.futures.Future` per step.
"""

from __future__ import annotations

from livelearn.network import STATUS_NAMES, Network, StepRejected

__version__ = "0.1.0"

__all__ = ["STATUS_NAMES", "Network", "StepRejected", "__version__"]
