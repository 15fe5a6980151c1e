"""livelearn.dict_features (hashing feature dicts) and the adapters' shared helpers."""

from __future__ import annotations

import doctest
import pickle
import random

import pytest

import livelearn._adapters
import livelearn.dict_features
from livelearn.dict_features import DictHasher


def test_dict_hasher_layout() -> None:
    hasher = DictHasher(n_features=2**20)
    x = {"price": 2.5, "colour": "red", "missing": None, "nan": float("nan"), "flag": True}
    indices, values = hasher.encode_one(x)
    expected = {
        hasher.column("price"): 2.5,
        hasher.column("colour", "red"): 1.0,
        hasher.column("flag"): 1.0,
    }
    assert dict(zip(indices.tolist(), values.tolist(), strict=True)) == expected
    assert indices.tolist() == sorted(indices.tolist())
    keys = list(x)
    random.Random(0).shuffle(keys)
    shuffled = hasher.encode_one({k: x[k] for k in keys})
    assert indices.tolist() == shuffled[0].tolist() and values.tolist() == shuffled[1].tolist()
    # Collisions are summed; a one-column hasher puts everything together.
    assert DictHasher(1).encode_one({"a": 1.0, "b": 2.0, "c": "x"})[1].tolist() == [4.0]
    with pytest.raises(ValueError, match="not finite"):
        hasher.encode_one({"a": float("inf")})
    with pytest.raises(TypeError, match="unsupported value type"):
        hasher.encode_one({"a": [1, 2]})
    assert pickle.loads(pickle.dumps(hasher)).encode_one(x)[0].tolist() == indices.tolist()


def test_docstring_examples() -> None:
    for module in (livelearn.dict_features, livelearn._adapters):
        assert doctest.testmod(module).failed == 0
