"""The one closeness check (minunet/compare.py) that the tests, the exercises and the bench use."""
import numpy as np
import pytest

from minunet.compare import assert_close, assert_close_dtype, mismatch


def test_an_element_never_written_is_named():
    got = np.array([1.0, np.nan, 3.0])
    message = mismatch("y", got, [1.0, 2.0, 3.0], atol=1, rtol=1)
    assert "1 of 3 elements are NaN, never written" in message and "index (1,)" in message


def test_the_tolerance_is_atol_plus_rtol_times_the_reference():
    assert mismatch("y", [1.5, 11.5], [1.0, 10.0], atol=0.5, rtol=0.1) is None  # 0.5 <= 0.5 + 0.1*1, 1.5 <= 0.5 + 0.1*10
    message = mismatch("y", [1.5, 11.6], [1.0, 10.0], atol=0.5, rtol=0.1)  # 1.6 > 0.5 + 0.1*10
    assert "1 of 2 elements wrong" in message and "the worst at (1,): got 11.6, expected 10.0" in message


def test_nan_and_infinity_must_be_matched_exactly():
    assert mismatch("y", [np.nan, np.inf, -np.inf], [np.nan, np.inf, -np.inf], atol=0, rtol=0) is None
    assert "elements wrong" in mismatch("y", [-np.inf], [np.inf], atol=1, rtol=1)
    assert "elements wrong" in mismatch("y", [1.0], [np.nan], atol=1, rtol=1)
    assert "elements wrong" in mismatch("y", [np.inf], [1.0], atol=1, rtol=1)


def test_shapes_must_agree_and_empty_arrays_match():
    assert "shape (2,), expected (3,)" in mismatch("y", np.zeros(2), np.zeros(3), atol=1, rtol=1)
    assert mismatch("y", np.zeros((2, 0)), np.zeros((2, 0)), atol=0, rtol=0) is None


def test_assert_close_raises_the_message():
    with pytest.raises(AssertionError, match=r"gx: 1 of 4 elements wrong; the first at index \(1, 0\)"):
        assert_close(np.array([[0.0, 0.0], [1.0, 0.0]]), np.zeros((2, 2)), atol=1e-6, rtol=0, name="gx")
    assert_close_dtype(np.float32(1.0 + 1e-6), 1.0, np.float32)
    with pytest.raises(AssertionError, match="tolerance"):
        assert_close_dtype(1.0 + 1e-9, 1.0, np.float64)


def test_scale_max_bounds_the_error_by_the_largest_reference_as_the_bench_does():
    expected = [0.001, -100.0, 5.0]
    assert mismatch("y", [0.005, -100.0, 5.0], expected, atol=1e-4, rtol=0, scale="max") is None  # 0.004 <= 1e-4*100
    assert "1 of 3 elements wrong" in mismatch("y", [0.005, -100.0, 5.0], expected, atol=1e-4, rtol=0)
    message = mismatch("y", [0.02, -100.0, 5.03], expected, atol=1e-4, rtol=0, scale="max")
    assert "2 of 3 elements wrong" in message and "the worst at (2,): got 5.03, expected 5.0" in message
    assert "(tolerance |got - expected| <= 0.0001*max|expected| = 0.01," in message
    assert "1 of 2 elements wrong" in mismatch("y", [np.inf, 1.001], [np.inf, 1.0], atol=1e-4, rtol=0, scale="max")
