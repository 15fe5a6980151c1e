"""mkdocs hook: publish ``benchmarks/results/`` with the documentation.

Every ``*.md`` report (and the ``*.png``/``*.svg``/``*.json`` files next to it) in
``benchmarks/results/`` becomes part of the site under ``benchmarks/results/``, and
the ``<!-- benchmark-results -->`` marker of ``benchmarks.md`` is replaced by links
to them, or by a note on how to generate them when there are none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
MARKER = "<!-- benchmark-results -->"
_KINDS = {".md", ".png", ".svg", ".json"}

_PLACEHOLDER = """\
!!! note "No benchmark results in this build"
    `benchmarks/results/` held no reports when this site was built. Generate them
    from a clone of the repository, then rebuild the site (`mkdocs build`):

    ```bash
    pip install -e ".[bench]"
    python benchmarks/engine_bench.py      # -> benchmarks/results/engine.json
    python benchmarks/peers.py             # -> benchmarks/results/peers.{md,json,png}
    ```
"""


def _results() -> list[Path]:
    if not RESULTS.is_dir():
        return []
    return sorted(p for p in RESULTS.iterdir() if p.is_file() and p.suffix in _KINDS)


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    """Add the result files to the site, keeping their relative layout."""
    for path in _results():
        files.append(
            File(
                path.relative_to(ROOT).as_posix(),
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def on_page_markdown(markdown: str, page: Page, **kwargs: Any) -> str:
    """Fill the marker of the benchmark page."""
    if MARKER not in markdown:
        return markdown
    results = _results()
    reports = [p for p in results if p.suffix == ".md"]
    raw = [p for p in results if p.suffix == ".json"]
    if not reports and not raw:
        return markdown.replace(MARKER, _PLACEHOLDER)
    lines = [f"- [{_title(p)}](benchmarks/results/{p.name})" for p in reports]
    if raw:
        lines.append(
            "- Raw results: " + ", ".join(f"[`{p.name}`](benchmarks/results/{p.name})" for p in raw)
        )
    return markdown.replace(MARKER, "\n".join(lines))
