"""Outputs against the reference: |got - expected| <= atol + rtol*|expected|, and the message when not."""
import numpy as np


def index(flat, shape):
    """The index tuple of a flat position, as plain ints (for messages)."""
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def mismatch(name, got, expected, atol, rtol):
    """None if got matches expected elementwise, else a message naming the first and the worst wrong element."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return f"{name}: shape {got.shape}, expected {expected.shape}"
    got64, expected64 = got.astype(np.float64), expected.astype(np.float64)
    unwritten = np.isnan(got64) & ~np.isnan(expected64)
    excess = np.abs(got64 - expected64) - (atol + rtol * np.abs(expected64))
    wrong = (excess > 0) | (np.isnan(expected64) != np.isnan(got64))
    if not wrong.any():
        return None
    tolerance = f"(tolerance |got - expected| <= {atol:g} + {rtol:g}*|expected|)"
    if got.ndim == 0:
        written = "NaN, never written (the outputs start as NaN)" if unwritten else repr(got.item())
        return f"{name}: got {written}, expected {expected.item()!r} {tolerance}"
    if unwritten.any():
        first = index(np.argmax(unwritten), got.shape)
        return (f"{name}: {int(unwritten.sum())} of {got.size} elements are NaN, never written (the outputs start "
                f"as NaN); the first at index {first}, where {expected[first].item()!r} was expected")
    first = index(np.argmax(wrong), got.shape)
    worst = index(np.argmax(np.where(wrong, excess, -np.inf)), got.shape)
    return (f"{name}: {int(wrong.sum())} of {got.size} elements wrong; the first at index {first}: got "
            f"{got[first].item()!r}, expected {expected[first].item()!r}; the worst at {worst}: got "
            f"{got[worst].item()!r}, expected {expected[worst].item()!r} {tolerance}")
