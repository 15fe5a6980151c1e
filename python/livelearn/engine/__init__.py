"""The training engine: one asynchronous training step per user interaction.

``Engine.train_step(interaction)`` returns at once with a Future. A background
dispatcher takes the queued interactions in batches, turns them into features
and targets, runs the native training steps for the whole batch in one
GIL-free call, books the results and resolves the batch's Futures together.

The package has one module per job; only :class:`Engine` (and the
``OverloadPolicy`` type) is public:

* :mod:`~livelearn.engine.api`: the :class:`Engine` facade (arguments,
  lifecycle, submission, reading, persistence glue);
* :mod:`~livelearn.engine.submission`: the bounded submission queue and its
  overload policy;
* :mod:`~livelearn.engine.batch`: a batch turned into network input (encoding,
  targets, one mask of the rows that reach the network);
* :mod:`~livelearn.engine.dispatcher`: the dispatcher threads (take, prepare,
  train, resolve) and draining at exit;
* :mod:`~livelearn.engine.bookkeeping`: counters, loss log and average, history;
* :mod:`~livelearn.engine.forking`: what ``os.fork()`` does to engines.
"""

from __future__ import annotations

from livelearn.engine.api import Engine, OverloadPolicy

__all__ = ["Engine", "OverloadPolicy"]
