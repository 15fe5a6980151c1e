"""The dense MLP's running output bias (``Network(running_bias=True)``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from livelearn import Engine, HashedFeatureEncoder, Network
from livelearn import checkpoint_format as fmt

ZERO = np.zeros(1, np.float32)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_running_bias_alone_is_the_running_mean(optimizer: str) -> None:
    # One input held at 0: the prediction is sigmoid(bias), and the running
    # bias makes it exactly the running mean of the labels so far, with 2
    # pseudo-events at 0.5 before the first.
    net = Network(layers=[1, 1], optimizer=optimizer, running_bias=True)
    y = (np.random.default_rng(3).random(300) < 0.3).astype(np.float32)
    n = len(y)
    _, preds, status = net.train_batch_detailed(np.zeros((n, 1), np.float32), y)
    assert not status.any()
    seen = np.concatenate(([0.0], np.cumsum(y, dtype=np.float64)[:-1]))
    expect = (1.0 + seen) / (2.0 + np.arange(n))
    np.testing.assert_allclose(preds[:, 0], expect, rtol=1e-5, atol=1e-6)
    assert net.get_state()["optimizer.bias.N"][0] == pytest.approx(2.0 + n)


def test_running_bias_mse_is_the_weighted_running_mean() -> None:
    net = Network(layers=[1, 1], output="identity", loss="mse", running_bias=True)
    for y, w in zip([3.0, 5.0, -1.0], [1.0, 2.0, 0.0], strict=True):
        net.train_step(ZERO, y, weight=w)
    # 2 pseudo-events at 0, 3 once, 5 twice; the weight-0 step changes nothing.
    assert float(net.predict(ZERO)[0]) == pytest.approx(13.0 / 5.0, rel=1e-6)
    assert net.get_state()["optimizer.bias.N"][0] == pytest.approx(5.0)


def test_running_bias_leaves_every_other_gradient_step_alone() -> None:
    # Same seed, same example: every tensor but the output bias takes the same
    # (finite-difference-checked) gradient step with or without the option.
    x = np.array([0.5, -1.0, 0.25, 2.0], np.float32)
    plain, rb = Network(seed=4), Network(seed=4, running_bias=True)
    for xi, yi in ((x, 1.0), (-x, 0.0)):
        for net in (plain, rb):
            net.train_step(xi, yi)
        a, b = plain.get_state(), rb.get_state()
        assert set(b) == set(a) | {"optimizer.bias.N"}
        for name in a:
            if name != "layers.2.bias":
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        assert b["layers.2.bias"][0] != a["layers.2.bias"][0]
        plain.set_state(dict(a, **{"layers.2.bias": b["layers.2.bias"]}))  # same start again


def test_running_bias_rejected_step_and_bad_state_change_nothing() -> None:
    net = Network(layers=[2, 3, 1], running_bias=True)
    net.train_step(np.ones(2, np.float32), 1.0)
    before = net.get_state()
    with pytest.raises(ValueError):
        net.train_step(np.array([np.nan, 1.0], np.float32), 1.0)
    bad = dict(before, **{"optimizer.bias.N": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match=r"optimizer\.bias\.N"):
        net.set_state(bad)
    missing = {k: v for k, v in before.items() if k != "optimizer.bias.N"}
    with pytest.raises(ValueError, match=r"optimizer\.bias\.N"):
        net.set_state(missing)
    after = net.get_state()
    for name in before:
        if name.startswith("counters."):
            continue
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)
    assert net.rejected_steps == 1


def test_running_bias_state_and_checkpoint_resume_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = (rng.random(60) < 0.2).astype(np.float32)
    net = Network(optimizer="adam", learning_rate=0.001, running_bias=True)
    net.train_batch(x[:30], y[:30])
    copy = Network.from_config(net.get_config())
    copy.set_state(net.get_state())
    net.save(tmp_path / "n.ckpt")
    loaded = Network.load(tmp_path / "n.ckpt")
    assert loaded.running_bias and "running_bias=True" in repr(loaded)
    for other in (net, copy, loaded):
        other.train_batch(x[30:], y[30:])
    ref = net.get_state()
    for other in (copy, loaded):
        state = other.get_state()
        for name in ref:
            np.testing.assert_array_equal(ref[name], state[name], err_msg=name)


def _drop_running_bias(path: Path) -> None:
    """Rewrite a checkpoint as written before the option existed."""
    ckpt = fmt.read(path)
    meta = dict(ckpt.meta)
    meta["network"] = {k: v for k, v in meta["network"].items() if k != "running_bias"}
    fmt.write(path, ckpt.kind, meta, ckpt.tensors)


def test_a_config_from_before_the_option_rebuilds_without_it(tmp_path: Path) -> None:
    old = Network(layers=[2, 1]).get_config()
    del old["running_bias"]
    assert Network.from_config(old).running_bias is False

    net = Network(layers=[2, 1])
    net.train_step(np.ones(2, np.float32), 1.0)
    net.save(tmp_path / "n.ckpt")
    _drop_running_bias(tmp_path / "n.ckpt")
    assert Network.load(tmp_path / "n.ckpt").running_bias is False

    with Engine() as engine:
        engine.save(tmp_path / "e.ckpt")
    _drop_running_bias(tmp_path / "e.ckpt")
    with Engine.load(tmp_path / "e.ckpt") as loaded:
        assert loaded.network.get_config()["running_bias"] is False


def test_engine_passes_running_bias_and_checkpoints_keep_it(tmp_path: Path) -> None:
    with Engine(running_bias=True) as engine:
        assert engine.network.get_config()["running_bias"] is True
        engine.save(tmp_path / "e.ckpt")
    with Engine.load(tmp_path / "e.ckpt") as loaded:
        assert loaded.network.get_config()["running_bias"] is True
    with pytest.raises(TypeError, match="running_bias"):
        Engine(running_bias=1)  # type: ignore[arg-type]


def test_an_old_field_engine_file_rebuilds_without_the_running_bias(tmp_path: Path) -> None:
    # A field-model engine written before running_bias existed (it behaved as
    # running_bias=False) loads as that model, though the default is now on.
    with Engine(features=HashedFeatureEncoder(n_buckets=64), running_bias=False) as engine:
        engine.save(tmp_path / "f.ckpt")
    _drop_running_bias(tmp_path / "f.ckpt")
    with Engine.load(tmp_path / "f.ckpt") as loaded:
        assert loaded.network.get_config()["running_bias"] is False
    with Engine(features=HashedFeatureEncoder(n_buckets=64)) as fresh:
        assert fresh.network.get_config()["running_bias"] is True
