"""Tests for ``livelearn.distributed`` with the in-process transport (no Ray needed).

* the averaging math (weighted, sparse, states) and the sharding function;
* the coordinator's merge rules, idempotent pushes, validation;
* the averager's exact synchronisation math with training during the round trip;
* failure handling: failed rounds keep every counter, lost replies are not
  merged twice, a killed replica loses only its unsynchronised steps;
* coordinator checkpoint and restart, and a replica rejoining;
* convergence: 3 replicas on disjoint user shards of a simulated stream reach a
  progressive log loss within 2 % of one engine that saw every event, both
  driven deterministically and with real threads.
"""

from __future__ import annotations

import doctest
import importlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

import livelearn.distributed as dist
from livelearn import CheckpointError, Engine, HashedFeatureEncoder, InteractionData, Network
from livelearn.datasets import SimulatedStream, simulate_interactions
from livelearn.distributed import (
    Coordinator,
    InProcessTransport,
    MergeRule,
    ModelAverager,
    SyncReply,
    Transport,
    add_scaled,
    average_deltas,
    average_states,
    check_finite,
    jump_hash,
    shard_for,
    subtract,
)

N_REPLICAS = 3
N_EVENTS = 20_000
SYNC_EVERY = 50
BLOCK = 30  # events of the global stream between two sync checks (deterministic driver)


def params_of(net: Network) -> dict[str, NDArray[np.float32]]:
    return net.parameters()


def assert_params_close(
    a: Mapping[str, NDArray[Any]], b: Mapping[str, NDArray[Any]], atol: float = 1e-6
) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=k)


def x_of(i: int, n: int = 3) -> NDArray[np.float32]:
    rng = np.random.default_rng(i)
    return rng.normal(size=n).astype(np.float32)


# ---------------------------------------------------------------------- averaging math
def test_average_deltas_weighted_by_steps() -> None:
    a = {"w": np.array([1.0, 2.0], np.float32), "b": np.array([0.0], np.float32)}
    b = {"w": np.array([3.0, -2.0], np.float32), "b": np.array([4.0], np.float32)}
    avg = average_deltas([a, b], [1, 3])
    np.testing.assert_allclose(avg["w"], [2.5, -1.0])
    np.testing.assert_allclose(avg["b"], [3.0])
    assert avg["w"].dtype == np.float32
    equal = average_deltas([a, b])
    np.testing.assert_allclose(equal["w"], [2.0, 0.0])
    only_a = average_deltas([a, b], [5, 0])  # a zero weight leaves the delta out
    np.testing.assert_allclose(only_a["w"], a["w"])


def test_average_deltas_sparse_averages_over_contributors() -> None:
    a = {"w": np.array([[0.6, 0.0], [0.2, 0.0]], np.float32)}
    b = {"w": np.array([[0.0, 0.0], [0.4, 0.0]], np.float32)}
    dense = average_deltas([a, b], [1, 1])
    sparse = average_deltas([a, b], [1, 1], sparse=True)
    np.testing.assert_allclose(dense["w"], [[0.3, 0.0], [0.3, 0.0]], atol=1e-7)
    # w[0,0]: only a touched it, keeps a's full change; w[1,0]: both, the mean;
    # w[:,1]: nobody, stays 0.
    np.testing.assert_allclose(sparse["w"], [[0.6, 0.0], [0.3, 0.0]], atol=1e-7)
    weighted = average_deltas([a, b], [3, 1], sparse=True)
    np.testing.assert_allclose(weighted["w"], [[0.6, 0.0], [0.25, 0.0]], atol=1e-7)


def test_average_deltas_matches_fedavg_of_models() -> None:
    """Averaging deltas from a common start == averaging the models (FedAvg)."""
    start = Network(layers=[3, 5, 1], seed=1)
    base = start.parameters()
    nets, steps = [], [7, 2, 11]
    for r, n in enumerate(steps):
        net = Network(layers=[3, 5, 1], seed=1)
        for i in range(n):
            net.train_step(x_of(100 * r + i), float(i % 2))
        nets.append(net)
    deltas = [net.delta_since(base) for net in nets]
    merged = add_scaled(base, average_deltas(deltas, steps))
    models = average_states([net.parameters() for net in nets], steps)
    assert_params_close(merged, models, atol=2e-7)


def test_average_states_floats_averaged_counters_max() -> None:
    a = Network(layers=[2, 3, 1], optimizer="adam", seed=1)
    b = Network(layers=[2, 3, 1], optimizer="adam", seed=2)
    for i in range(5):
        a.train_step(x_of(i, 2), 1.0)
    b.train_step(x_of(9, 2), 0.0)
    sa, sb = a.get_state(), b.get_state()
    avg = average_states([sa, sb], [1, 3])
    for k, v in sa.items():
        if k.startswith("counters."):
            assert avg[k].dtype == np.int64 and avg[k].shape == ()
            assert int(avg[k]) == max(int(v), int(sb[k]))
        else:
            np.testing.assert_allclose(avg[k], (v + 3 * sb[k]) / 4, rtol=1e-6, atol=1e-7)
    net = Network(layers=[2, 3, 1], optimizer="adam")
    net.set_state(avg)
    assert net.steps == 5


def test_subtract_add_scaled_round_trip() -> None:
    net = Network(layers=[3, 4, 1], seed=2)
    base = net.parameters()
    for i in range(4):
        net.train_step(x_of(i), 1.0)
    delta = subtract(net.parameters(), base)
    assert_params_close(delta, net.delta_since(base), atol=0)
    assert_params_close(add_scaled(base, delta), net.parameters(), atol=1e-7)
    half = add_scaled(base, delta, 0.5)
    for k in half:
        np.testing.assert_allclose(half[k], base[k] + 0.5 * delta[k], atol=1e-7)


@pytest.mark.parametrize(
    ("deltas", "weights", "message"),
    [
        ([], None, "need at least one"),
        ([{"w": np.zeros(2)}, {"v": np.zeros(2)}], None, "names differ"),
        ([{"w": np.zeros(2)}, {"w": np.zeros(3)}], None, "shape"),
        ([{"w": np.zeros(2)}], [1, 2], "expected 1 values"),
        ([{"w": np.zeros(2)}], [-1], "finite and >= 0"),
        ([{"w": np.zeros(2)}], [float("nan")], "finite and >= 0"),
        ([{"w": np.zeros(2)}, {"w": np.zeros(2)}], [0, 0], "at least one must be > 0"),
    ],
)
def test_average_deltas_rejects(
    deltas: list[dict[str, NDArray[Any]]], weights: list[float] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        average_deltas(deltas, weights)


def test_check_finite_and_scale_validation() -> None:
    check_finite({"w": np.zeros(3)})
    with pytest.raises(ValueError, match="'w' holds NaN"):
        check_finite({"w": np.array([0.0, np.inf])})
    with pytest.raises(ValueError, match="scale"):
        add_scaled({"w": np.zeros(1)}, {"w": np.zeros(1)}, float("nan"))


# ---------------------------------------------------------------------- sharding
def test_shard_for_is_stable_and_in_range() -> None:
    # Pinned values: the same on every machine and Python version.
    assert [shard_for(f"user-{i}", 3) for i in range(8)] == [0, 1, 0, 0, 0, 0, 1, 2]
    assert shard_for("user-42", 4) == 3
    assert shard_for(7, 5) == shard_for("7", 5)
    assert all(shard_for(f"u{i}", 1) == 0 for i in range(50))
    assert jump_hash(0, 10) == 0 and jump_hash(2**64 - 1, 10) == 9


def test_shard_for_balanced_and_consistent() -> None:
    keys = [f"u{i}" for i in range(20_000)]
    before = [shard_for(k, 4) for k in keys]
    counts = np.bincount(before, minlength=4)
    assert counts.min() > 0.95 * len(keys) / 4
    after = [shard_for(k, 5) for k in keys]
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert all(a == 4 for _, a in moved)  # keys only move to the new shard
    assert abs(len(moved) / len(keys) - 1 / 5) < 0.02


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_shard_for_rejects_bad_shard_counts(bad: Any) -> None:
    with pytest.raises(ValueError, match="n_buckets"):
        shard_for("u", bad)


def test_shard_for_rejects_bad_keys() -> None:
    with pytest.raises(TypeError):
        shard_for(1.5, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key"):
        jump_hash(-1, 3)


# ---------------------------------------------------------------------- coordinator
def linear(seed: int = 0, optimizer: str = "sgd") -> Network:
    return Network(layers=[3, 4, 1], seed=seed, optimizer=optimizer)


def ones_like(params: Mapping[str, NDArray[Any]], value: float) -> dict[str, NDArray[np.float32]]:
    return {k: np.full(v.shape, value, np.float32) for k, v in params.items()}


def test_coordinator_delta_rule_merges_each_push() -> None:
    coordinator = Coordinator(linear(), merge="delta", server_lr=0.5)
    g0 = coordinator.pull("a").params
    r1 = coordinator.push(ones_like(g0, 1.0), 10, "a", 1)
    r2 = coordinator.push(ones_like(g0, 2.0), 30, "b", 1)
    assert (r1.version, r1.steps, r2.version, r2.steps) == (1, 10, 2, 40)
    assert_params_close(r2.params, add_scaled(g0, ones_like(g0, 1.5)))
    assert coordinator.stats().pushes == 2


def test_coordinator_fedavg_round_and_tentative_replies() -> None:
    coordinator = Coordinator(linear(), sparse=False)
    g0 = coordinator.pull("a").params
    coordinator.pull("b")
    coordinator.pull("c")
    d = [ones_like(g0, v) for v in (1.0, 2.0, 4.0)]
    r1 = coordinator.push(d[0], 10, "a", 1)
    # Round open: the reply is the tentative model with a's delta in it.
    assert (r1.version, r1.steps) == (0, 0)
    assert_params_close(r1.params, add_scaled(g0, d[0]))
    assert_params_close(coordinator.network.parameters(), g0, atol=0)
    r2 = coordinator.push(d[1], 30, "b", 1)
    assert_params_close(r2.params, add_scaled(g0, ones_like(g0, (10 + 60) / 40)))
    stats = coordinator.stats()
    assert (stats.buffered, stats.buffered_steps, stats.version) == (2, 40, 0)
    r3 = coordinator.push(d[2], 60, "c", 1)  # every known replica pushed: the round closes
    assert (r3.version, r3.steps) == (1, 100)
    expected = add_scaled(g0, ones_like(g0, (10 + 60 + 240) / 100))
    assert_params_close(r3.params, expected)
    assert_params_close(coordinator.network.parameters(), expected)
    assert coordinator.stats().buffered == 0


def test_coordinator_fedavg_second_push_closes_the_round() -> None:
    """A dead replica never holds the round: a replica pushing again closes it."""
    coordinator = Coordinator(linear())
    g0 = coordinator.pull("a").params
    coordinator.pull("dead")
    coordinator.push(ones_like(g0, 1.0), 5, "a", 1)
    assert coordinator.stats().version == 0
    reply = coordinator.push(ones_like(g0, 1.0), 5, "a", 2)
    assert (reply.version, reply.steps, coordinator.stats().buffered) == (1, 5, 1)
    assert coordinator.flush() is True
    assert coordinator.stats().steps == 10 and coordinator.flush() is False


def test_coordinator_round_size() -> None:
    coordinator = Coordinator(linear(), round_size=2)
    g0 = coordinator.pull("a").params
    for rid in "abc":
        coordinator.pull(rid)
    coordinator.push(ones_like(g0, 1.0), 1, "a", 1)
    assert coordinator.push(ones_like(g0, 1.0), 1, "b", 1).version == 1


def test_coordinator_retried_push_is_not_merged_twice() -> None:
    coordinator = Coordinator(linear(), merge="delta")
    g0 = coordinator.pull("a").params
    first = coordinator.push(ones_like(g0, 1.0), 10, "a", 1)
    again = coordinator.push(ones_like(g0, 1.0), 10, "a", 1)
    assert again.version == first.version == 1 and again.steps == 10
    assert_params_close(again.params, first.params, atol=0)
    stats = coordinator.stats()
    assert (stats.duplicates, stats.pushes, stats.replicas) == (1, 1, {"a": 1})
    assert coordinator.pull("a").last_seq == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("layers.0.bias"), "expected exactly the tensors"),
        (lambda d: d.update({"extra": np.zeros(1)}), "expected exactly the tensors"),
        (lambda d: d.update({"layers.0.bias": np.zeros(5)}), "shape"),
        (lambda d: d.update({"layers.0.bias": np.full(4, np.nan)}), "NaN"),
    ],
)
@pytest.mark.parametrize("merge", ["delta", "fedavg"])
def test_coordinator_rejects_bad_deltas_without_change(
    mutate: Callable[[dict[str, Any]], Any], message: str, merge: MergeRule
) -> None:
    """Checked by the native apply_delta in both rules (for "fedavg", whose pushes
    are only buffered, before the push is taken)."""
    coordinator = Coordinator(linear(), merge=merge, round_size=2)
    g0 = coordinator.pull("a").params
    delta: dict[str, Any] = ones_like(g0, 1.0)
    mutate(delta)
    with pytest.raises(ValueError, match=message):
        coordinator.push(delta, 1, "a", 1)
    stats = coordinator.stats()
    assert stats.version == 0 and stats.buffered == 0 and coordinator.pull("a").last_seq == 0
    assert_params_close(coordinator.network.parameters(), g0, atol=0)


def test_coordinator_argument_validation() -> None:
    with pytest.raises(TypeError, match=r"livelearn\.Network"):
        Coordinator("net")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="merge"):
        Coordinator(linear(), merge="mean")  # type: ignore[arg-type]
    for bad in (0.0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="server_lr"):
            Coordinator(linear(), server_lr=bad)
    with pytest.raises(ValueError, match="round_size"):
        Coordinator(linear(), round_size=0)
    with pytest.raises(ValueError, match="checkpoint_path"):
        Coordinator(linear(), checkpoint_every=5)
    # The same rules as Engine(checkpoint_interval=...) (livelearn.validation).
    for bad_interval in (0.0, -1.0, float("inf"), float("nan"), True, "10"):
        with pytest.raises(ValueError, match="checkpoint_interval"):
            Coordinator(linear(), checkpoint_path="x", checkpoint_interval=bad_interval)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="checkpoint_interval"):
            Engine(checkpoint_path="x", checkpoint_interval=bad_interval)  # type: ignore[arg-type]
    for bad_every in (0, True, 2.0):
        with pytest.raises(ValueError, match="checkpoint_every"):
            Coordinator(linear(), checkpoint_path="x", checkpoint_every=bad_every)  # type: ignore[arg-type]
    c = Coordinator(linear())
    g = c.pull("a").params
    with pytest.raises(ValueError, match="steps"):
        c.push(g, -1, "a", 1)
    with pytest.raises(ValueError, match="seq"):
        c.push(g, 1, "a", 0)
    with pytest.raises(ValueError, match="no path"):
        c.save()


# ---------------------------------------------------------------------- averager math
class Hooked:
    """Wraps a transport: runs callbacks around push (e.g. train meanwhile)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.before: Callable[[Mapping[str, NDArray[Any]], int, int], None] | None = None
        self.after: Callable[[], None] | None = None
        self.pushes: list[tuple[dict[str, NDArray[Any]], int, int]] = []

    def pull(self, replica_id: str) -> SyncReply:
        return self.inner.pull(replica_id)

    def push(
        self, delta: Mapping[str, NDArray[Any]], steps: int, replica_id: str, seq: int
    ) -> SyncReply:
        self.pushes.append(({k: v.copy() for k, v in delta.items()}, steps, seq))
        if self.before is not None:
            self.before(delta, steps, seq)
        reply = self.inner.push(delta, steps, replica_id, seq)
        if self.after is not None:
            self.after()
        return reply


def train(net: Network, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        net.train_step(x_of(i), float(i % 2))


def test_join_adopts_the_global_model() -> None:
    coordinator = Coordinator(linear(seed=5))
    net = linear(seed=1)
    averager = ModelAverager(net, InProcessTransport(coordinator), "r0")
    assert averager.stats().joined is False
    assert averager.join() is True
    assert_params_close(net.parameters(), coordinator.network.parameters(), atol=1e-7)
    s = averager.stats()
    assert (s.joined, s.rounds, s.unsynced_steps, s.seq) == (True, 1, 0, 0)


def test_join_keeps_progress_made_before_joining() -> None:
    coordinator = Coordinator(linear(seed=5))
    net = linear(seed=1)
    averager = ModelAverager(net, InProcessTransport(coordinator), "r0")
    start = net.parameters()
    train(net, 4)
    learned = subtract(net.parameters(), start)
    assert averager.join()
    assert_params_close(net.parameters(), add_scaled(coordinator.network.parameters(), learned))
    assert averager.unsynced_steps == 4  # pushed with the next round
    assert averager.sync()
    assert coordinator.stats().steps == 4 and averager.unsynced_steps == 0


def test_sync_math_keeps_steps_taken_during_the_round_trip() -> None:
    """theta <- theta + (G - S): the merged model plus the local steps taken
    while the push was in flight; those are pushed, exactly once, next round."""
    coordinator = Coordinator(linear(seed=3), merge="delta")
    inner = InProcessTransport(coordinator)
    other = ModelAverager(linear(seed=3), inner, "other", sync_every=1)
    other.join()
    hooked = Hooked(inner)
    net = linear(seed=3)
    averager = ModelAverager(net, hooked, "r0", sync_every=7)
    averager.join()
    g_join = coordinator.network.parameters()

    train(net, 7)
    snapshot = net.parameters()
    train(other.network, 5, start=1000)  # the other replica learns too
    assert other.sync()
    captured: dict[str, Any] = {}

    def meanwhile() -> None:  # after the coordinator merged, before the reply lands
        captured["G"] = coordinator.network.parameters()
        train(net, 3, start=50)
        captured["theta"] = net.parameters()

    hooked.after = meanwhile
    version_before = net.version
    assert averager.sync()
    delta, steps, seq = hooked.pushes[-1]
    assert (steps, seq) == (7, 1)
    assert_params_close(delta, subtract(snapshot, g_join), atol=0)
    expected = add_scaled(captured["G"], subtract(captured["theta"], snapshot))
    assert_params_close(net.parameters(), expected, atol=2e-6)
    assert net.version == version_before + 3 + 1  # 3 steps + one apply_delta
    s = averager.stats()
    assert (s.synced_steps, s.unsynced_steps, s.rounds, s.seq) == (7, 3, 2, 1)
    assert s.global_steps == 12

    # The next round pushes exactly the 3 steps taken during the round trip.
    hooked.after = None
    local_3 = subtract(captured["theta"], snapshot)
    assert averager.sync()
    delta2, steps2, seq2 = hooked.pushes[-1]
    assert (steps2, seq2) == (3, 2)
    assert_params_close(delta2, local_3, atol=2e-6)
    assert coordinator.stats().steps == 15
    assert_params_close(net.parameters(), coordinator.network.parameters(), atol=1e-7)


def test_sync_with_nothing_to_push_pulls() -> None:
    coordinator = Coordinator(linear(seed=3), merge="delta")
    transport = InProcessTransport(coordinator)
    a = ModelAverager(linear(seed=3), transport, "a")
    b = ModelAverager(linear(seed=3), transport, "b")
    a.join()
    b.join()
    train(b.network, 5)
    b.sync()
    assert a.sync()  # a took no step: it only pulls b's progress
    assert_params_close(a.network.parameters(), b.network.parameters(), atol=1e-7)
    assert a.stats().seq == 0 and coordinator.stats().pushes == 1


def test_due_by_steps_and_by_time() -> None:
    coordinator = Coordinator(linear())
    net = linear()
    by_steps = ModelAverager(net, InProcessTransport(coordinator), "a", sync_every=5)
    assert by_steps.maybe_sync() is None
    train(net, 5)
    assert by_steps.due() and by_steps.maybe_sync() is True
    assert not by_steps.due()
    by_time = ModelAverager(linear(), InProcessTransport(coordinator), "b", sync_interval=1e-6)
    assert by_time.due()
    with pytest.raises(ValueError, match="sync_every and/or sync_interval"):
        ModelAverager(net, InProcessTransport(coordinator), "c", sync_every=None)
    with pytest.raises(ValueError, match="sync_every"):
        ModelAverager(net, InProcessTransport(coordinator), "c", sync_every=0)
    with pytest.raises(ValueError, match="replica_id"):
        ModelAverager(net, InProcessTransport(coordinator), "")
    with pytest.raises(TypeError, match="Engine or a Network"):
        ModelAverager(object(), InProcessTransport(coordinator), "c")  # type: ignore[arg-type]


def test_mismatched_layers_fail_the_round_clearly() -> None:
    coordinator = Coordinator(Network(layers=[3, 8, 1]))
    averager = ModelAverager(linear(), InProcessTransport(coordinator), "a")
    assert averager.join() is False
    assert "shape" in (averager.stats().last_error or "")


# ---------------------------------------------------------------------- failures
class Flaky:
    """An in-process transport that fails on demand."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.inner = InProcessTransport(coordinator)
        self.fail_push = False  # raise before reaching the coordinator
        self.lose_reply = False  # the coordinator merges, the reply is lost
        self.fail_pull = False

    def pull(self, replica_id: str) -> SyncReply:
        if self.fail_pull:
            raise ConnectionError("coordinator unreachable")
        return self.inner.pull(replica_id)

    def push(
        self, delta: Mapping[str, NDArray[Any]], steps: int, replica_id: str, seq: int
    ) -> SyncReply:
        if self.fail_push:
            raise ConnectionError("coordinator unreachable")
        reply = self.inner.push(delta, steps, replica_id, seq)
        if self.lose_reply:
            raise TimeoutError("reply lost")
        return reply


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_failed_round_keeps_counters_and_model(optimizer: str) -> None:
    coordinator = Coordinator(linear(seed=2, optimizer=optimizer), merge="delta")
    flaky = Flaky(coordinator)
    net = linear(seed=2, optimizer=optimizer)
    averager = ModelAverager(net, flaky, "r0", sync_every=5)
    assert averager.join()
    train(net, 6)
    state_before = net.get_state()
    version, steps = net.version, net.steps
    flaky.fail_push = True
    assert averager.sync() is False
    s = averager.stats()
    assert (s.failed_rounds, s.rounds, s.synced_steps, s.unsynced_steps) == (1, 1, 0, 6)
    assert s.seq == 1 and "ConnectionError" in (s.last_error or "")
    assert (net.version, net.steps) == (version, steps)
    after = net.get_state()
    for k, v in state_before.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)
    assert coordinator.stats().pushes == 0

    train(net, 4, start=100)  # the replica keeps training on its local model
    flaky.fail_push = False
    assert averager.sync() is True  # retries push 1 (6 steps) as it was
    s = averager.stats()
    assert (s.failed_rounds, s.rounds, s.synced_steps, s.unsynced_steps, s.seq) == (1, 2, 6, 4, 1)
    assert averager.sync() is True  # then the 4 steps taken since
    s = averager.stats()
    assert (s.synced_steps, s.unsynced_steps, s.seq) == (10, 0, 2)
    assert coordinator.stats().steps == 10 == net.steps
    assert_params_close(net.parameters(), coordinator.network.parameters(), atol=1e-7)


def test_lost_reply_is_retried_but_merged_once() -> None:
    coordinator = Coordinator(linear(seed=2), merge="delta")
    flaky = Flaky(coordinator)
    net = linear(seed=2)
    averager = ModelAverager(net, flaky, "r0")
    averager.join()
    train(net, 8)
    flaky.lose_reply = True
    assert averager.sync() is False
    assert coordinator.stats().steps == 8  # it was merged...
    assert averager.unsynced_steps == 8  # ...but the replica cannot know
    flaky.lose_reply = False
    assert averager.sync() is True
    stats = coordinator.stats()
    assert (stats.steps, stats.version, stats.duplicates) == (8, 1, 1)  # ...not twice
    assert averager.unsynced_steps == 0
    assert_params_close(net.parameters(), coordinator.network.parameters(), atol=1e-7)


def test_failed_join_keeps_training_local_then_retries() -> None:
    coordinator = Coordinator(linear(seed=4))
    flaky = Flaky(coordinator)
    flaky.fail_pull = True
    net = linear(seed=9)
    averager = ModelAverager(net, flaky, "r0", sync_every=3)
    assert averager.join() is False
    train(net, 3)
    assert averager.maybe_sync() is False and averager.stats().joined is False
    flaky.fail_pull = False
    assert averager.sync() is True and averager.stats().joined
    assert averager.unsynced_steps == 3  # pre-join steps are kept and pushed next
    assert averager.sync() and coordinator.stats().steps == 3


def test_background_thread_with_an_engine() -> None:
    stream = simulate_interactions(n_events=2_000, seed=5)
    engine = Engine(log_every=0)
    coordinator = Coordinator(Network.from_config(engine.network.get_config()))
    averager = ModelAverager(engine, InProcessTransport(coordinator), "r0", sync_every=100)
    assert averager.network is engine.network
    with averager, engine:
        results = [f.result() for f in engine.train_many(stream.interactions)]
    assert all(r.trained for r in results)
    coordinator.flush()
    s = averager.stats()
    assert s.unsynced_steps == 0 and s.synced_steps == 2_000 == coordinator.stats().steps
    assert s.rounds >= 2 and s.failed_rounds == 0
    assert s.last_pause_seconds is not None and s.last_round_seconds is not None
    assert "ModelAverager(replica_id='r0'" in repr(averager)


# ---------------------------------------------------------------------- convergence
def encoder() -> HashedFeatureEncoder:
    return HashedFeatureEncoder(n_buckets=4096)


def new_engine() -> Engine:
    return Engine(features=encoder(), log_every=0, model="mlp")


@pytest.fixture(scope="module")
def stream() -> SimulatedStream:
    return simulate_interactions(n_events=N_EVENTS, seed=0)


@pytest.fixture(scope="module")
def single_loss(stream: SimulatedStream) -> float:
    """Progressive log loss of one engine that saw every event."""
    engine = new_engine()
    with engine:
        results = [f.result() for f in engine.train_many(stream.interactions)]
    return float(np.mean([r.loss for r in results]))


class Cluster:
    """Replicas (engines + averagers) around one in-process coordinator."""

    def __init__(self, n: int, transport: Transport | None = None, **coordinator_options: Any):
        self.engines = [new_engine() for _ in range(n)]
        config = self.engines[0].network.get_config()
        self.coordinator = Coordinator(Network.from_config(config), **coordinator_options)
        self.transport = transport or InProcessTransport(self.coordinator)
        self.averagers = [
            ModelAverager(e, self.transport, f"replica-{i}", sync_every=SYNC_EVERY)
            for i, e in enumerate(self.engines)
        ]
        for a in self.averagers:
            assert a.join()
        for e in self.engines:
            e.initialize()

    def run(
        self, events: Sequence[InteractionData], route: Callable[[InteractionData], int]
    ) -> list[float]:
        """Deterministic: blocks of the global stream, each replica trains its
        share of the block, then every replica syncs if due."""
        losses: list[float] = []
        for start in range(0, len(events), BLOCK):
            block = events[start : start + BLOCK]
            for r, engine in enumerate(self.engines):
                part = [it for it in block if route(it) == r]
                if part:
                    losses.extend(float(f.result().loss) for f in engine.train_many(part))
            for averager, engine in zip(self.averagers, self.engines, strict=True):
                if not engine.closed:
                    averager.maybe_sync()
        return losses

    def close(self, skip: Sequence[int] = ()) -> None:
        for i, (averager, engine) in enumerate(zip(self.averagers, self.engines, strict=True)):
            if i not in skip:
                engine.close()
                assert averager.stop(final_sync=True) is True
        self.coordinator.flush()


def by_user(n: int) -> Callable[[InteractionData], int]:
    return lambda it: shard_for(it.user_id, n)


def test_three_replicas_converge_like_one_engine(
    stream: SimulatedStream, single_loss: float
) -> None:
    cluster = Cluster(N_REPLICAS)
    losses = cluster.run(stream.interactions, by_user(N_REPLICAS))
    cluster.close()
    assert len(losses) == N_EVENTS
    multi = float(np.mean(losses))
    # Measured: 1.0076 (single 0.3976, replicas 0.4006); plain FedAvg 1.018, "delta" 1.086.
    assert multi <= 1.02 * single_loss, (multi, single_loss)
    assert multi < stream.base_rate_log_loss() - 0.02
    stats = cluster.coordinator.stats()
    assert stats.steps == N_EVENTS and stats.buffered == 0
    assert sum(a.stats().synced_steps for a in cluster.averagers) == N_EVENTS
    assert all(a.stats().failed_rounds == 0 for a in cluster.averagers)
    # The merged model serves every user: its log loss on the stream is that of
    # a model that learned it (far below the base rate), for every shard.
    merged = cluster.coordinator.network
    enc = encoder()
    p = merged.predict_sparse(*enc.encode_sparse_many(stream.interactions))[:, 0]
    assert stream.log_loss(p) < stream.base_rate_log_loss() - 0.03


def test_three_replica_threads_converge_like_one_engine(
    stream: SimulatedStream, single_loss: float
) -> None:
    """Real concurrency: each replica fed by its own thread, averagers in theirs."""
    cluster = Cluster(N_REPLICAS)
    shards = [
        [it for it in stream.interactions if shard_for(it.user_id, N_REPLICAS) == r]
        for r in range(N_REPLICAS)
    ]
    losses: list[list[float]] = [[] for _ in range(N_REPLICAS)]

    def feed(r: int) -> None:
        engine = cluster.engines[r]
        for start in range(0, len(shards[r]), 10):
            futures = engine.train_many(shards[r][start : start + 10])
            losses[r].extend(float(f.result().loss) for f in futures)

    for a in cluster.averagers:
        a.start()
    threads = [threading.Thread(target=feed, args=(r,)) for r in range(N_REPLICAS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cluster.close()
    multi = float(np.mean([x for part in losses for x in part]))
    # Measured 1.009-1.013 over runs (timing-dependent).
    assert multi <= 1.02 * single_loss, (multi, single_loss)
    assert cluster.coordinator.stats().steps == N_EVENTS


def test_killed_replica_does_not_stop_the_others(
    stream: SimulatedStream, single_loss: float
) -> None:
    """Replica 2 dies half-way (no final sync); its users are re-routed to the
    survivors. It loses exactly its unsynchronised steps, nothing else."""
    cluster = Cluster(N_REPLICAS)
    events = stream.interactions
    half = N_EVENTS // 2
    losses = cluster.run(events[:half], by_user(N_REPLICAS))
    dead_engine, dead = cluster.engines[2], cluster.averagers[2]
    dead_engine.close()  # the process dies: no final push
    trained_dead = dead_engine.stats().steps
    lost = dead.unsynced_steps
    synced_dead = dead.stats().synced_steps
    assert lost == trained_dead - synced_dead
    assert 0 < lost <= SYNC_EVERY + BLOCK
    survivors = by_user(2)
    losses += cluster.run(events[half:], survivors)
    cluster.close(skip=[2])

    assert len(losses) == N_EVENTS  # every event was trained by someone
    trained = [e.stats().steps for e in cluster.engines]
    assert sum(trained) == N_EVENTS
    stats = cluster.coordinator.stats()
    assert stats.steps == N_EVENTS - lost
    assert stats.steps == sum(a.stats().synced_steps for a in cluster.averagers)
    for a, n in zip(cluster.averagers[:2], trained[:2], strict=True):
        assert a.stats().synced_steps == n and a.unsynced_steps == 0
    # Loss accounting: the engines' own sums agree with the per-step losses.
    loss_sum = sum(e.stats().mean_loss * e.stats().steps for e in cluster.engines)  # type: ignore[operator]
    assert loss_sum == pytest.approx(sum(losses), rel=1e-9)
    assert float(np.mean(losses)) <= 1.02 * single_loss


# ---------------------------------------------------------------------- checkpoint, restart
def test_coordinator_checkpoint_restart_and_rejoin(tmp_path: Path, stream: SimulatedStream) -> None:
    path = tmp_path / "global.safetensors"
    cluster = Cluster(N_REPLICAS, checkpoint_path=path, checkpoint_every=20)
    events = stream.interactions[:6_000]
    cluster.run(events, by_user(N_REPLICAS))
    before = cluster.coordinator.stats()
    assert before.checkpoints >= 1 and path.exists()
    assert before.checkpoint_version is not None and before.checkpoint_version % 20 == 0

    # The coordinator process dies; a new one restarts from the file.
    restored = Coordinator.restore(path)
    after = restored.stats()
    assert after.version == before.checkpoint_version
    assert set(after.replicas) == {f"replica-{i}" for i in range(N_REPLICAS)}
    assert all(after.replicas[r] <= before.replicas[r] for r in after.replicas)
    assert restored.merge == "fedavg" and restored.sparse is True
    # The file is a normal network checkpoint: weights and merged steps.
    on_disk = Network.load(path)
    assert on_disk.steps == after.steps > 0
    assert_params_close(on_disk.parameters(), restored.network.parameters(), atol=0)

    # Replicas reconnect to the new coordinator; pushes merged before the crash
    # but after the checkpoint are gone from the model (bounded by checkpoint_every).
    assert isinstance(cluster.transport, InProcessTransport)
    cluster.transport.coordinator = restored
    cluster.coordinator = restored
    for a in cluster.averagers:
        assert a.sync()
    cluster.run(stream.interactions[6_000:9_000], by_user(N_REPLICAS))
    cluster.close()
    final = restored.stats()
    assert final.version > after.version and final.duplicates == 0

    # A replica that crashed rejoins with a fresh network: it pulls the current
    # model first and numbers its pushes after its last one.
    net = new_engine().network
    rejoined = ModelAverager(net, InProcessTransport(restored), "replica-1", sync_every=5)
    assert rejoined.join()
    assert_params_close(net.parameters(), restored.network.parameters(), atol=1e-7)
    assert rejoined.stats().seq == final.replicas["replica-1"]

    # A retried push from before the restart is recognised (seq already taken).
    old_seq = final.replicas["replica-0"]
    zero = {k: np.zeros_like(v) for k, v in net.parameters().items()}
    reply = restored.push(zero, 5, "replica-0", old_seq)
    assert reply.version == final.version and restored.stats().duplicates == 1


def test_restore_rejects_a_damaged_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "global.safetensors"
    coordinator = Coordinator(linear())
    coordinator.save(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        Coordinator.restore(path)


def test_restore_from_a_plain_network_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "net.safetensors"
    net = linear(seed=8)
    train(net, 3)
    net.save(path)
    restored = Coordinator.restore(path)
    s = restored.stats()
    assert (s.version, s.steps, s.replicas) == (0, 3, {})
    assert_params_close(restored.network.parameters(), net.parameters(), atol=0)


def test_checkpoint_interval(tmp_path: Path) -> None:
    path = tmp_path / "g.safetensors"
    coordinator = Coordinator(
        linear(), merge="delta", checkpoint_path=path, checkpoint_interval=1e-9
    )
    g = coordinator.pull("a").params
    coordinator.push(ones_like(g, 0.1), 2, "a", 1)
    assert coordinator.stats().checkpoints == 1 and Network.load(path).steps == 2


# ---------------------------------------------------------------------- docs
@pytest.mark.parametrize(
    "module",
    ["__init__", "averaging", "averager", "coordinator", "sharding", "transport"],
)
def test_docstring_examples(module: str) -> None:
    name = "livelearn.distributed" + ("" if module == "__init__" else f".{module}")
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_package_does_not_import_ray() -> None:
    """Ray is an optional extra: only ``livelearn.distributed.ray`` imports it."""
    code = "import sys, livelearn.distributed; print('ray' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert isinstance(InProcessTransport(Coordinator(linear())), Transport)
    assert "livelearn.distributed.ray" not in dist.__all__
