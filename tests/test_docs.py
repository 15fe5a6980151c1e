"""The documentation site builds with ``mkdocs build --strict`` (warnings are errors)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing() -> list[str]:
    missing = []
    for name in _NEEDED:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ModuleNotFoundError:
            missing.append(name)
    return missing


@pytest.mark.skipif(bool(_missing()), reason=f"docs tooling not installed: {_missing()}")
@pytest.mark.skipif(not (ROOT / "mkdocs.yml").is_file(), reason="not run from a source tree")
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    site = tmp_path / "site"
    for page in (
        "index.html",
        "api/river/index.html",
        "api/sklearn/index.html",
        "api/metrics/index.html",
    ):
        assert (site / page).is_file(), page
    network = (site / "api/network/index.html").read_text(encoding="utf-8")
    assert 'id="livelearn.Network.train_step"' in network  # from the native stubs
    assert ":class:" not in (site / "api/engine/index.html").read_text(encoding="utf-8")
