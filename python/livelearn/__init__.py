"""livelearn: learn live from user interactions.

A thread-safe, GIL-free neural network in C++ (:class:`Network`), fed by an
:class:`Engine` that turns each :class:`InteractionData` into one training step
and returns at once with a :class:`concurrent.futures.Future` for it.

Example:
    >>> from livelearn import Engine, InteractionData
    >>> with Engine(targets={"click": 1.0, "skip": 0.0}) as engine:
    ...     engine.train_step(InteractionData("click", 1700000000.0, "user-1")).result().status
    <StepStatus.TRAINED: 'trained'>
"""

from __future__ import annotations

from livelearn._version import __version__
from livelearn.engine import Engine
from livelearn.errors import (
    CheckpointError,
    EngineClosed,
    EngineNotInitialized,
    EngineOverloaded,
    InvalidInteraction,
    StepRejected,
)
from livelearn.features import Encoder, FeatureEncoder, HashedFeatureEncoder
from livelearn.field_network import FieldNetwork
from livelearn.futures import StepFuture
from livelearn.hashing import stable_hash64, unit_hash
from livelearn.interaction import InteractionData
from livelearn.network import STATUS_NAMES, Network
from livelearn.results import EngineStats, SparseFeatures, StepResult, StepStatus, TrainingExample
from livelearn.targets import TargetMapper

__all__ = [
    "STATUS_NAMES",
    "CheckpointError",
    "Encoder",
    "Engine",
    "EngineClosed",
    "EngineNotInitialized",
    "EngineOverloaded",
    "EngineStats",
    "FeatureEncoder",
    "FieldNetwork",
    "HashedFeatureEncoder",
    "InteractionData",
    "InvalidInteraction",
    "Network",
    "SparseFeatures",
    "StepFuture",
    "StepRejected",
    "StepResult",
    "StepStatus",
    "TargetMapper",
    "TrainingExample",
    "__version__",
    "stable_hash64",
    "unit_hash",
]
