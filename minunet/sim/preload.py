"""Run a command with the race checker: ThreadSanitizer's runtime must be in the process before Python starts.

    python -m minunet.sim.preload python -m pytest -q tests/test_sim.py

runs the command with LD_PRELOAD=<g++'s libtsan.so>, the TSAN_OPTIONS below and MINUNET_SIM_RACECHECK=1.
racecheck_env() gives that environment to a subprocess; require_tsan() is the clear error for a process that
asks for the race checker without it. A process in which ThreadSanitizer reported a race exits with status
66 (TSan's exitcode), even when every race became a SimError that the program caught.
"""
import os
import shlex
import subprocess
import sys

from .build import SimError, compiler

# report_signal_unsafe=0: Python's own signal handlers are none of the race checker's business.
# ignore_noninstrumented_modules=1: only kernel code is checked, not races between Python's threads.
# suppress_equal_*=0: a race is reported again on the next launch (each launch must raise its SimError).
TSAN_OPTIONS = ("report_signal_unsafe=0:ignore_noninstrumented_modules=1:suppress_equal_stacks=0:"
                "suppress_equal_addresses=0")


def libtsan_path() -> str:
    cxx = compiler()
    path = subprocess.run([cxx, "-print-file-name=libtsan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        raise SimError(f"the race checker needs ThreadSanitizer's runtime, and {cxx} has none (libtsan.so); "
                       f"install it (Debian/Ubuntu: the libtsan package of your g++ version)")
    return path


def racecheck_env(env=None) -> dict:
    """env (default os.environ) with ThreadSanitizer preloaded and the race checker switched on."""
    env = dict(os.environ if env is None else env)
    env["LD_PRELOAD"] = " ".join(p for p in (libtsan_path(), env.get("LD_PRELOAD", "")) if p)
    env["TSAN_OPTIONS"] = ":".join(p for p in (TSAN_OPTIONS, env.get("TSAN_OPTIONS", "")) if p)  # the user's win
    env["MINUNET_SIM_RACECHECK"] = "1"
    return env


def tsan_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return "libtsan" in maps.read()
    except OSError:
        return False


def require_tsan():
    """A SimError with the command to run when ThreadSanitizer is not in this process."""
    if tsan_loaded():
        return
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    command = shlex.join([sys.executable, "-m", "minunet.sim.preload", sys.executable, *argv[1:]])
    raise SimError(f"the race checker needs ThreadSanitizer loaded before Python starts; run: {command}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    try:
        env = racecheck_env()
    except SimError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        print(f"error: cannot run {argv[0]!r}: {e.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
