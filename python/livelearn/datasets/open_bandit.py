"""Loader for the embedded Open Bandit Dataset sample (ZOZOTOWN, CC BY 4.0).

The package ships ``data/open_bandit_sample.csv.gz``: 30,000 real impressions of the
uniform-random item-recommendation campaigns ``all``, ``men`` and ``women`` (10,000 each,
24-30 November 2019) of the Open Bandit Dataset by Saito, Aihara, Matsutani and Narita
(NeurIPS Datasets and Benchmarks 2021). See ``data/README.md`` for attribution, licence
and how the file was derived (``benchmarks/make_sample.py``).

Only the standard library (``csv``, ``gzip``, ``importlib.resources``) reads the file, so it
works from an installed wheel or zip without extra dependencies; numpy is used only by
:func:`load_sample_frame`.
"""

from __future__ import annotations

import csv
import gzip
import io
from functools import lru_cache
from importlib import resources
from typing import Any, NamedTuple

import numpy as np

from livelearn.interaction import InteractionData

__all__ = ["CAMPAIGNS", "SAMPLE_COLUMNS", "load_sample", "load_sample_frame"]

#: Campaign names in the sample; a campaign is one ZOZOTOWN recommendation page.
CAMPAIGNS: tuple[str, ...] = ("all", "men", "women")

#: Columns of the embedded file, in order (also the keys of :func:`load_sample_frame`).
SAMPLE_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "campaign",
    "item_id",
    "position",
    "click",
    "propensity_score",
    "user_feature_0",
    "user_feature_1",
    "user_feature_2",
    "user_feature_3",
)

_PACKAGE = "livelearn.datasets"
_DATA_FILE = "open_bandit_sample.csv.gz"
_USER_FEATURES: tuple[str, ...] = SAMPLE_COLUMNS[6:]


class _Row(NamedTuple):
    """One parsed line of the embedded file."""

    timestamp: float
    campaign: str
    item_id: int
    position: int
    click: int
    propensity_score: float
    user_features: tuple[str, str, str, str]


def _parse_row(record: list[str]) -> _Row:
    """Convert one CSV record (in ``SAMPLE_COLUMNS`` order) into a typed row."""
    ts, campaign, item_id, position, click, propensity, uf0, uf1, uf2, uf3 = record
    return _Row(
        float(ts), campaign, int(item_id), int(position), int(click), float(propensity),
        (uf0, uf1, uf2, uf3),
    )  # fmt: skip


@lru_cache(maxsize=1)
def _rows() -> tuple[_Row, ...]:
    """Read and parse the embedded file once per process (~30 ms); rows are immutable."""
    resource = resources.files(_PACKAGE).joinpath("data").joinpath(_DATA_FILE)
    with (
        resource.open("rb") as raw,
        gzip.GzipFile(fileobj=raw) as unzipped,
        io.TextIOWrapper(unzipped, encoding="utf-8", newline="") as text,
    ):
        reader = csv.reader(text)
        header = tuple(next(reader))
        if header != SAMPLE_COLUMNS:
            # A mismatched header means the data file and this loader are out of sync.
            raise RuntimeError(f"unexpected columns in {_DATA_FILE}: {header}")
        return tuple(_parse_row(record) for record in reader)


def _select(campaign: str | None, limit: int | None) -> tuple[_Row, ...]:
    """Validate the arguments and return the requested rows, in timestamp order."""
    if campaign is not None and campaign not in CAMPAIGNS:
        valid = ", ".join(repr(name) for name in CAMPAIGNS)
        raise ValueError(f"unknown campaign {campaign!r}; valid campaigns: {valid} or None")
    if limit is not None and (isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    rows = _rows()
    if campaign is not None:
        rows = tuple(row for row in rows if row.campaign == campaign)
    return rows if limit is None else rows[:limit]


def _to_interaction(row: _Row) -> InteractionData:
    """Map one row to an interaction (see :func:`load_sample` for the mapping)."""
    context: dict[str, Any] = {"position": row.position, "campaign": row.campaign}
    context.update(zip(_USER_FEATURES, row.user_features, strict=True))
    return InteractionData(
        action_type=f"{row.campaign}:item_{row.item_id}",
        timestamp=row.timestamp,
        user_id="-".join(row.user_features),
        context=context,
        label=float(row.click),
    )


def load_sample(campaign: str | None = None, limit: int | None = None) -> list[InteractionData]:
    """Load the embedded Open Bandit sample as a list of interactions, in timestamp order.

    Each row (one impression: an item shown in a slot to a user) becomes::

        InteractionData(
            action_type="<campaign>:item_<item_id>",   # e.g. "men:item_14"
            timestamp=<POSIX seconds UTC, microsecond precision>,
            user_id="<uf0>-<uf1>-<uf2>-<uf3>",         # the 4 hashed user features
            context={"position": 1|2|3, "campaign": "all"|"men"|"women",
                     "user_feature_0": str, ..., "user_feature_3": str},
            label=1.0 if clicked else 0.0,
        )

    The campaign prefix in ``action_type`` matters: item ids of different campaigns are
    different items. ``user_id`` is a user-feature *tuple*, not a person: the sample has
    only a few hundred distinct tuples per campaign, shared by many visitors.

    Clicks are rare (130 of 30,000, about 0.43 %) and, because items were shown by a
    uniform-random policy, barely predictable from these features: a model that predicts
    the base rate is a strong baseline. Use the sample to check realism and throughput,
    and :func:`livelearn.datasets.simulate_interactions` to check that learning works.

    Args:
        campaign: ``"all"``, ``"men"`` or ``"women"`` for one campaign (note that ``"all"``
            is a ZOZOTOWN campaign name, not "every campaign"), or ``None`` for all three
            campaigns merged in timestamp order.
        limit: keep only the first ``limit`` records (after the campaign filter).

    Returns:
        A new list of new :class:`~livelearn.interaction.InteractionData` objects.

    Raises:
        ValueError: unknown ``campaign`` (the message lists the valid ones) or negative
            ``limit``.

    Example:
        >>> from livelearn.datasets import load_sample
        >>> records = load_sample()
        >>> len(records), sum(r.label for r in records)
        (30000, 130.0)
        >>> first = load_sample("men", limit=1)[0]
        >>> first.action_type, first.context["position"]
        ('men:item_14', 3)
    """
    return [_to_interaction(row) for row in _select(campaign, limit)]


def load_sample_frame(
    campaign: str | None = None, limit: int | None = None
) -> dict[str, np.ndarray[Any, np.dtype[Any]]]:
    """Load the embedded Open Bandit sample as numpy columns, for fast benchmarks.

    Same rows, order and arguments as :func:`load_sample`, but no interaction objects are
    built. Keys are :data:`SAMPLE_COLUMNS`; dtypes: ``timestamp`` and ``propensity_score``
    float64; ``item_id``, ``position`` and ``click`` int64; ``campaign`` and the
    ``user_feature_*`` columns fixed-width unicode strings (8 hex digits for features).
    Clicks are about 0.43 % and barely predictable (see :func:`load_sample`).

    Example:
        >>> from livelearn.datasets import load_sample_frame
        >>> frame = load_sample_frame("women")
        >>> len(frame["timestamp"]), int(frame["click"].sum())
        (10000, 46)
        >>> bool((frame["campaign"] == "women").all())
        True
    """
    rows = _select(campaign, limit)
    features = [[row.user_features[k] for row in rows] for k in range(len(_USER_FEATURES))]
    frame: dict[str, np.ndarray[Any, np.dtype[Any]]] = {
        "timestamp": np.array([row.timestamp for row in rows], dtype=np.float64),
        "campaign": np.array([row.campaign for row in rows], dtype="<U5"),
        "item_id": np.array([row.item_id for row in rows], dtype=np.int64),
        "position": np.array([row.position for row in rows], dtype=np.int64),
        "click": np.array([row.click for row in rows], dtype=np.int64),
        "propensity_score": np.array([row.propensity_score for row in rows], dtype=np.float64),
    }
    for name, values in zip(_USER_FEATURES, features, strict=True):
        frame[name] = np.array(values, dtype="<U8")
    return frame
