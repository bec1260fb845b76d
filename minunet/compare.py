"""Outputs against a reference: |got - expected| <= atol + rtol*|expected|, and the message when not.

The one closeness check of the project: the tests call assert_close(), the exercises' checker reports
mismatch()'s message, and the bench checks every kernel with it before timing it (scale="max"). A NaN where a
number was expected is an element never written (the sim and the checker start every output as NaN); a NaN or
an infinity expected must be matched exactly.
"""
import numpy as np

# (atol, rtol) per dtype, for a sum of a few unit-sized terms; callers widen atol for sums of many terms.
# float32 results differ from the float64 reference by rounding, summation order, FMA and flush-to-zero.
TOLERANCE = {np.dtype(np.float32): (1e-5, 1e-4), np.dtype(np.float64): (1e-12, 1e-10)}


def index(flat, shape):
    """The index tuple of a flat position, as plain ints (for messages)."""
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def mismatch(name, got, expected, atol, rtol, scale=1.0):
    """None if got matches expected elementwise, else a message naming the first and the worst wrong element.

    scale multiplies atol: a number (sums of many terms), or "max", the largest finite |expected|: the bench's
    bound, since a float32 sum of many terms errs in proportion to the size of its terms, which the largest
    output measures (an output near 0 from cancelling terms errs as much)."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return f"{name}: shape {got.shape}, expected {expected.shape}"
    got64, expected64 = got.astype(np.float64), expected.astype(np.float64)
    if scale == "max":
        largest = float(np.max(np.abs(expected64), initial=0.0, where=np.isfinite(expected64)))
        bound = atol * largest
        tolerance = f"(tolerance |got - expected| <= {atol:g}*max|expected| = {bound:.3g}, + {rtol:g}*|expected|)"
    else:
        bound = atol * scale
        tolerance = ("(must be equal)" if bound == rtol == 0 else
                     f"(tolerance |got - expected| <= {bound:g} + {rtol:g}*|expected|)")
    unwritten = np.isnan(got64) & ~np.isnan(expected64)
    with np.errstate(invalid="ignore"):  # inf - inf
        excess = np.abs(got64 - expected64) - (bound + rtol * np.abs(expected64))
    same = (got64 == expected64) | (np.isnan(got64) & np.isnan(expected64))
    wrong = ~(same | (excess <= 0))
    if not wrong.any():
        return None
    if got.ndim == 0:
        written = "NaN, never written (the outputs start as NaN)" if unwritten else repr(got.item())
        return f"{name}: got {written}, expected {expected.item()!r} {tolerance}"
    if unwritten.any():
        first = index(np.argmax(unwritten), got.shape)
        return (f"{name}: {int(unwritten.sum())} of {got.size} elements are NaN, never written (the outputs start "
                f"as NaN); the first at index {first}, where {expected[first].item()!r} was expected")
    first = index(np.argmax(wrong), got.shape)
    worst = index(np.argmax(np.where(wrong, np.nan_to_num(excess, nan=np.inf), -np.inf)), got.shape)
    return (f"{name}: {int(wrong.sum())} of {got.size} elements wrong; the first at index {first}: got "
            f"{got[first].item()!r}, expected {expected[first].item()!r}; the worst at {worst}: got "
            f"{got[worst].item()!r}, expected {expected[worst].item()!r} {tolerance}")


def assert_close(got, expected, atol, rtol, name="output", scale=1.0):
    """mismatch() as an assertion: raises AssertionError with its message."""
    message = mismatch(name, got, expected, atol, rtol, scale)
    if message:
        raise AssertionError(message)


def assert_close_dtype(got, expected, dtype, name="output", scale=1.0):
    """assert_close with the TOLERANCE of dtype; scale widens atol for sums over many terms."""
    atol, rtol = TOLERANCE[np.dtype(dtype)]
    assert_close(got, expected, atol, rtol, name, scale)
