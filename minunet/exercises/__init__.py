"""Exercises: write one of the project's kernels (or common.cuh's block reduction) yourself, checked on the CPU
simulator (no GPU needed).

    python -m minunet.exercises list | start NAME [--dir DIR] [--force] | check NAME [--dir DIR]

catalog.py    the exercises: the solution's kernel file and functions, the header lines, a hint, the trials
skeleton.py   the learner's starting file, derived from kernels/<file> (the solution is the project's own)
guarded.py    the sim device with the learner's file swapped in (a header: under the kernels that include it);
              guard zones around every array
checker.py    the trials: random odd sizes, shuffled thread order, NaN poisoning, against the NumPy reference
              (minunet/compare.py: the worst element named)
__main__.py   the command line; the check runs in a child process with a time limit
"""
