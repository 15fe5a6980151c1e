"""``Engine(share=...)``: several processes, one model in shared memory.

Workers are forked (fast: a pre-fork server forks after importing livelearn
too) and one test uses spawn. Every wait is bounded; nothing here is timed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from livelearn import Engine, InteractionData, Network
from livelearn.errors import ShareError

TARGETS = {"click": 1.0, "skip": 0.0}
WAIT_S = 60.0


def _name() -> str:
    return f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def share() -> Iterator[str]:
    name = _name()
    yield name
    path = f"/dev/shm/livelearn-{name}"
    if os.path.exists(path):  # a failed test must not leave it behind
        os.unlink(path)


def _events(worker: int, n: int) -> list[InteractionData]:
    rng = np.random.default_rng(worker)
    return [
        InteractionData(
            "click" if rng.random() < 0.3 else "skip",
            1_700_000_000.0 + i,
            f"user-{int(rng.integers(50))}",
            context={"hour": float(rng.integers(24))},
        )
        for i in range(n)
    ]


PROBES = [InteractionData("click", 1_700_000_000.0, f"user-{u}") for u in range(10)]


def _worker(share: str, worker: int, n: int, barrier: Any, out: Any) -> None:
    engine = Engine(targets=TARGETS, share=share, log_every=0).initialize()
    futures = engine.train_many(_events(worker, n))
    steps = [f.result(timeout=WAIT_S).step for f in futures]
    barrier.wait(WAIT_S)  # every process trained
    predictions = engine.predict_many(PROBES).tobytes()
    out.put((worker, engine.stats().steps, engine.network.steps, predictions, steps))
    barrier.wait(WAIT_S)  # every process predicted before any detaches
    engine.close()


def _context(method: str = "fork") -> Any:
    return mp.get_context(method)


def test_four_processes_train_one_model(share: str) -> None:
    ctx = _context()
    n = 400
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(share, w, n, barrier, out)) for w in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=WAIT_S) for _ in procs]
    for p in procs:
        p.join(WAIT_S)
        assert p.exitcode == 0
    assert sorted(r[1] for r in results) == [n] * 4  # each process counts its own
    assert {r[2] for r in results} == {4 * n}  # the shared counter counts all
    assert len({r[3] for r in results}) == 1  # bit-identical predictions
    all_steps = sorted(s for r in results for s in r[4])
    assert all_steps == list(range(1, 4 * n + 1))  # every step number once
    assert not os.path.exists(f"/dev/shm/livelearn-{share}")  # the last removed it


def _hold(share: str, poison: bool, ready: Any) -> None:
    net = Network(layers=[4, 16, 8, 1], learning_rate=0.05, share=share)
    ready.set()
    net._hold_lock_for_test(120.0, poison)


def _wait_lock_owner(net: Network, pid: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while net.share_lock_owner != pid and time.monotonic() < deadline:
        time.sleep(0.001)
    assert net.share_lock_owner == pid


def test_a_worker_killed_while_holding_the_lock_does_not_stop_the_others(share: str) -> None:
    with Engine(targets=TARGETS, share=share, log_every=0) as engine:
        for f in engine.train_many(_events(0, 50)):
            f.result(timeout=WAIT_S)
        before = engine.predict_many(PROBES)
        version = engine.network.version
        ctx = _context()
        ready = ctx.Event()
        p = ctx.Process(target=_hold, args=(share, True, ready))
        p.start()
        assert ready.wait(WAIT_S)
        _wait_lock_owner(engine.network, p.pid)
        os.kill(p.pid, signal.SIGKILL)  # dies mid-"step": a NaN written, journal active
        p.join(WAIT_S)
        assert p.exitcode == -signal.SIGKILL
        after = engine.predict_many(PROBES)
        np.testing.assert_array_equal(after, before)  # the half step was rolled back
        assert engine.network.version == version
        assert engine.network.share_info["repairs"] == 1
        state = engine.network.get_state()
        assert all(np.isfinite(v).all() for v in state.values())
        result = engine.train_step(_events(1, 1)[0]).result(timeout=WAIT_S)
        assert result.step == 51
    assert not os.path.exists(f"/dev/shm/livelearn-{share}")


def _train_forever(share: str, started: Any) -> None:
    engine = Engine(targets=TARGETS, share=share, log_every=0).initialize()
    started.set()
    i = 0
    while True:
        engine.train_many(_events(i, 64))[-1].result(timeout=WAIT_S)
        i += 1


def test_kill_during_training_then_a_restart_attaches(share: str) -> None:
    with Engine(targets=TARGETS, share=share, log_every=0) as engine:
        ctx = _context()
        started = ctx.Event()
        p = ctx.Process(target=_train_forever, args=(share, started))
        p.start()
        assert started.wait(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while engine.network.steps < 200 and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(p.pid, signal.SIGKILL)
        p.join(WAIT_S)
        steps = engine.network.steps
        assert steps >= 200
        assert all(np.isfinite(v).all() for v in engine.network.get_state().values())
        for f in engine.train_many(_events(99, 10)):
            assert f.result(timeout=WAIT_S).step is not None
        assert engine.network.steps == steps + 10
        # A restarted worker (spawned: a fresh interpreter) attaches to the same model.
        spawn = _context("spawn")
        barrier, out = spawn.Barrier(1), spawn.Queue()
        q = spawn.Process(target=_worker, args=(share, 7, 5, barrier, out))
        q.start()
        result = out.get(timeout=WAIT_S)
        q.join(WAIT_S)
        assert q.exitcode == 0
        assert result[2] == steps + 15
        assert engine.network.steps == steps + 15
        assert engine.network.share_info["processes"] == 1


def _crash(share: str, n: int) -> None:
    engine = Engine(targets=TARGETS, share=share, log_every=0).initialize()
    for f in engine.train_many(_events(3, n)):
        f.result(timeout=WAIT_S)
    os._exit(0)  # no close, no exit hooks: as a crash


def test_a_stale_segment_is_recovered(share: str) -> None:
    ctx = _context()
    p = ctx.Process(target=_crash, args=(share, 30))
    p.start()
    p.join(WAIT_S)
    assert p.exitcode == 0
    assert os.path.exists(f"/dev/shm/livelearn-{share}")
    with Engine(targets=TARGETS, share=share, log_every=0) as engine:
        info = engine.network.share_info
        assert info["recovered"] and not info["created"]
        assert engine.network.steps == 30
        assert engine.stats().model_steps == 30
        assert engine.stats().steps == 0
    assert not os.path.exists(f"/dev/shm/livelearn-{share}")


def test_an_incompatible_configuration_is_refused(share: str) -> None:
    with Engine(targets=TARGETS, share=share, log_every=0) as engine:
        with pytest.raises(ShareError, match="incompatible configuration"):
            Engine(targets=TARGETS, share=share, hidden_layers=(8,))
        with pytest.raises(ShareError, match="incompatible configuration"):
            Engine(targets=TARGETS, share=share, learning_rate=0.1)
        assert engine.network.share_info["processes"] == 1
    with pytest.raises(ValueError, match="share"):
        Engine(targets=TARGETS, share="no/slash")
    with pytest.raises(TypeError, match="share"):
        Engine(targets=TARGETS, share=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="field model"):
        Engine(targets=TARGETS, share=share, model="field")


def test_the_learning_rate_of_a_shared_model_is_fixed(share: str) -> None:
    net = Network(layers=[2, 1], share=share)
    with pytest.raises(ShareError, match="learning rate"):
        net.learning_rate = 0.1
    assert net.learning_rate == pytest.approx(0.05)
    net.release_share()


def test_every_wait_for_the_lock_is_bounded(share: str) -> None:
    net = Network(layers=[4, 16, 8, 1], learning_rate=0.05, share=share, share_timeout=0.2)
    ctx = _context()
    ready = ctx.Event()
    p = ctx.Process(target=_hold, args=(share, False, ready))
    p.start()
    assert ready.wait(WAIT_S)
    _wait_lock_owner(net, p.pid)
    with pytest.raises(ShareError, match="not released within"):
        net.train_step(np.zeros(4, np.float32), 1.0)
    os.kill(p.pid, signal.SIGKILL)
    p.join(WAIT_S)
    net.train_step(np.zeros(4, np.float32), 1.0)
    assert net.steps == 1
    net.release_share()


def _claim(share: str, out: Any) -> None:
    net = Network(layers=[4, 16, 8, 1], share=share)  # the engine's default MLP
    out.put(net.claim_autosave())
    net.release_share()


def test_one_process_autosaves_at_a_time(share: str, tmp_path: Any) -> None:
    path = tmp_path / "shared.safetensors"
    with Engine(
        targets=TARGETS, share=share, log_every=0, checkpoint_path=path, checkpoint_every=10
    ) as engine:
        for f in engine.train_many(_events(0, 20)):
            f.result(timeout=WAIT_S)
        ctx = _context()
        out = ctx.Queue()
        p = ctx.Process(target=_claim, args=(share, out))
        p.start()
        assert out.get(timeout=WAIT_S) is False  # this process holds the role
        p.join(WAIT_S)
    assert path.exists()


def test_load_into_a_share_first_loads_then_attaches(share: str, tmp_path: Any) -> None:
    path = tmp_path / "engine.safetensors"
    with Engine(targets=TARGETS, log_every=0) as local:
        for f in local.train_many(_events(0, 40)):
            f.result(timeout=WAIT_S)
        local.save(path)
        expected = local.predict_many(PROBES)
    first = Engine.load(path, share=share)
    assert first.network.steps == 40
    np.testing.assert_array_equal(first.predict_many(PROBES), expected)
    for f in first.train_many(_events(1, 10)):
        f.result(timeout=WAIT_S)
    second = Engine.load(path, share=share)  # attaches: the live model is kept
    assert second.network.steps == 50
    np.testing.assert_array_equal(second.predict_many(PROBES), first.predict_many(PROBES))
    assert second.network.share_info["processes"] == 1
    first.close()
    second.close()
    assert not os.path.exists(f"/dev/shm/livelearn-{share}")
