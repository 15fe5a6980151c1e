"""livelearn.validation: one rule per kind of argument, the same everywhere."""

from __future__ import annotations

import math

import numpy as np
import pytest

from livelearn.validation import (
    check_choice,
    check_int,
    check_interval,
    check_name,
    check_number,
    check_optional_int,
    check_path,
    check_positive,
    check_sizes,
)


def test_ints_refuse_bools_floats_and_strings_and_keep_bounds() -> None:
    assert check_int("n", 3, low=1) == 3
    assert type(check_int("n", np.int64(3), low=1)) is int
    for bad in (True, 3.0, "3", None, 0, 65):
        with pytest.raises(ValueError, match=r"^n: must be an int in \[1, 64\], got "):
            check_int("n", bad, low=1, high=64)
    assert check_optional_int("every", None, low=1) is None
    with pytest.raises(ValueError, match="every: must be an int >= 1 or None, got False"):
        check_optional_int("every", False, low=1)


def test_numbers_refuse_bools_nan_and_infinity() -> None:
    assert check_positive("lr", 0.5) == 0.5 and check_positive("lr", 2) == 2.0
    for bad in (0, -1.0, math.inf, math.nan, True, "1", None):
        with pytest.raises(ValueError, match=r"^lr: must be a finite number > 0"):
            check_positive("lr", bad)
    assert check_number("tol", math.inf, low=0.0, finite=False) == math.inf
    for bad in (math.nan, -1e-9, False):
        with pytest.raises(ValueError, match=r"^tol: "):
            check_number("tol", bad, low=0.0, finite=False)


def test_intervals() -> None:
    assert check_interval("checkpoint_interval", None) is None
    assert check_interval("checkpoint_interval", 2) == 2.0
    for bad in (0, -1, math.inf, math.nan, True, "5"):
        with pytest.raises(ValueError, match=r"^checkpoint_interval: "):
            check_interval("checkpoint_interval", bad)


def test_names_choices_sizes_and_paths() -> None:
    assert check_choice("merge", "delta", ("delta", "fedavg")) == "delta"
    for bad in ("mean", 1, None, ["delta"]):
        with pytest.raises(ValueError, match=r"^merge: must be one of"):
            check_choice("merge", bad, ("delta", "fedavg"))
    assert check_name("loss", "bce", "bce") == "bce"
    with pytest.raises(ValueError, match=r"^loss: must be a name"):
        check_name("loss", "b\u00e7e", "bce")
    assert check_sizes("hidden", [16, np.int32(8)]) == (16, 8)
    assert check_sizes("hidden", 100, allow_int=True) == (100,)
    assert check_sizes("hidden", ()) == ()
    for bad in ("16", 16, (16, 0), (16, 2.0), (True,), None):
        with pytest.raises(ValueError, match=r"^hidden: "):
            check_sizes("hidden", bad)
    assert check_path("path", "a/b") == "a/b"
    for bad in ("", None, 3, b"a"):
        with pytest.raises(ValueError, match=r"^path: must be a"):
            check_path("path", bad)
    with pytest.raises(ValueError) as info:
        check_int("workers", 0, low=1)
    assert "\n" not in str(info.value)
