"""Check a learner's kernel file: compile it with the simulator, run it against the NumPy reference.

Outputs start as NaN, shared memory too (the simulator's poisoning); every array lies between the simulator's
inaccessible pages (an index past it is named with its line); trials after the first run the threads of each
barrier phase and the blocks in a shuffled order, which turns most missing __syncthreads() into wrong results.
The random trials draw odd sizes; the edge trials feed what breaks naive code (the exercise's `edges`): sizes
1, 31, 32, 33 and 257, extreme values, NaN and infinities where the reference defines the result, ties and
all-equal inputs, and blocks whose thread count is not a power of two for the kernels that take any. The last
trial runs in the simulator's initcheck mode: a read of shared memory no thread of the block wrote, of an
output before any thread wrote it, or of any byte outside the arrays, is an error at its line, even where
the NaN poison would not show (a compare, fmax, a select, a value never stored). The first problem found is
reported: a compiler error, a simulator error (crash, barrier misuse, wrong arguments, an access outside an
array or of memory nobody wrote) with its source line, or the first and the worst wrong element with their
indices, and for a NaN where a number was expected, where the NaN came from.

    python -m minunet.exercises.checker NAME FILE [--race] [--trial N]   # what `python -m minunet.exercises
                                        # check` runs in a child (--race: with libtsan preloaded; --trial: one)
"""
import re
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import paths
from ..backends.kernel_backend import KernelBackend
from ..compare import TOLERANCE, index, mismatch
from ..sim import SimCompileError, SimError
from . import counts
from .catalog import EXERCISES
from .guarded import ExerciseLauncher, TrialArrays
from .skeleton import early_returns


@dataclass(frozen=True)
class Spec:
    """One trial: the element type, the shuffle seed (None: threads in order), random sizes or the edge
    cases, the threads per block of the kernels that take any block size (None: their launcher's), and
    whether it runs in the simulator's initcheck mode."""
    dtype: type
    seed: int = None
    edges: bool = False
    threads: int = None
    initcheck: bool = False

    def describe(self, exercise):
        words = [np.dtype(self.dtype).name, "edge cases" if self.edges else "random sizes",
                 "threads in order" if self.seed is None else f"threads and blocks shuffled, seed {self.seed}"]
        if self.threads and exercise.any_block:
            words.append(f"blocks of {self.threads} threads for {', '.join(exercise.any_block)}")
        if self.initcheck:
            words.append("initcheck mode: every read checked")
        return "; ".join(words)


RANDOM_TRIALS = (Spec(np.float32), Spec(np.float32, 1), Spec(np.float32, 2), Spec(np.float64, 3))
EDGE_TRIALS = (Spec(np.float32, None, True), Spec(np.float32, 4, True, threads=96),
               Spec(np.float64, 5, True, threads=33))
# Last, so that only a file that passes the others pays for it (the initcheck build runs about 3x slower and is
# compiled once more): it names, at its line, what the poison cannot show.
INITCHECK_TRIAL = Spec(np.float32, initcheck=True)
TRIALS = RANDOM_TRIALS + EDGE_TRIALS + (INITCHECK_TRIAL,)

NAN_ORIGINS = {
    "never written": "never written (the outputs start as NaN; or read before any thread wrote them)",
    "shared": "computed from shared memory nobody wrote (the simulator fills it with NaN at the start of every "
              "block): a __syncthreads() missing between the writes and the reads, or a read outside what "
              "was written",
    "outside": "computed from a read just outside an array (the simulator's canary in the bytes that keep an "
               "array's address modulo 16 between it and the inaccessible page: an index one past the end, or "
               "before the start?)",
    "computed": "a NaN the kernel computed from the inputs' numbers (inf - inf, 0 * inf, exp overflowing to "
                "inf?), where the reference has a number",
}


@dataclass
class Trial:
    """What an exercise's run() uses: the backend with the learner's kernels, random inputs, comparisons."""
    backend: KernelBackend
    arrays: TrialArrays
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
        return self.arrays.input(name, array)

    def randn(self, name, shape):
        return self.input(name, self.rng.standard_normal(shape).astype(self.dtype))

    def specials(self, shape, every=5, huge=True):
        """Standard normal values with, at random places (one in `every`), NaN, +inf, -inf, 0, -0 and, when
        huge, +-1e30 (a float32 still holds their products with numbers near 1)."""
        data = self.rng.standard_normal(shape)
        specials = [np.nan, np.inf, -np.inf, 0.0, -0.0] + ([1e30, -1e30] if huge else [])
        places = self.rng.random(shape) < 1 / every
        data[places] = self.rng.choice(specials, int(places.sum()))
        return data.astype(self.dtype)

    def with_specials(self, name, shape, every=5, huge=True):
        return self.input(name, self.specials(shape, every, huge))

    def compare(self, name, got, expected, scale=1.0):
        """Record the first mismatch and stop the trial: the first problem is the one reported (and the
        kernels of the rest need no build)."""
        self.arrays.name(got, name)
        atol, rtol = TOLERANCE[np.dtype(self.dtype)] if np.asarray(expected).dtype.kind == "f" else (0, 0)
        message = self._nans(name, got, expected) or mismatch(name, got, expected, atol, rtol, scale)
        if message:
            self.problems.append(message)
            raise _Stop

    def _nans(self, name, got, expected):
        """The message for NaNs where the reference has numbers, naming where they came from; or None."""
        got, expected = np.asarray(got), np.asarray(expected)
        if got.shape != expected.shape:
            return None
        if got.dtype.kind in "iu":  # integer outputs start as all-ones bytes
            fill = got.dtype.type(-1) if got.dtype.kind == "i" else np.iinfo(got.dtype).max
            unwritten = (got == fill) & (got != expected)
            if not unwritten.any():
                return None
            first = index(np.argmax(unwritten), got.shape)
            return (f"{name}: {unwritten.sum()} of {got.size} elements are {fill}, never written (integer outputs "
                    f"start as all-ones bytes); the first at index {first}, where {expected[first].item()!r} was "
                    f"expected")
        if got.dtype.kind != "f":
            return None
        bad = np.isnan(got) & ~np.isnan(expected.astype(np.float64))
        if not bad.any():
            return None
        places = np.flatnonzero(bad)
        origins = self.arrays.nan_origins(got.ravel()[places])
        first = index(places[0], got.shape) if got.ndim else ()
        expected_first = expected.ravel()[places[0]].item()
        why = [f"{count} {NAN_ORIGINS[origin]}" for origin, count in Counter(origins).items()]
        return (f"{name}: {bad.sum()} of {got.size} elements are NaN where the reference has numbers: "
                f"{'; '.join(why)}. The first at index {first}, where {expected_first!r} was expected "
                f"({origins[0]})")


class _Stop(Exception):
    """A trial's first mismatch: the rest of the trial is not run."""


@dataclass
class Result:
    passed: bool
    message: str
    shuffled_only: bool = False  # failed in a shuffled trial after the same kind in order passed: a race?


def run_trial(exercise, path, number, spec, racecheck=False, counting=False):
    """One trial; (problem or None, the trial, the launcher). counting: with the memory-access counter.
    racecheck: under the race checker, except an initcheck trial (the two modes exclude each other; an
    initcheck build runs in a process with ThreadSanitizer preloaded all the same)."""
    arrays = TrialArrays()
    reblock = (exercise.any_block, spec.threads) if spec.threads else None
    launcher = ExerciseLauncher(path, exercise.file, arrays, spec.seed, racecheck and not spec.initcheck, reblock,
                                counting, spec.initcheck)
    trial = Trial(KernelBackend(launcher), arrays, np.random.default_rng(number), spec.dtype)
    try:
        try:
            with np.errstate(all="ignore"):  # the reference on NaN and inf inputs
                (exercise.edges if spec.edges else exercise.run)(trial)
        except _Stop:
            pass
        problem = arrays.problems() or (trial.problems[0] if trial.problems else None)
    except SimCompileError:
        raise
    except (SimError, TypeError, ValueError) as e:  # crash, barrier misuse; a missing kernel; bad arguments
        problem = f"{type(e).__name__}: {e}" + _return_line(exercise, path, str(e))
    finally:
        arrays.close()
        launcher.release()
    return problem, trial, launcher


def _return_line(exercise, path, message):
    """For a thread that left while others wait at a barrier: the early `return`s of the learner's file."""
    if "exited while" not in message:
        return ""
    found = early_returns(exercise, path)
    if not found:
        return ""
    lines = ", ".join(f"{Path(path).name}:{line}" for line in found)
    return (f"\nthe thread left at the `return` of {lines}, before a barrier every thread must reach: give the "
            f"threads without work a neutral value instead, and return only after the last barrier")


def check_file(exercise, path, trials=TRIALS, racecheck=False, only=None):
    """Run the exercise's trials on the learner's file; Result(passed, what went wrong or what was run).
    racecheck: under the simulator's race checker (the process must have ThreadSanitizer preloaded), all but
    the initcheck trial; only: the number of the one trial to run."""
    passed_in_order = set()
    for number, spec in enumerate(trials, 1):
        if only is not None and number != only:
            continue
        try:
            problem, trial, _ = run_trial(exercise, path, number, spec, racecheck)
        except SimCompileError as e:
            return Result(False, f"{path} does not compile:\n{e}")
        if problem:
            sizes = ", ".join(trial.inputs) or "before any input was made"
            return Result(False, f"FAILED in trial {number} of {len(trials)} ({spec.describe(exercise)}; "
                                 f"{sizes}):\n{problem}",
                          shuffled_only=spec.seed is not None and replace(spec, seed=None) in passed_in_order)
        if spec.seed is None:
            passed_in_order.add(spec)
    kinds = "random odd sizes and edge cases (sizes 1 to 257, extremes, NaN and inf, ties)"
    ran = [spec for number, spec in enumerate(trials, 1) if only in (None, number)]
    initchecked = any(spec.initcheck for spec in ran)
    return Result(True, f"passed: {len(ran)} trial{'s' * (len(ran) > 1)} of {kinds}, float and double, threads in "
                        f"order and shuffled, outputs and shared memory poisoned with NaN, no access outside an "
                        f"array" + (", no read of memory nobody wrote (initcheck)" if initchecked else "")
                        + (", no data race" if racecheck and not all(spec.initcheck for spec in ran) else ""))


def count_report(exercise, path):
    """(done, text): the memory accesses of the learner's kernels and the solution's on trial 1's inputs
    (exercise.counted's run, where it has one), against the exercise's targets (counts.py)."""
    counted = replace(exercise, run=exercise.counted) if exercise.counted else exercise
    found = []
    for file in (path, paths.kernels_dir() / exercise.file):
        problem, _, launcher = run_trial(counted, file, 1, Spec(np.float32), counting=True)
        if problem:
            return True, f"(no memory-access counts: the counting run failed: {problem})"
        found.append(counts.merged(launcher.counted))
    return counts.report(exercise, *found)


def main(argv=None):
    """NAME FILE [--race] [--trial N]"""
    argv = sys.argv[1:] if argv is None else argv
    name, path = argv[:2]
    only = re.search(r"--trial[= ](\d+)", " ".join(argv[2:]))
    result = check_file(EXERCISES[name], path, racecheck="--race" in argv[2:],
                        only=int(only.group(1)) if only else None)
    print(result.message)
    if result.shuffled_only:
        print("(in order, the same kind of trial passed: threads that depend on an order nothing enforces)")
    if not result.passed or only is not None or "--race" in argv[2:]:
        return 0 if result.passed else 1
    done, text = count_report(EXERCISES[name], path)
    print(text)
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
