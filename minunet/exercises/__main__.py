"""python -m minunet.exercises list | start NAME [--dir DIR] [--force] | check NAME [--dir DIR] [--race]

Write a kernel of the U-Net yourself and have it checked without a GPU: `start` writes the skeleton of one
of the project's kernels (its signature and comments, the body left to you) to DIR/NAME.cu (DIR/NAME.cuh for
a header: common.cuh's reduction, gemm_tile.cuh's block tile, checked through every kernel that calls it);
`check` compiles that file with minunet's CUDA simulator, runs it on random odd-sized inputs and on edge
cases against the NumPy reference (outputs and shared memory poisoned with NaN, every array between
inaccessible pages, threads in a shuffled order, and a last trial in the simulator's initcheck mode, where a
read of memory no thread wrote is an error at its line even when the poison would not show; with --race the
other trials run under the simulator's race checker, which names both threads and lines of a data race, and
without it the race checker runs by itself on a failure that may be one), and on success prints the loads
and stores per thread against the solution's (with targets: a correct but untiled or serial solution is not
done), NVRTC's register and shared-memory report for a GPU architecture and, for the GEMM tile, its machine
code against the solution's.
"""
import argparse
import difflib
import re
import signal
import subprocess
import sys
from pathlib import Path

from .. import cli, nvrtc, paths
from ..sim import SimError
from ..sim.build import find_kernels
from ..sim.preload import racecheck_env
from . import machine_code
from .catalog import EXERCISES
from .guarded import kernels_with_header
from .skeleton import make_skeleton

DEFAULT_DIR = "exercises"
TIMEOUT, RACE_TIMEOUT = 120, 480  # seconds; the race checker runs a kernel several times slower
TSAN_EXIT_CODE = 66  # ThreadSanitizer's default exitcode= for a process in which it reported something


def _exercise(name):
    """The exercise called name, or None after printing the known names (and the closest one)."""
    if name in EXERCISES:
        return EXERCISES[name]
    close = difflib.get_close_matches(name, EXERCISES, n=1)
    suggestion = f" Did you mean '{close[0]}'?" if close else ""
    print(f"unknown exercise '{name}'.{suggestion} The exercises: {', '.join(EXERCISES)} "
          f"(python -m minunet.exercises list)", file=sys.stderr)
    return None


def _dir_option(args):
    """' --dir DIR' when the learner chose a folder, for the commands the messages suggest."""
    return f" --dir {args.dir}" if args.dir != DEFAULT_DIR else ""


def cmd_list(args):
    width = max(map(len, EXERCISES))
    for e in EXERCISES.values():
        started = " (started)" if (Path(args.dir) / e.learner_file).exists() else ""
        print(f"{e.name:<{width}}  {e.chapter:<38} {e.summary}{started}")
    print(f"\npython -m minunet.exercises start NAME   writes {args.dir}/NAME.cu (.cuh for a header); then: "
          f"check NAME")
    return 0


def cmd_start(args):
    exercise = _exercise(args.name)
    if exercise is None:
        return 2
    target = Path(args.dir) / exercise.learner_file
    if target.exists() and not args.force:
        print(f"{target} exists already (your work?); not overwritten. --force starts it afresh.", file=sys.stderr)
        return 1
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(make_skeleton(exercise))
    except OSError as e:
        print(f"cannot write {target}: {e}", file=sys.stderr)
        return 1
    print(f"wrote {target}: write the bodies marked TODO (read {exercise.chapter} first).\n"
          f"hint: {exercise.hint}\n"
          f"check it: python -m minunet.exercises check {exercise.name}{_dir_option(args)}")
    return 0


def _run_checker(exercise, path, timeout, race, trial=None):
    """Run the checker in a child process, so a kernel that never finishes is stopped; (passed, output).
    race: the child runs under the race checker, whose ThreadSanitizer must be loaded before Python starts;
    trial: the number of the one trial to run."""
    command = [sys.executable, "-m", "minunet.exercises.checker", exercise.name, str(path)]
    if trial is not None:
        command += ["--trial", str(trial)]
    env = None
    if race:
        try:
            env = racecheck_env()
        except SimError as e:
            return False, f"FAILED: --race is not available here: {e}"
        command.append("--race")
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return False, (f"FAILED: no result after {timeout:g} s, so the check was stopped. A kernel that never "
                       f"finishes: a loop whose condition never ends it (a bounds check dropped from a for loop?), "
                       f"or threads spinning on a value no other thread writes. (--timeout S allows longer.)")
    output = (child.stdout + child.stderr).rstrip()
    if race and child.returncode == TSAN_EXIT_CODE:  # ThreadSanitizer's exit status once it reported a race
        output = re.sub(r"\nThreadSanitizer: reported \d+ warnings?", "", output)  # each became a SimError above
        if "FAILED" not in output:
            output += "\nFAILED: ThreadSanitizer reported a race outside the kernels' launches (above)"
        return False, output
    if child.returncode < 0:
        return False, (f"{output}\nFAILED: the check process was killed by signal "
                       f"{signal.Signals(-child.returncode).name}, a crash the simulator could not catch").lstrip()
    if child.returncode not in (0, 1):
        return False, f"{output}\nFAILED: the checker itself failed (exit status {child.returncode})"
    return child.returncode == 0, output


def race_report(exercise, path, output):
    """When a failure may be a race (wrong or NaN outputs of a file whose threads share memory through
    barriers), the race checker's findings on that trial alone, as lines to show; else ''."""
    wrong = re.search(r"elements wrong|NaN where the reference|: got ", output)
    try:
        shares = re.search(r"__syncthreads|__shared__|minunet_block_sum", Path(path).read_text())
    except OSError:
        shares = None
    if not (wrong and shares):
        return ""
    trial = re.search(r"FAILED in trial (\d+) of", output)
    if not trial:
        return ""
    _, raced = _run_checker(exercise, path, RACE_TIMEOUT, race=True, trial=int(trial.group(1)))
    races = [line for line in raced.splitlines() if "data race on" in line]
    if races:
        return (f"the race checker, run by itself on trial {trial.group(1)}, names the two accesses:\n"
                + races[0].replace("SimError: ", ""))
    if "not available here" in raced:
        return raced.replace("FAILED: ", "(the race checker would have been run: ") + ")"
    return f"(the race checker, run by itself on trial {trial.group(1)}, found no data race)"


def _occupancy(resources, arch):
    try:
        return f"{nvrtc.occupancy(resources, arch, 256):.0%}"
    except ValueError:  # an architecture whose limits nvrtc.py does not know
        return "?"


def resource_report(exercise, path, arch):
    """(ok, text, {stem: nvrtc.CompileResult}): NVRTC's registers / shared memory / spills of the exercise's
    kernels on one GPU arch (a header's exercise: of the kernels that call it, compiled with the learner's
    header)."""
    if exercise.is_header:
        folder = kernels_with_header(path, exercise.file)
        files = {folder / f"{stem}.cu": {kernel} for stem, kernel in exercise.callers}
    else:
        files = {Path(path): set(find_kernels(make_skeleton(exercise)))}  # the kernels the learner's file defines
    rows = []
    warnings = []
    compiled = {}
    for source, launched in files.items():
        try:
            result = compiled[Path(source).stem] = nvrtc.compile_file(source, arch, "float",
                                                                      include_dirs=[paths.kernels_dir()])
        except nvrtc.NvrtcError as e:
            return False, f"FAILED: the simulator ran it, but NVRTC (the GPU compiler) rejects it:\n{e}", {}
        except (ImportError, RuntimeError, OSError) as e:
            return True, (f"(no NVRTC resource report: {e}. It needs CuPy and NVRTC: pip install -e \".[dev]\", "
                          f"or the cuda13 extra)"), {}
        rows += [(name, str(r.registers), str(r.shared_bytes), f"{r.spill_stores}/{r.spill_loads}",
                  str(r.stack_bytes), _occupancy(r, arch)) for name, r in result.kernels.items() if name in launched]
        warnings += nvrtc.warnings_in(result.log)
    header = ("kernel", "registers", "shared bytes", "spill st/ld", "stack", "occupancy@256")
    text = f"NVRTC's report for sm_{nvrtc.arch_number(arch)} (float):\n" + nvrtc.text_table(header, rows)
    return True, text + ("\nNVRTC warnings:\n" + "\n".join(warnings) if warnings else ""), compiled


def cmd_check(args):
    if args.timeout is not None and not args.timeout > 0:  # was: a failed check that blamed the kernel
        print(f"--timeout must be a number of seconds > 0, got {args.timeout:g}", file=sys.stderr)
        return 2
    exercise = _exercise(args.name)
    if exercise is None:
        return 2
    path = Path(args.dir) / exercise.learner_file
    if not path.is_file():
        print(f"no {path}: start the exercise first (python -m minunet.exercises start {exercise.name}"
              f"{_dir_option(args)})", file=sys.stderr)
        return 2
    timeout = args.timeout or (RACE_TIMEOUT if args.race else TIMEOUT)
    passed, output = _run_checker(exercise, path, timeout, args.race)
    print(output)
    if not passed:
        if not args.race:
            report = race_report(exercise, path, output)
            if report:
                print(report)
        print(f"hint: {exercise.hint}")
        return 1
    ok, report, compiled = resource_report(exercise, path, args.arch)
    print(report)
    if ok and exercise.machine_code:
        ok, report = machine_code.target(exercise, compiled, args.arch)
        print(report)
    return 0 if ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minunet.exercises", description=__doc__.split("\n\n")[1])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("list", "the exercises"), ("start", "write the skeleton DIR/NAME.cu"),
                            ("check", "check DIR/NAME.cu on the simulator")):
        command = commands.add_parser(name, help=help_text)
        if name != "list":
            command.add_argument("name")
        command.add_argument("--dir", default=DEFAULT_DIR, help=f"your exercises' folder (default: {DEFAULT_DIR})")
    commands.choices["start"].add_argument("--force", action="store_true", help="overwrite your file")
    commands.choices["check"].add_argument("--timeout", type=float, help=f"seconds before a kernel that never ends "
                                           f"is stopped (default {TIMEOUT:g}; {RACE_TIMEOUT:g} with --race)")
    commands.choices["check"].add_argument("--arch", default="sm_80", type=nvrtc.arch_number,
                                           help="GPU architecture of the NVRTC report (default sm_80)")
    commands.choices["check"].add_argument("--race", action="store_true",
                                           help="also run the simulator's race checker (ThreadSanitizer; slower)")
    args = parser.parse_args(argv)
    cli.restore_ctrl_c()  # before `start` writes a file: Ctrl-C is the KeyboardInterrupt caught below
    try:
        return {"list": cmd_list, "start": cmd_start, "check": cmd_check}[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
