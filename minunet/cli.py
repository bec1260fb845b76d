"""What the command-line tools share: paths checked before any work, one-line errors, Ctrl-C without a traceback.

A user's mistake (a path that cannot be written, a GPU that is not there) is found before the work starts and
reported on one line that names the option and the fix, exit status 2; the tools never show a traceback for
anything a user can cause. Standard library only: the tools import this before the heavy libraries.
"""
import errno
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path


class UsageError(ValueError):
    """A bad path or option: the tool prints the message on one line and exits with status 2."""


def _exit_130(*_):
    # Not sys.exit: an exception raised inside a library's import can come out as another error, with a traceback.
    os.write(2, b"\ninterrupted\n")
    os._exit(130)


def exit_quietly_on_ctrl_c():
    """Ctrl-C while a tool's libraries load (a second or so): exit 130 at once, without an import traceback
    (minunet's __init__ calls it for `python -m minunet.<tool>`). A tool's main() takes Ctrl-C over before it
    writes anything (restore_ctrl_c); in the tools that only print (nvrtc, sass) it stays an immediate exit.
    Also: a reader that stops reading (`python -m minunet.exercises list | head`) ends the tool quietly."""
    signal.signal(signal.SIGINT, _exit_130)
    sys.excepthook = _quiet_broken_pipe(sys.excepthook)


def _quiet_broken_pipe(excepthook):
    """As Python's documentation advises for SIGPIPE: stdout's reader has gone, so point stdout at os.devnull
    (the flush at exit would fail again) and exit with status 1, without a traceback. Any other exception
    still reaches the hook before it."""
    def hook(kind, value, traceback):
        if not issubclass(kind, BrokenPipeError):
            return excepthook(kind, value, traceback)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return hook


def restore_ctrl_c():
    """Ctrl-C raises KeyboardInterrupt again (main catches it), if exit_quietly_on_ctrl_c had set it otherwise."""
    if signal.getsignal(signal.SIGINT) is _exit_130:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def deferred_ctrl_c():
    """Inside the block a Ctrl-C is remembered, not raised; it is raised when the block ends. For writes that
    belong together (the files of one prediction), so that an interrupt never leaves half of them."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _existing_ancestor(path):
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path):
        path = path.parent
    return path


def _check_names(path, option):
    limit = os.pathconf(_existing_ancestor(path), "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    for part in Path(path).parts:
        if len(os.fsencode(part)) > limit:
            raise UsageError(f"{option} {path}: the name {part[:20]}... is {len(os.fsencode(part))} bytes long, "
                             f"over this file system's {limit}: choose a shorter name")


def _check_ancestor_writable(path, option, what):
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise UsageError(f"{option} {path}: {ancestor} is a file, so no {what} can be made under it: choose "
                         f"another path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {ancestor} is not writable (permission denied or a read-only file "
                         f"system): choose a {what} you can write")


def check_output_folder(path, option):
    """A folder that exists and can be written, or can be made: else a UsageError naming option and fix."""
    path = Path(path)
    _check_names(path, option)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder: give a folder (a new one is made)")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path} is not writable (permission denied or a read-only file system): "
                         f"choose a folder you can write")
    _check_ancestor_writable(path, option, "folder")


def check_output_file(path, option):
    """A file that can be written (made or replaced): else a UsageError naming option and fix."""
    path = Path(path)
    _check_names(path, option)
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder: give a file name")
    _check_ancestor_writable(path, option, "file")


def check_input_folder(path, option):
    """An existing folder this process can list."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{option} {path} is not a folder" + (" (it is a file)" if path.exists() else ""))
    if not os.access(path, os.R_OK | os.X_OK):
        raise UsageError(f"{option} {path} is not readable (permission denied): check its permissions")


def check_device(device, option="--device"):
    """The device name in force; a UsageError for cuda without a usable GPU."""
    from .backends import resolve_device
    try:
        return resolve_device(device)
    except RuntimeError as e:
        raise UsageError(f"{option} {device}: {e}; use --device numpy (or auto)") from None


def describe_os_error(error):
    """'PATH: No space left on device' for an OSError, with the fix for the usual causes."""
    where = error.filename or "a file"
    fix = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space (disk quota)",
           errno.EROFS: "the file system is read-only", errno.EACCES: "check the permissions"}.get(error.errno, "")
    return f"cannot write {where}: {error.strerror or error}" + (f" ({fix})" if fix else "")
