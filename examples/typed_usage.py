"""livelearn's public API with full type annotations; passes ``mypy --strict``.

Run it: ``python examples/typed_usage.py``. Type-check it:
``MYPYPATH=python mypy --strict examples/typed_usage.py``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from concurrent.futures import Future

import numpy as np
from numpy.typing import NDArray

from livelearn import (
    Engine,
    EngineStats,
    HashedFeatureEncoder,
    InteractionData,
    Network,
    StepResult,
    StepStatus,
    TargetMapper,
)


def train_network() -> float:
    """The network on its own: one example per step; returns the last loss."""
    net = Network(layers=[3, 8, 1], optimizer="adam", learning_rate=0.01, seed=0)
    rng = np.random.default_rng(0)
    X: NDArray[np.float32] = rng.normal(size=(256, 3)).astype(np.float32)
    y: NDArray[np.float32] = (X[:, :1] > 0).astype(np.float32)
    losses: NDArray[np.float64] = net.train_batch(X, y)
    probability: NDArray[np.float32] = net.predict(X[:4])
    assert probability.shape == (4, 1)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "net.safetensors")
        net.save(path)
        restored: Network = Network.load(path)
    assert restored.steps == net.steps == 256
    return float(losses[-1])


def train_engine() -> EngineStats:
    """The engine: a Future per interaction, statistics at the end."""
    targets = TargetMapper({"click": 1.0, "skip": 0.0})
    with Engine(features=HashedFeatureEncoder(n_buckets=1024), targets=targets) as engine:
        futures: list[Future[StepResult]] = [
            engine.train_step(
                InteractionData("click" if i % 4 == 0 else "skip", 1.7e9 + i, f"user-{i % 10}")
            )
            for i in range(100)
        ]
        results: list[StepResult] = [f.result(timeout=30) for f in futures]
        assert all(r.status is StepStatus.TRAINED for r in results)
        p: float | NDArray[np.float32] = engine.predict(InteractionData("click", 1.7e9, "user-0"))
        assert isinstance(p, float)
        return engine.stats()


async def train_async() -> StepResult:
    """From asyncio code: await a step without blocking the event loop."""
    with Engine(targets={"click": 1.0}) as engine:
        return await engine.train_step_async(InteractionData("click", 1.7e9, "u1"))


def main() -> None:
    loss = train_network()
    stats = train_engine()
    result = asyncio.run(train_async())
    print(f"network loss {loss:.4f}; engine steps {stats.steps}; async step {result.step}")


if __name__ == "__main__":
    main()
