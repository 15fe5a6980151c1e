"""Tests for livelearn.interaction."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle
from collections import OrderedDict
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livelearn.interaction import (
    MAX_TIMESTAMP,
    InteractionData,
    InvalidInteraction,
)


def make(**overrides: Any) -> InteractionData:
    kwargs: dict[str, Any] = {"action_type": "click", "timestamp": 1.7e9, "user_id": "u1"}
    kwargs.update(overrides)
    return InteractionData(**kwargs)


# -- InvalidInteraction --------------------------------------------------------------


def test_invalid_interaction_message_and_attributes() -> None:
    err = InvalidInteraction("timestamp", "must be finite, got nan")
    assert isinstance(err, ValueError)
    assert str(err) == "invalid interaction: timestamp: must be finite, got nan"
    assert (err.field, err.reason) == ("timestamp", "must be finite, got nan")
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.field, clone.reason, str(clone)) == (err.field, err.reason, str(err))


def test_nan_timestamp_message() -> None:
    with pytest.raises(InvalidInteraction) as info:
        make(timestamp=float("nan"))
    assert str(info.value) == "invalid interaction: timestamp: must be finite, got nan"


# -- rejections -------------------------------------------------------------------------

REJECTIONS: list[tuple[str, dict[str, Any], str]] = [
    # action_type
    ("empty action", {"action_type": ""}, "action_type"),
    ("blank action", {"action_type": " \t\n"}, "action_type"),
    ("long action", {"action_type": "a" * 257}, "action_type"),
    ("surrogate action", {"action_type": "a\ud800"}, "action_type"),
    ("int action", {"action_type": 3}, "action_type"),
    ("bytes action", {"action_type": b"click"}, "action_type"),
    ("none action", {"action_type": None}, "action_type"),
    # timestamp
    ("nan", {"timestamp": float("nan")}, "timestamp"),
    ("inf", {"timestamp": float("inf")}, "timestamp"),
    ("-inf", {"timestamp": float("-inf")}, "timestamp"),
    ("negative", {"timestamp": -1.0}, "timestamp"),
    ("negative int", {"timestamp": -1}, "timestamp"),
    ("2100", {"timestamp": MAX_TIMESTAMP}, "timestamp"),
    ("milliseconds", {"timestamp": 1_700_000_000_000}, "timestamp"),
    ("huge int", {"timestamp": 10**400}, "timestamp"),
    ("bool timestamp", {"timestamp": True}, "timestamp"),
    ("str timestamp", {"timestamp": "1700000000"}, "timestamp"),
    ("none timestamp", {"timestamp": None}, "timestamp"),
    ("date timestamp", {"timestamp": date(2024, 1, 1)}, "timestamp"),
    ("naive datetime", {"timestamp": datetime(2024, 1, 1)}, "timestamp"),
    ("datetime64", {"timestamp": np.datetime64("2024-01-01")}, "timestamp"),
    ("numpy nan", {"timestamp": np.float32("nan")}, "timestamp"),
    ("complex", {"timestamp": 1 + 0j}, "timestamp"),
    (
        "pre-1970 datetime",
        {"timestamp": datetime(1969, 12, 31, tzinfo=timezone.utc)},
        "timestamp",
    ),
    # user_id
    ("empty user", {"user_id": ""}, "user_id"),
    ("long user", {"user_id": "u" * 1025}, "user_id"),
    ("surrogate user", {"user_id": "\udfff"}, "user_id"),
    ("bool user", {"user_id": True}, "user_id"),
    ("float user", {"user_id": 1.0}, "user_id"),
    ("none user", {"user_id": None}, "user_id"),
    ("bytes user", {"user_id": b"u1"}, "user_id"),
    # context
    ("list context", {"context": [("a", 1)]}, "context"),
    ("str context", {"context": "page=home"}, "context"),
    ("too many keys", {"context": {f"k{i}": i for i in range(257)}}, "context"),
    ("int key", {"context": {1: "a"}}, "context[1]"),
    ("empty key", {"context": {"": 1}}, "context['']"),
    ("long key", {"context": {"k" * 257: 1}}, "context['" + "k" * 56 + "..."),
    ("surrogate key", {"context": {"\ud800": 1}}, "context['\\ud800']"),
    ("nested dict", {"context": {"a": {"b": 1}}}, "context['a']"),
    ("nested list", {"context": {"a": [1, 2]}}, "context['a']"),
    ("tuple value", {"context": {"a": (1,)}}, "context['a']"),
    ("object value", {"context": {"a": object()}}, "context['a']"),
    ("bytes value", {"context": {"a": b"x"}}, "context['a']"),
    ("nan value", {"context": {"a": float("nan")}}, "context['a']"),
    ("inf value", {"context": {"a": float("inf")}}, "context['a']"),
    ("numpy inf value", {"context": {"a": np.float64("inf")}}, "context['a']"),
    ("long str value", {"context": {"a": "x" * 4097}}, "context['a']"),
    ("surrogate value", {"context": {"a": "\ud800"}}, "context['a']"),
    # label
    ("nan label", {"label": float("nan")}, "label"),
    ("inf label", {"label": float("inf")}, "label"),
    ("huge int label", {"label": 10**400}, "label"),
    ("str label", {"label": "1.0"}, "label"),
    ("bytes label", {"label": b"1"}, "label"),
    ("empty label", {"label": []}, "label"),
    ("long label", {"label": [0.0] * 1025}, "label"),
    ("nan in label", {"label": [1.0, float("nan")]}, "label"),
    ("str in label", {"label": [1.0, "2"]}, "label"),
    ("nested label", {"label": [[1.0]]}, "label"),
    ("2-D array label", {"label": np.zeros((2, 2))}, "label"),
    ("str array label", {"label": np.array(["a"])}, "label"),
    ("dict label", {"label": {"a": 1.0}}, "label"),
    ("complex label", {"label": 1j}, "label"),
]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [(o, f) for _, o, f in REJECTIONS],
    ids=[name for name, _, _ in REJECTIONS],
)
def test_rejections_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInteraction) as info:
        make(**overrides)
    assert info.value.field.startswith(field)
    assert str(info.value).startswith(f"invalid interaction: {info.value.field}: ")
    assert info.value.reason


def test_cyclic_context_rejected() -> None:
    ctx: dict[str, Any] = {}
    ctx["self"] = ctx
    with pytest.raises(InvalidInteraction) as info:
        make(context=ctx)
    assert info.value.field == "context['self']"


def test_millisecond_hint() -> None:
    with pytest.raises(InvalidInteraction, match="milliseconds"):
        make(timestamp=1.7e12)


# -- acceptance and normalisation ----------------------------------------------------------


def test_limits_are_inclusive() -> None:
    it = make(
        action_type="a" * 256,
        user_id="u" * 1024,
        context={"k" * 256: "v" * 4096, **{f"k{i}": i for i in range(255)}},
        label=[0.0] * 1024,
        timestamp=math.nextafter(MAX_TIMESTAMP, 0.0),
    )
    assert len(it.context or {}) == 256


def test_stores_normalised_types() -> None:
    it = InteractionData("click", 1_700_000_000, 42, {"a": 1}, 1)
    assert type(it.timestamp) is float and it.timestamp == 1.7e9
    assert it.user_id == 42 and type(it.user_id) is int
    assert type(it.label) is float and it.label == 1.0
    assert make(label=True).label == 1.0
    assert make(label=(1, 2.5)).label == (1.0, 2.5)
    assert make(label=[1, 2]).label == (1.0, 2.0)
    assert make(label=range(3)).label == (0.0, 1.0, 2.0)
    assert make(label=10**20).label == 1e20
    assert make(user_id=10**5000).user_id == 10**5000
    assert make(action_type=" click ").action_type == " click "  # kept as given
    assert make(action_type="kauf📦").action_type == "kauf📦"


def test_numpy_scalars_accepted() -> None:
    it = InteractionData(
        "click",
        np.float32(1.5),
        np.int64(7),
        {"f": np.float64(0.25), "i": np.int16(3), "b": np.bool_(True), "s": np.str_("x")},
        np.float16(0.5),
    )
    assert it.timestamp == 1.5 and type(it.timestamp) is float
    assert it.user_id == 7 and type(it.user_id) is int
    assert it.context == {"f": 0.25, "i": 3, "b": True, "s": "x"}
    assert [type(v) for v in (it.context or {}).values()] == [float, int, bool, str]
    assert it.label == 0.5 and type(it.label) is float
    assert make(timestamp=np.int64(100)).timestamp == 100.0
    assert make(timestamp=np.float64(2.5)).timestamp == 2.5
    assert make(label=np.array([1, 0], dtype=np.int8)).label == (1.0, 0.0)
    assert make(label=np.array([True, False])).label == (1.0, 0.0)
    assert make(label=np.array(3.0)).label == 3.0
    assert make(label=[np.float32(1.5), np.int32(2)]).label == (1.5, 2.0)


def test_aware_datetimes_convert_exactly() -> None:
    utc = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    assert make(timestamp=utc).timestamp == 1704110400.123456
    tokyo = datetime(2024, 1, 1, 21, 0, 0, 123456, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert make(timestamp=tokyo).timestamp == 1704110400.123456
    fixed = datetime(2024, 1, 1, 7, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    assert make(timestamp=fixed).timestamp == 1704110400.123456
    # DST: 2024-03-31 03:30 CEST is 01:30 UTC.
    berlin = datetime(2024, 3, 31, 3, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert (
        make(timestamp=berlin).timestamp
        == datetime(2024, 3, 31, 1, 30, tzinfo=timezone.utc).timestamp()
    )


def test_naive_datetime_rejected_with_hint() -> None:
    with pytest.raises(InvalidInteraction) as info:
        make(timestamp=datetime(2024, 1, 1))
    assert info.value.field == "timestamp"
    assert "tzinfo" in info.value.reason


def test_context_is_an_isolated_immutable_copy() -> None:
    ctx: dict[str, Any] = {"page": "home", "pos": 3}
    it = make(context=ctx)
    ctx["page"] = "cart"
    ctx["new"] = 1
    assert it.context == {"page": "home", "pos": 3}
    assert isinstance(it.context, MappingProxyType)
    with pytest.raises(TypeError):
        it.context["page"] = "x"  # type: ignore[index]
    assert make(context=OrderedDict(a=1)).context == {"a": 1}
    assert make(context=MappingProxyType({"a": None})).context == {"a": None}
    assert make(context={}).context == {}


def test_frozen() -> None:
    it = make()
    for field in ("action_type", "timestamp", "user_id", "context", "label"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(it, field, None)
    with pytest.raises((AttributeError, TypeError)):
        it.extra = 1  # type: ignore[attr-defined]
    assert not hasattr(it, "__dict__")


def test_positional_api_and_equality_hash_pickle() -> None:
    a = InteractionData("click", 5.0, "u", {"k": 1}, [1.0, 2.0])
    b = InteractionData(
        action_type="click", timestamp=5, user_id="u", context={"k": 1}, label=(1, 2)
    )
    assert a == b and hash(a) == hash(b)
    assert a != make()
    assert pickle.loads(pickle.dumps(a)) == a
    assert copy.deepcopy(a) == a
    assert dataclasses.replace(a, label=3).label == 3.0
    with pytest.raises(InvalidInteraction):
        dataclasses.replace(a, timestamp=-1)


def test_repr_is_readable() -> None:
    it = InteractionData("click", 5.0, "u", {"k": 1}, 1.0)
    assert repr(it) == (
        "InteractionData(action_type='click', timestamp=5.0, user_id='u', "
        "context={'k': 1}, label=1.0)"
    )
    assert (
        repr(make()) == "InteractionData(action_type='click', timestamp=1700000000.0, user_id='u1')"
    )


def test_dict_round_trip_and_json() -> None:
    it = InteractionData(
        "buy", 1.25, 7, {"a": "x", "b": 2, "c": 0.5, "d": True, "e": None}, (1.0, 0.0)
    )
    data = it.to_dict()
    assert data == {
        "action_type": "buy",
        "timestamp": 1.25,
        "user_id": 7,
        "context": {"a": "x", "b": 2, "c": 0.5, "d": True, "e": None},
        "label": [1.0, 0.0],
    }
    assert InteractionData.from_dict(data) == it
    assert InteractionData.from_dict(json.loads(json.dumps(data))) == it
    assert InteractionData.from_dict({"action_type": "a", "timestamp": 0, "user_id": "u"}) == (
        InteractionData("a", 0.0, "u")
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"timestamp": 0, "user_id": "u"}, "action_type"),
        ({"action_type": "a", "user_id": "u"}, "timestamp"),
        ({"action_type": "a", "timestamp": 0, "user_id": "u", "user": 1}, "'user'"),
        ({"action_type": "a", "timestamp": "now", "user_id": "u"}, "timestamp"),
    ],
)
def test_from_dict_rejects(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInteraction) as info:
        InteractionData.from_dict(data)
    assert info.value.field == field


def test_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(InvalidInteraction):
        InteractionData.from_dict([("action_type", "a")])  # type: ignore[arg-type]


# -- hypothesis: junk in, InvalidInteraction or a valid object out ----------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.floats(min_value=0, max_value=5e9),
    st.text(max_size=300),
    st.binary(max_size=8),
    st.complex_numbers(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.timedeltas(),
    st.sampled_from(
        [
            np.float32(1.5),
            np.int64(-3),
            np.bool_(True),
            np.float64("nan"),
            np.array([1.0, 2.0]),
            np.zeros((2, 2)),
            object(),
        ]
    ),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=4),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(action_type=junk, timestamp=junk, user_id=junk, context=junk, label=junk)
def test_junk_only_raises_invalid_interaction(
    action_type: Any, timestamp: Any, user_id: Any, context: Any, label: Any
) -> None:
    try:
        it = InteractionData(action_type, timestamp, user_id, context, label)
    except InvalidInteraction as err:
        assert err.field and err.reason
        return
    assert isinstance(it.action_type, str) and it.action_type.strip()
    assert type(it.timestamp) is float and 0.0 <= it.timestamp < MAX_TIMESTAMP
    assert type(it.user_id) in (str, int)
    assert it.context is None or isinstance(it.context, MappingProxyType)
    assert it.label is None or type(it.label) in (float, tuple)
    assert InteractionData.from_dict(it.to_dict()) == it


@settings(max_examples=200, deadline=None)
@given(
    action_type=st.text(min_size=1, max_size=256).filter(lambda s: not s.isspace()),
    timestamp=st.floats(min_value=0, max_value=MAX_TIMESTAMP, exclude_max=True),
    user_id=st.one_of(st.text(min_size=1, max_size=50), st.integers()),
    context=st.none()
    | st.dictionaries(
        st.text(min_size=1, max_size=10),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.text(max_size=10),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        max_size=5,
    ),
    label=st.none()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=5),
)
def test_valid_values_round_trip(
    action_type: str, timestamp: float, user_id: str | int, context: Any, label: Any
) -> None:
    try:
        action_type.encode()
        user_id.encode() if isinstance(user_id, str) else None
        for key, value in (context or {}).items():
            key.encode()
            value.encode() if isinstance(value, str) else None
    except UnicodeEncodeError:
        return  # surrogates are covered by the rejection tests
    it = InteractionData(action_type, timestamp, user_id, context, label)
    assert InteractionData.from_dict(json.loads(json.dumps(it.to_dict()))) == it
