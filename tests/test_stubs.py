"""``livelearn/_core.pyi`` is held to the compiled module by ``mypy.stubtest``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import livelearn


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_core_stubs_match_the_compiled_module(tmp_path: Path) -> None:
    # The package's parent directory first on the path, whatever the current
    # directory: stubtest then checks the very livelearn this test imported.
    package_root = str(Path(livelearn.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    completed = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "livelearn._core"],
        cwd=tmp_path,  # no project config, and the cache stays out of the tree
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Success" in completed.stdout, completed.stdout
