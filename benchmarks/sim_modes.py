"""What the simulator's checking modes cost on the kernel tests: each operator test file run with pytest in each
mode, after one run that compiles what it needs, timed by wall clock and by CPU time (user + system, which
other processes on a busy machine disturb less). Prints a Markdown table with the CPU model and the load.

    python benchmarks/sim_modes.py                      # default and MINUNET_SIM_INITCHECK=1
    python benchmarks/sim_modes.py --modes default shuffle gpu_math sanitize --files test_max_pool2x2
    python benchmarks/sim_modes.py --modes default --repo DIR   # another checkout (PYTHONPATH=DIR too)
    python benchmarks/sim_modes.py --exercises          # what `exercises check`'s initcheck trial adds: each
                                                        # exercise's solution, its other trials and that one
"""
import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

TEST_FILES = ["test_conv3x3", "test_conv3x3_versions", "test_up_conv2x2", "test_conv1x1", "test_split_k",
              "test_max_pool2x2", "test_softmax_cross_entropy", "test_sgd", "test_elementwise"]
MODES = {"default": {}, "initcheck": {"MINUNET_SIM_INITCHECK": "1"}, "shuffle": {"MINUNET_SIM_SHUFFLE": "1"},
         "gpu_math": {"MINUNET_SIM_GPU_MATH": "1"}, "sanitize": {"MINUNET_SIM_SANITIZE": "1"}}


def sanitizer_preload():
    """What MINUNET_SIM_SANITIZE=1 needs before Python starts (the simulator's own error says the same)."""
    libasan = subprocess.run(["g++", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return {"LD_PRELOAD": libasan, "ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1"}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def run(repo, test_file, env):
    """(wall seconds, CPU seconds, pytest's summary line) of one run of the file."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                             f"tests/{test_file}.py"], cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = result.stdout.strip().splitlines()
    return wall, cpu, lines[-1] if lines else result.stderr[-200:]


def exercise_trials():
    """CPU seconds of each exercise's check of its solution: the trials in the default mode against the one in
    the initcheck mode (in this process, after a check that compiled both)."""
    from minunet import paths
    from minunet.exercises.catalog import EXERCISES
    from minunet.exercises.checker import TRIALS, check_file
    print(f"{cpu_model()}, {os.cpu_count()} cores; load at the start {os.getloadavg()}")
    print("| exercise | other trials: CPU s | initcheck trial: CPU s |\n|---|---|---|")
    totals = [0.0, 0.0]
    for name, exercise in EXERCISES.items():
        solution = paths.kernels_dir() / exercise.file
        check_file(exercise, solution)  # compiles, untimed
        cells = []
        for column, trials in enumerate(([t for t in TRIALS if not t.initcheck], [t for t in TRIALS if t.initcheck])):
            start = time.process_time()
            assert check_file(exercise, solution, tuple(trials)).passed, name
            seconds = time.process_time() - start
            totals[column] += seconds
            cells.append(f"{seconds:.2f}")
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"| all | {totals[0]:.1f} | {totals[1]:.1f} (+{totals[1] / totals[0]:.0%}) |")
    print(f"load at the end {os.getloadavg()}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["default", "initcheck"], choices=list(MODES))
    parser.add_argument("--files", nargs="+", default=TEST_FILES, choices=TEST_FILES, help="test files to time")
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--exercises", action="store_true", help="the exercise checker's initcheck trial instead")
    args = parser.parse_args(argv)
    if args.exercises:
        return exercise_trials()
    envs = {mode: dict(os.environ, **MODES[mode], **(sanitizer_preload() if mode == "sanitize" else {}))
            for mode in args.modes}
    for test_file in args.files:  # compile once, untimed
        for mode in args.modes:
            run(args.repo, test_file, envs[mode])
    print(f"{cpu_model()}, {os.cpu_count()} cores; load at the start {os.getloadavg()}")
    print("| test file | " + " | ".join(f"{m}: wall s, CPU s" for m in args.modes) + " |")
    print("|---|" + "---|" * len(args.modes))
    totals = {mode: [0.0, 0.0] for mode in args.modes}
    for test_file in args.files:
        cells = []
        for mode in args.modes:
            wall, cpu, summary = run(args.repo, test_file, envs[mode])
            totals[mode][0] += wall
            totals[mode][1] += cpu
            cells.append(f"{wall:.1f}, {cpu:.1f} ({summary})")
        print(f"| {test_file} | " + " | ".join(cells) + " |")
    print("| all | " + " | ".join(f"{w:.1f}, {c:.1f}" for w, c in totals.values()) + " |")
    print(f"load at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
