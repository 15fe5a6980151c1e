"""``livelearn replay`` in chunks: the same report whatever the chunk size, an
oversized CSV field is one malformed row, a progress bar, and read_log_chunks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from livelearn.cli import main
from livelearn.datasets import simulate_interactions
from livelearn.logfiles import Columns, read_log, read_log_chunks


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 events in shuffled time order, a 1 MB field on line 5, a bad time on line 9."""
    path = tmp_path_factory.mktemp("chunks") / "events.csv"
    stream = simulate_interactions(n_events=600, seed=5)
    events = list(stream.interactions)
    events.reverse()  # out of order: replay sorts
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["action_type", "timestamp", "user_id", "label", "device"])
        for i, it in enumerate(events):
            device = (it.context or {})["device"]
            if i == 3:
                device = "x" * 1_000_000  # over csv's 131072 field limit
            when = "soon" if i == 7 else repr(it.timestamp)
            w.writerow([it.action_type, when, it.user_id, int(it.label or 0), device])
    return path


def _report(path: Path, out: Path, *extra: str) -> dict[str, object]:
    code = main(["replay", str(path), "--context-cols", "device", "--report", str(out), *extra])
    assert code == 0
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_oversized_field_is_one_malformed_row(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report(log, tmp_path / "r.json")
    err = capsys.readouterr().err
    assert report["rows"] == 600
    assert report["malformed"] == 2
    lines = {row["line"]: row["message"] for row in report["malformed_rows"]}  # type: ignore[union-attr]
    assert "field larger than field limit" in lines[5]
    assert "timestamp" in lines[9]
    assert report["events"] == report["trained"] == 598
    assert "line 5: field larger than field limit" in err


def test_chunk_size_does_not_change_a_sorted_replay(log: Path, tmp_path: Path) -> None:
    whole = _report(log, tmp_path / "a.json")
    # A sorted file: chunks of 50 rows train the same events in the same order.
    sorted_log = tmp_path / "sorted.csv"
    rows = [line.rstrip("\r\n").split(",") for line in log.read_text().splitlines()]
    header, body = rows[0], rows[1:]
    good = [r for r in body if r[1] != "soon" and len(r[4]) < 1000]
    good.sort(key=lambda r: float(r[1]))
    with open(sorted_log, "w", newline="") as f:
        csv.writer(f).writerows([header, *good])
    small = _report(sorted_log, tmp_path / "b.json", "--chunk-rows", "50")
    for key in ("events", "trained", "skipped", "rejected", "model", "running_base_rate"):
        assert small[key] == whole[key], key
    assert small["engine_steps"] == 598


def test_unsorted_across_chunks_is_said(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _report(log, tmp_path / "c.json", "--chunk-rows", "100", "--progress")
    err = capsys.readouterr().err
    assert "not in timestamp order across chunks of 100 rows" in err
    assert "row" in err and "600" in err  # the tqdm bar counted every row


def test_read_log_chunks_matches_read_log(log: Path) -> None:
    columns = Columns(context=("device",))
    whole = read_log(log, columns)
    chunks = list(read_log_chunks(log, columns, chunk_rows=128))
    assert [c.rows for c in chunks] == [128, 128, 128, 128, 88]
    assert sum(len(c.lines) for c in chunks) == len(whole.interactions)
    assert [e.line for c in chunks for e in c.errors] == [5, 9]
    assert [e.line for e in whole.errors] == [5, 9]
    with pytest.raises(ValueError, match="chunk_rows"):
        next(read_log_chunks(log, columns, chunk_rows=0))
