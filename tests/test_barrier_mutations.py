"""Every __syncthreads() in kernels/ is needed: deleting any one of them makes the kernel tests fail.

For each barrier, a copy of kernels/ without that one line (MINUNET_KERNELS_DIR points the package at it)
runs the tests of its kernels under the race checker; a SimError naming a data race counts as a failure,
as does a wrong or NaN result. About 10 minutes on 2 busy cores, so it is opt-in:

    MINUNET_BARRIER_MUTATIONS=1 python -m pytest tests/test_barrier_mutations.py -v

One mutant always runs: the barrier before the TF32 forward's fragment loads, which once passed every test
(the emulated mma.sync's __syncwarp ordered the whole block); warp-accurate scheduling catches it without
the race checker.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minunet import paths

ROOT = Path(__file__).resolve().parents[1]
OPT_IN = pytest.mark.skipif(not os.environ.get("MINUNET_BARRIER_MUTATIONS"),
                            reason="about 10 minutes: set MINUNET_BARRIER_MUTATIONS=1 to run it")

# The tests that launch each file's kernels on the sim device: (files, pytest -k expression).
CONV = ("tests/test_conv3x3_versions.py", "tests/test_conv3x3.py", "tests/test_up_conv2x2.py", "tests/test_conv1x1.py",
        "tests/test_split_k.py")
TESTS_OF = {"conv3x3.cu": (CONV, "conv3x3"), "conv1x1.cu": (CONV, "conv1x1"), "up_conv2x2.cu": (CONV, "up_conv2x2"),
            "common.cuh": (CONV, "every_version"), "gemm_tile.cuh": (CONV, "every_version")}
MISC = (("tests/test_max_pool2x2.py", "tests/test_elementwise.py", "tests/test_softmax_cross_entropy.py",
         "tests/test_sgd.py"), "device")


def barriers():
    """(file name, line number) of every __syncthreads() statement in the kernel sources."""
    found = []
    for path in sorted(paths.kernels_dir().glob("*.cu*")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*__syncthreads\(\);", line):
                found.append((path.name, number))
    return found


def test_the_barriers_are_found():
    """Every __syncthreads() of the kernel code is one the mutants delete (none hides in a one-line if)."""
    from minunet.sim.build import strip_comments
    in_code = sum(strip_comments(p.read_text()).count("__syncthreads()") for p in paths.kernels_dir().glob("*.cu*"))
    # 11: the tile's 2 and the TF32 tile's 2 (gemm_tile.cuh), the one reduction's 2 (common.cuh:
    # minunet_block_sum, which every kernel that sums over a block calls) and conv3x3's v2 5.
    assert len(barriers()) == in_code >= 11, (barriers(), in_code)


def run_without_barrier(folder, file, line, files, keyword, env):
    """Run pytest -k keyword on files against a copy of kernels/ in folder without the barrier at file:line;
    returns pytest's summary line after checking that some test failed."""
    # One fixed folder for every mutant: unchanged files keep their path and content, so their compiled
    # libraries come from the cache of the previous mutant.
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(paths.kernels_dir(), folder)
    source = (folder / file).read_text().splitlines(keepends=True)
    source[line - 1] = re.sub(r"__syncthreads\(\);", "/* deleted barrier */", source[line - 1])
    (folder / file).write_text("".join(source))
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-k",
               f"not cuda and ({keyword})", *files]
    env = dict(env, MINUNET_KERNELS_DIR=str(folder))
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    print(f"{file}:{line} deleted: {summary}")
    assert " failed" in summary, f"no test fails without the barrier at {file}:{line}:\n{result.stdout[-3000:]}"
    failure = re.search(r"^E\s+(.*)$", result.stdout, re.M)
    print("first failure:", failure.group(1)[:300] if failure else "?")
    return summary


@pytest.mark.slow
@OPT_IN
@pytest.mark.parametrize("file, line", barriers(), ids=[f"{f}:{n}" for f, n in barriers()])
def test_deleting_the_barrier_fails_a_test(tmp_path_factory, file, line):
    from minunet.sim.preload import racecheck_env
    files, keyword = TESTS_OF.get(file, MISC)
    run_without_barrier(tmp_path_factory.getbasetemp().parent / "barrier-mutant-kernels", file, line, files,
                        keyword, racecheck_env())


def test_deleting_the_tf32_barrier_fails_in_thread_order(tmp_path):
    source = (paths.kernels_dir() / "gemm_tile.cuh").read_text().splitlines()
    loads = next(i for i, text in enumerate(source) if "a[i][0] = minunet_to_tf32(" in text)
    line = max(i for i in range(loads) if source[i].strip() == "__syncthreads();") + 1  # the one before
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINUNET_SIM_")}  # default mode
    run_without_barrier(tmp_path / "kernels", "gemm_tile.cuh", line, ["tests/test_conv3x3_versions.py"],
                        "conv3x3_every_version and float32", env)
