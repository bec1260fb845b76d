"""The run folder of python -m minunet.train: what nothing may destroy or corrupt, and how.

- A new run never replaces another. A folder holding a run (its metrics.jsonl or checkpoint.npz) is refused
  before anything is written, with the fix: --resume it, choose another --out, or --overwrite.
- One writer at a time. A run or a resume holds an exclusive lock on RUN/.lock (fcntl.flock) while it writes;
  the kernel releases it when the process ends, however it ends. The lock file names its holder, and is emptied
  on every orderly exit: a lock file that still names a process when the lock is free was left by a process that
  was killed (a stale lock), and is said so and taken over.
- Every file is whole. The checkpoint and config.json are written atomically (atomic_file.py); each record of
  metrics.jsonl is one write of a complete line, cut back if the write fails (a full disk), so no half line stays.
  A resume checks every record against the checkpoint, names the file and line of any it cannot use, and drops
  a torn last line (a power cut mid-write) and the records after the checkpoint's step (those steps run again).
  Temporary files of writes that were killed are removed at the next start.
"""
import errno
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .atomic_file import remove_stray_temporaries, write_bytes
from .cli import UsageError, check_output_folder

RUN_FILES = ("metrics.jsonl", "checkpoint.npz")  # a folder holding one of these holds a run's results
WRITTEN = ("config.json",) + RUN_FILES + ("best.npz", "loss.png", "panel.png")
LOCK_NAME = ".lock"


def say(text):
    print(text, file=sys.stderr)


def check_folder(run_dir, option, overwrite=False, resuming=False):
    """Before anything is written: run_dir can be written, its files are files, and (unless resuming it or
    overwrite) it holds no run."""
    run_dir = Path(run_dir)
    check_output_folder(run_dir, option)
    for name in WRITTEN:
        if (run_dir / name).exists() and not (run_dir / name).is_file():
            raise UsageError(f"{option} {run_dir}: {run_dir / name} is a folder, where the run writes its {name}: "
                             f"remove or rename it, or choose another {option}")
    found = [name for name in RUN_FILES if (run_dir / name).is_file()]
    if found and not (resuming or overwrite):
        raise UsageError(f"{option} {run_dir} holds a run already ({', '.join(found)}); nothing was written: "
                         f"continue it with --resume {run_dir}, choose another --out, or pass --overwrite to "
                         f"replace it")


def clear(run_dir):
    """--overwrite: remove the files of the run that was in run_dir (under its lock, once the new run is ready)."""
    for name in WRITTEN:
        (Path(run_dir) / name).unlink(missing_ok=True)


_held = {}  # run folder -> nesting depth of locked() in this process (flock would conflict with itself)


@contextmanager
def locked(run_dir):
    """Hold run_dir's lock inside the block (made if need be; re-entrant in one process). A UsageError if another
    process holds it. A folder this block made and left holding nothing but the lock file is removed again."""
    run_dir = Path(run_dir)
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    import fcntl  # POSIX only; imported here so that the module imports everywhere
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"{run_dir} is being written by another run ({_holder(fd) or 'another process'}): "
                             f"wait for it to end, or choose another --out") from None
        previous = _holder(fd)
        if previous:
            say(f"note: {run_dir} was left locked by {previous}, which ended without releasing it (killed?); the "
                f"stale lock is taken over")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            os.ftruncate(fd, 0)  # an orderly exit: no holder named, so the next start sees no stale lock
    finally:
        os.close(fd)  # releases the lock
        if made and [p.name for p in run_dir.iterdir()] == [LOCK_NAME]:
            (run_dir / LOCK_NAME).unlink()
            run_dir.rmdir()


def _holder(fd):
    return os.pread(fd, 4096, 0).decode(errors="replace").strip()


def remove_temporaries(run_dir):
    """Remove what killed writes left in run_dir (we hold its lock: no write of ours is under way); say so."""
    removed = remove_stray_temporaries(run_dir, WRITTEN)
    if removed:
        say(f"note: removed {len(removed)} temporary file(s) left in {run_dir} by interrupted writes "
            f"({', '.join(removed[:3])}{', ...' if len(removed) > 3 else ''})")


def write_config(run_dir, config, note=None):
    """config.json; a note (the CuPy stand-in's) is its first key, and read_config drops it."""
    config = {"note": note, **config} if note else config
    write_bytes(Path(run_dir) / "config.json", (json.dumps(config, indent=2) + "\n").encode())


def read_config(path):
    """config.json's configuration; a ValueError if it is not JSON."""
    config = json.loads(Path(path).read_text())
    if isinstance(config, dict):
        config.pop("note", None)
    return config


def append_record(path, **record):
    """One record of metrics.jsonl: one write of one complete line. A write that fails (a full disk) is cut
    back to where it began, so no half line stays; the OSError names the file."""
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, line) != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            os.ftruncate(fd, size)
            raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        os.close(fd)


def resume_metrics(path, step):
    """Check metrics.jsonl for a resume from the checkpoint at `step`, and keep the records up to that step
    (rewritten atomically, only if anything changes). A UsageError names the file and line of a record it
    cannot use; a torn last line and blank lines are dropped, and said so."""
    path = Path(path)
    if not path.is_file():
        return
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn = lines[-1] != b""  # the file does not end with a newline: its last write was cut short
    kept, notes, last_step, dropped = [], [], None, 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            if number < len(lines):
                notes.append(f"blank line {number} dropped")
            continue
        try:
            record = json.loads(line)
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
            if number == len(lines) and torn:
                notes.append(f"its last line, {number}, cut short by an interrupted write, dropped")
                continue
            raise _unusable(path, number, f"not a JSON record ({getattr(e, 'msg', e)})") from None
        if number == 1 and isinstance(record, dict) and list(record) == ["note"]:  # a run under the stand-in
            kept.append(line)
            continue
        record_step = record.get("step") if isinstance(record, dict) else None
        if isinstance(record_step, bool) or not isinstance(record_step, int) or record_step < 1:
            raise _unusable(path, number, 'not a record with a "step" number >= 1')
        # A step's loss record comes first, its other records (validation) after it; the losses count up by one
        # (from 1, or from where a resume into a new folder began).
        is_loss = "loss" in record
        if last_step is not None and (record_step != last_step + 1 if is_loss else record_step > last_step):
            raise _unusable(path, number, f"step {record_step} after step {last_step}: the steps of one run "
                                          f"count 1, 2, 3, ... (records of two runs mixed?)")
        if last_step is None and not is_loss:
            raise _unusable(path, number, f"a record of step {record_step} before its loss record")
        last_step = record_step if last_step is None else max(last_step, record_step)
        if record_step > step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        notes.append(f"{dropped} record(s) after step {step}, the checkpoint's, dropped: those steps run again")
    if last_step is not None and last_step < step:
        notes.append(f"it holds records up to step {last_step}, the checkpoint is at step {step}: the loss curve "
                     f"has a gap")
    if notes:
        say(f"note: {path}: " + "; ".join(notes))
    content = b"".join(line + b"\n" for line in kept)
    if content != raw:
        write_bytes(path, content)


def _unusable(path, number, what):
    return UsageError(f"{path} line {number}: {what}; --resume cannot use it: correct or delete that line (or move "
                      f"{path.name} away: the run resumes without its earlier curve)")
