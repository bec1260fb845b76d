"""Check a learner's kernel file: compile it with the simulator, run it against the NumPy reference.

Every trial draws new odd sizes; outputs start as NaN, shared memory too (the simulator's poisoning), arrays
are fenced by guard zones (guarded.py), and trials after the first run the threads of each barrier phase and
the blocks in a shuffled order, which turns most missing __syncthreads() into wrong results. The first
problem found is reported: a compiler error, a simulator error (crash, barrier misuse, wrong arguments) with
its source line, a write outside an output, or the first and the worst wrong element with their indices.

    python -m minunet.exercises.checker NAME FILE [--race]   # what `python -m minunet.exercises check` runs
                                                            # in a child (--race: with libtsan preloaded)
"""
import sys
from dataclasses import dataclass, field

import numpy as np

from ..backends.kernel_backend import KernelBackend
from ..compare import TOLERANCE, mismatch
from ..sim import SimCompileError, SimError
from .catalog import EXERCISES
from .guarded import ExerciseLauncher, GuardedArrays

# (element type, shuffle seed or None for in order) of each trial; the last one checks `real` = double
TRIALS = ((np.float32, None), (np.float32, 1), (np.float32, 2), (np.float64, 3))


@dataclass
class Trial:
    """What an exercise's run() uses: the backend with the learner's kernels, random inputs, comparisons."""
    backend: KernelBackend
    guards: GuardedArrays
    rng: np.random.Generator
    dtype: type
    inputs: list = field(default_factory=list)     # "x (3, 5, 7, 9)": the sizes, for the messages
    problems: list = field(default_factory=list)   # mismatch messages, in order

    def odd(self, low, high):
        """A random odd number in [low, high]: sizes that are no multiple of a block or a tile."""
        return int(self.rng.integers(low // 2, (high - 1) // 2 + 1)) * 2 + 1

    def odd_shape(self, ndim, low, high):
        return tuple(self.odd(low, high) for _ in range(ndim))

    def input(self, name, array):
        self.inputs.append(f"{name} {array.shape}")
        return self.guards.input(name, np.ascontiguousarray(array))

    def randn(self, name, shape):
        return self.input(name, self.rng.standard_normal(shape).astype(self.dtype))

    def compare(self, name, got, expected, scale=1.0):
        self.guards.name(got, name)
        atol, rtol = TOLERANCE[np.dtype(self.dtype)] if np.asarray(expected).dtype.kind == "f" else (0, 0)
        message = mismatch(name, got, expected, atol, rtol, scale)
        if message:
            self.problems.append(message)


@dataclass
class Result:
    passed: bool
    message: str


def check_file(exercise, path, trials=TRIALS, racecheck=False):
    """Run the exercise's trials on the learner's file; Result(passed, what went wrong or what was run).
    racecheck: under the simulator's race checker (the process must have ThreadSanitizer preloaded)."""
    for number, (dtype, seed) in enumerate(trials, 1):
        guards = GuardedArrays()
        launcher = ExerciseLauncher(path, exercise.file, guards, seed, racecheck)
        trial = Trial(KernelBackend(launcher), guards, np.random.default_rng(number), dtype)
        order = "threads in order" if seed is None else f"threads and blocks shuffled, seed {seed}"
        try:
            exercise.run(trial)
            problem = guards.problems() or (trial.problems[0] if trial.problems else None)
        except SimCompileError as e:
            return Result(False, f"{path} does not compile:\n{e}")
        except (SimError, TypeError, ValueError) as e:  # crash, barrier misuse; a missing kernel; bad arguments
            problem = f"{type(e).__name__}: {e}"
        if problem:
            sizes = ", ".join(trial.inputs) or "before any input was made"
            return Result(False, f"FAILED in trial {number} of {len(trials)} ({np.dtype(dtype).name}; {sizes}; "
                                 f"{order}):\n{problem}")
    return Result(True, f"passed: {len(trials)} trials of random odd sizes, float and double, threads in order "
                        f"and shuffled, outputs and shared memory poisoned with NaN, guard zones intact"
                        + (", no data race" if racecheck else ""))


def main(argv=None):
    """NAME FILE [--race]"""
    argv = sys.argv[1:] if argv is None else argv
    name, path = argv[:2]
    result = check_file(EXERCISES[name], path, racecheck="--race" in argv[2:])
    print(result.message)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
