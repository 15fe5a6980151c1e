"""End-to-end tests of the ``livelearn`` command line, run as ``python -m livelearn``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import livelearn
from livelearn import Engine, Network
from livelearn.cli import main
from livelearn.datasets import simulate_interactions
from livelearn.evaluate import progressive_val_score
from livelearn.logfiles import Columns, read_log

# The folder holding the livelearn package under test (source tree or site-packages).
PACKAGE_ROOT = str(Path(livelearn.__file__).resolve().parent.parent)


def run_cli(
    *args: str, cwd: Path, extra_path: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    path = PACKAGE_ROOT if extra_path is None else os.pathsep.join([extra_path, PACKAGE_ROOT])
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "livelearn", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ": error: " in ln]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CSV with custom column names, mixed time formats and 3 malformed rows,
    and the same events as JSON Lines."""
    folder = tmp_path_factory.mktemp("logs")
    stream = simulate_interactions(n_events=1200, seed=4)
    csv_path = folder / "events.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["event", "when", "visitor", "clicked", "device", "position"])
        for i, it in enumerate(stream.interactions):
            when = (
                datetime.fromtimestamp(it.timestamp, timezone.utc).isoformat()
                if i % 2
                else repr(it.timestamp)
            )
            ctx = it.context or {}
            w.writerow(
                [
                    it.action_type,
                    when,
                    it.user_id,
                    int(it.label or 0),
                    ctx["device"],
                    ctx["position"],
                ]
            )
        w.writerow(["video_1", "yesterday", "user_1", "1", "mobile", "1"])  # line 1202
        w.writerow(["video_1", "2024-01-01T00:00:00", "user_1", "1", "mobile", "1"])  # 1203
        w.writerow(["video_1", "1700000000", "user_1"])  # line 1204
    jsonl = folder / "events.jsonl"
    with open(jsonl, "w") as f:
        for it in stream.interactions[:300]:
            row = {
                "action_type": it.action_type,
                "timestamp": it.timestamp,
                "user_id": it.user_id,
                "label": it.label,
                **(it.context or {}),
            }
            f.write(json.dumps(row) + "\n")
        f.write("{not json\n")
    return {"csv": csv_path, "jsonl": jsonl, "folder": folder}


CSV_COLUMNS = (
    "--action-col",
    "event",
    "--time-col",
    "when",
    "--user-col",
    "visitor",
    "--context-cols",
    "device,position",
)


# ----------------------------------------------------------------- help
def test_help_for_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("demo", "replay", "predict", "inspect"):
        assert command in result.stdout
        assert main([command, "--help"]) == 0
        assert f"usage: livelearn {command}" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert livelearn.__version__ in capsys.readouterr().out


# ----------------------------------------------------------------- demo
def test_demo_on_the_real_sample(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for needle in (
        "Open Bandit",
        "30,000",
        "events/s",
        "log loss",
        "ROC AUC",
        "base rate",
        "30,000 trained, 0 skipped, 0 rejected",
    ):
        assert needle in text, text
    report = json.loads((out / "report.json").read_text())
    assert report["events"] == 30_000 and report["clicks"] == 130
    assert 0.0 < report["log_loss"] < 0.1 and 0.0 < report["base_rate_log_loss"] < 0.1
    assert 0.0 <= report["roc_auc"] <= 1.0
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Engine.load(out / "checkpoint.safetensors", initialize=False) as engine:
        assert engine.stats().steps == 30_000
    assert "\x1b" not in result.stderr and "it/s" not in result.stderr  # no bar off a TTY


def test_demo_simulate(tmp_path: Path) -> None:
    result = run_cli(
        "demo", "--simulate", "--events", "4000", "--out", "sim", "--progress", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Bayes-optimal" in result.stdout and "HashedFeatureEncoder" in result.stdout
    assert "ev/s" in result.stderr or "4.00k" in result.stderr  # the forced progress bar
    report = json.loads((tmp_path / "sim" / "report.json").read_text())
    assert report["bayes_log_loss"] < report["log_loss"] < report["base_rate_log_loss"]
    assert report["roc_auc"] > 0.6
    # The share of the learnable gap closed, and the curve drawn without matplotlib.
    gap = (report["base_rate_log_loss"] - report["log_loss"]) / (
        report["base_rate_log_loss"] - report["bayes_log_loss"]
    )
    assert report["gap_closed"] == pytest.approx(gap)
    assert f"closes {100 * gap:.0f} % of the gap" in result.stdout
    curves = [ln for ln in result.stdout.splitlines() if "▁" in ln or "█" in ln]
    assert len(curves) >= 4, result.stdout  # model, base rate, Bayes, the scale
    svg = (tmp_path / "sim" / "loss_curve.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 3


def test_demo_without_matplotlib(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib')\n")
    result = run_cli("demo", "--out", "d", cwd=tmp_path, extra_path=str(fake))
    assert result.returncode == 0, result.stderr
    assert "pip install 'livelearn[plot]'" in result.stdout
    assert not (tmp_path / "d" / "loss_curve.png").exists()
    assert (tmp_path / "d" / "loss_curve.svg").read_text().count("<polyline") == 2
    assert "█" in result.stdout  # the sparkline curves need no matplotlib
    assert (tmp_path / "d" / "checkpoint.safetensors").exists()


def test_replay_report_is_the_library_evaluation(
    tmp_path: Path, logs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The command is a thin layer over livelearn.evaluate: its report holds what
    progressive_val_score says about the same engine and the same sorted events."""
    report_path = tmp_path / "report.json"
    args = ["replay", str(logs["csv"]), *CSV_COLUMNS, "--label-col", "clicked"]
    assert main([*args, "--report", str(report_path)]) == 0
    capsys.readouterr()
    report = json.loads(report_path.read_text())
    columns = Columns(
        action="event", time="when", user="visitor", label="clicked", context=("device", "position")
    )
    events = sorted(read_log(logs["csv"], columns).interactions, key=lambda it: it.timestamp)
    engine = Engine(hidden_layers=(16, 8), learning_rate=0.05, seed=0, log_every=0)
    with engine:
        result = progressive_val_score(engine, events)
    assert report["events"] == result.events == 1200
    for key in ("trained", "skipped", "rejected", "failed"):
        assert report[key] == getattr(result, key)
    assert report["metric"] == result.scores.metric == "log loss"
    # The baseline depends on the labels only, so both runs must agree exactly.
    assert report["running_base_rate"] == result.scores.baseline
    assert report["base_rate_roc_auc"] == result.scores.baseline_auc


# ----------------------------------------------------------------- replay
def test_replay_csv_checkpoint_resume(tmp_path: Path, logs: dict[str, Path]) -> None:
    ckpt = tmp_path / "model.safetensors"
    common = (str(logs["csv"]), *CSV_COLUMNS, "--label-col", "clicked", "--checkpoint", str(ckpt))
    first = run_cli(
        "replay",
        *common,
        "--checkpoint-every",
        "400",
        "--hashed",
        "--buckets",
        "1024",
        "--optimizer",
        "adam",
        "--learning-rate",
        "0.003",
        "--plot",
        "curve.png",
        "--report",
        "report.json",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    assert "3 malformed row(s)" in first.stderr
    assert "line 1202: timestamp" in first.stderr and "no timezone" in first.stderr
    assert "line 1204: expected 6 fields, got 3" in first.stderr
    assert "1,200 trained, 0 skipped, 0 rejected" in first.stdout
    assert "log loss" in first.stdout and "ROC AUC" in first.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["malformed"] == 3 and report["trained"] == 1200
    assert [r["line"] for r in report["malformed_rows"]] == [1202, 1203, 1204]
    assert report["model"] < report["running_base_rate"]
    assert (tmp_path / "curve.png").exists()
    with Engine.load(ckpt, initialize=False) as engine:
        assert engine.stats().steps == 1200
        assert engine.config["optimizer"] == "adam"

    again = run_cli("replay", *common, cwd=tmp_path)  # resume: everything already learned
    assert again.returncode == 0, again.stderr
    assert "1,200 event(s)" in again.stderr and "already learned" in again.stderr
    with Engine.load(ckpt, initialize=False) as engine:
        assert engine.stats().steps == 1200
    more = run_cli("replay", *common, "--no-skip-seen", "--hidden", "3", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert "--hidden ignored" in more.stderr
    with Engine.load(ckpt, initialize=False) as engine:
        assert engine.stats().steps == 2400


def test_replay_jsonl_with_targets(tmp_path: Path, logs: dict[str, Path]) -> None:
    result = run_cli(
        "replay", str(logs["jsonl"]), "--context-cols", "*", "--report", "r.json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "line 301: invalid JSON" in result.stderr
    assert "300 trained" in result.stdout
    # Without labels the targets come from the mapping; unmapped actions are rejected.
    path = tmp_path / "nolabel.jsonl"
    path.write_text(
        "".join(
            json.dumps({"action_type": a, "timestamp": 1.7e9 + i, "user_id": f"u{i % 3}"}) + "\n"
            for i, a in enumerate(["click", "skip", "view"] * 20)
        )
    )
    result = run_cli("replay", str(path), "--targets", '{"click": 1, "skip": 0}', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "40 trained, 0 skipped, 20 rejected" in result.stdout
    assert "no label and no target for action type 'view'" in result.stdout


def test_replay_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    stream = simulate_interactions(n_events=300, seed=2)
    table = pa.table(
        {
            "action_type": [it.action_type for it in stream.interactions],
            "timestamp": [
                datetime.fromtimestamp(it.timestamp, timezone.utc) for it in stream.interactions
            ],
            "user_id": [it.user_id for it in stream.interactions],
            "label": [it.label for it in stream.interactions],
        }
    )
    pq.write_table(table, tmp_path / "log.parquet")
    result = run_cli("replay", "log.parquet", "--checkpoint", "p.safetensors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "300 trained" in result.stdout


def test_parquet_without_pyarrow(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    (fake / "pyarrow").mkdir(parents=True)
    (fake / "pyarrow" / "__init__.py").write_text("raise ImportError('no pyarrow')\n")
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    result = run_cli("replay", "x.parquet", cwd=tmp_path, extra_path=str(fake))
    one_line_error(result, 1, "pyarrow", "livelearn[parquet]")


def test_replay_strict_stops_at_the_first_bad_row(tmp_path: Path, logs: dict[str, Path]) -> None:
    result = run_cli(
        "replay", str(logs["csv"]), *CSV_COLUMNS, "--label-col", "clicked", "--strict", cwd=tmp_path
    )
    one_line_error(result, 1, "line 1202", "timestamp")


# ----------------------------------------------------------------- predict / inspect
@pytest.fixture(scope="module")
def trained(logs: dict[str, Path]) -> Path:
    ckpt = logs["folder"] / "trained.safetensors"
    result = run_cli(
        "replay",
        str(logs["csv"]),
        *CSV_COLUMNS,
        "--label-col",
        "clicked",
        "--checkpoint",
        str(ckpt),
        cwd=logs["folder"],
    )
    assert result.returncode == 0, result.stderr
    return ckpt


def test_predict_csv_and_jsonl(tmp_path: Path, logs: dict[str, Path], trained: Path) -> None:
    result = run_cli("predict", str(trained), str(logs["csv"]), *CSV_COLUMNS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert len(rows) == 1200 and rows[0]["line"] == "2"
    assert "3 malformed row(s)" in result.stderr and "line 1202" in result.stderr
    columns = Columns(
        action="event", time="when", user="visitor", context=("device", "position"), use_label=False
    )
    log = read_log(logs["csv"], columns)
    with Engine.load(trained) as engine:
        expected = engine.predict_many(log.interactions)[:, 0]
    got = np.array([float(r["prediction"]) for r in rows], dtype=np.float32)
    assert np.array_equal(got, expected)  # 9 significant digits: float32 exact

    out = tmp_path / "p" / "predictions.jsonl"
    result = run_cli(
        "predict",
        str(trained),
        str(logs["jsonl"]),
        "--context-cols",
        "device,position",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 300 and set(records[0]) == {
        "line",
        "user_id",
        "action_type",
        "timestamp",
        "prediction",
    }


def test_inspect(tmp_path: Path, trained: Path) -> None:
    result = run_cli("inspect", str(trained), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for needle in (
        "livelearn.checkpoint v1",
        "engine checkpoint",
        "layers [4, 16, 8, 1]",
        "parameters   225",
        "1,200 trained",
        "history",
        "1,000 examples",
    ):
        assert needle in result.stdout, result.stdout
    as_json = run_cli("inspect", str(trained), "--json", cwd=tmp_path)
    payload = json.loads(as_json.stdout)
    assert (
        payload["kind"] == "engine"
        and payload["parameters"] == Network(layers=[4, 16, 8, 1]).n_parameters == 225
    )
    assert payload["metadata"]["counters"]["trained"] == 1200
    Network(layers=[3, 2, 1], optimizer="adam").save(tmp_path / "net.safetensors")
    result = run_cli("inspect", "net.safetensors", cwd=tmp_path)
    assert result.returncode == 0 and "network checkpoint" in result.stdout


# ----------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, trained: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    data = trained.read_bytes()
    files = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "flipped": data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:],
        "text": b"action_type,timestamp\n" * 50,
    }
    out = {}
    for name, content in files.items():
        out[name] = folder / f"{name}.safetensors"
        out[name].write_bytes(content)
    Network(layers=[4, 1]).save(folder / "net.safetensors")
    out["network"] = folder / "net.safetensors"
    return out


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (("inspect", "{empty}"), 1, ("empty",)),
        (("inspect", "{truncated}"), 1, ("truncated",)),
        (("inspect", "{flipped}"), 1, ("checksum",)),
        (("predict", "{text}", "{csv}"), 1, ("not a livelearn checkpoint",)),
        (("predict", "{network}", "{csv}"), 1, ("Engine checkpoint",)),
        (("inspect", "missing.safetensors"), 1, ("cannot read",)),
        (("predict", "missing.safetensors", "{csv}"), 1, ("no such checkpoint",)),
        (("replay", "missing.csv"), 1, ("no such file",)),
        (("replay", "{csv}"), 2, ("no column 'action_type'",)),
        (("replay", "{csv}", *CSV_COLUMNS), 2, ("no 'label' column", "--targets")),
        (("replay", "{csv}", *CSV_COLUMNS, "--label-col", "nope"), 2, ("'nope'",)),
        (("replay", "{csv}", "--hidden", "8,x"), 2, ("--hidden",)),
        (("replay", "{csv}", "--learning-rate", "0"), 2, ("--learning-rate",)),
        (("replay", "{csv}", "--optimizer", "rmsprop"), 2, ("--optimizer",)),
        (("replay", "{csv}", "--targets", "[1]"), 2, ("--targets",)),
        (("replay", "{csv}", "--checkpoint-every", "10"), 2, ("--checkpoint",)),
        (("replay", "events.txt"), 2, ("--format",)),
        (("replay",), 2, ("FILE",)),
        (("frobnicate",), 2, ("invalid choice",)),
        ((), 2, ("COMMAND",)),
    ],
)
def test_errors_exit_codes_and_one_line_messages(
    tmp_path: Path,
    logs: dict[str, Path],
    bad_files: dict[str, Path],
    args: tuple[str, ...],
    code: int,
    needles: tuple[str, ...],
) -> None:
    names: dict[str, Any] = {**{k: str(v) for k, v in bad_files.items()}, "csv": str(logs["csv"])}
    result = run_cli(*(a.format(**names) for a in args), cwd=tmp_path)
    one_line_error(result, code, *needles)


def test_verbose_shows_the_traceback(tmp_path: Path, bad_files: dict[str, Path]) -> None:
    result = run_cli("inspect", str(bad_files["flipped"]), "--verbose", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "CheckpointError" in result.stderr
