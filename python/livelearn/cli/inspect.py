"""``livelearn inspect``: verify a checkpoint and show its configuration and counters."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livelearn.checkpoint import read_checkpoint
from livelearn.cli.common import Parser, line, num, size, when


def add_parser(sub: argparse._SubParsersAction[Parser], common: Parser) -> None:
    """Add ``livelearn inspect`` to ``sub``."""
    ins = sub.add_parser(
        "inspect",
        parents=[common],
        help="show a checkpoint's configuration and counters",
        description="Verify a checkpoint and print its configuration, counters, parameter "
        "count and a summary of its history.",
    )
    ins.add_argument("checkpoint", metavar="CHECKPOINT")
    ins.add_argument("--json", action="store_true", help="print everything as JSON")
    ins.set_defaults(handler=run)


_FIELD_BUFFERS = ("network.optimizer.", "network.counters.")


def run(args: argparse.Namespace) -> int:
    """Run ``livelearn inspect``; returns the exit code."""
    ckpt = read_checkpoint(args.checkpoint)
    meta = ckpt.meta
    tensors = ckpt.tensors
    field = "n_fields" in meta.get("network", {})  # the field-aware model (FieldNetwork)
    params = sum(
        int(v.size)
        for k, v in tensors.items()
        if (k.startswith("network.layers.") and k.endswith((".weight", ".bias")))
        or (field and k.startswith("network.") and not k.startswith(_FIELD_BUFFERS))
    )
    history = _history_summary(tensors)
    if args.json:
        payload = {
            "path": args.checkpoint,
            "bytes": ckpt.size,
            "kind": ckpt.kind,
            "format_version": ckpt.format_version,
            "parameters": params,
            "history": history,
            "metadata": meta,
            "tensors": {k: [str(v.dtype), list(v.shape)] for k, v in sorted(tensors.items())},
        }
        print(json.dumps(payload, indent=2, sort_keys=True))
        return 0
    net = meta.get("network", {})
    saved_at = meta.get("saved_at")
    print(f"livelearn checkpoint: {args.checkpoint} ({size(Path(args.checkpoint))})")
    print(
        line(
            "format",
            f"livelearn.checkpoint v{ckpt.format_version}, {ckpt.kind} checkpoint, "
            f"written by livelearn {meta.get('library_version', '?')} at "
            f"{when(saved_at if isinstance(saved_at, float) else None)}",
        )
    )
    optim = f"{net.get('optimizer')} (learning_rate {net.get('learning_rate'):.7g}"
    if net.get("optimizer") == "sgd" and net.get("momentum"):
        optim += f", momentum {net.get('momentum'):.7g}"
    if net.get("weight_decay"):
        optim += f", weight_decay {net.get('weight_decay'):.7g}"
    if net.get("clip_norm") is not None:
        optim += f", clip_norm {net.get('clip_norm'):.7g}"
    optim += ")"
    if field:
        described = (
            f"field model: wide + factorization machine over {net.get('n_fields')} fields, "
            f"{net.get('n_buckets'):,} buckets, embedding_dim {net.get('embedding_dim')}, "
            f"hidden {net.get('hidden_layers')}, loss {net.get('loss')}"
        )
    else:
        described = (
            f"layers {net.get('layers')}, {net.get('activation')} hidden, "
            f"{net.get('output')} output, loss {net.get('loss')}"
        )
    print(line("network", described))
    print(line("optimizer", optim))
    print(line("parameters", f"{params:,}"))
    steps = int(tensors["network.counters.steps"]) if "network.counters.steps" in tensors else 0
    if ckpt.kind == "network":
        rejected = int(tensors.get("network.counters.rejected_steps", np.array(0)))
        print(line("counters", f"{steps:,} steps, {rejected:,} rejected"))
        return 0
    features = dict(meta.get("features", {}))
    kind = features.pop("type", "?")
    n_inputs = features.pop("n_inputs", "?")
    shown = ", ".join(f"{k}={v!r}" for k, v in features.items())
    print(
        line(
            "features",
            f"{kind}({shown}), {n_inputs:,} inputs"
            if isinstance(n_inputs, int)
            else f"{kind}({shown})",
        )
    )
    print(line("targets", json.dumps(meta.get("targets"))))
    engine = meta.get("engine", {})
    settings = ", ".join(
        f"{k}={engine.get(k)!r}"
        for k in ("history_size", "batch_size", "workers", "max_pending", "overload")
    )
    print(line("engine", settings))
    if engine.get("checkpoint_path") is not None:
        print(
            line(
                "autosave",
                f"{engine.get('checkpoint_path')} every "
                f"{engine.get('checkpoint_every')} steps / "
                f"{engine.get('checkpoint_interval')} s",
            )
        )
    c = meta.get("counters", {})
    trained = c.get("trained", 0)
    mean = c.get("loss_sum", 0.0) / trained if trained else None
    print(
        line(
            "counters",
            f"{trained:,} trained, {c.get('skipped', 0):,} skipped, "
            f"{c.get('rejected', 0):,} rejected, {c.get('failed', 0):,} failed",
        )
    )
    print(
        line(
            "loss",
            f"mean {num(mean)}, recent {num(c.get('recent_loss'))}, last {num(c.get('last_loss'))}",
        )
    )
    print(line("last event", when(c.get("last_example_time"))))
    if history["examples"]:
        print(
            line(
                "history",
                f"{history['examples']:,} examples, steps "
                f"{history['first_step']:,}..{history['last_step']:,}, "
                f"{when(history['first_time'])} .. {when(history['last_time'])}",
            )
        )
        print(
            line(
                "",
                f"mean loss {num(history['mean_loss'])}, mean target "
                f"{num(history['mean_target'])}, mean prediction "
                f"{num(history['mean_prediction'])}",
            )
        )
    else:
        print(line("history", "empty"))
    join = meta.get("join")
    if isinstance(join, dict) and isinstance(join.get("store"), dict):
        ids = join["store"].get("ids", [])
        engine_cfg = meta.get("engine", {})
        print(
            line(
                "awaiting",
                f"{len(ids):,} example(s) awaiting their outcome "
                f"(feedback_timeout {engine_cfg.get('feedback_timeout')} s, "
                f"clock {engine_cfg.get('clock')!r})",
            )
        )
    return 0


def _history_summary(tensors: dict[str, NDArray[Any]]) -> dict[str, Any]:
    steps = tensors.get("history.steps")
    if steps is None or not len(steps):
        return {"examples": 0}
    times = tensors["history.timestamps"]
    return {
        "examples": len(steps),
        "first_step": int(steps[0]),
        "last_step": int(steps[-1]),
        "first_time": float(times[0]),
        "last_time": float(times[-1]),
        "mean_loss": float(np.mean(tensors["history.losses"], dtype=np.float64)),
        "mean_target": float(np.mean(tensors["history.targets"], dtype=np.float64)),
        "mean_prediction": float(np.mean(tensors["history.predictions"], dtype=np.float64)),
    }
