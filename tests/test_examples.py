"""The examples in examples/: the asyncio HTTP service and the typed usage script."""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import livelearn

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# Generous upper bounds so a loaded machine never fails a test; not timing assertions.
START_TIMEOUT = 120.0
REQUEST_TIMEOUT = 60.0


def _env() -> dict[str, str]:
    """The environment of a child Python that imports the same livelearn as this one."""
    package_root = str(Path(livelearn.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def _request(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def test_asyncio_service_end_to_end() -> None:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "asyncio_service.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
        try:
            first = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            pytest.fail("the service did not start")
        assert first.startswith("listening on http://127.0.0.1:"), first
        base = first.split()[-1]

        user = "user-7"
        results = []
        for i in range(12):
            status, result = _request(
                f"{base}/interactions",
                {
                    "action_type": "click" if i % 2 else "skip",
                    "timestamp": 1_700_000_000 + i,
                    "user_id": user,
                    "context": {"page": "home"},
                },
            )
            assert status == 200, result
            results.append(result)
        assert [r["status"] for r in results] == ["trained"] * 12
        assert [r["step"] for r in results] == list(range(1, 13))
        assert all(0.0 <= r["prediction"] <= 1.0 and r["loss"] >= 0.0 for r in results)

        status, answer = _request(
            f"{base}/predict?action_type=click&user_id={user}&timestamp=1700000100&ctx.page=home"
        )
        assert status == 200 and 0.0 <= answer["prediction"] <= 1.0

        status, stats = _request(f"{base}/stats")
        assert status == 200
        assert stats["steps"] == 12 and stats["interactions"] == 12 and stats["pending"] == 0

        # Errors are JSON with a status code, and leave the model untouched.
        status, error = _request(f"{base}/interactions", {"action_type": "click"})
        assert status == 400 and error["field"] == "timestamp"
        status, error = _request(
            f"{base}/interactions", {"action_type": "view", "timestamp": 1, "user_id": "u"}
        )
        assert status == 400 and "no target" in error["error"]
        status, error = _request(f"{base}/nowhere")
        assert status == 404
        status, error = _request(f"{base}/stats", {"x": 1})
        assert status == 405
        status, stats = _request(f"{base}/stats")
        assert stats["steps"] == 12 and stats["rejected"] == 1

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=REQUEST_TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=REQUEST_TIMEOUT)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_typed_usage_runs() -> None:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "typed_usage.py")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=START_TIMEOUT,
    )
    assert completed.returncode == 0, completed.stderr
    assert "engine steps 100" in completed.stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_examples_pass_mypy_strict(tmp_path: Path) -> None:
    env = _env()
    package_root = Path(livelearn.__file__).resolve().parent.parent
    if package_root.name not in ("site-packages", "dist-packages"):
        env["MYPYPATH"] = str(package_root)  # a source tree; mypy refuses site-packages here
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            str(EXAMPLES / "typed_usage.py"),
            str(EXAMPLES / "asyncio_service.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
