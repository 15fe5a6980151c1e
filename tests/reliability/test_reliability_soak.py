"""Soak: 2,000,000 events through one engine (``train_many`` in chunks of 10,000,
Futures dropped, 1 % invalid, an autosave every 250,000 steps, a prediction per
chunk). After a 400,000-event warm-up the resident memory grows by at most
10 MiB, no thread and no file descriptor is left behind, the counters add up
exactly and the history holds exactly its bound, in order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _scenarios import run_soak


@pytest.mark.slow
def test_2_million_events(tmp_path: Path) -> None:
    r = run_soak(tmp_path, events=2_000_000, chunk=10_000, warmup=400_000, history_size=1_000)
    mib = 2**20
    print(
        f"\nsoak: {r.events} events in {r.duration_s:.1f} s ({r.trained} trained, {r.rejected} "
        f"rejected); RSS {r.rss_after_warmup / mib:.1f} -> {r.rss_end / mib:.1f} MiB "
        f"(max {r.rss_max / mib:.1f}); threads {r.threads_after_warmup} -> {r.threads_end}; "
        f"fds {r.fds_after_warmup} -> {r.fds_end}; last autosave at {r.autosaved_steps} steps"
    )
    assert not r.problems, r.problems
    assert r.trained + r.rejected == r.events
    assert r.history_len == r.history_size
    assert r.rss_growth <= 10 * mib
    assert r.threads_end <= r.threads_after_warmup and r.fds_end <= r.fds_after_warmup
