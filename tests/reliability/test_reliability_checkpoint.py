"""Checkpoint faults: damaged files, hand edits with a valid checksum, a full disk, and
folders that cannot be written. Every failure is a clear error naming the file, and a
checkpoint already on disk is never harmed.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _scenarios import (
    TARGETS,
    drain,
    interaction,
    read_checkpoint_bytes,
    rehashed,
    run_checkpoint_edit_fuzz,
    run_checkpoint_fuzz,
    subprocess_env,
)

import livelearn.engine.api
from livelearn import CheckpointError, Engine, Network
from livelearn.features import encoder_from_config
from livelearn.targets import TargetMapper

WAIT = 60.0


# ----------------------------------------------------------------------------- damage
def test_random_mutations_and_truncations(tmp_path: Path) -> None:
    r = run_checkpoint_fuzz(tmp_path, cases=6_000, seed=20261125)
    print(f"\ncheckpoint fuzz: {r.cases} cases {r.per_mutation}, {r.checkpoint_errors} refused, "
          f"{r.loaded_unchanged} no-op mutations loaded unchanged")  # fmt: skip
    assert not r.problems, r.problems[:10]
    assert r.cases == 6_000 and r.checkpoint_errors + r.loaded_unchanged == r.cases
    assert r.checkpoint_errors > 0.9 * r.cases
    assert all(r.per_mutation.get(kind, 0) > 100 for kind in r.per_mutation)


def test_edits_with_a_recomputed_checksum(tmp_path: Path) -> None:
    r = run_checkpoint_edit_fuzz(tmp_path, cases=600, seed=7)
    print(f"\nedit fuzz: {r.cases} cases, {r.checkpoint_errors} refused, {r.loaded} loaded")
    assert not r.problems, r.problems[:10]
    assert r.checkpoint_errors > 0 and r.loaded > 0


# ----------------------------------------------------------------------------- regressions
def _edited(tmp_path: Path, edit: Any, **engine_kwargs: Any) -> Path:
    """An engine checkpoint with ``edit(meta)`` applied and a valid checksum."""
    path = tmp_path / "base.safetensors"
    with Engine(targets=TARGETS, log_every=0, hidden_layers=(4,), **engine_kwargs) as engine:
        drain(engine.train_many([interaction(i) for i in range(10)]), WAIT)
        engine.save(path)
    metadata, tensors = read_checkpoint_bytes(path.read_bytes())
    meta = json.loads(metadata["livelearn"])
    edit(meta)
    metadata["livelearn"] = json.dumps(meta)
    out = tmp_path / "edited.safetensors"
    out.write_bytes(rehashed(metadata, tensors))
    return out


def _load_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        Engine.load(path, initialize=False)
    assert type(info.value) is CheckpointError
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_edited_hidden_layers_are_refused_before_anything_is_allocated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: load_engine built the Engine -- and so a Network of the edited
    size -- before comparing hidden_layers with the verified weight shapes: a
    checkpoint saying [100000, 100000] allocated 40 GB before being refused."""
    path = _edited(tmp_path, lambda m: m["engine"].update(hidden_layers=[3000, 3000]))
    built: list[list[int]] = []
    real = livelearn.engine.api.Network

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            built.append(list(kwargs["layers"]))
            super().__init__(**kwargs)

    monkeypatch.setattr(livelearn.engine.api, "Network", Spy)
    assert "hidden_layers" in _load_error(path)
    assert built == []


@pytest.mark.parametrize("value", [[1], {"a": 1}, None, 3])
def test_unhashable_or_wrong_config_types_are_value_errors(tmp_path: Path, value: Any) -> None:
    """Regression: ``{"type": [1]}`` made encoder_from_config/TargetMapper.from_config
    raise TypeError (unhashable), which escaped Engine.load as a TypeError."""
    with pytest.raises(ValueError, match="unknown type"):
        encoder_from_config({"type": value})
    with pytest.raises(ValueError, match="unknown type"):
        TargetMapper.from_config({"type": value})
    assert "unknown type" in _load_error(
        _edited(tmp_path, lambda m: m["features"].update(type=value))
    )
    assert "unknown type" in _load_error(
        _edited(tmp_path, lambda m: m["targets"].update(type=value))
    )


def test_an_out_of_range_learning_rate_is_a_checkpoint_error(tmp_path: Path) -> None:
    """Regression: the exact learning rate is restored through the native setter,
    whose ValueError ("out of float32 range") escaped Engine.load unwrapped."""
    path = _edited(tmp_path, lambda m: m["network"].update(learning_rate=1e300))
    assert "learning_rate" in _load_error(path)


@pytest.mark.parametrize(
    ("key", "value"), [("activation", 1.5), ("loss", None), ("optimizer", "\ud800")]
)
def test_wrong_engine_names_give_a_one_line_error(tmp_path: Path, key: str, value: Any) -> None:
    """Regression: pybind11's multi-line "incompatible constructor arguments" text
    ended up inside the CheckpointError."""
    message = _load_error(_edited(tmp_path, lambda m: m["engine"].update({key: value})))
    assert key in message or "incompatible" in message


# ----------------------------------------------------------------------------- writing
def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("saver", ["engine", "network"])
def test_unwritable_targets_give_clear_errors_and_leave_nothing_behind(
    tmp_path: Path, saver: str
) -> None:
    """Targets that cannot be written even as root (CI runs as root, so chmod proves
    nothing there): a path whose parent is a file, a folder in /proc, a missing
    folder, a folder where the file should be, an empty path and a trailing slash.
    Each raises the matching OSError subclass, naming the path; no temporary file
    is left anywhere."""
    engine = Engine(targets=TARGETS, log_every=0)
    save = engine.save if saver == "engine" else engine.network.save
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-folder").mkdir()
    cases: list[tuple[str, type[OSError], int | None]] = [
        (str(tmp_path / "a-file" / "m.safetensors"), NotADirectoryError, errno.ENOTDIR),
        ("/proc/self/livelearn-test.safetensors", OSError, None),
        (str(tmp_path / "missing" / "m.safetensors"), FileNotFoundError, errno.ENOENT),
        (str(tmp_path / "a-folder"), IsADirectoryError, errno.EISDIR),
        ("", FileNotFoundError, errno.ENOENT),
        (str(tmp_path / "a-folder") + os.sep, IsADirectoryError, errno.EISDIR),
    ]
    before_cwd_parent = _only(Path.cwd().parent) if os.access(Path.cwd().parent, os.R_OK) else []
    for path, kind, code in cases:
        with pytest.raises(kind) as info:
            save(path)
        assert path in str(info.value) or (path == "" and "empty" in str(info.value))
        if code is not None:
            assert info.value.errno == code
    assert _only(tmp_path) == ["a-file", "a-folder"] and _only(tmp_path / "a-folder") == []
    if before_cwd_parent:
        assert _only(Path.cwd().parent) == before_cwd_parent  # "" once wrote a temp file there


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores folder permissions; the root-proof cases are in the test above",
)
def test_read_only_folder_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    with Engine(targets=TARGETS, log_every=0) as engine:
        drain(engine.train_many([interaction(i) for i in range(20)]), WAIT)
        engine.save(path)
        before = path.read_bytes()
        drain(engine.train_many([interaction(i) for i in range(20, 40)]), WAIT)
        tmp_path.chmod(0o555)
        try:
            with pytest.raises(PermissionError, match=r"model\.safetensors"):
                engine.save(path)
        finally:
            tmp_path.chmod(0o755)
    assert path.read_bytes() == before and _only(tmp_path) == ["model.safetensors"]


DISK_FULL = """
    import json, logging, os, resource, signal, sys
    # With SIGXFSZ ignored, a write beyond RLIMIT_FSIZE fails with EFBIG instead of
    # killing the process: the closest a test gets to a full disk without a mount.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    from livelearn import Engine, InteractionData
    folder = sys.argv[1]
    paths = {"engine": os.path.join(folder, "model.safetensors"),
             "network": os.path.join(folder, "net.safetensors")}
    items = [InteractionData("click" if i % 3 else "skip", 1.7e9 + i, f"u{i % 17}")
             for i in range(6000)]
    targets = {"click": 1.0, "skip": 0.0}
    errors = []
    class Collect(logging.Handler):
        def emit(self, record):
            errors.append(record.getMessage())
    logging.getLogger("livelearn").addHandler(Collect(level=logging.ERROR))

    def train(engine, chunk):
        return {f.result(timeout=60).status.value for f in engine.train_many(chunk)}

    out = {}
    engine = Engine(targets=targets, log_every=0, history_size=2000).initialize()
    savers = {"engine": engine.save, "network": engine.network.save}
    train(engine, items[:3000])
    good = {}
    for name, save in savers.items():
        save(paths[name])
        good[name] = open(paths[name], "rb").read()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (min(map(len, good.values())) // 2, hard))
    train(engine, items[3000:4000])
    for name, save in savers.items():
        try:
            save(paths[name])
            out[name] = "saved although the file is too large"
        except OSError as exc:
            out[name] = {"errno": exc.errno, "type": type(exc).__name__, "message": str(exc)}
        out[name + "_intact"] = open(paths[name], "rb").read() == good[name]
    out["after"] = sorted(train(engine, items[4000:4500]))
    # Autosave into the full disk: each failure is logged, training goes on.
    auto = Engine(targets=targets, log_every=0, history_size=2000,
                  checkpoint_path=os.path.join(folder, "auto.safetensors"),
                  checkpoint_every=500).initialize()
    out["auto_statuses"] = sorted(train(auto, items[:3000]))
    auto.close()  # waits for a background save still running
    out["auto_errors"] = sum("autosave to" in e for e in errors)
    out["auto_steps"] = auto.stats().steps
    out["files"] = sorted(os.listdir(folder))
    # Room again: saving works and the file loads.
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    engine.save(paths["engine"])
    with Engine.load(paths["engine"], initialize=False) as loaded:
        out["loaded_steps"] = loaded.stats().steps
    out["steps"] = engine.stats().steps
    engine.close()
    print(json.dumps(out), flush=True)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE semantics: Linux")
def test_disk_full_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DISK_FULL), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, file in (("engine", "model.safetensors"), ("network", "net.safetensors")):
        assert isinstance(out[name], dict), out
        assert out[name]["errno"] == errno.EFBIG, out
        assert str(tmp_path / file) in out[name]["message"], out
        assert out[name + "_intact"], f"the previous {name} checkpoint was damaged"
    assert out["after"] == ["trained"] and out["auto_statuses"] == ["trained"]
    assert out["auto_errors"] >= 1 and out["auto_steps"] == 3000
    # No temporary file left behind; the autosave never got a complete file down.
    assert out["files"] == ["model.safetensors", "net.safetensors"], out
    assert out["loaded_steps"] == out["steps"] == 4500


def test_a_network_checkpoint_survives_a_failed_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "net.safetensors"
    net = Network(layers=[3, 4, 1])
    net.save(path)
    before = path.read_bytes()
    net.train_batch(np.ones((5, 3), np.float32), np.ones(5, np.float32))

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left") as info:
        net.save(path)
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value)
    assert path.read_bytes() == before and _only(tmp_path) == ["net.safetensors"]
