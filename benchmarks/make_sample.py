"""Build the embedded Open Bandit sample shipped as ``livelearn.datasets``' data file.

Reads the three uniform-random campaigns of the Open Bandit Dataset small sample
(``random-all.csv``, ``random-men.csv``, ``random-women.csv``; ZOZOTOWN, CC BY 4.0,
Saito, Aihara, Matsutani & Narita, NeurIPS Datasets and Benchmarks 2021) and writes
``python/livelearn/datasets/data/open_bandit_sample.csv.gz``:

* the 30,000 rows are merged in timestamp order (ties keep campaign order all, men,
  women, then source row order, so the output is fully deterministic);
* ``timestamp`` becomes POSIX seconds UTC written with exactly six decimals, computed
  with integer microseconds so no precision is lost;
* a ``campaign`` column (``all``/``men``/``women``) is added, because item ids of the
  three campaigns refer to different items;
* the ``user-item_affinity_*`` columns and the unnamed row index are dropped;
* the 32-hex user-feature hashes are shortened to their first 8 hex characters; the
  script checks that this keeps every column's values distinct and fails otherwise.

The gzip header carries no file name and a zero mtime, so rebuilding from the same
source yields byte-identical output.

Usage (from the repository root)::

    python benchmarks/make_sample.py                      # default source and output
    python benchmarks/make_sample.py /path/to/open-bandit-sample -o /tmp/sample.csv.gz
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT / ".." / "shared" / "data" / "open-bandit-sample"
DEFAULT_OUTPUT = (
    REPO_ROOT / "python" / "livelearn" / "datasets" / "data" / "open_bandit_sample.csv.gz"
)
CAMPAIGNS: tuple[str, ...] = ("all", "men", "women")
N_USER_FEATURES = 4
HASH_PREFIX_LEN = 8
OUTPUT_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "campaign",
    "item_id",
    "position",
    "click",
    "propensity_score",
    *(f"user_feature_{k}" for k in range(N_USER_FEATURES)),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class Row(NamedTuple):
    """One source row, reduced to the columns we keep."""

    micros: int  # POSIX time in integer microseconds: exact, unlike a float
    campaign: str
    item_id: int
    position: int
    click: int
    propensity_score: str  # kept as the source text so the value round-trips exactly
    user_features: tuple[str, ...]  # full 32-hex hashes; shortened only when written


def to_micros(text: str) -> int:
    """Parse an ISO 8601 timestamp with offset into integer POSIX microseconds.

    >>> to_micros("1970-01-01 00:00:01.000002+00:00")
    1000002
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without UTC offset: {text!r}")
    return (moment - _EPOCH) // _MICROSECOND


def format_micros(micros: int) -> str:
    """Format integer microseconds as decimal seconds with exactly six decimals.

    >>> format_micros(1574553793442536)
    '1574553793.442536'
    """
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{seconds}.{fraction:06d}"


def read_campaign(source: Path, campaign: str) -> list[Row]:
    """Read ``random-<campaign>.csv`` from ``source`` into :class:`Row` tuples."""
    feature_names = [f"user_feature_{k}" for k in range(N_USER_FEATURES)]
    with (source / f"random-{campaign}.csv").open(newline="", encoding="utf-8") as handle:
        return [
            Row(
                micros=to_micros(record["timestamp"]),
                campaign=campaign,
                item_id=int(record["item_id"]),
                position=int(record["position"]),
                click=int(record["click"]),
                propensity_score=record["propensity_score"],
                user_features=tuple(record[name] for name in feature_names),
            )
            for record in csv.DictReader(handle)
        ]


def merge_campaigns(per_campaign: Sequence[Sequence[Row]]) -> list[Row]:
    """Merge campaigns by timestamp; ``sorted`` is stable, which fixes the tie order."""
    return sorted((row for rows in per_campaign for row in rows), key=lambda row: row.micros)


def check_prefixes_distinct(rows: Iterable[Row], prefix_len: int = HASH_PREFIX_LEN) -> None:
    """Fail unless shortening each user-feature hash keeps that column's values distinct.

    Checked over the merged data (not per campaign) because the loader treats a column's
    values as one vocabulary across campaigns.
    """
    seen: list[dict[str, str]] = [{} for _ in range(N_USER_FEATURES)]
    for row in rows:
        for column, full in enumerate(row.user_features):
            prefix = full[:prefix_len]
            other = seen[column].setdefault(prefix, full)
            if other != full:
                raise ValueError(
                    f"user_feature_{column}: {other} and {full} share the prefix {prefix!r}"
                )


def render_csv(rows: Iterable[Row], prefix_len: int = HASH_PREFIX_LEN) -> bytes:
    """Render rows as UTF-8 CSV text with ``OUTPUT_COLUMNS`` as header and ``\\n`` endings."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(OUTPUT_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                format_micros(row.micros),
                row.campaign,
                row.item_id,
                row.position,
                row.click,
                row.propensity_score,
                *(feature[:prefix_len] for feature in row.user_features),
            ]
        )
    return buffer.getvalue().encode("utf-8")


def write_gzip(payload: bytes, output: Path) -> None:
    """Write ``payload`` gzip-compressed with a reproducible header (no name, mtime 0)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with (
        output.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
    ):
        gz.write(payload)


def build(source: Path, output: Path) -> list[Row]:
    """Read, check, merge and write the sample; return the merged rows."""
    rows = merge_campaigns([read_campaign(source, campaign) for campaign in CAMPAIGNS])
    check_prefixes_distinct(rows)
    write_gzip(render_csv(rows), output)
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "source",
        nargs="?",
        type=Path,
        default=DEFAULT_SOURCE,
        help="folder holding random-{all,men,women}.csv (default: %(default)s)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="default: %(default)s"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: build the file and print a one-line summary."""
    args = parse_args(argv)
    rows = build(args.source.resolve(), args.output)
    clicks = sum(row.click for row in rows)
    size = args.output.stat().st_size
    print(f"wrote {args.output}: {len(rows)} rows, {clicks} clicks, {size:,} bytes")


if __name__ == "__main__":
    main()
