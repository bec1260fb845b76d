"""llm.c's order for one op and direction on one layer: check every implementation against the reference,
then time only those that passed. An implementation that fails is reported loudly and never timed again, on
this layer or any later one: a fast wrong kernel must not look like a result."""
from collections import namedtuple

import numpy as np

from ..backends import get_backend
from ..compare import mismatch
from .layers import cost, minunet_call, row
from .timing import median_time

# |out - ref| <= TOLERANCE * max|ref| everywhere (compare.py's scale="max"): float32 sums of many terms err in
# proportion to the size of their terms. TF32 (10 mantissa bits) products err by about 2^-11 each.
TOLERANCE = {False: 1e-4, True: 1e-2}
OUTPUTS = {"forward": "y", "grad_input": "gx", "grad_weight": "gw"}  # the result's name in a mismatch message

# impl: its name in the tables ("v3", "v5 tf32", "numpy", "torch fp32"); call: runs it once, returns the result;
# timer: timing.cpu_timer or a CUDA timer; setup: None, or a function called before each check and timing
# (PyTorch's global TF32 flags).
Candidate = namedtuple("Candidate", "impl tf32 call timer setup", defaults=(False, None, None, None))


def check_then_time(layer, direction, host, candidates, runs, failed, log):
    """Rows of one op and direction on one layer for every candidate; host: the layer's float32 operands (the
    reference is computed from them); failed: {"<op>_<direction> <impl>": layer name} of earlier failures,
    updated here."""
    rows, passed = check_candidates(layer, direction, host, candidates, failed, log)
    return rows + time_candidates(passed, runs, log)


def check_candidates(layer, direction, host, candidates, failed, log):
    """1. Check every candidate on one layer: (rows of those that failed, raised or failed on an earlier layer,
    [(candidate, row fields, check result)] of those that passed, for time_candidates)."""
    flops, nbytes = cost(layer, direction)
    ref = reference(layer, direction, host)
    rows, passed = [], []
    for c in candidates:
        key = f"{layer['op']}_{direction} {c.impl}"
        base = dict(layer=layer, direction=direction, impl=c.impl, flops=flops, nbytes=nbytes, tf32=c.tf32)
        if key in failed:
            rows.append(row(**base, seconds=None, runs=0, check=f"not run: failed its check on {failed[key]}"))
            continue
        try:
            if c.setup:
                c.setup()
            result = check(to_numpy(c.call()), ref, c.tf32, OUTPUTS[direction])
        except Exception as e:  # one failing version must not lose the whole run
            rows.append(row(**base, seconds=None, runs=0, error=repr(e)))
            continue
        if result["check"] != "ok":
            failed[key] = layer["name"]
            log(f"MISMATCH {key} on {layer['name']}: {result['mismatch']}; not timed, here or on any later layer")
            rows.append(row(**base, seconds=None, runs=0, **result))
            continue
        passed.append((c, base, result))
    return rows, passed


def time_candidates(passed, runs, log):
    """2. Time the candidates that passed (check_candidates' list): their rows."""
    rows = []
    for c, base, result in passed:
        try:
            if c.setup:
                c.setup()
            seconds, n = median_time(c.call, c.timer, **runs)
        except Exception as e:
            rows.append(row(**base, seconds=None, runs=0, error=repr(e)))
            continue
        rows.append(row(**base, seconds=seconds, runs=n, **result))
        log(f"{base['layer']['name']:14s} {base['direction']:11s} {c.impl:10s}: {seconds * 1e3:9.3f} ms  "
            f"rel.err {result['rel_error']:.1e}")
    return rows


def reference(layer, direction, host):
    """The op computed by the numpy device in float64 on the float32 operands `host` (exact for the check)."""
    operands = {k: v.astype(np.float64) for k, v in host.items()}
    return np.asarray(minunet_call(get_backend("numpy"), layer, direction, operands)())


def check(out, ref, tf32=False, name="output"):
    """dict(check="ok" or "MISMATCH", rel_error=max|out - ref| / max|ref|, and for a mismatch, mismatch:
    compare.py's message, the worst element named). NaN anywhere fails (an element never written)."""
    out = np.asarray(out, np.float64)
    error = np.abs(out - ref) if out.shape == ref.shape else np.full(ref.shape, np.inf)
    error[np.isnan(error)] = np.inf
    result = dict(rel_error=float(np.max(error, initial=0.0)) / max(float(np.max(np.abs(ref), initial=0.0)), 1e-30))
    message = mismatch(name, out, ref, TOLERANCE[tf32], 0.0, scale="max")
    return dict(result, check="MISMATCH", mismatch=message) if message else dict(result, check="ok")


def to_numpy(out):
    """A result of any device as a NumPy array: CuPy's, PyTorch's (on any device) or NumPy's."""
    if hasattr(out, "detach"):  # PyTorch
        return out.detach().cpu().numpy()
    if hasattr(out, "get"):  # CuPy
        return out.get()
    return np.asarray(out)


def mismatches(rows):
    """The rows whose check failed."""
    return [r for r in rows if r.get("check") == "MISMATCH"]
