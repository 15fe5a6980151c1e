"""The native encoders (livelearn._core) against the pure-Python reference.

Every encoding method of both encoders, on random and adversarial strings and
random interactions and configs, gives bit-identical arrays on both paths; the
native BLAKE2b-64 equals hashlib's; values the reference refuses are refused the
same way (the native path hands them to the reference)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livelearn import _core
from livelearn.features import (
    FeatureEncoder,
    HashedFeatureEncoder,
    encoder_from_config,
    reference_encoder,
)
from livelearn.hashing import HASH_NAME, stable_hash64
from livelearn.interaction import InteractionData, InvalidInteraction

ADVERSARIAL = [
    "",
    " ",
    "a",
    "x" * 127,
    "x" * 128,
    "x" * 129,
    "y" * 256,
    "z" * 100_000,
    "é",
    "日本語",
    "🎉👩‍👩‍👧",
    "\x00nul\x00",
    "\x1f",
    "a=b\x1fc=d",
    "\U0010ffff",
]


def _hashlib(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_native_hash_equals_hashlib(text: str) -> None:
    assert _core.stable_hash64(text) == stable_hash64(text) == _hashlib(text.encode())
    assert _core.stable_hash64(text.encode()) == _hashlib(text.encode())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=600).map(lambda b: b.decode("latin-1")))
def test_native_hash_random_strings(text: str) -> None:
    assert _core.stable_hash64(text) == stable_hash64(text)


def test_surrogates_refused_as_in_python() -> None:
    with pytest.raises(UnicodeEncodeError):
        stable_hash64("\ud800")
    with pytest.raises(UnicodeEncodeError):
        _core.stable_hash64("\ud800")
    with pytest.raises(TypeError):
        _core.stable_hash64(7)  # type: ignore[arg-type]


# -- random interactions and configs ----------------------------------------------------

_text = st.sampled_from(ADVERSARIAL[1:7] + ADVERSARIAL[8:]) | st.text(min_size=1, max_size=12)
_action = _text.filter(lambda s: s.strip() != "" and len(s) <= 256)
_user = _text.filter(lambda s: len(s) <= 1024) | st.integers(-(2**70), 2**70) | st.integers(-5, 5)
_key = st.sampled_from(["page", "item", "pos", "price", "é", "flag"]) | st.text(
    min_size=1, max_size=6
)
_value = (
    st.none()
    | st.booleans()
    | st.integers(-(2**66), 2**66)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(-1e6, 1e6).map(lambda f: float(round(f)))
    | st.text(max_size=10)
)
_interaction = st.builds(
    InteractionData,
    _action,
    st.floats(0.0, 4.1e9) | st.integers(0, 4_000_000_000),
    _user,
    st.none() | st.dictionaries(_key, _value, max_size=6),
)
_fields = st.sampled_from(["action", "user", "context:page", "context:item", "context:pos"])
_crosses = st.lists(st.tuples(_fields, _fields).filter(lambda c: c[0] != c[1]), max_size=3).map(
    lambda cs: list({tuple(sorted(c)): c for c in cs}.values())
)
_config = st.fixed_dictionaries(
    {
        "n_buckets": st.sampled_from([1, 2, 7, 1024, 2**18]),
        "action": st.booleans(),
        "user": st.booleans(),
        "context_keys": st.none()
        | st.lists(st.sampled_from(["page", "item", "pos", "é"]), unique=True),
        "numeric_keys": st.lists(st.sampled_from(["price", "score"]), unique=True),
        "crosses": _crosses,
        "time_features": st.booleans(),
        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata", "America/St_Johns"]),
        "bias": st.booleans(),
    }
)


def _same(a: Any, b: Any) -> None:
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
        return
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except (InvalidInteraction, TypeError, ValueError, UnicodeEncodeError) as exc:
        return exc


def _same_outcome(native: Any, reference: Any) -> None:
    if isinstance(reference, BaseException):
        assert type(native) is type(reference) and str(native) == str(reference)
    else:
        _same(native, reference)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_config, st.lists(_interaction, min_size=1, max_size=6))
def test_hashed_native_equals_reference(config: dict[str, Any], xs: list[InteractionData]) -> None:
    try:
        enc = HashedFeatureEncoder(**config)
    except ValueError:
        return  # a config the constructor refuses (no features, numeric key also listed)
    ref = reference_encoder(enc)
    assert ref._native is None and enc._native is not None
    for method in ("encode_sparse_many", "encode_fields_many", "encode_many"):
        _same_outcome(_outcome(getattr(enc, method), xs), _outcome(getattr(ref, method), xs))
    for it in xs:
        _same_outcome(_outcome(enc.encode_sparse, it), _outcome(ref.encode_sparse, it))
        _same_outcome(
            _outcome(enc.encode_fields_many, [it]), _outcome(ref.encode_fields_many, [it])
        )


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata"]),
    st.booleans(),
    st.lists(_interaction, min_size=1, max_size=6),
)
def test_dense_native_equals_reference(zone: str, action: bool, xs: list[InteractionData]) -> None:
    enc = FeatureEncoder(zone, action)
    ref = reference_encoder(enc)
    _same(enc.encode_many(xs), ref.encode_many(xs))
    _same(enc.encode_sparse_many(xs), ref.encode_sparse_many(xs))
    for it in xs:
        _same(enc.encode(it), ref.encode(it))


def test_batch_of_1000_releases_the_gil_and_matches() -> None:
    from livelearn.datasets import simulate_interactions

    xs = simulate_interactions(1000, seed=3).interactions
    for enc in (HashedFeatureEncoder(), HashedFeatureEncoder(numeric_keys=["position"])):
        assert enc._native is not None  # the native path answers (no reference fallback)
        assert enc._native.encode_fields_many(xs) is not None
        assert enc._native.encode_sparse(xs[0]) is not None
        ref = reference_encoder(enc)
        _same(enc.encode_fields_many(xs), ref.encode_fields_many(xs))
        _same(enc.encode_sparse_many(xs), ref.encode_sparse_many(xs))
    _same(FeatureEncoder().encode_many(xs), reference_encoder(FeatureEncoder()).encode_many(xs))


def test_values_for_the_reference_are_refused_identically() -> None:
    enc = HashedFeatureEncoder(numeric_keys=["price"], n_buckets=64)
    bad = InteractionData("a", 0.0, "u", {"price": "cheap"})
    with pytest.raises(InvalidInteraction, match="numeric key must be a number"):
        enc.encode_sparse(bad)
    with pytest.raises(InvalidInteraction, match="numeric key must be a number"):
        enc.encode_fields_many([bad])
    big = InteractionData("a", 0.0, "u", {"price": 10**40})
    with pytest.raises(InvalidInteraction, match="out of float32 range"):
        enc.encode_sparse_many([big])
    # Not an InteractionData at all: the reference's own error.
    with pytest.raises(AttributeError):
        enc.encode_sparse_many([object()])  # type: ignore[list-item]


def test_huge_int_user_ids_match() -> None:
    users = [10**30, -(10**30), 2**63, -(2**63) - 1, 10**5000]
    xs = [InteractionData("a", 1.0, u, {"n": 10**25, "f": 1e300}) for u in users]
    for enc in (
        HashedFeatureEncoder(n_buckets=1 << 20, context_keys=["n", "f"]),
        HashedFeatureEncoder(crosses=[("user", "context:f")]),
        FeatureEncoder(),
    ):
        ref = reference_encoder(enc)
        if isinstance(enc, FeatureEncoder):
            _same(enc.encode_many(xs), ref.encode_many(xs))
        else:
            _same(enc.encode_fields_many(xs), ref.encode_fields_many(xs))
            _same(enc.encode_sparse_many(xs), ref.encode_sparse_many(xs))


# -- the hash in configs and checkpoints ------------------------------------------------


def test_configs_record_the_hash() -> None:
    assert HASH_NAME == _core.HASH_NAME == "blake2b-64"
    for enc in (FeatureEncoder(), HashedFeatureEncoder(n_buckets=8)):
        cfg = enc.get_config()
        assert cfg["hash"] == "blake2b-64"
        assert encoder_from_config(json.loads(json.dumps(cfg))).get_config() == cfg
        old = {k: v for k, v in cfg.items() if k != "hash"}  # written before the field
        assert encoder_from_config(old).get_config() == cfg
        with pytest.raises(ValueError, match="hashes features differently"):
            encoder_from_config({**cfg, "hash": "murmur3"})


def test_checkpoint_with_another_hash_is_refused(tmp_path: Any) -> None:
    from livelearn import Engine
    from livelearn.checkpoint_format import write
    from livelearn.errors import CheckpointError
    from livelearn.persistence import read_checkpoint

    path = tmp_path / "m.safetensors"
    with Engine(features=HashedFeatureEncoder(n_buckets=16), log_every=0) as engine:
        engine.save(path)
    ckpt = read_checkpoint(path)
    assert ckpt.meta["features"]["hash"] == "blake2b-64"
    Engine.load(path).close()
    meta = dict(ckpt.meta)
    meta["features"] = {**meta["features"], "hash": "xxh64"}
    write(path, "engine", meta, ckpt.tensors)
    with pytest.raises(CheckpointError, match="hashes features differently"):
        Engine.load(path)
