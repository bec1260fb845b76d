"""The check before any timing (llm.c's order): every implementation of an op, on the layer's own operands,
against the reference, the numpy device in float64 on the same operands. An implementation that fails its
check is reported and never timed: a fast wrong kernel must not look like a result."""
import numpy as np

from ..backends import get_backend
from .layers import minunet_call

# |out - ref| <= TOLERANCE * max|ref| everywhere: float32 sums of many terms err in proportion to the size of
# their terms, which the largest output measures (an output near 0 from cancelling terms errs as much).
# TF32 (10 mantissa bits) products err by about 2^-11 each.
TOLERANCE = {False: 1e-4, True: 1e-2}


def reference(layer, direction, host):
    """The op computed by the numpy device in float64 on the float32 operands `host` (exact for the check)."""
    operands = {k: v.astype(np.float64) for k, v in host.items()}
    return np.asarray(minunet_call(get_backend("numpy"), layer, direction, operands)())


def check(out, ref, tf32=False):
    """dict(check="ok" or "MISMATCH", rel_error=max|out - ref| / max|ref|, and for a mismatch, mismatch: which
    elements, the worst one named). NaN anywhere fails (an element never written)."""
    out = np.asarray(out, np.float64).reshape(ref.shape)
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    error = np.abs(out - ref)
    error[np.isnan(error)] = np.inf
    atol = TOLERANCE[tf32] * scale
    result = dict(rel_error=float(np.max(error)) / scale)
    bad = error > atol
    if not bad.any():
        return dict(result, check="ok")
    worst = np.unravel_index(np.argmax(error), error.shape)
    return dict(result, check="MISMATCH",
                mismatch=f"{int(bad.sum())} of {bad.size} elements off by more than {atol:.3g} "
                         f"({TOLERANCE[tf32]:g} of max|ref|); worst at {tuple(map(int, worst))}: "
                         f"got {float(out[worst])!r}, expected {float(ref[worst])!r}")
