"""Load: 8 producer threads x 50,000 steps against predict, stats() and save() threads.

Every Future resolves exactly once, the counters add up in every snapshot, and the
result is bit-identical to a sequential replay in step order (final weights, every
step's loss and pre-update prediction, every checkpoint taken meanwhile, every
concurrent prediction). See ``_scenarios.run_load``.
"""

from __future__ import annotations

from pathlib import Path

from _scenarios import run_load


def test_8_producers_x_50000_steps_with_predict_stats_and_save(tmp_path: Path) -> None:
    r = run_load(tmp_path, threads=8, per_thread=50_000, save_every=5_000)
    print(
        f"\nload: {r.submitted} steps from {r.threads} threads in {r.duration_s:.1f} s "
        f"({r.trained} trained, {r.rejected} rejected), {r.stats_snapshots} stats snapshots, "
        f"{r.predictions} predictions, {r.saves} checkpoints; replay {r.replay_s:.2f} s"
    )
    assert not r.problems, r.problems[:10]
    assert r.resolved_once == r.submitted == 400_000
    assert (r.unresolved, r.resolved_more_than_once) == (0, 0)
    assert r.trained + r.rejected == r.submitted and (r.skipped, r.failed) == (0, 0)
    assert r.rejected == r.expected_rejected > 0
    assert r.replay_bit_identical and r.step_outputs_identical
    assert r.saves >= 2 and r.saves_checked == r.saves
    assert r.predictions >= 1 and r.predictions_checked == r.predictions
    assert r.stats_snapshots >= 1


def test_two_dispatcher_workers_keep_the_replay_exact(tmp_path: Path) -> None:
    r = run_load(tmp_path, threads=4, per_thread=10_000, workers=2, save_every=4_000)
    assert not r.problems, r.problems[:10]
    assert r.resolved_once == r.submitted == 40_000
    assert r.replay_bit_identical and r.step_outputs_identical
