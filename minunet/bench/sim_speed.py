"""The sim device's speed on a tiny layer: the simulator runs CUDA threads as fibers on the CPU; it is for
correctness, and its speed says nothing about a GPU's."""
import numpy as np

from .check_then_time import Candidate, check_then_time
from .layers import DIRECTIONS, arrays, kernel_versions, minunet_call
from .timing import cpu_timer

SIM_LAYER = dict(name="tiny", op="conv3x3", N=1, Ci=8, H=34, W=34, Co=16)


def bench_sim(quick, log):
    """The simulator's speed on a tiny conv3x3 layer, every version and direction (float32), each version
    checked first like the GPU's."""
    from ..backends import get_backend
    sim = get_backend("sim")
    host = arrays(SIM_LAYER, np.random.default_rng(0))
    runs = dict(min_runs=1, max_runs=1, budget_s=0.0, warmup=1) if quick else dict(min_runs=3, max_runs=5, budget_s=2.0)
    rows, failed = [], {}
    for direction in DIRECTIONS:
        candidates = [Candidate(f"v{v}" + (" tf32" if tf32 else ""), tf32,
                                minunet_call(sim, SIM_LAYER, direction, host, v), cpu_timer)
                      for v, tf32 in kernel_versions(SIM_LAYER, direction)]
        rows += check_then_time(SIM_LAYER, direction, host, candidates, runs, failed, lambda line: log("sim " + line))
    return rows
