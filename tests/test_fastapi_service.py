"""examples/fastapi_service.py served by uvicorn with 2 workers on loopback.

Skipped unless fastapi and uvicorn are installed (the ``service`` extra).
Real HTTP traffic; every worker must answer from the same model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None,
    reason="fastapi and uvicorn are not installed (pip install 'livelearn[service]')",
)

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _post(url: str, payload: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url, json.dumps(payload).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_two_uvicorn_workers_answer_from_one_model() -> None:
    port = _free_port()
    share = f"pytest-svc-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    # The workers import the same livelearn as this test: the installed wheel
    # in CI (the clone's python/ has no native module there), else the tree.
    import livelearn

    python_dir = str(Path(livelearn.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([python_dir, str(ROOT), env.get("PYTHONPATH", "")])
    env["LIVELEARN_SHARE"] = share
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.fastapi_service:app",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                _get(f"{base}/stats")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the service did not start"
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                time.sleep(0.1)
        n = 60
        pids = set()
        for i in range(n):
            action = "click" if i % 3 == 0 else "skip"
            r = _post(
                f"{base}/interactions",
                {"action_type": action, "timestamp": 1_700_000_000 + i, "user_id": f"u{i % 7}"},
            )
            assert r["status"] == "trained"
            pids.add(r["pid"])
        answers: dict[int, tuple[int, float]] = {}
        for _ in range(400):  # new connection each time: the kernel spreads them
            s = _get(f"{base}/stats")
            p = _get(f"{base}/predict?user_id=u1&timestamp=1700000000")
            assert s["model_steps"] == n  # every worker sees every step
            answers[p["pid"]] = (p["model_version"], p["prediction"])
            pids.add(s["pid"])
            if len(answers) >= 2:
                break
        assert len(pids) >= 2, "only one worker answered"
        if len(answers) >= 2:
            assert len(set(answers.values())) == 1  # the same model in every worker
        if importlib.util.find_spec("prometheus_client") is not None:
            metrics = urllib.request.urlopen(f"{base}/metrics", timeout=10).read()
            assert b"livelearn_" in metrics
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(WAIT_S)
    assert not os.path.exists(f"/dev/shm/livelearn-{share}")
