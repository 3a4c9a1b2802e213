"""Argument checks: errors name the argument, the rule and the value."""

from __future__ import annotations

import enum

import pytest

from tickwork._validate import (
    check_choice,
    check_int,
    check_nonnegative,
    check_optional_nonnegative,
    check_positive,
)


class Color(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), -0.0])
def test_positive_rejects_values_that_are_not_finite_and_positive(bad: float) -> None:
    """check_positive: ValueError with name, rule and value."""
    with pytest.raises(ValueError, match=r"'interval' must be a finite number > 0; got"):
        check_positive("interval", bad)


@pytest.mark.parametrize("bad", [True, "5", None, [1]])
def test_numbers_reject_non_numbers_and_bools(bad: object) -> None:
    """A bool or a non-number is a TypeError naming the type received."""
    with pytest.raises(TypeError, match=r"'interval' must be a finite number > 0; got .* of type"):
        check_positive("interval", bad)


def test_good_values_come_back_as_floats() -> None:
    """Accepted numbers are returned as float."""
    assert check_positive("x", 2) == 2.0
    assert check_nonnegative("x", 0) == 0.0
    assert check_optional_nonnegative("x", None) is None
    assert check_optional_nonnegative("x", 1.5) == 1.5


def test_nonnegative_rejects_negative_and_nan() -> None:
    """check_nonnegative and its optional form reject -1 and NaN."""
    for check in (check_nonnegative, check_optional_nonnegative):
        with pytest.raises(ValueError, match="'timeout' must be"):
            check("timeout", -1)
        with pytest.raises(ValueError, match="'timeout' must be"):
            check("timeout", float("nan"))


def test_int_checks_type_and_minimum() -> None:
    """check_int refuses floats and bools, and values under the minimum."""
    assert check_int("n", 3, minimum=1) == 3
    with pytest.raises(TypeError, match="'n' must be an int >= 1; got 1.5"):
        check_int("n", 1.5, minimum=1)
    with pytest.raises(TypeError, match="'n' must be an int"):
        check_int("n", True)
    with pytest.raises(ValueError, match="'n' must be an int >= 1; got 0"):
        check_int("n", 0, minimum=1)


def test_choice_takes_members_and_values() -> None:
    """check_choice returns the member for a member or its value and lists the choices."""
    assert check_choice("c", "red", Color) is Color.RED
    assert check_choice("c", Color.BLUE, Color) is Color.BLUE
    with pytest.raises(ValueError, match="'c' must be one of 'red', 'blue'; got 'green'"):
        check_choice("c", "green", Color)
