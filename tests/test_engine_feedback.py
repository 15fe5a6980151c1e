"""The engine's delayed-feedback loop: predict(event_id=) + feedback(), end to end."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import livelearn
from livelearn import Engine, HashedFeatureEncoder, InteractionData
from livelearn.errors import DuplicateEventId, EngineClosed, InvalidFeedback
from livelearn.futures import StepFuture
from livelearn.results import FeedbackStats, StepResult, StepStatus

PACKAGE_ROOT = str(Path(livelearn.__file__).resolve().parent.parent)
P = np.array([0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])


def it(item: int, t: float = 0.0, label: float | None = None) -> InteractionData:
    return InteractionData("view", float(t), "u", context={"item": str(int(item))}, label=label)


def engine(**kw: Any) -> Engine:
    kw.setdefault("features", HashedFeatureEncoder(n_buckets=64))
    kw.setdefault("log_every", 0)
    kw.setdefault("seed", 1)
    return Engine(**kw)


def adds_up(f: FeedbackStats) -> bool:
    left = f.joined + f.expired_trained + f.expired_dropped + f.evicted_trained + f.evicted_dropped
    fed = f.matched + f.duplicate + f.late + f.unknown
    return f.predictions == left + f.awaiting and f.feedbacks == fed


def fb(e: Engine) -> FeedbackStats:
    stats = e.stats().feedback
    assert stats is not None
    return stats


# ----------------------------------------------------------------- statuses
def test_each_case_resolves_its_future_with_a_clear_status() -> None:
    with engine(feedback_timeout=10.0, clock="event", awaiting_on_close="expire") as e:
        p = e.predict(it(1, 0.0), event_id="a")
        assert isinstance(p, float) and 0.0 < p < 1.0
        e.predict(it(2, 0.0), event_id="b")
        e.predict(it(3, 5.0), event_id=7)  # its window closes at 15
        joined = e.feedback("a", 1.0, timestamp=6.0).result()
        assert joined.status is StepStatus.TRAINED and joined.step == 1
        assert joined.prediction == pytest.approx(p, abs=1e-6)  # the stored row, not re-encoded
        assert e.feedback("a", 0.0, timestamp=7.0).result().status is StepStatus.DUPLICATE
        assert e.feedback("nope", 1.0, timestamp=7.0).result().status is StepStatus.UNKNOWN
        late = e.feedback("b", 1.0, timestamp=11.0).result()  # b expired at 10
        assert late.status is StepStatus.LATE and "late_policy='ignore'" in (late.reason or "")
        with pytest.raises(DuplicateEventId):
            e.predict(it(3, 12.0), event_id=7)
        bad = [
            e.feedback(7, float("nan")),
            e.feedback(7, 1e39),
            e.feedback(7, 2.0),  # bce label outside [0, 1]
            e.feedback(7),
            e.feedback(7, 1.0, timestamp=float("inf")),
            e.feedback(7.5, 1.0),  # type: ignore[arg-type]
            e.feedback(7, action_type="click"),  # no targets map: no target for it
        ]
        for future in bad:
            assert isinstance(future.exception(), InvalidFeedback)
        stats = fb(e)
        assert (stats.matched, stats.duplicate, stats.unknown, stats.late) == (1, 1, 1, 1)
        assert stats.invalid == len(bad) and stats.awaiting == 1 and adds_up(stats)
    stats = fb(e)
    # close() expired 7; b expired at 10: two default-label steps, one joined step.
    assert stats.awaiting == 0 and stats.expired_trained == 2 and adds_up(stats)
    assert e.stats().steps == 3 == e.network.steps
    with pytest.raises(EngineClosed):
        e.feedback("a", 1.0)


def test_action_types_through_the_targets_map() -> None:
    with engine(targets={"click": 1.0, "skip": 0.0}, feedback_timeout=60.0) as e:
        e.predict(it(1), event_id="x")
        e.predict(it(2), event_id="y")
        assert e.feedback("x", action_type="click").result().trained
        assert e.feedback("y", action_type="skip").result().trained
        assert isinstance(e.feedback("x", action_type="buy").exception(), InvalidFeedback)
        assert [h.target[0] for h in e.history] == [1.0, 0.0]


def test_the_loop_is_off_without_a_timeout() -> None:
    with engine() as e:
        with pytest.raises(ValueError, match="feedback_timeout"):
            e.predict(it(1), event_id="x")
        with pytest.raises(ValueError, match="feedback_timeout"):
            e.feedback("x", 1.0)
        assert e.stats().feedback is None
    with pytest.raises(ValueError, match="negative_sampling"):
        engine(negative_sampling=0.5)
    for bad in (
        {"feedback_timeout": 0.0},
        {"feedback_timeout": 1.0, "late_policy": "retry"},
        {"feedback_timeout": 1.0, "duplicate_policy": "min"},
        {"feedback_timeout": 1.0, "negative_sampling": 0.0},
        {"feedback_timeout": 1.0, "clock": "sundial"},
        {"feedback_timeout": 1.0, "awaiting_on_close": "forget"},
        {"feedback_timeout": 1.0, "default_label": 2.0},
        {"feedback_timeout": 1.0, "max_awaiting": 0},
    ):
        with pytest.raises(ValueError):
            engine(**bad)


def test_wall_clock_windows_close_without_any_call() -> None:
    e = engine(feedback_timeout=0.05, default_label=0.0).initialize()
    e.predict(it(1), event_id="a")
    e.predict(it(2), event_id="b")
    deadline = time.monotonic() + 20.0
    while fb(e).expired_trained < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # the dispatcher's tick closes the windows
    e.close()
    stats = fb(e)
    assert stats.expired_trained == 2 and stats.awaiting == 0 and e.stats().steps == 2


def test_dropped_when_default_label_is_none_and_corrections() -> None:
    with engine(
        feedback_timeout=5.0, default_label=None, clock="event", late_policy="correct"
    ) as e:
        e.predict(it(1, 0.0), event_id="a")
        e.predict(it(2, 10.0), event_id="b")  # the clock passes a's deadline
        stats = fb(e)
        assert stats.expired_dropped == 1 and e.stats().steps == 0
        late = e.feedback("a", 1.0, timestamp=11.0).result()  # dropped: trains plainly
        assert late.status is StepStatus.TRAINED and e.stats().steps == 1
        again = e.feedback("a", 1.0, timestamp=12.0).result()
        assert again.status is StepStatus.DUPLICATE  # corrected once


@pytest.mark.parametrize(("policy", "label"), [("max", 1.0), ("sum", 1.0), ("last", 0.0)])
def test_duplicates_aggregate_until_the_window_closes(policy: str, label: float) -> None:
    with engine(feedback_timeout=5.0, clock="event", duplicate_policy=policy, loss="mse") as e:
        e.predict(it(1, 0.0), event_id="a")
        first = e.feedback("a", 1.0, timestamp=1.0)
        later = [e.feedback("a", 0.0, timestamp=2.0), e.feedback("a", 0.0, timestamp=3.0)]
        assert not first.done()
        assert [f.result().status for f in later] == [StepStatus.DUPLICATE] * 2
        e.predict(it(2, 6.0), event_id="b")  # a's window closes: its aggregate trains
        assert first.result().status is StepStatus.TRAINED
        assert e.history[0].target[0] == label
        pending = e.feedback("b", 1.0, timestamp=7.0)
    # close() keeps b awaiting (the default): its aggregate's Future still resolves.
    assert pending.result().status is StepStatus.SKIPPED
    assert fb(e).awaiting == 1


# ----------------------------------------------------------------- known answers
def _stream(n: int, seed: int, mean_delay: float, max_delay: float | None = None) -> Any:
    rng = np.random.default_rng(seed)
    items = rng.integers(0, len(P), n)
    y = (rng.random(n) < P[items]).astype(float)
    d = rng.exponential(mean_delay, n)
    return items, y, d if max_delay is None else np.minimum(d, max_delay)


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return float(np.mean(-(y * np.log(q) + (1 - y) * np.log(1 - q))))


def _immediate(items: np.ndarray, y: np.ndarray) -> np.ndarray:
    with engine() as e:
        futures = [
            e.train_step(it(k, i, float(v))) for i, (k, v) in enumerate(zip(items, y, strict=True))
        ]
        return np.array([f.result().prediction for f in futures])


def _delayed(
    items: np.ndarray, y: np.ndarray, d: np.ndarray, timeout: float, wait: bool = False, **kw: Any
) -> Any:
    """Replay impressions (one a second) and clicks (after their delay) in event
    time; returns the predictions served and the engine. ``wait``: each predict
    waits for the steps queued before it (served predictions then repeat)."""
    e = engine(feedback_timeout=timeout, clock="event", awaiting_on_close="expire", **kw)
    events = [(float(i), 0, i) for i in range(len(items))]
    events += [(i + d[i], 1, i) for i in np.flatnonzero(y)]
    events.sort()
    served = np.zeros(len(items))
    with e:
        for t, kind, i in events:
            if kind == 0:
                if wait:
                    e.wait_idle()
                served[i] = e.predict(it(items[i], t), event_id=int(i))
            else:
                e.feedback(int(i), 1.0, timestamp=t)
    return served, e


def test_delayed_labels_within_the_timeout_learn_like_immediate_ones() -> None:
    n = 4000
    items, y, d = _stream(n, 0, 5.0, max_delay=29.0)  # every click within the 30 s timeout
    half = slice(n // 2, None)  # progressive log loss of the second half
    immediate = _log_loss(_immediate(items, y)[half], y[half])
    served, e = _delayed(items, y, d, 30.0)
    delayed = _log_loss(served[half], y[half])
    assert abs(delayed / immediate - 1.0) < 0.01, (delayed, immediate)
    stats = fb(e)
    assert stats.joined == int(y.sum()) and stats.late == 0 and adds_up(stats)
    assert stats.expired_trained == n - int(y.sum()) and e.stats().steps == n


def test_clicks_beyond_the_timeout_bias_the_model_and_the_late_policy_corrects_it() -> None:
    n = 2500
    items, y, d = _stream(n, 0, 20.0)  # 61 % of the clicks arrive after the 10 s timeout
    half = slice(n // 2, None)
    ignored, e = _delayed(items, y, d, 10.0)
    late = int(np.count_nonzero(y.astype(bool) & (d > 10.0)))
    assert fb(e).late == late and fb(e).corrections == 0
    corrected, e = _delayed(items, y, d, 10.0, late_policy="correct")
    assert fb(e).corrections == late and adds_up(fb(e))
    calibration_ignored = served_calibration(ignored[half], y[half])
    calibration_corrected = served_calibration(corrected[half], y[half])
    # Ignored: predictions shrink to about p (1 - 0.61) (the documented bias).
    assert calibration_ignored < 0.6
    # Corrected with importance weights: calibrated, and the loss of immediate labels.
    assert abs(calibration_corrected - 1.0) < 0.1
    immediate = _log_loss(_immediate(items, y)[half], y[half])
    assert _log_loss(corrected[half], y[half]) < 1.02 * immediate
    assert _log_loss(ignored[half], y[half]) > 1.1 * immediate


def served_calibration(p: np.ndarray, y: np.ndarray) -> float:
    return float(p.mean() / y.mean())


def test_negative_sampling_keeps_predictions_calibrated() -> None:
    n = 8000
    items, y, d = _stream(n, 3, 2.0, max_delay=9.0)
    served, e = _delayed(items, y, d, 10.0, negative_sampling=0.1, quality_window=n // 2)
    stats = fb(e)
    negatives = n - int(y.sum())
    # About 90 % of the negatives never reach the network; the rest weigh 10.
    assert 0.85 * negatives < stats.sampled_out < 0.95 * negatives
    assert e.stats().steps == n - stats.sampled_out
    half = slice(n // 2, None)
    assert abs(served_calibration(served[half], y[half]) - 1.0) < 0.05
    assert stats.calibration is not None and abs(stats.calibration - 1.0) < 0.05


def test_event_time_replays_are_deterministic() -> None:
    items, y, d = _stream(600, 5, 8.0)
    kw = {"late_policy": "correct", "negative_sampling": 0.5}
    runs = [_delayed(items, y, d, 10.0, wait=True, **kw) for _ in range(2)]
    assert np.array_equal(runs[0][0], runs[1][0])
    a, b = (r[1].network.get_state() for r in runs)
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------- bounds
def test_memory_stays_within_max_awaiting() -> None:
    with engine(feedback_timeout=1e9, max_awaiting=100, clock="event") as e:
        for i in range(3000):
            e.predict(it(i % 10, float(i)), event_id=i)
            if i % 500 == 0:
                assert fb(e).awaiting <= 100
        stats = fb(e)
        assert stats.awaiting == 100 and stats.evicted_trained == 2900 and adds_up(stats)
        # The earliest deadlines left first: the newest 100 still wait.
        assert e.feedback(2999, 1.0).result().trained
        assert e.feedback(2850, 1.0).result().status is StepStatus.LATE  # remembered
        assert e.feedback(0, 1.0).result().status is StepStatus.UNKNOWN  # forgotten
    assert e.stats().steps == 2901


# ----------------------------------------------------------------- threads
def test_threads_predicting_and_sending_feedback_keep_exact_counters() -> None:
    n_threads, per_thread = 8, 150
    e = engine(feedback_timeout=600.0, awaiting_on_close="expire").initialize()
    futures: list[tuple[str, StepFuture[StepResult]]] = []
    resolved: Counter[int] = Counter()
    lock = threading.Lock()
    predicted = threading.Event()

    def record(kind: str, future: StepFuture[StepResult]) -> None:
        future.add_done_callback(lambda f: _count(resolved, lock, id(f)))
        with lock:
            futures.append((kind, future))

    def predictor(t: int) -> None:
        for i in range(per_thread):
            e.predict(it(i % 10, float(i)), event_id=f"{t}-{i}")
        predicted.set()

    def sender(t: int) -> None:
        rng = random.Random(t)
        for i in range(per_thread):
            eid = f"{t}-{i}"  # may race its own prediction: then it is unknown
            record("fb", e.feedback(eid, float(rng.random() < 0.3)))
            roll = rng.random()
            if roll < 0.2:
                record("fb", e.feedback(eid, 1.0))  # a duplicate (or unknown)
            elif roll < 0.3:
                record("fb", e.feedback(f"never-{t}-{i}", 1.0))
            elif roll < 0.35:
                record("bad", e.feedback(eid, float("nan")))
            elif roll < 0.4:
                record("bad", e.feedback(eid, 3e38 * 10))

    threads = [threading.Thread(target=predictor, args=(t,)) for t in range(n_threads)]
    threads += [threading.Thread(target=sender, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60.0)
        assert not thread.is_alive(), "deadlock"
    e.close()
    results = [(kind, f.exception(timeout=30.0) or f.result()) for kind, f in futures]
    assert all(resolved[id(f)] == 1 for _, f in futures)  # exactly once each
    statuses = Counter(r.status for k, r in results if isinstance(r, StepResult))
    invalid = sum(isinstance(r, InvalidFeedback) for _, r in results)
    assert invalid == sum(k == "bad" for k, _ in results)
    stats = fb(e)
    assert adds_up(stats) and stats.awaiting == 0
    assert stats.predictions == n_threads * per_thread and stats.invalid == invalid
    assert statuses[StepStatus.TRAINED] == stats.matched == stats.joined
    assert statuses[StepStatus.DUPLICATE] == stats.duplicate
    assert statuses[StepStatus.UNKNOWN] == stats.unknown
    # No step lost or doubled: one per joined or expired example, nothing else.
    steps = e.stats()
    assert steps.steps == stats.joined + stats.expired_trained == e.network.steps
    assert steps.pending == 0 and steps.rejected == steps.failed == steps.skipped == 0


def _count(counter: Counter[int], lock: threading.Lock, key: int) -> None:
    with lock:
        counter[key] += 1


# ----------------------------------------------------------------- checkpoints
def test_awaiting_examples_survive_save_and_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "e.safetensors"
    with engine(feedback_timeout=100.0, clock="event", late_policy="correct") as e:
        served = {i: e.predict(it(i, float(i)), event_id=f"i{i}") for i in range(5)}
        assert e.feedback("i0", 1.0, timestamp=5.0).result().trained
    e.save(path)  # after close(): awaiting_on_close="keep"
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert json.loads(path.read_bytes()[8 : 8 + n])["__metadata__"]["format_version"] == "2"
    from livelearn.cli import main

    assert main(["inspect", str(path)]) == 0
    assert "4 example(s) awaiting their outcome" in capsys.readouterr().out
    loaded = Engine.load(path)
    try:
        stats = fb(loaded)
        assert stats.awaiting == 4 and stats.joined == 1 and adds_up(stats)
        result = loaded.feedback("i3", 1.0, timestamp=50.0).result()
        assert result.trained and loaded.history[-1].timestamp == 3.0  # the stored row
        assert 0.0 < served[3] < 1.0
        assert loaded.feedback("i0", 1.0).result().status is StepStatus.DUPLICATE
        assert loaded.config["clock"] == "event" and loaded.config["late_policy"] == "correct"
        loaded.predict(it(9, 200.0), event_id="z")  # the restored event clock passes 104
        assert fb(loaded).expired_trained == 3
    finally:
        loaded.close()
    # Without the loop the file stays version 1 (readable by earlier livelearn).
    plain = tmp_path / "plain.safetensors"
    engine().save(plain)
    n = struct.unpack("<Q", plain.read_bytes()[:8])[0]
    assert json.loads(plain.read_bytes()[8 : 8 + n])["__metadata__"]["format_version"] == "1"


def test_close_can_expire_every_awaiting_example() -> None:
    e = engine(feedback_timeout=100.0, duplicate_policy="max", awaiting_on_close="expire")
    e.initialize()
    for i in range(5):
        e.predict(it(i), event_id=i)
    pending = e.feedback(0, 1.0)
    e.close()
    assert pending.result().trained  # its aggregate trained at close
    stats = fb(e)
    assert stats.awaiting == 0 and stats.joined == 1 and stats.expired_trained == 4
    assert e.stats().steps == 5


CHILD = textwrap.dedent(
    """
    import sys
    from livelearn import Engine, HashedFeatureEncoder, InteractionData
    path = sys.argv[1]
    engine = Engine(features=HashedFeatureEncoder(n_buckets=2**12), log_every=0,
                    feedback_timeout=1e9, clock="event")
    engine.initialize()
    i = 0
    while True:
        for k in range(50):
            engine.predict(InteractionData("view", float(i + k), "u", context={"k": str(k)}),
                           event_id=i + k)
        i += 50
        print("start", i, flush=True)
        engine.save(path)
        print("done", i, flush=True)
    """
)


def test_sigkill_during_saves_loses_no_awaiting_example(tmp_path: Path) -> None:
    path = tmp_path / "crash.safetensors"
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    rng = random.Random(3)
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, env=env, text=True
        )
        assert proc.stdout is not None
        started: list[int] = []
        done: list[int] = []
        for line in proc.stdout:
            _record(line, started, done)
            if done:
                break
        time.sleep(rng.uniform(0.0, 0.1))
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate()
        for line in rest.splitlines(keepends=True):
            _record(line, started, done)
        loaded = Engine.load(path, initialize=True)
        try:
            awaiting = fb(loaded).awaiting
            # The file is the last completed save, or the one in flight if it completed.
            assert awaiting in {done[-1], *started[-1:]}
            assert awaiting >= done[-1]
            for eid in (0, done[-1] // 2, done[-1] - 1):
                assert loaded.feedback(eid, 1.0).result().trained
        finally:
            loaded.close()
        path.unlink()


def _record(line: str, started: list[int], done: list[int]) -> None:
    match = re.fullmatch(r"(start|done) (\d+)\n", line)
    if match is not None:
        (started if match[1] == "start" else done).append(int(match[2]))


# ----------------------------------------------------------------- metrics
def test_prometheus_exports_the_live_quality() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from livelearn.metrics import register

    registry = CollectorRegistry()
    with engine(feedback_timeout=60.0) as e:
        register(e, registry)
        for i in range(4):
            e.predict(it(i), event_id=i)
        e.feedback(0, 1.0).result()
        e.feedback(1, 0.0).result()
        e.feedback("x", 1.0).result()
        text = generate_latest(registry).decode()
    assert "livelearn_feedback_awaiting 2.0" in text
    assert "livelearn_feedback_joined_total 2.0" in text
    assert "livelearn_feedback_unknown_total 1.0" in text
    assert re.search(r"livelearn_feedback_window_log_loss \d", text)
    assert re.search(r"livelearn_feedback_auc 1\.0", text)
    assert not math.isnan(fb(e).log_loss or math.nan)


# ----------------------------------------------------------------- split-log replay
def _split_logs(folder: Path, n: int = 300) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    imp, out, both = folder / "imp.csv", folder / "out.jsonl", folder / "both.csv"
    imp_rows, out_rows, both_rows = [], [], []
    for i in range(n):
        k = int(rng.integers(0, 3))
        t = 1.7e9 + i
        imp_rows.append(f"e{i},{t},u{i % 7},view,{k}")
        both_rows.append(f"impression,e{i},{t},u{i % 7},view,{k},")
        if rng.random() < (0.1, 0.4, 0.7)[k]:
            d = float(rng.exponential(20.0))
            out_rows.append(json.dumps({"event_id": f"e{i}", "timestamp": t + d, "label": 1}))
            both_rows.append(f"outcome,e{i},{t + d},,,,1")
    out_rows += [json.dumps({"event_id": "ghost", "timestamp": 1.7e9 + 3, "label": 1}), "{oops"]
    imp.write_text("event_id,timestamp,user_id,action_type,item\n" + "\n".join(imp_rows) + "\n")
    out.write_text("\n".join(out_rows) + "\n")
    both.write_text(
        "kind,event_id,timestamp,user_id,action_type,item,label\n" + "\n".join(both_rows) + "\n"
    )
    return imp, out, both


def test_replay_joins_split_logs_by_id_in_event_time(tmp_path: Path) -> None:
    from livelearn.cli import main

    imp, out, both = _split_logs(tmp_path)
    common = ["--hashed", "--buckets", "256", "--context-cols", "item", "--feedback-timeout", "30"]
    r1, r2 = tmp_path / "r1.json", tmp_path / "r2.json"
    assert main(["replay", str(imp), "--outcomes", str(out), *common, "--report", str(r1)]) == 0
    assert (
        main(["replay", str(both), "--event-kind-col", "kind", *common, "--report", str(r2)]) == 0
    )
    a, b = json.loads(r1.read_text()), json.loads(r2.read_text())
    n_out = sum('"event_id": "e' in line for line in out.read_text().splitlines())
    assert a["impressions"] == 300 and a["outcomes"] == n_out + 1 and a["malformed_outcomes"] == 1
    assert a["unknown"] == 1 and a["joined"] + a["late"] == n_out
    assert a["joined"] + a["expired_trained"] + a["expired_at_end"] == 300 == a["engine_steps"]
    # The same join and the same model from one file with event kinds, deterministically.
    for key in ("joined", "late", "expired_trained", "log_loss", "auc", "delay_p50"):
        assert a[key] == b[key], key


def test_aggregates_of_other_ids_closing_at_a_feedback_keep_their_own_future() -> None:
    with engine(feedback_timeout=5.0, clock="event", duplicate_policy="max") as e:
        e.predict(it(1, 0.0), event_id="a")
        e.predict(it(2, 4.0), event_id="b")
        first_a = e.feedback("a", 1.0, timestamp=1.0)
        e.predict(it(4, 1.0), event_id=7)
        seven = e.feedback(np.int64(7), 1.0, timestamp=1.5)  # a numpy id: the same id 7
        assert not seven.done()
        # b's feedback at 6 closes a's window (deadline 5) in the same call.
        b = e.feedback("b", 0.0, timestamp=6.0)
        assert first_a.result().status is StepStatus.TRAINED
        assert not b.done()  # b still aggregates until 9
        e.predict(it(3, 10.0), event_id="c")
        assert b.result().status is StepStatus.TRAINED
        assert seven.result().status is StepStatus.TRAINED  # its window closed at 6
        assert fb(e).joined == 3


def test_the_readme_service_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")
    section = text.split("## Delayed feedback", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("HashedFeatureEncoder()", "HashedFeatureEncoder(n_buckets=1024)")  # fast
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # our own README
    loaded = Engine.load(tmp_path / "service.safetensors", initialize=False)
    stats = loaded.stats().feedback
    assert stats is not None and stats.joined == 1 and stats.duplicate == 1 and stats.unknown == 1
    loaded.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reads_the_loop_and_refuses_new_work() -> None:
    with engine(feedback_timeout=60.0) as e:
        e.predict(it(1), event_id="a")
        pid = os.fork()
        if pid == 0:  # the child: readable, refuses work, never hangs
            code = 1
            try:
                stats = fb(e)
                try:
                    e.predict(it(2), event_id="b")
                except EngineClosed:
                    code = 0 if stats.awaiting == 1 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert e.feedback("a", 1.0).result().trained  # the parent goes on


@pytest.mark.parametrize("kind", ["dense", "sparse", "field"])
def test_the_stored_row_trains_for_every_model_kind(kind: str) -> None:
    kw: dict[str, Any] = {"feedback_timeout": 60.0}
    if kind == "dense":
        kw["features"] = livelearn.FeatureEncoder()
    elif kind == "sparse":
        kw.update(features=HashedFeatureEncoder(n_buckets=64), model="mlp")
    with engine(**kw) as e:
        interactions = [it(k, float(k)) for k in range(5)]
        served = [e.predict(x, event_id=k) for k, x in enumerate(interactions)]
        results = [e.feedback(k, float(k % 2)).result() for k in range(5)]
        assert all(r.trained for r in results)
        assert results[0].prediction == pytest.approx(served[0], abs=1e-6)
        for example, x in zip(e.history, interactions, strict=True):
            want = e.features.encode(x)
            got = example.features
            dense = got.to_dense() if isinstance(got, livelearn.SparseFeatures) else got
            assert np.allclose(dense, want)
