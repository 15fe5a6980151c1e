"""Bad input, fuzzed with hypothesis: ``InteractionData`` fields through engines, and
arrays of every dtype, shape and layout through ``Network``.

The contract checked for every generated case:

* ``InteractionData(...)`` either builds a valid object or raises
  :class:`InvalidInteraction`;
* ``Engine.train_step(x)`` returns a Future that resolves (bounded wait): trained,
  or rejected by the network's guard (a non-finite value, a bce target outside
  [0, 1]), or raising :class:`InvalidInteraction` -- and after a rejection the model's bytes are
  unchanged (only the ``rejected_steps`` counter moves for a guard rejection);
  ``Engine.predict`` returns finite values or raises ``InvalidInteraction``;
* a ``Network`` method either works (state finite, counters consistent with the
  rows trained and rejected) or raises ``TypeError``/``ValueError`` (``StepRejected``
  is a ``ValueError``) with the state's bytes unchanged.

Anything else -- another exception type, a hang, a crash, a changed model -- fails.

Python ints beyond the float range (``10**400``) are among the scalars: as a target
they are rejected like an infinite float, as an apply_delta weight they raise
``ValueError`` (``test_reliability_fuzz.py`` pins both, and the hyperparameters).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any

import numpy as np
from _scenarios import TARGETS, quiet_livelearn, state_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livelearn import (
    Engine,
    HashedFeatureEncoder,
    InteractionData,
    InvalidInteraction,
    Network,
    StepRejected,
    StepStatus,
)
from livelearn.interaction import MAX_TIMESTAMP

WAIT = 30.0  # seconds: bounds a hang, never a performance expectation
MEGABYTE = "m" * 1_000_000


def fuzz_settings(max_examples: int, database: bool = True) -> settings:
    extra: dict[str, Any] = {} if database else {"database": None}
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        **extra,
    )


# ----------------------------------------------------------------------------- interactions
class _Mapping(Mapping[str, Any]):
    """A user-defined read-only mapping (not a dict)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _cyclic() -> dict[str, Any]:
    d: dict[str, Any] = {"page": "home"}
    d["self"] = d
    return d


def _deep() -> dict[str, Any]:
    d: dict[str, Any] = {"leaf": 1}
    for _ in range(200):
        d = {"nested": d}
    return d


_SPECIAL_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\t\n",
        "\x00",
        "\ud800",  # lone surrogates: not UTF-8 encodable
        "click\udfff",
        "é",
        "数据",
        "\u202e",
        "a" * 256,
        "a" * 257,
        "u" * 1024,
        "u" * 1025,
        "v" * 4096,
        "v" * 4097,
        MEGABYTE,
    ]
)
_JUNK = st.sampled_from(
    [
        None,
        object(),
        b"click",
        bytearray(b"x"),
        Ellipsis,
        print,
        int,
        [1, 2],
        (1.0,),
        {1, 2},
        1 + 2j,
        Decimal("NaN"),
        Decimal("1.5"),
        np.array([1.0, np.nan]),
        np.zeros((2, 2)),
        np.array(["a"]),
    ]
)
_NUMBERS = st.one_of(
    st.floats(),
    st.floats(min_value=0, max_value=MAX_TIMESTAMP),
    st.integers(),
    st.sampled_from(
        [
            math.nan,
            math.inf,
            -math.inf,
            1e300,
            -1e300,
            -1.0,
            -0.0,
            5e-324,
            MAX_TIMESTAMP,
            math.nextafter(MAX_TIMESTAMP, 0.0),
            3.4e38,
            3.5e38,
            2**53 + 1,
            10**400,
            -(10**400),
            True,
            False,
            np.float32(np.nan),
            np.float64(1.7e9),
            np.int64(-5),
            np.uint64(2**64 - 1),
            np.longdouble("1e4000"),
            np.float16(1.5),
            Fraction(10**400, 3),
            Fraction(-1, 3),
        ]
    ),
)
_DATES = st.sampled_from(
    [
        datetime(2024, 1, 1, tzinfo=timezone.utc),
        datetime(2024, 1, 1),  # naive: rejected
        datetime(1, 1, 1, tzinfo=timezone.utc),
        datetime(9999, 12, 31, tzinfo=timezone(timedelta(hours=-23))),
        datetime(1969, 12, 31, 23, 59, tzinfo=timezone.utc),
    ]
)
_CONTEXT_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    _SPECIAL_TEXT,
    _NUMBERS,
    _JUNK,
)
_CONTEXTS = st.one_of(
    st.none(),
    st.dictionaries(
        st.one_of(st.sampled_from(["x", "page", "position"]), st.text(max_size=6), _SPECIAL_TEXT),
        _CONTEXT_VALUES,
        max_size=5,
    ),
    st.builds(_cyclic),
    st.builds(_deep),
    st.builds(lambda: {str(i): i for i in range(257)}),
    st.builds(lambda: {1: "a"}),
    st.builds(lambda: MappingProxyType({"x": 2.0})),
    st.builds(lambda: _Mapping({"x": 1.0, "page": "home"})),
    st.builds(lambda: {"x": MEGABYTE}),
    st.builds(lambda: {"\ud800": 1}),
    st.lists(st.integers(), max_size=3),
    _JUNK,
)
_LABELS = st.one_of(
    st.none(),
    st.sampled_from([0.0, 1.0, 0.5]),
    _NUMBERS,
    st.lists(st.floats(), min_size=0, max_size=4),
    st.lists(st.sampled_from([0.0, 1.0, 3.4e38]), min_size=1, max_size=3),
    st.sampled_from(
        [
            [1.0, 0.0],
            (0.0, 1.0),
            np.array([1.0, 0.0]),
            np.array([0.5]),
            np.array(1.0),
            np.array([[1.0, 0.0]]),
            np.array([1.0, np.inf]),
            np.array([True, False]),
            np.array(["1", "0"]),
            [[1.0], [0.0]],
            [1.0] * 1025,
            "1",
            b"1",
        ]
    ),
    _JUNK,
)


_GOOD = {
    "action_type": st.sampled_from(["click", "skip", "view"]),
    "timestamp": st.one_of(
        st.floats(min_value=0, max_value=MAX_TIMESTAMP, exclude_max=True),
        st.integers(0, 4_102_444_799),
    ),
    "user_id": st.one_of(st.text(min_size=1, max_size=8).filter(str.isascii), st.integers()),
    "context": st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["x", "page", "position"]),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(-(10**6), 10**6),
                st.floats(-1e6, 1e6),
                st.sampled_from(["home", "cart"]),
            ),
            max_size=3,
        ),
    ),
    "label": st.one_of(
        st.none(), st.floats(0, 1), st.lists(st.floats(0, 1), min_size=1, max_size=2)
    ),
}
_BAD = {
    "action_type": st.one_of(st.text(max_size=12), _SPECIAL_TEXT, _JUNK, st.integers()),
    "timestamp": st.one_of(_NUMBERS, _DATES, st.text(max_size=4), _JUNK),
    "user_id": st.one_of(
        st.text(max_size=12), st.sampled_from([10**5000]), _SPECIAL_TEXT, _NUMBERS, _JUNK
    ),
    "context": _CONTEXTS,
    "label": _LABELS,
}


@st.composite
def interaction_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Constructor arguments: each field plausible, or (one time in four) broken."""
    return {
        name: draw(_BAD[name] if draw(st.integers(0, 3)) == 0 else _GOOD[name])
        for name in ("action_type", "timestamp", "user_id", "context", "label")
    }


def fuzz_engines() -> tuple[Engine, Engine]:
    """A dense single-output engine and a hashed two-output one (context numbers
    reach the network through ``numeric_keys``), both started."""
    dense = Engine(targets=TARGETS, log_every=0, history_size=8, hidden_layers=(6,))
    hashed = Engine(
        features=HashedFeatureEncoder(n_buckets=64, numeric_keys=("x",)),
        targets={"click": [1.0, 0.0], "skip": [0.0, 1.0]},
        n_outputs=2,
        optimizer="adam",
        loss="mse",
        log_every=0,
        history_size=8,
        hidden_layers=(6,),
    )
    return dense.initialize(), hashed.initialize()


def check_interaction(engines: tuple[Engine, ...], fields: dict[str, Any], via_dict: bool) -> str:
    """Build, train, predict; assert the contract. Returns the outcome's name."""
    try:
        if via_dict:
            built: object = InteractionData.from_dict(fields)
        else:
            built = InteractionData(**fields)
    except InvalidInteraction as exc:
        assert exc.field and exc.reason, "an InvalidInteraction must name a field and a reason"
        built = fields  # a raw dict: what a caller might pass by mistake
    outcomes = []
    for engine in engines:
        before = state_bytes(engine.network)
        steps, rejected = engine.network.steps, engine.network.rejected_steps
        history = len(engine.history)
        future = engine.train_step(built)  # type: ignore[arg-type]
        exc = future.exception(timeout=WAIT)  # a hang raises TimeoutError: a failure
        after = state_bytes(engine.network)
        if exc is not None:
            assert isinstance(exc, InvalidInteraction), f"undocumented {exc!r}"
            assert after == before, "an invalid interaction changed the model"
            assert len(engine.history) == history
            outcomes.append("invalid")
        else:
            result = future.result(timeout=0)
            if result.status is StepStatus.TRAINED:
                assert engine.network.steps == steps + 1 == result.step
                assert result.loss is not None and math.isfinite(result.loss)
                outcomes.append("trained")
            else:
                assert result.status is StepStatus.REJECTED, result
                assert result.reason and result.reason.startswith("rejected by the network")
                assert engine.network.rejected_steps == rejected + 1
                del before["counters.rejected_steps"], after["counters.rejected_steps"]
                assert after == before, "a rejected step changed the model"
                outcomes.append("rejected")
        if isinstance(built, InteractionData):
            try:
                out = engine.predict(built)
            except InvalidInteraction:
                pass
            else:
                assert np.isfinite(out).all(), f"predict gave {out!r}"
        else:
            try:
                engine.predict(built)  # type: ignore[arg-type]
            except InvalidInteraction:
                pass
            else:
                raise AssertionError("predict accepted something that is not an interaction")
        s = engine.stats()
        assert s.steps + s.skipped + s.rejected + s.failed + s.pending == s.interactions
    return "/".join(outcomes)


def run_interaction_fuzz(max_examples: int, database: bool = True) -> Counter[str]:
    """Run the interaction fuzz; returns how often each outcome occurred."""
    seen: Counter[str] = Counter()
    dense, hashed = fuzz_engines()
    try:
        with quiet_livelearn():

            @fuzz_settings(max_examples, database)
            @given(fields=interaction_fields(), via_dict=st.booleans())
            def case(fields: dict[str, Any], via_dict: bool) -> None:
                seen[check_interaction((dense, hashed), fields, via_dict)] += 1

            case()
    finally:
        dense.close()
        hashed.close()
    return seen


# ----------------------------------------------------------------------------- arrays
N_IN = 3
_DTYPES = [
    "float32",
    "float32",
    "float32",
    "float64",
    "float16",
    "longdouble",
    "int8",
    "int32",
    "int64",
    "uint8",
    "uint64",
    "bool",
    "complex64",
    "object",
    "U3",
    "S3",
    "M8[s]",
    "m8[s]",
]
_LAYOUTS = [
    "C",
    "C",
    "F",
    "strided",
    "reversed",
    "transposed",
    "byteswapped",
    "readonly",
    "broadcast",
    "unaligned",
    "list",
]
_FILLS = [
    "normal",
    "normal",
    "normal",
    "nan",
    "inf",
    "-inf",
    "huge",
    "f32max",
    "f64huge",
    "zeros",
    "subnormal",
]
_SCALARS = [
    0.5, -1.0, 1.0, 0.0, math.nan, math.inf, 1e300, True, 3, 2**40, 10**400, -(10**400),
    np.float64(2.0),
]  # fmt: skip
_NOT_ARRAYS = [None, "abc", {"a": 1}, object(), [[1.0, 2.0], [1.0]], [], ()]


def _mutate_shape(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    if draw(st.integers(0, 9)) < 8:
        return shape
    kind = draw(st.sampled_from(["drop", "add", "bump", "zero", "scalar"]))
    if kind == "drop" and shape:
        return shape[:-1]
    if kind == "add":
        return (*shape, 1)
    if kind == "bump" and shape:
        i = draw(st.integers(0, len(shape) - 1))
        return tuple(max(0, s + draw(st.sampled_from([-1, 1]))) if j == i else s
                     for j, s in enumerate(shape))  # fmt: skip
    if kind == "zero" and shape:
        return (0, *shape[1:])
    return ()


def build_array(
    shape: tuple[int, ...], dtype: str, layout: str, fill: str, seed: int, integer: bool, high: int
) -> Any:
    """A deterministic array of this shape, dtype, memory layout and content."""
    rng = np.random.default_rng(seed)
    if integer:
        drawn: Any = rng.integers(0, max(1, high), size=shape)
    else:
        drawn = rng.uniform(-2.0, 2.0, size=shape)
    base = np.array(drawn, dtype=np.float64).reshape(shape)  # 0-d stays an array
    if base.size:
        flat = base.reshape(-1)
        k = int(rng.integers(0, flat.size))
        special = {
            "nan": math.nan,
            "inf": math.inf,
            "-inf": -math.inf,
            "huge": 1e30,
            "f32max": 3.4028234e38,
            "f64huge": 1e300,
            "subnormal": 1e-45,
        }
        if fill == "zeros":
            flat[:] = 0.0
        elif fill in special:
            flat[k] = special[fill]
    with np.errstate(all="ignore"):
        # nan_to_num turns a 0-d array into a scalar: make it an array again
        clean = np.array(np.nan_to_num(base, posinf=2**62, neginf=-(2**62))).reshape(shape)
        if dtype in ("U3", "S3"):
            arr: np.ndarray[Any, Any] = base.astype(str).astype(dtype)
        elif dtype in ("M8[s]", "m8[s]"):
            arr = clean.astype(np.int64).astype(dtype)
        elif dtype == "object" or np.dtype(dtype).kind in "iub":
            arr = clean.astype(dtype)
        else:
            arr = base.astype(dtype)
    if layout == "F":
        return np.asfortranarray(arr)
    if layout == "strided" and arr.ndim:
        return np.repeat(arr, 2, axis=0)[::2]
    if layout == "reversed" and arr.ndim:
        return arr[::-1].copy()[::-1]
    if layout == "transposed":
        return np.ascontiguousarray(arr.T).T
    if layout == "byteswapped" and arr.dtype.kind in "fiuc" and arr.dtype.itemsize > 1:
        return arr.astype(arr.dtype.newbyteorder())
    if layout == "readonly":
        arr.setflags(write=False)
        return arr
    if layout == "broadcast" and arr.ndim and arr.shape[0]:
        return np.broadcast_to(arr[:1], arr.shape)
    if layout == "unaligned" and arr.dtype.kind in "fiu" and arr.dtype.itemsize > 1:
        buf = np.zeros(arr.nbytes + 1, dtype=np.uint8)
        view = np.frombuffer(buf, dtype=arr.dtype, count=arr.size, offset=1).reshape(arr.shape)
        view[...] = arr
        return view
    if layout == "list":
        return arr.tolist()
    return arr


@st.composite
def array_arg(
    draw: st.DrawFn, shape: tuple[int, ...], integer: bool = False, high: int = N_IN
) -> Any:
    """Something passed where an array of ``shape`` is expected."""
    form = draw(st.integers(0, 39))
    if form == 0:
        return draw(st.sampled_from(_NOT_ARRAYS))
    if form == 1:
        return draw(st.sampled_from(_SCALARS))
    if draw(st.integers(0, 3)):  # usually a dtype the method accepts
        dtype = draw(st.sampled_from(["int32", "int64"] if integer else ["float32", "float64"]))
    else:
        dtype = draw(st.sampled_from(_DTYPES))
    return build_array(
        _mutate_shape(draw, shape),
        dtype,
        draw(st.sampled_from(_LAYOUTS)),
        draw(st.sampled_from(_FILLS)),
        draw(st.integers(0, 2**32 - 1)),
        integer,
        high if draw(st.integers(0, 9)) else high + 5,
    )


@st.composite
def csr_args(draw: st.DrawFn) -> tuple[Any, Any, Any, int]:
    """(indptr, indices, values, rows): usually a valid CSR, often damaged."""
    rows = draw(st.integers(0, 4))
    lengths = [draw(st.integers(0, N_IN)) for _ in range(rows)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    indices_list = [np.sort(rng.choice(N_IN, size=k, replace=False)) for k in lengths]
    indptr: Any = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    indices: Any = np.concatenate(indices_list).astype(np.int32) if rows else np.zeros(0, np.int32)
    nnz = int(indptr[-1])
    damage = draw(st.integers(0, 9))
    if damage == 0:
        indptr = draw(array_arg((rows + 1,), integer=True, high=nnz + 1))
    elif damage == 1:
        indices = draw(array_arg((nnz,), integer=True))
    elif damage == 2 and nnz:
        indices = indices.copy()
        indices[draw(st.integers(0, nnz - 1))] = draw(
            st.sampled_from([-1, N_IN, 2**31 - 1, -(2**31)])
        )
    elif damage == 3 and nnz > 1:
        indices = indices.copy()
        indices[1] = indices[0]  # a duplicate in a row, or rows out of order
    elif damage == 4 and rows:
        indptr = indptr.copy()
        indptr[draw(st.integers(0, rows))] += draw(st.sampled_from([-1, 1, 2**40]))
    values = draw(array_arg((nnz,)))
    return indptr, indices, values, rows


@st.composite
def network_calls(draw: st.DrawFn, k: int) -> tuple[str, tuple[Any, ...]]:
    """A method of a ``Network(layers=[N_IN, ..., k])`` and its (fuzzed) arguments."""
    y_shape: tuple[int, ...] = () if k == 1 and draw(st.booleans()) else (k,)
    method = draw(
        st.sampled_from(
            [
                "train_step",
                "train_step_sparse",
                "train_batch",
                "train_batch_detailed",
                "train_batch_sparse",
                "train_batch_sparse_detailed",
                "predict",
                "predict_sparse",
                "set_state",
                "apply_delta",
            ]
        )
    )
    n = draw(st.integers(0, 5))
    Y_shape = (n,) if k == 1 and draw(st.booleans()) else (n, k)
    if method == "train_step":
        return method, (draw(array_arg((N_IN,))), draw(array_arg(y_shape)))
    if method == "train_step_sparse":
        nnz = draw(st.integers(0, N_IN))
        return method, (
            draw(array_arg((nnz,), integer=True)),
            draw(array_arg((nnz,))),
            draw(array_arg(y_shape)),
        )
    if method in ("train_batch", "train_batch_detailed"):
        return method, (draw(array_arg((n, N_IN))), draw(array_arg(Y_shape)))
    if method in ("train_batch_sparse", "train_batch_sparse_detailed"):
        indptr, indices, values, rows = draw(csr_args())
        Y_rows = (rows,) if k == 1 and draw(st.booleans()) else (rows, k)
        return method, (indptr, indices, values, draw(array_arg(Y_rows)))
    if method == "predict":
        shape = (N_IN,) if draw(st.booleans()) else (n, N_IN)
        return method, (draw(array_arg(shape)),)
    if method == "predict_sparse":
        indptr, indices, values, _ = draw(csr_args())
        return method, (indptr, indices, values)
    return method, ()  # set_state / apply_delta: arguments are built from the network


def _state_arg(draw: st.DrawFn, net: Network, method: str) -> tuple[Any, ...]:
    base: dict[str, Any] = dict(net.parameters() if method == "apply_delta" else net.get_state())
    if method == "apply_delta":
        base = {name: np.zeros_like(v) for name, v in base.items()}
    name = draw(st.sampled_from(sorted(base)))
    action = draw(st.integers(0, 5))
    if action == 0:
        del base[name]
    elif action == 1:
        base["unexpected"] = np.zeros(2, np.float32)
    elif action >= 2:
        base[name] = draw(array_arg(tuple(np.shape(base[name]))))
    arg: Any = base if draw(st.integers(0, 9)) else draw(st.sampled_from(_NOT_ARRAYS))
    if method == "apply_delta":
        weight = draw(
            st.sampled_from([1.0, 0.5, -1.0, 0.0, math.nan, math.inf, 1e30, 10**400, "1", None])
        )
        return arg, weight
    return (arg,)


def fuzz_networks() -> tuple[Network, Network]:
    return (
        Network(layers=[N_IN, 4, 1], seed=1),
        Network(layers=[N_IN, 4, 2], optimizer="adam", loss="mse", output="identity", seed=2),
    )


def check_network_call(net: Network, method: str, args: tuple[Any, ...]) -> str:
    """Call and assert the contract. Returns the outcome's name."""
    before = net.get_state()
    steps, rejected = net.steps, net.rejected_steps
    try:
        with np.errstate(all="ignore"):  # numpy may warn while converting, e.g. 1e300 -> inf
            out = getattr(net, method)(*args)
    except (TypeError, ValueError) as exc:
        after = net.get_state()
        moved = net.rejected_steps - rejected
        assert moved == (1 if isinstance(exc, StepRejected) else 0), (exc, moved)
        assert net.steps == steps
        for key, value in before.items():
            if key != "counters.rejected_steps":
                assert after[key].tobytes() == value.tobytes(), f"{exc!r} changed {key}"
        assert str(exc), "an error without a message"
        return "step-rejected" if isinstance(exc, StepRejected) else type(exc).__name__
    after = net.get_state()
    assert all(np.isfinite(v).all() for k, v in after.items() if v.dtype.kind == "f")
    if method.startswith("predict"):
        assert all(after[k].tobytes() == v.tobytes() for k, v in before.items())
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
        return "predicted"
    if method in ("train_step", "train_step_sparse"):
        assert isinstance(out, float) and math.isfinite(out)
        assert (net.steps, net.rejected_steps) == (steps + 1, rejected)
        return "trained"
    if method.endswith("_detailed"):
        losses, _, status = out
        assert (np.isnan(losses) == (status != 0)).all()
    elif method.startswith("train_batch"):
        losses = out
    else:  # set_state / apply_delta worked
        return method
    n_rejected = int(np.isnan(losses).sum())
    assert net.steps - steps == len(losses) - n_rejected
    assert net.rejected_steps - rejected == n_rejected
    return "batch"


def run_network_fuzz(max_examples: int, database: bool = True) -> Counter[str]:
    """Run the array fuzz against two networks; returns the outcome counts."""
    seen: Counter[str] = Counter()
    nets = fuzz_networks()
    initial = [net.get_state() for net in nets]

    @fuzz_settings(max_examples, database)
    @given(which=st.integers(0, 1), data=st.data())
    def case(which: int, data: st.DataObject) -> None:
        net = nets[which]
        net.set_state(initial[which])  # every case starts from the same model
        method, args = data.draw(network_calls(net.n_outputs))
        if method in ("set_state", "apply_delta"):
            args = _state_arg(data.draw, net, method)
        seen[check_network_call(net, method, args)] += 1

    case()
    return seen
