"""Data to try livelearn on: a real click-log sample and a simulator with a known answer.

* :func:`load_sample` / :func:`load_sample_frame`: 30,000 real impressions of the Open
  Bandit Dataset (ZOZOTOWN fashion e-commerce, uniform-random recommendations, CC BY 4.0;
  Saito et al., NeurIPS Datasets and Benchmarks 2021), embedded in the package. Clicks
  are rare (about 0.43 %) and barely predictable: a realism check.
* :func:`simulate_interactions`: a synthetic stream with known true click probabilities
  (user, action, time-of-day, device, position and user x action effects), so a model's
  log loss can be compared with the best achievable (:meth:`SimulatedStream.bayes_log_loss`)
  and the trivial one (:meth:`SimulatedStream.base_rate_log_loss`).

Example:
    >>> from livelearn.datasets import load_sample, simulate_interactions
    >>> len(load_sample(campaign="men", limit=100))
    100
    >>> stream = simulate_interactions(n_events=2_000, seed=3)
    >>> stream.bayes_log_loss() < stream.base_rate_log_loss()
    True
"""

from __future__ import annotations

from livelearn.datasets.open_bandit import (
    CAMPAIGNS,
    SAMPLE_COLUMNS,
    load_sample,
    load_sample_frame,
)
from livelearn.datasets.simulator import SimulatedStream, log_loss, simulate_interactions

__all__ = [
    "CAMPAIGNS",
    "SAMPLE_COLUMNS",
    "SimulatedStream",
    "load_sample",
    "load_sample_frame",
    "log_loss",
    "simulate_interactions",
]
