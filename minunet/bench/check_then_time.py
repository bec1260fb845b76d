"""llm.c's order for one op and direction on one layer: check every implementation against the reference,
then time only those that passed. An implementation that fails is reported loudly and never timed again, on
this layer or any later one: a fast wrong kernel must not look like a result."""
from collections import namedtuple

import numpy as np

from .layers import cost, row
from .timing import median_time
from .validate import check, reference

# impl: its name in the tables ("v3", "v5 tf32", "numpy", "torch fp32"); call: runs it once, returns the result;
# timer: timing.cpu_timer or a CUDA timer; setup: None, or a function called before each check and timing
# (PyTorch's global TF32 flags).
Candidate = namedtuple("Candidate", "impl tf32 call timer setup", defaults=(False, None, None, None))


def check_then_time(layer, direction, host, candidates, runs, failed, log):
    """Rows of one op and direction on one layer for every candidate; host: the layer's float32 operands (the
    reference is computed from them); failed: {"<op>_<direction> <impl>": layer name} of earlier failures,
    updated here."""
    flops, nbytes = cost(layer, direction)
    ref = reference(layer, direction, host)
    rows, passed = [], []
    for c in candidates:  # 1. check them all
        key = f"{layer['op']}_{direction} {c.impl}"
        base = dict(layer=layer, direction=direction, impl=c.impl, flops=flops, nbytes=nbytes, tf32=c.tf32)
        if key in failed:
            rows.append(row(**base, seconds=None, runs=0, check=f"not run: failed its check on {failed[key]}"))
            continue
        try:
            if c.setup:
                c.setup()
            result = check(to_numpy(c.call()), ref, c.tf32)
        except Exception as e:  # one failing version must not lose the whole run
            rows.append(row(**base, seconds=None, runs=0, error=repr(e)))
            continue
        if result["check"] != "ok":
            failed[key] = layer["name"]
            log(f"MISMATCH {key} on {layer['name']}: {result['mismatch']}; not timed, here or on any later layer")
            rows.append(row(**base, seconds=None, runs=0, **result))
            continue
        passed.append((c, base, result))
    for c, base, result in passed:  # 2. then time those that passed
        try:
            if c.setup:
                c.setup()
            seconds, n = median_time(c.call, c.timer, **runs)
        except Exception as e:
            rows.append(row(**base, seconds=None, runs=0, error=repr(e)))
            continue
        rows.append(row(**base, seconds=seconds, runs=n, **result))
        log(f"{layer['name']:14s} {direction:11s} {c.impl:10s}: {seconds * 1e3:9.3f} ms  rel.err {result['rel_error']:.1e}")
    return rows


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
