"""Process faults: close() with steps pending, engines that are never closed,
done callbacks that call back into the engine, and ``os.fork()``.

Everything that can hang runs in a subprocess with a timeout (and a
``faulthandler`` watchdog inside), so a deadlock fails one test with stack traces
instead of hanging the test run.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import wait
from typing import Any

import pytest
from _scenarios import TARGETS, Gate, Watchdog, interaction, quiet_livelearn, subprocess_env

from livelearn import Engine, EngineClosed, StepFuture, StepResult, StepStatus

WAIT = 60.0  # seconds: bounds a hang, never a performance expectation


def run_python(code: str, *args: str, timeout: float = 120.0) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON."""
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, (
        f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
    )
    out: dict[str, Any] = json.loads(lines[-1])
    return out


# ----------------------------------------------------------------------------- close()
def _produce(
    engine: Engine,
    t: int,
    handed: list[list[StepFuture[StepResult]]],
    ended: list[BaseException | None],
) -> None:
    """Submit until the engine refuses: odd producers with train_many, even ones
    with train_step; keep every Future handed out."""
    i = 0
    try:
        while True:
            if t % 2:
                handed[t].extend(engine.train_many([interaction(i + k) for k in range(7)]))
                i += 7
            else:
                handed[t].append(engine.train_step(interaction(i)))
                i += 1
    except BaseException as exc:
        ended[t] = exc


@pytest.mark.parametrize("wait_for_it", [True, False])
def test_close_racing_producers_resolves_every_future(wait_for_it: bool) -> None:
    """4 producers (train_step and train_many) run until close() stops them, 12
    times at random moments: every Future handed out resolves (trained), the
    producers stop with EngineClosed, and the counters add up."""
    rng = random.Random(7)
    with quiet_livelearn():
        for _ in range(12):
            engine = Engine(targets=TARGETS, log_every=0, max_pending=100_000).initialize()
            handed: list[list[StepFuture[StepResult]]] = [[] for _ in range(4)]
            ended: list[BaseException | None] = [None] * 4

            threads = [
                threading.Thread(target=_produce, args=(engine, t, handed, ended), daemon=True)
                for t in range(4)
            ]
            with Watchdog(WAIT, on_expire=lambda e=engine: e.close(wait=False)) as dog:  # type: ignore[misc]
                for th in threads:
                    th.start()
                time.sleep(rng.uniform(0.0, 0.05))
                engine.close(wait=wait_for_it, timeout=dog.remaining())
                for th in threads:
                    th.join(dog.remaining())
                futures = [f for fs in handed for f in fs]
                _, not_done = wait(futures, timeout=dog.remaining())
            assert not dog.expired
            assert not not_done, f"{len(not_done)} Futures never resolved after close()"
            assert all(isinstance(e, EngineClosed) for e in ended), ended
            assert all(f.result(timeout=0).status is StepStatus.TRAINED for f in futures)
            engine.close(wait=True, timeout=WAIT)
            s = engine.stats()
            assert (s.steps, s.pending, s.rejected, s.failed) == (len(futures), 0, 0, 0)
            # A train_many refused by close() counts its steps as skipped although the
            # caller got no Future for them: see test_train_many_interrupted_by_close...
            assert s.interactions == len(futures) + s.skipped


# ----------------------------------------------------------------------------- no close()
@pytest.mark.parametrize("mode", ["gc", "cycle", "exit"])
def test_an_engine_never_closed_drains_and_does_not_hang_exit(mode: str) -> None:
    code = """
        import atexit, gc, json, sys, faulthandler
        from concurrent.futures import wait
        state = {"callbacks": 0}
        futures = []
        def report():
            state["trained"] = sum(
                1 for f in futures if f.done() and f.exception() is None and f.result().trained
            )
            print(json.dumps(state), flush=True)
        atexit.register(report)  # before livelearn's own handler, so it runs after it
        faulthandler.dump_traceback_later(60, exit=True)
        from livelearn import Engine, InteractionData
        mode = sys.argv[1]
        engine = Engine(targets={"click": 1.0}, log_every=0, batch_size=8).initialize()
        items = [InteractionData("click", 1.7e9 + i, f"u{i % 9}") for i in range(30_000)]
        futures.extend(engine.train_many(items))
        def count(_):
            state["callbacks"] += 1
        for f in futures:
            f.add_done_callback(count)
        state["submitted"] = len(futures)
        if mode == "gc":  # dropped without close(): its finaliser trains what is queued
            del engine
            gc.collect()
            _, not_done = wait(futures, timeout=60)
            state["unresolved_before_exit"] = len(not_done)
        elif mode == "cycle":  # kept only by a reference cycle when the interpreter exits
            holder = [engine]
            holder.append(holder)
            del engine, holder
        # mode "exit": the interpreter exits while the engine is alive with steps queued
    """
    out = run_python(code, mode, timeout=120)
    assert out["submitted"] == 30_000
    assert out["callbacks"] == 30_000, out  # every Future resolved, each exactly once
    assert out["trained"] == 30_000, out
    if mode == "gc":
        assert out["unresolved_before_exit"] == 0


# ----------------------------------------------------------------------------- callbacks
# A subprocess whose engine's dispatcher can be parked inside a batch: a step
# with action "gate" sets gate_in, then waits for gate_out.
GATED_ENGINE = """
    import json, os, tempfile, threading, faulthandler
    faulthandler.dump_traceback_later(50, exit=True)
    from livelearn import Engine, InteractionData
    gate_in, gate_out = threading.Event(), threading.Event()
    def target(x):
        if x.action_type == "gate":
            gate_in.set()
            gate_out.wait(30)
        return 1.0
    engine = Engine(targets=target, log_every=0).initialize()
"""
CALLBACK_SAVE = (
    GATED_ENGINE
    + """
    path = os.path.join(tempfile.mkdtemp(), "from-callback.safetensors")
    held = engine.train_step(InteractionData("gate", 1.0, "u"))
    gate_in.wait(30)  # the dispatcher is parked inside the gate step's batch
    done = threading.Event()
    outcome = {}
    def save_from_callback(future):
        try:
            engine.save(path)
            outcome["save"] = "ok"
        except Exception as exc:
            outcome["save"] = f"{type(exc).__name__}: {exc}"
        done.set()
    held.add_done_callback(save_from_callback)  # runs in the dispatcher thread
    gate_out.set()
    outcome["callback_finished"] = done.wait(30)  # a save takes milliseconds: only a hang fails
    if outcome["callback_finished"]:
        later = engine.train_step(InteractionData("click", 2.0, "u"))
        outcome["later_step"] = later.result(timeout=15).status.value
        engine.close()
    print(json.dumps(outcome), flush=True)
    os._exit(0)  # a deadlocked dispatcher must not block the interpreter's exit
"""
)


def test_save_from_a_done_callback_does_not_deadlock() -> None:
    out = run_python(CALLBACK_SAVE, timeout=90)
    assert out["callback_finished"], out
    assert out["save"] == "ok" and out["later_step"] == "trained", out


# ----------------------------------------------------------------------------- fork
FORK = """
    import json, math, os, select, signal, sys, time, faulthandler
    from concurrent.futures import wait
    from livelearn import Engine, EngineClosed, InteractionData
    import logging
    logging.getLogger("livelearn").setLevel(logging.ERROR)

    def describe(exc):
        if isinstance(exc, EngineClosed):
            return "EngineClosed"
        return f"{type(exc).__name__}: {exc}"

    def child(engine, inherited, item, w):
        # No faulthandler timer here: its watchdog thread did not survive the fork.
        # A deadlock, even inside native code, ends with SIGALRM's default action.
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(30)
        out = {}
        _, not_done = wait(inherited, timeout=10)
        out["inherited_unresolved"] = len(not_done)
        try:
            out["stats"] = engine.stats().interactions >= 0 and "ok"
        except Exception as exc:
            out["stats"] = describe(exc)
        try:
            out["predict"] = "finite" if math.isfinite(engine.predict(item)) else "not finite"
        except Exception as exc:
            out["predict"] = describe(exc)
        for name, submit in (("train_step", lambda: [engine.train_step(item)]),
                             ("train_many", lambda: engine.train_many([item, item]))):
            try:
                futures = submit()
            except Exception as exc:
                out[name] = describe(exc)
                continue
            done, not_done = wait(futures, timeout=10)
            if not_done:
                out[name] = "never resolved"
                break  # one hang is enough; keep the test short
            out[name] = ",".join(sorted({f.result().status.value if f.exception() is None
                                          else describe(f.exception()) for f in futures}))
        os.write(w, json.dumps(out).encode())
        os._exit(0)

    engine = Engine(targets={"click": 1.0, "skip": 0.0}, log_every=0, batch_size=256).initialize()
    items = [InteractionData("click" if i % 3 else "skip", 1.7e9 + i, f"u{i % 13}")
             for i in range(20_000)]
    children, parent_futures = [], []
    for k in range(3):
        inherited = engine.train_many(items)  # the dispatcher is busy when we fork
        parent_futures += inherited
        time.sleep(0.002 * k)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            child(engine, inherited, items[1], w)
        os.close(w)
        deadline = time.monotonic() + 40  # past the child's alarm
        status = None
        while time.monotonic() < deadline:
            done_pid, status = os.waitpid(pid, os.WNOHANG)
            if done_pid:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = "killed: hung for 40 s"
        data = b""
        while select.select([r], [], [], 0)[0]:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        os.close(r)
        result = json.loads(data) if data else {}
        result["exit"] = status
        children.append(result)
    # The parent is not disturbed by the forks.
    _, not_done = wait(parent_futures, timeout=60)
    trained = sum(1 for f in parent_futures if f.done() and f.exception() is None
                  and f.result().trained)
    after = engine.train_step(items[0]).result(timeout=30).status.value
    s = engine.stats()
    engine.close()
    adds_up = s.steps + s.skipped + s.rejected + s.failed + s.pending == s.interactions
    parent = {"unresolved": len(not_done), "trained": trained, "submitted": len(parent_futures),
              "after": after, "adds_up": adds_up, "pending": s.pending}
    print(json.dumps({"children": children, "parent": parent}), flush=True)
"""


@pytest.fixture(scope="module")
def forked() -> Iterator[dict[str, Any]]:
    yield run_python(FORK, timeout=200)


def test_fork_does_not_disturb_the_parent(forked: dict[str, Any]) -> None:
    parent = forked["parent"]
    assert parent["unresolved"] == 0 and parent["pending"] == 0 and parent["adds_up"]
    assert parent["trained"] == parent["submitted"] == 3 * 20_000
    assert parent["after"] == "trained"


def test_forked_child_gets_a_clear_error_or_a_working_engine(forked: dict[str, Any]) -> None:
    """Forked while the dispatcher trains: the child's copy answers at once --
    EngineClosed (or, were it chosen, a working engine) -- and nothing hangs."""
    for child in forked["children"]:
        assert child["exit"] == 0, child  # not hung (faulthandler exit / SIGKILL)
        for name in ("train_step", "train_many"):
            assert child.get(name) in ("EngineClosed", "trained"), child
        assert child["predict"] in ("finite", "EngineClosed"), child
        assert child["stats"] == "ok", child


def test_futures_inherited_by_a_forked_child_resolve_there(forked: dict[str, Any]) -> None:
    for child in forked["children"]:
        assert child["exit"] == 0, child
        assert child["inherited_unresolved"] == 0, child


FORK_FROM_CALLBACK = (
    GATED_ENGINE
    + """
    held = engine.train_step(InteractionData("gate", 1.0, "u"))
    gate_in.wait(30)
    done = threading.Event()
    outcome = {}
    def fork_from_callback(future):  # e.g. multiprocessing.Process(...).start() with "fork"
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        outcome["forked"] = True
        done.set()
    held.add_done_callback(fork_from_callback)  # runs in the dispatcher thread
    gate_out.set()
    outcome["callback_finished"] = done.wait(30)  # a fork takes milliseconds: only a hang fails
    print(json.dumps(outcome), flush=True)
    os._exit(0)
"""
)


def test_fork_from_a_done_callback_does_not_deadlock() -> None:
    out = run_python(FORK_FROM_CALLBACK, timeout=90)
    assert out["callback_finished"], out


FORK_FROM_TARGET = """
    import json, os, faulthandler
    faulthandler.dump_traceback_later(50, exit=True)
    from livelearn import Engine, InteractionData
    forked = []
    def target(x):  # runs in the dispatcher, inside the batch
        if x.action_type == "fork" and not forked:
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            forked.append(pid)
        return 1.0
    engine = Engine(targets=target, log_every=0).initialize()
    first = engine.train_step(InteractionData("fork", 1.0, "u"))
    status = first.result(timeout=30).status.value
    later = engine.train_step(InteractionData("click", 2.0, "u")).result(timeout=15).status.value
    engine.close()
    print(json.dumps({"forked": bool(forked), "status": status, "later": later}), flush=True)
"""


def test_fork_from_a_target_function_does_not_deadlock() -> None:
    """os.fork() from user code that runs inside a batch (a target function)
    must not wait for the batch lock its own thread holds."""
    out = run_python(FORK_FROM_TARGET, timeout=90)
    assert out == {"forked": True, "status": "trained", "later": "trained"}, out


def test_train_many_interrupted_by_close_loses_no_future() -> None:
    gate = Gate()
    engine = Engine(targets=gate, max_pending=2, overload="block", log_every=0).initialize()
    box: dict[str, Any] = {}

    def produce() -> None:
        try:
            box["futures"] = engine.train_many([interaction(i) for i in range(5)])
        except BaseException as exc:
            box["error"] = exc

    try:
        gate.hold(engine)  # the dispatcher is parked: the queue fills up
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        deadline = time.monotonic() + WAIT
        while engine.stats().interactions < 3 and time.monotonic() < deadline:
            time.sleep(0.001)  # 2 of the 5 queued, the producer waits for room
        engine.close(wait=False)
        producer.join(WAIT)
    finally:
        gate.release()
        engine.close(wait=True, timeout=WAIT)
    received = box.get("futures", [])
    assert all(f.done() for f in received)
    # Every step the engine accepted (beyond the gate step) has a Future the caller holds.
    assert engine.stats().interactions == 1 + len(received), box
