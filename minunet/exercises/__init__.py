"""Exercises: write one of the project's kernels (or common.cuh's block reduction, gemm_tile.cuh's block tile)
yourself, checked on the CPU simulator (no GPU needed).

    python -m minunet.exercises list | start NAME [--dir DIR] [--force] | check NAME [--dir DIR] [--race]

catalog.py       the exercises: the solution's kernel file and functions, the header lines, a hint, the random
                 and edge trials, the kernels that call a header, the targets
skeleton.py      the learner's starting file, derived from kernels/<file> (the solution is the project's own)
guarded.py       the sim device with the learner's file swapped in (a header: under the kernels that include
                 it), other block sizes; the trial's arrays (the simulator guards them), named for messages
checker.py       the trials: random odd sizes and edge cases, shuffled thread order, NaN poisoning, the last in
                 the simulator's initcheck mode, against the NumPy reference (minunet/compare.py: the worst
                 element named); where a NaN came from
counts.py        on success: loads and stores per thread, counted by the simulator, against the solution's
machine_code.py  on success: the GEMM tile's compiled hot loop against the solution's (NVRTC, nvdisasm)
__main__.py      the command line; the check runs in a child process with a time limit
"""
