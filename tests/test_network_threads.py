"""``livelearn.Network`` from several Python threads: GIL release and locking.

No wall-clock thresholds: progress made by one thread while another is inside
a native call is compared with the native call's own progress, or with the
progress the same thread makes alone.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time

import numpy as np
import pytest

from livelearn import Network

ROWS = 2_000_000


@pytest.fixture(scope="module")
def big_batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(ROWS, 4)).astype(np.float32)
    return X, (X[:, 0] * X[:, 1] > 0).astype(np.float32)


class Counter(threading.Thread):
    """Counts as fast as pure Python can; only runs while it holds the GIL."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.count = 0
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            self.count += 1


def count_during(action) -> tuple[int, float]:
    counter = Counter()
    counter.start()
    while counter.count == 0:  # running before we measure
        time.sleep(0.001)
    start_count, t0 = counter.count, time.perf_counter()
    action()
    elapsed = time.perf_counter() - t0
    done = counter.count - start_count
    counter.stop = True
    counter.join()
    return done, elapsed


def count_interleaved(action, rounds: int) -> tuple[int, int]:
    """The counter's progress during ``action`` and during sleeps as long, taken
    in ``rounds`` alternations: both sums see the same machine load, however it
    changes (one long measurement of each could fall in a busy and a quiet spell)."""
    during = alone = 0
    for _ in range(rounds):
        done, elapsed = count_during(action)
        idle, _ = count_during(functools.partial(time.sleep, elapsed))
        during, alone = during + done, alone + idle
    return during, alone


class StepWatcher(threading.Thread):
    """Reads ``net.steps`` in a Python loop (so only while it holds the GIL) and
    records which tenths of a ``rows``-step batch it saw the count in."""

    def __init__(self, net: Network, rows: int) -> None:
        super().__init__(daemon=True)
        self.net, self.rows = net, rows
        self.tenths: set[int] = set()
        self.running = threading.Event()
        self.stop = False

    def run(self) -> None:
        self.running.set()
        last = -1
        while not self.stop:
            steps = self.net.steps
            if steps != last and 0 < steps < self.rows:
                self.tenths.add(steps * 10 // self.rows)
            last = steps
            for _ in range(1000):  # more Python, fewer reads: the trainer's lock stays free
                pass


def test_train_batch_releases_the_gil(big_batch):
    """Python runs in another thread all through a long batch: it reads the step
    count in (almost) every tenth of the batch. A call holding the GIL would let
    it read only 0 before and ROWS after. Progress is compared with progress in
    the same interval, not with a count taken in another one: a busy machine
    slows both threads alike, however its load changes."""
    X, Y = big_batch
    net = Network(layers=[4, 16, 8, 1], seed=0)
    watcher = StepWatcher(net, ROWS)
    watcher.start()
    assert watcher.running.wait(30)
    net.train_batch(X, Y)
    watcher.stop = True
    watcher.join()
    assert net.steps == ROWS
    assert len(watcher.tenths) >= 8, sorted(watcher.tenths)


def test_busy_python_loop_baseline_starves_the_counter():
    """Control for the counter tests below: code holding the GIL does block it."""
    import sys

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.5)  # longer than the loop: the main thread keeps the GIL
    try:

        def busy():
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.1:
                pass

        held, _ = count_during(busy)
    finally:
        sys.setswitchinterval(old)
    alone, _ = count_during(lambda: time.sleep(0.1))
    assert held < 0.3 * alone, (held, alone)


def test_costly_single_example_calls_release_the_gil():
    """train_step and predict of a large network release the GIL like a batch."""
    net = Network(layers=[1024, 1024, 1], seed=0)  # 1 M weights
    x = np.full(1024, 0.01, np.float32)
    X = x[None, :]

    def calls() -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.05:
            net.train_step(x, 1.0)
            net.predict(X)

    during, alone = count_interleaved(calls, rounds=6)
    assert net.steps > 0
    assert during > 0.3 * alone, (during, alone)


def test_cheap_calls_keep_the_gil():
    """A one-row predict or train_step of a small network is cheaper than handing
    the GIL over and taking it back (which, behind a busy thread, waits for that
    thread's Python): such calls keep it, so the counter starves like behind the
    busy loop of the control test above."""
    import sys

    net = Network(layers=[4, 16, 8, 1], seed=0)
    x = np.array([0.5, -0.5, 0.25, 0.1], np.float32)
    X = x[None, :]
    indices, values = np.array([0, 2], np.int32), np.array([1.0, -1.0], np.float32)
    indptr = np.array([0, 2], np.int64)

    def calls() -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.1:
            net.train_step(x, 1.0)
            net.predict(X)
            net.train_step_sparse(indices, values, 0.0)
            net.predict_sparse(indptr, indices, values)

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.5)
    try:
        held, _ = count_during(calls)
    finally:
        sys.setswitchinterval(old)
    alone, _ = count_during(lambda: time.sleep(0.1))
    assert net.steps > 100
    assert held < 0.3 * alone, (held, alone)


def test_predict_runs_during_a_long_train_batch(big_batch):
    """The lock is taken per step, so predictions interleave with a batch."""
    X, Y = big_batch
    net = Network(layers=[4, 16, 8, 1], seed=0)
    trainer = threading.Thread(target=net.train_batch, args=(X, Y))
    probe = np.array([[0.5, 0.5, -0.5, 0.1]], np.float32)
    seen_steps = []
    trainer.start()
    while trainer.is_alive():
        p = net.predict(probe)
        assert np.isfinite(p).all() and 0 <= p[0, 0] <= 1
        seen_steps.append(net.steps)
    trainer.join()
    mid_batch = [s for s in seen_steps if 0 < s < ROWS]
    assert len(set(mid_batch)) >= 3, f"only {len(set(mid_batch))} distinct mid-batch step counts"
    assert seen_steps == sorted(seen_steps)
    assert net.steps == ROWS


def test_concurrent_training_accounts_for_every_step():
    net = Network(layers=[4, 8, 1], learning_rate=0.01, seed=0)
    n_threads, rows = 4, 5000
    errors = []

    def work(i: int) -> None:
        try:
            rng = np.random.default_rng(i)
            X = rng.normal(size=(rows, 4)).astype(np.float32)
            X[::100, 0] = np.nan  # 50 rejected rows per thread
            Y = (rng.random(rows) < 0.5).astype(np.float32)
            half = rows // 2
            losses = net.train_batch(X[:half], Y[:half])
            assert np.isnan(losses[::100]).all()
            for x, y in zip(X[half : half + 100], Y[half : half + 100], strict=True):
                with contextlib.suppress(ValueError):
                    net.train_step(x, y)
            net.train_batch_detailed(X[half + 100 :], Y[half + 100 :])
        except Exception as e:  # surfaced in the main thread
            errors.append(e)

    def read() -> None:
        probe = np.zeros((8, 4), np.float32)
        while any(t.is_alive() for t in workers):
            if not np.isfinite(net.predict(probe)).all():
                errors.append(AssertionError("non-finite prediction"))
            net.get_state()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in workers + readers:
        t.start()
    for t in workers + readers:
        t.join()
    assert not errors, errors
    assert net.steps + net.rejected_steps == n_threads * rows
    assert net.rejected_steps == n_threads * rows // 100


@pytest.mark.parametrize("sparse", [False, True])
def test_concurrent_batches_report_each_step_number_once(sparse):
    # Step numbers are read under the network's lock: with four threads
    # interleaving rows, together they must name every step exactly once.
    net = Network(layers=[4, 8, 1], learning_rate=0.01, seed=0)
    n_threads, rows = 4, 3000
    results: list[tuple[np.ndarray, np.ndarray]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def work(i: int) -> None:
        try:
            rng = np.random.default_rng(i)
            X = rng.normal(size=(rows, 4)).astype(np.float32)
            X[::50, 0] = np.nan  # rejected rows report step 0
            Y = (rng.random(rows) < 0.5).astype(np.float32)
            start.wait()
            for lo in range(0, rows, 500):
                if sparse:
                    indptr = np.arange(0, 4 * 500 + 1, 4)
                    indices = np.tile(np.arange(4, dtype=np.int32), 500)
                    out = net.train_batch_sparse_detailed(
                        indptr,
                        indices,
                        X[lo : lo + 500].ravel(),
                        Y[lo : lo + 500],
                        return_steps=True,
                    )
                else:
                    out = net.train_batch_detailed(
                        X[lo : lo + 500], Y[lo : lo + 500], return_steps=True
                    )
                results.append((out[2], out[3]))
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors, errors
    status = np.concatenate([s for s, _ in results])
    steps = np.concatenate([st for _, st in results])
    assert (status != 0).sum() == n_threads * (rows // 50)
    assert (steps[status != 0] == 0).all()
    trained = np.sort(steps[status == 0])
    assert net.steps == n_threads * rows - n_threads * (rows // 50)
    np.testing.assert_array_equal(trained, np.arange(1, net.steps + 1))
    # Within one call the numbers only grow (the calls overlap, so not by 1).
    for s, st in results:
        assert (np.diff(st[s == 0]) > 0).all()
