"""Tests for ``livelearn.checkpoint``: exact round trips, corruption, crashes, concurrency."""

from __future__ import annotations

import json
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
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save as st_save

import livelearn
from livelearn import (
    CheckpointError,
    Engine,
    FeatureEncoder,
    HashedFeatureEncoder,
    InteractionData,
    Network,
)
from livelearn.checkpoint import (
    FORMAT,
    load_engine,
    load_network,
    read_checkpoint,
    save_engine,
)
from livelearn.checkpoint_format import digest

PACKAGE_ROOT = str(Path(livelearn.__file__).resolve().parent.parent)


def stream(n: int, seed: int = 0, start: float = 1.7e9) -> list[InteractionData]:
    """A small deterministic stream with learnable labels and some context."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 30, n)
    actions = rng.integers(0, 8, n)
    noise = rng.random(n)
    out = []
    for i in range(n):
        u, a = int(users[i]), int(actions[i])
        p = 0.8 if (u + a) % 3 == 0 else 0.2
        out.append(
            InteractionData(
                f"item_{a}",
                start + 37.0 * i,
                f"user_{u}",
                {"device": "mobile" if i % 2 else "desktop", "position": 1 + i % 3},
                1.0 if noise[i] < p else 0.0,
            )
        )
    return out


def train(engine: Engine, items: list[InteractionData]) -> list[Any]:
    return [f.result() for f in engine.train_many(items)]


def make_engine(kind: str, optimizer: str, **extra: Any) -> Engine:
    features = HashedFeatureEncoder(n_buckets=2**10) if kind == "hashed" else FeatureEncoder()
    options: dict[str, Any] = {"optimizer": optimizer}
    if optimizer == "momentum":
        options = {"optimizer": "sgd", "momentum": 0.9}
    if optimizer == "adam":
        options["learning_rate"] = 0.0123456789  # not representable in 7 digits
    return Engine(
        hidden_layers=(8, 4),
        features=features,
        history_size=50,
        log_every=0,
        seed=7,
        **options,
        **extra,
    )


def assert_same_state(a: Engine, b: Engine) -> None:
    sa, sb = a.network.get_state(), b.network.get_state()
    assert sorted(sa) == sorted(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype
        assert np.array_equal(sa[name], sb[name]), name
    stats_a, stats_b = a.stats()._replace(started_at=None), b.stats()._replace(started_at=None)
    assert stats_a == stats_b
    ha, hb = a.history, b.history
    assert len(ha) == len(hb)
    for x, y in zip(ha, hb, strict=True):
        assert (x.step, x.loss, x.timestamp) == (y.step, y.loss, y.timestamp)
        assert np.array_equal(x.target, y.target) and np.array_equal(x.prediction, y.prediction)
        if isinstance(x.features, np.ndarray):
            assert np.array_equal(x.features, y.features)  # type: ignore[arg-type]
        else:
            assert np.array_equal(x.features.indices, y.features.indices)  # type: ignore[union-attr]
            assert np.array_equal(x.features.values, y.features.values)  # type: ignore[union-attr]
    assert a.config == b.config
    assert a.network.learning_rate == b.network.learning_rate


# ----------------------------------------------------------------- round trips
@pytest.mark.parametrize("kind", ["dense", "hashed"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_round_trip_is_exact_and_continues_identically(
    tmp_path: Path, kind: str, optimizer: str
) -> None:
    data = stream(400)
    path = tmp_path / "engine.safetensors"
    with make_engine(kind, optimizer) as engine:
        train(engine, data[:250])
        engine.save(path)
        restored = Engine.load(path)
        try:
            assert_same_state(engine, restored)
            probe = stream(64, seed=9)
            assert np.array_equal(engine.predict_many(probe), restored.predict_many(probe))
            # Continue both: every step must match bit for bit.
            ra, rb = train(engine, data[250:]), train(restored, data[250:])
            assert [(r.step, r.loss, r.prediction) for r in ra] == [
                (r.step, r.loss, r.prediction) for r in rb
            ]
            assert_same_state(engine, restored)
        finally:
            restored.close()


def test_optimizer_buffers_are_saved(tmp_path: Path) -> None:
    path = tmp_path / "adam.safetensors"
    with make_engine("dense", "adam") as engine:
        train(engine, stream(100))
        engine.save(path)
    tensors = read_checkpoint(path).tensors
    moments = [k for k in tensors if k.startswith("network.optimizer.exp_avg")]
    assert len(moments) == 12 and any(np.abs(tensors[k]).sum() > 0 for k in moments)
    assert int(tensors["network.counters.steps"]) == 100


def test_uninitialised_load_and_empty_engine(tmp_path: Path) -> None:
    path = tmp_path / "fresh.safetensors"
    engine = Engine(targets={"click": 1.0, "skip": 0.0}, n_outputs=1)
    engine.save(path)  # never initialised, nothing trained: still a valid checkpoint
    restored = Engine.load(path, initialize=False)
    assert not restored.is_initialized and restored.stats().steps == 0
    assert restored.targets.get_config() == engine.targets.get_config()
    restored.close()


def test_callable_targets_need_the_function(tmp_path: Path) -> None:
    def target(it: InteractionData) -> float:
        return 1.0 if it.action_type == "buy" else 0.0

    path = tmp_path / "callable.safetensors"
    with Engine(targets=target) as engine:
        train(engine, [InteractionData("buy", 1.7e9, "u")])
        engine.save(path)
    with pytest.raises(CheckpointError, match="targets=fn"):
        Engine.load(path)
    with Engine.load(path, targets=target) as restored:
        assert restored.stats().steps == 1


def test_network_save_load(tmp_path: Path) -> None:
    for options in ({"optimizer": "adam"}, {"momentum": 0.5, "clip_norm": 0.3}, {}):
        net = Network(layers=[5, 7, 2], learning_rate=0.0333333, **options)  # type: ignore[arg-type]
        rng = np.random.default_rng(1)
        net.train_batch(rng.normal(size=(40, 5)).astype(np.float32), rng.random((40, 2)))
        path = tmp_path / "net.safetensors"
        net.save(path)
        loaded = Network.load(path)
        for name, value in net.get_state().items():
            assert np.array_equal(value, loaded.get_state()[name])
        assert loaded.get_config() == net.get_config()
        assert loaded.learning_rate == net.learning_rate and loaded.steps == 40
        x = rng.normal(size=(3, 5)).astype(np.float32)
        assert np.array_equal(loaded.predict(x), net.predict(x))


def test_network_of_an_engine_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "engine.safetensors"
    with Engine(targets={"click": 1.0}) as engine:
        train(engine, stream(20))
        engine.save(path)
        net = load_network(path)
        assert np.array_equal(
            net.predict(np.ones((1, 4), np.float32)),
            engine.network.predict(np.ones((1, 4), np.float32)),
        )
    Network(layers=[4, 1]).save(tmp_path / "net.safetensors")
    with pytest.raises(CheckpointError, match="Network checkpoint"):
        load_engine(tmp_path / "net.safetensors")


def test_save_errors_keep_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keep.safetensors"
    with Engine() as engine:
        engine.save(path)
        before = path.read_bytes()
        train(engine, [InteractionData("a", 1.7e9, "u", label=1.0)])

        def broken(src: str, dst: str) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", broken)
        with pytest.raises(OSError, match="No space"):
            engine.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.safetensors"]  # no temp left
    with pytest.raises(OSError):
        save_engine(Engine(), tmp_path / "missing-folder" / "x.safetensors")


# ----------------------------------------------------------------- corruption
@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "good.safetensors"
    with Engine(hidden_layers=(4,), history_size=5, targets={"click": 1.0, "skip": 0.0}) as e:
        train(e, stream(12))
        e.save(path)
    return path.read_bytes()


def load_bytes(tmp_path: Path, data: bytes, name: str = "bad.safetensors") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        Engine.load(path, initialize=False)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_saved_fixture_loads(tmp_path: Path, saved: bytes) -> None:
    path = tmp_path / "ok.safetensors"
    path.write_bytes(saved)
    Engine.load(path, initialize=False).close()


def test_truncated_files(tmp_path: Path, saved: bytes) -> None:
    header = 8 + struct.unpack("<Q", saved[:8])[0]
    cuts = set(range(0, header + 16)) | set(range(header, len(saved), 7))
    for cut in sorted(cuts):
        message = load_bytes(tmp_path, saved[:cut])
        if cut > header:
            assert "truncated" in message


def test_flipped_bytes(tmp_path: Path, saved: bytes) -> None:
    rng = random.Random(0)
    for offset in range(len(saved)):  # every byte: header, metadata, tensor data
        data = bytearray(saved)
        data[offset] ^= 0xFF if offset % 2 else 1 << rng.randrange(8)
        load_bytes(tmp_path, bytes(data))


def test_garbage_and_foreign_files(tmp_path: Path) -> None:
    assert "empty" in load_bytes(tmp_path, b"")
    load_bytes(tmp_path, b"abc")
    load_bytes(tmp_path, b"hello, this is a text file and not a checkpoint\n" * 10)
    assert "implausible" in load_bytes(tmp_path, struct.pack("<Q", 2**62) + b"{}")
    load_bytes(tmp_path, struct.pack("<Q", 2) + b"[]")
    load_bytes(tmp_path, os.urandom(4096))
    foreign = st_save({"weight": np.ones((2, 2), np.float32)}, metadata={"format": "pt"})
    assert "not a livelearn checkpoint" in load_bytes(tmp_path, foreign)
    assert "not a livelearn checkpoint" in load_bytes(
        tmp_path, st_save({"w": np.ones(3, np.float32)})
    )
    with pytest.raises(CheckpointError, match="cannot read"):
        Engine.load(tmp_path / "does-not-exist.safetensors")
    with pytest.raises(CheckpointError, match="cannot read"):
        Engine.load(tmp_path)  # a folder


def resave(saved: bytes, edit: Any, *, rehash: bool) -> bytes:
    """Rewrite a checkpoint through safetensors after ``edit(metadata, meta, tensors)``."""
    from safetensors.numpy import load

    n = struct.unpack("<Q", saved[:8])[0]
    metadata = json.loads(saved[8 : 8 + n])["__metadata__"]
    tensors = dict(load(saved))
    meta = json.loads(metadata["livelearn"])
    edit(metadata, meta, tensors)
    metadata["livelearn"] = json.dumps(meta)
    if rehash:
        described = {
            k: (
                {"float32": "F32", "float64": "F64", "int64": "I64", "int32": "I32"}[str(v.dtype)],
                list(v.shape),
                np.ascontiguousarray(v).reshape(-1).view(np.uint8),
            )
            for k, v in tensors.items()
        }
        metadata["sha256"] = digest(metadata, described)
    return st_save(tensors, metadata=metadata)


def test_hand_edited_metadata_fails_the_checksum(tmp_path: Path, saved: bytes) -> None:
    def more_steps(metadata: dict[str, str], meta: dict[str, Any], t: dict[str, Any]) -> None:
        meta["counters"]["trained"] += 1

    assert "checksum" in load_bytes(tmp_path, resave(saved, more_steps, rehash=False))
    # Same bytes, one digit changed in place (header length unchanged).
    text = saved.replace(b'\\"trained\\":12', b'\\"trained\\":13')
    assert text != saved
    assert "checksum" in load_bytes(tmp_path, text)
    no_op = resave(saved, lambda *a: None, rehash=True)  # rehashing alone keeps it valid
    (tmp_path / "ok.safetensors").write_bytes(no_op)
    Engine.load(tmp_path / "ok.safetensors", initialize=False).close()


def edit_version(v: str) -> Any:
    def edit(metadata: dict[str, str], meta: dict[str, Any], t: dict[str, Any]) -> None:
        metadata["format_version"] = v

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (edit_version("3"), "newer livelearn"),
        (edit_version("0"), "unsupported format version"),
        (edit_version("one"), "format_version"),
        (lambda md, m, t: md.update(kind="robot"), "kind"),
        (lambda md, m, t: md.update(format="other"), "not a livelearn checkpoint"),
        (lambda md, m, t: t.pop("network.layers.0.bias"), "missing tensor"),
        (lambda md, m, t: t.pop("history.losses"), "missing tensor"),
        (lambda md, m, t: t.update(extra=np.zeros(2, np.float32)), "unexpected tensors"),
        (lambda md, m, t: t.update({"network.layers.1.bias": np.zeros(2, np.float32)}), "shape"),
        (
            lambda md, m, t: t.update(
                {"network.layers.0.bias": t["network.layers.0.bias"].astype(np.float64)}
            ),
            "dtype",
        ),
        (
            lambda md, m, t: t.update({"network.layers.0.bias": np.full(4, np.nan, np.float32)}),
            "non-finite",
        ),
        (
            lambda md, m, t: t.update({"history.predictions": np.full((5, 1), np.inf, np.float32)}),
            "non-finite",
        ),
        (
            lambda md, m, t: t.update({"history.losses": t["history.losses"].astype(np.int64)}),
            "dtype",
        ),
        (lambda md, m, t: t.update({"network.counters.steps": np.array(-1)}), "negative"),
        (lambda md, m, t: t.update({"history.steps": np.arange(5)[::-1].copy()}), "history"),
        (lambda md, m, t: m["engine"].update(history_size=2), "history"),
        (lambda md, m, t: m["engine"].update(workers=0), "workers"),
        (lambda md, m, t: m["engine"].update(bogus=1), "invalid engine configuration"),
        (lambda md, m, t: m["network"].update(layers=[4, 9, 1]), "shape"),
        (lambda md, m, t: m["network"].update(learning_rate=0.5), "rebuild"),
        (lambda md, m, t: m["network"].update(seed=99), "rebuild"),
        (lambda md, m, t: m["engine"].update(momentum=0.5), "rebuild"),
        (lambda md, m, t: m["features"].update(type="Nope"), "unknown type"),
        (lambda md, m, t: m["targets"].update(mapping={"click": "x"}), "targets"),
        (lambda md, m, t: m["counters"].update(loss_sum=None), "loss_sum"),
        (lambda md, m, t: m["counters"].update(last_loss="x"), "last_loss"),
        (lambda md, m, t: m["counters"].pop("trained"), "trained"),
        (lambda md, m, t: m.pop("network"), "network"),
    ],
)
def test_invalid_content_with_a_valid_checksum(
    tmp_path: Path, saved: bytes, edit: Any, expected: str
) -> None:
    assert expected in load_bytes(tmp_path, resave(saved, edit, rehash=True))


def test_history_losses_are_float64_and_older_float32_ones_still_load(
    tmp_path: Path, saved: bytes
) -> None:
    """The network reports losses in double, so history.losses is saved as float64;
    checkpoints written before hold float32 and still load (the losses cast up)."""
    new = tmp_path / "new.safetensors"
    new.write_bytes(saved)
    assert read_checkpoint(new).tensors["history.losses"].dtype == np.float64

    def to_float32(metadata: dict[str, str], meta: dict[str, Any], t: dict[str, Any]) -> None:
        t["history.losses"] = t["history.losses"].astype(np.float32)

    old = tmp_path / "old.safetensors"
    old.write_bytes(resave(saved, to_float32, rehash=True))
    assert read_checkpoint(old).tensors["history.losses"].dtype == np.float32
    with Engine.load(new, initialize=False) as a, Engine.load(old, initialize=False) as b:
        assert len(a.history) == len(b.history) == 5
        assert [float(np.float32(x.loss)) for x in a.history] == [x.loss for x in b.history]
        b.save(tmp_path / "again.safetensors")  # saved as float64 from now on
    again = read_checkpoint(tmp_path / "again.safetensors").tensors["history.losses"]
    assert again.dtype == np.float64


def test_a_finite_loss_beyond_float32_round_trips(tmp_path: Path) -> None:
    """An mse step with |p - y| = 1e25 trains (finite gradient) with a loss of 1e50:
    beyond float32, kept as it is in the history, the stats and the checkpoint."""
    path = tmp_path / "huge.safetensors"
    with Engine(loss="mse", targets=None, history_size=5, log_every=0, seed=3) as engine:
        train(engine, [InteractionData("click", 1.7e9 + i, "u1", label=0.5) for i in range(3)])
        (huge,) = train(engine, [InteractionData("click", 1.8e9, "u2", label=1e25)])
        assert huge.trained and 1e49 < huge.loss < 1e51
        assert engine.history[-1].loss == huge.loss
        engine.save(path)
        assert read_checkpoint(path).tensors["history.losses"][-1] == huge.loss
        with Engine.load(path) as restored:
            assert_same_state(engine, restored)
            assert restored.stats().last_loss == huge.loss


def test_duplicate_header_keys_are_rejected(tmp_path: Path, saved: bytes) -> None:
    n = struct.unpack("<Q", saved[:8])[0]
    header = saved[8 : 8 + n].rstrip(b" ")
    doubled = header[:-1] + b',"__metadata__":{"format":"x"}}'
    doubled += b" " * (-len(doubled) % 8)
    data = struct.pack("<Q", len(doubled)) + doubled + saved[8 + n :]
    assert "duplicate" in load_bytes(tmp_path, data)


@pytest.mark.parametrize("field", ["dtype", "kind"])
def test_a_list_where_the_header_holds_a_name_is_refused(
    tmp_path: Path, saved: bytes, field: str
) -> None:
    """JSON can put an (unhashable) list where a dtype code or the checkpoint
    kind belongs: a CheckpointError, not a TypeError (found by the mutation fuzz)."""
    n = struct.unpack("<Q", saved[:8])[0]
    header = json.loads(saved[8 : 8 + n])
    if field == "dtype":
        name = next(k for k in header if k != "__metadata__")
        header[name]["dtype"] = ["F32"]
    else:
        header["__metadata__"]["kind"] = ["engine"]
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    data = struct.pack("<Q", len(text)) + text + saved[8 + n :]
    assert "corrupt header" in load_bytes(tmp_path, data)


# ----------------------------------------------------------------- crashes
CHILD = textwrap.dedent(
    """
    import sys
    from livelearn import Engine, HashedFeatureEncoder, InteractionData
    path = sys.argv[1]
    engine = Engine(features=HashedFeatureEncoder(n_buckets=2**14), optimizer="adam",
                    hidden_layers=(16,), targets={"a": 1.0, "b": 0.0}, log_every=0)
    engine.initialize()
    i = 0
    while True:
        items = [InteractionData("ab"[(i + k) % 2], 1.7e9 + i + k, f"u{k % 7}") for k in range(20)]
        for f in engine.train_many(items):
            f.result()
        i += 20
        print("start", i, flush=True)
        engine.save(path)
        print("done", i, flush=True)
    """
)


def _record(line: str, started: list[int], done: list[int]) -> None:
    """Add one complete "start N" / "done N" line of the child to its list.

    A line the SIGKILL cut short (no newline: the rest of it was never written)
    is ignored: a cut "start N" means save N had not begun, a cut "done N" means
    its "start N" was complete, so the assertions below hold either way.
    """
    match = re.fullmatch(r"(start|done) (\d+)\n", line)
    if match is not None:
        (started if match[1] == "start" else done).append(int(match[2]))


def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "crash.safetensors"
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    rng = random.Random(1)
    loaded_steps = set()
    for _ in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert proc.stdout is not None
        started: list[int] = []
        done: list[int] = []
        # Wait for the first completed save, then kill at a random moment.
        for line in proc.stdout:
            _record(line, started, done)
            if done:
                break
        time.sleep(rng.uniform(0.0, 0.08))
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate()
        for line in rest.splitlines(keepends=True):
            _record(line, started, done)
        assert proc.returncode == -signal.SIGKILL
        with Engine.load(path, initialize=False) as engine:
            steps = engine.stats().steps
        # The file is one complete save: the last finished one or the one in flight.
        assert steps in started and steps >= done[-1], (steps, done[-3:], started[-3:])
        loaded_steps.add(steps)
    leftovers = [p for p in tmp_path.iterdir() if p.name != path.name]
    assert all(p.name.endswith(".tmp") for p in leftovers)
    # Temporary files of killed saves are removed by a later save once an hour old.
    for p in leftovers:
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    with Engine.load(path, initialize=False) as engine:
        engine.save(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# ----------------------------------------------------------------- concurrency
def test_save_while_two_threads_train(tmp_path: Path) -> None:
    engine = Engine(
        features=HashedFeatureEncoder(n_buckets=2**12),
        optimizer="adam",
        history_size=100,
        batch_size=16,
        log_every=0,
    ).initialize()
    stop = threading.Event()
    trained = threading.Event()
    data = stream(2000)

    def producer(offset: int) -> None:
        i = offset
        while not stop.is_set():
            engine.train_step(data[i % len(data)]).result()
            trained.set()
            i += 2

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    try:
        # Saves start once training has: every snapshot then has steps > 0,
        # however slowly a busy machine schedules the producers.
        assert trained.wait(60), "the producers never trained a step"
        seen = []
        for k in range(8):
            time.sleep(0.02)
            path = tmp_path / f"live{k}.safetensors"
            engine.save(path)
            with Engine.load(path, initialize=False) as snap:
                stats = snap.stats()
                history = snap.history
                assert stats.steps == snap.network.steps
                assert stats.interactions == stats.steps + stats.rejected + stats.skipped
                assert len(history) == min(stats.steps, 100)
                if history:
                    assert history[-1].step == stats.steps
                    assert [h.step for h in history] == list(
                        range(stats.steps - len(history) + 1, stats.steps + 1)
                    )
                seen.append(stats.steps)
        assert seen == sorted(seen) and seen[-1] > 0
    finally:
        stop.set()
        for t in threads:
            t.join()
        engine.close()


# ----------------------------------------------------------------- autosave
def test_autosave_every_n_steps(tmp_path: Path) -> None:
    path = tmp_path / "auto.safetensors"
    engine = Engine(checkpoint_path=path, checkpoint_every=100, batch_size=16, log_every=0)
    assert engine.config["checkpoint_every"] == 100
    assert engine.config["checkpoint_path"] == str(path)
    with engine:
        train(engine, stream(500))
    engine._autosave.wait()  # type: ignore[union-attr]
    assert engine._autosave.saves >= 1  # type: ignore[union-attr]
    with Engine.load(path, initialize=False) as restored:
        assert 100 <= restored.stats().steps <= 500
        assert restored.config["checkpoint_every"] == 100  # the loaded engine autosaves too


def test_close_waits_for_a_running_autosave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() returns only once a background save started by the last batch
    has finished: the checkpoint on disk is complete when close() returns."""
    import livelearn.persistence as persistence  # what Engine.save calls

    real_save = persistence.save_engine
    started = threading.Event()

    def slow_save(engine: Engine, path: str) -> None:
        started.set()
        time.sleep(0.3)
        real_save(engine, path)

    monkeypatch.setattr(persistence, "save_engine", slow_save)
    path = tmp_path / "auto.safetensors"
    engine = Engine(checkpoint_path=path, checkpoint_every=50, log_every=0).initialize()
    train(engine, stream(100))
    assert started.wait(10)
    engine.close()
    assert engine._autosave.saves == 1  # type: ignore[union-attr]
    with Engine.load(path, initialize=False) as restored:
        assert restored.stats().steps >= 50


def test_autosave_interval_and_bad_options(tmp_path: Path) -> None:
    path = tmp_path / "interval.safetensors"
    with Engine(checkpoint_path=path, checkpoint_interval=0.01, log_every=0) as engine:
        for chunk in range(5):
            train(engine, stream(50, start=1.7e9 + chunk * 1e4))
            time.sleep(0.02)
    engine._autosave.wait()  # type: ignore[union-attr]
    assert path.exists()
    assert Engine().config["checkpoint_path"] is None
    with pytest.raises(ValueError, match="checkpoint_every"):
        Engine(checkpoint_path=path)
    with pytest.raises(ValueError, match="checkpoint_path"):
        Engine(checkpoint_every=10)
    with pytest.raises(ValueError, match="checkpoint_every"):
        Engine(checkpoint_path=path, checkpoint_every=0)
    with pytest.raises(ValueError, match="checkpoint_interval"):
        Engine(checkpoint_path=path, checkpoint_interval=float("nan"))


def test_format_markers(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    Engine(features=HashedFeatureEncoder(n_buckets=64)).save(path)
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    metadata = json.loads(path.read_bytes()[8 : 8 + n])["__metadata__"]
    assert metadata["format"] == FORMAT and metadata["format_version"] == "1"
    assert metadata["kind"] == "engine" and len(metadata["sha256"]) == 64
    meta = json.loads(metadata["livelearn"])
    assert meta["library_version"] == livelearn.__version__
    assert meta["features"]["type"] == "HashedFeatureEncoder"
    assert meta["history"] == {"size": 0, "sparse": True}


# ----------------------------------------------------------------- regular files only
def test_a_link_to_dev_zero_is_refused_without_reading_it(tmp_path: Path) -> None:
    """Regression: Engine.load of a symlink to /dev/zero read until MemoryError."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    link = tmp_path / "zero.safetensors"
    os.symlink("/dev/zero", link)
    with pytest.raises(CheckpointError, match="character device, not a regular file"):
        Engine.load(link, initialize=False)
    with pytest.raises(CheckpointError, match="not a regular file"):
        Network.load(link)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes; it must not even wait."""
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="FIFO, not a regular file"):
        read_checkpoint(fifo)


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*a folder"):
        read_checkpoint(tmp_path)


def test_trailing_bytes_and_truncation_are_refused(tmp_path: Path, saved: bytes) -> None:
    assert "unexpected bytes after the tensors" in load_bytes(tmp_path, saved + b"garbage")
    assert "truncated" in load_bytes(tmp_path, saved[:-10])
    # A header that claims more bytes than the whole file has.
    n = struct.unpack("<Q", saved[:8])[0]
    assert "truncated" in load_bytes(tmp_path, struct.pack("<Q", n + 10**6) + saved[8:])


def test_a_file_larger_than_its_header_says_is_refused_before_it_is_read(
    tmp_path: Path, saved: bytes
) -> None:
    """A valid header followed by 64 GiB (a sparse file): reading it whole would
    exhaust memory; the size check against the header refuses it first."""
    path = tmp_path / "huge.safetensors"
    path.write_bytes(saved)
    try:
        os.truncate(path, 64 * 2**30)
    except OSError as exc:
        pytest.skip(f"no sparse files here: {exc}")
    try:
        with pytest.raises(CheckpointError, match="unexpected bytes after the tensors"):
            Engine.load(path, initialize=False)
    finally:
        path.unlink()


# ----------------------------------------------------------------- files of earlier versions
DATA = Path(__file__).parent / "data"


def test_an_engine_checkpoint_written_before_get_config_was_exact_loads(tmp_path: Path) -> None:
    """tests/data/checkpoint_v1_engine.safetensors was written by the previous code:
    its engine section holds the learning rate rounded to 7 digits (0.01234568),
    its network section the float64 of the float32 (0.012345678918063641)."""
    from livelearn.datasets import simulate_interactions

    path = DATA / "checkpoint_v1_engine.safetensors"
    meta = read_checkpoint(path).meta
    assert meta["engine"]["learning_rate"] == 0.01234568
    assert meta["network"]["learning_rate"] == float(np.float32(0.0123456789))
    items = simulate_interactions(40, seed=1).interactions
    with Engine.load(path, initialize=False) as engine:
        assert engine.stats().steps == 40 and len(engine.history) == 20
        assert engine.network.learning_rate == np.float32(0.0123456789)
        assert engine.network.clip_norm == np.float32(0.7)
        assert engine.config["learning_rate"] == 0.012345679  # exact, shortest form
        predictions = engine.predict_many(items[:3])[:, 0]
        expected = [0.07523923367261887, 0.05495427921414375, 0.08003146946430206]
        np.testing.assert_allclose(predictions, expected, rtol=1e-5)
        engine.save(tmp_path / "again.safetensors")
        with Engine.load(tmp_path / "again.safetensors", initialize=False) as again:
            assert_same_state(engine, again)


def test_a_network_checkpoint_written_before_get_config_was_exact_loads() -> None:
    net = Network.load(DATA / "checkpoint_v1_network.safetensors")
    assert net.steps == 5 and net.optimizer == "sgd"
    assert net.learning_rate == np.float32(0.0123456789)
    assert net.momentum == np.float32(0.9) and net.weight_decay == np.float32(1e-4)
    assert net.get_config()["momentum"] == 0.9  # the shortest decimal of the float32
    out = net.predict(np.ones((1, 3), np.float32))[0]
    np.testing.assert_allclose(out, [1.2975794076919556, -0.3067823350429535], rtol=1e-5)


def test_get_config_is_exact_and_reads_as_typed() -> None:
    net = Network(layers=[3, 1], learning_rate=0.0123456789, momentum=0.9, clip_norm=0.3)
    config = net.get_config()
    assert (config["learning_rate"], config["momentum"], config["clip_norm"]) == (
        0.012345679,
        0.9,
        0.3,
    )
    clone = Network.from_config(config)
    for key in ("learning_rate", "momentum", "clip_norm", "beta1", "beta2", "epsilon"):
        assert getattr(clone, key) == getattr(net, key), key
    assert clone.get_config() == config


def test_files_hold_the_float64_of_each_float32_as_version_1_always_did(tmp_path: Path) -> None:
    """Earlier readers compare the network section with the float64 of the
    float32 values exactly; writing that form keeps them reading new files."""
    net = Network(layers=[3, 1], learning_rate=0.05, clip_norm=0.3, optimizer="adam")
    net.save(tmp_path / "net.safetensors")
    stored = read_checkpoint(tmp_path / "net.safetensors").meta["network"]
    for key in ("learning_rate", "clip_norm", "beta1", "beta2", "epsilon"):
        assert stored[key] == float(getattr(net, key)), key
    assert stored["learning_rate"] == 0.05000000074505806
    with Engine(learning_rate=0.05) as engine:
        engine.save(tmp_path / "engine.safetensors")
    meta = read_checkpoint(tmp_path / "engine.safetensors").meta
    assert meta["network"]["learning_rate"] == 0.05000000074505806
    assert meta["engine"]["learning_rate"] == 0.05  # Engine.config, as given
