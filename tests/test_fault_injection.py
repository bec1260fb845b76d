"""Fault injection (issue #23): kill -9 in a loop while training writes its checkpoint (every step) and its metrics,
and a disk that fills up (a small tmpfs, where one can be mounted). Whatever happens: the last checkpoint is
readable and finite, the run can be resumed, the next start leaves no temporary file, and the resumed run's
losses are exactly those of a run that was never interrupted."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minunet import checkpoint
from minunet.train import main
from test_train import TINY, losses

ARGS = TINY + ["--device", "numpy", "--threads", "1", "--checkpoint-every", "1", "--val-every", "8", "--quiet"]
KILLS = 10


def uninterrupted(folder, steps):
    assert main(ARGS + ["--steps", str(steps), "--out", str(folder)]) == 0
    return losses(folder)


def size(path):
    return path.stat().st_size if path.exists() else 0


# Starts trainings fast: the libraries are loaded once, in this process, which forks each training from its one
# thread (a fresh `python -m minunet.train` spends a second or more importing them, ten times over). Each child
# is a whole training process: its own lock, its own files, killed by SIGKILL like any other.
ZYGOTE = """
import json, os, signal, sys
from minunet.train import main
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reaped by the kernel: gone once killed
for line in sys.stdin:
    argv, log = json.loads(line)
    pid = os.fork()
    if pid == 0:
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.dup2(out, 2)
        os._exit(main(argv))
    print(pid, flush=True)
"""


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_kill_9_in_a_loop_never_loses_the_run(tmp_path, capsys):
    steps, run = 40, tmp_path / "run"
    reference = uninterrupted(tmp_path / "reference", steps)
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rng = np.random.default_rng(23)
    killed_mid_write, left, logs = 0, [], []
    try:
        for kill in range(KILLS):
            argv = (["--resume", str(run)] if (run / "config.json").exists()
                    else ARGS + ["--steps", str(steps), "--out", str(run)])
            logged = size(run / "metrics.jsonl")
            logs.append(tmp_path / f"stderr-{kill}.txt")
            zygote.stdin.write(json.dumps([argv, str(logs[-1])]) + "\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            deadline = time.monotonic() + 60
            while size(run / "metrics.jsonl") <= logged and not gone(pid) and time.monotonic() < deadline:
                time.sleep(0.002)  # until this start has trained a step
            assert not gone(pid), logs[-1].read_text()  # it neither finished nor failed
            assert not [p for p in left if p.exists()]  # the previous kill's temporary files: removed by this start
            time.sleep(rng.uniform(0, 0.05))
            os.kill(pid, signal.SIGKILL)
            while not gone(pid):
                time.sleep(0.001)
            left = sorted(run.glob("*.tmp"))
            killed_mid_write += bool(left)
            if (run / "checkpoint.npz").exists():
                meta, state, _ = checkpoint.load(run)  # readable, and finite (load checks)
                assert meta["step"] <= len(losses(run))
    finally:
        zygote.kill()
        zygote.communicate()
    assert main(["--resume", str(run), "--quiet"]) == 0  # never a run that cannot be resumed
    assert losses(run) == reference
    assert not list(run.glob("*.tmp"))
    assert any("was left locked by process" in log.read_text() for log in logs)  # the stale lock, said
    print(f"{KILLS} kill -9s, {killed_mid_write} of them in the middle of a write (a temporary file left, removed "
          f"at the next start); the run resumed to exactly the uninterrupted losses")


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs is not permitted here (the patched-writer tests of test_run_folder.py "
                    "and test_user_errors.py cover a full disk)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_stops_the_run_cleanly_and_it_resumes_exactly(small_disk, tmp_path, capsys):
    reference = uninterrupted(tmp_path / "reference", 6)
    page = os.statvfs(small_disk).f_frsize
    pages = -(-size(tmp_path / "reference" / "checkpoint.npz") // page)
    # Room for config.json, metrics.jsonl, the lock and one checkpoint, and half of the next one's temporary file.
    free = os.statvfs(small_disk).f_bavail * page
    (small_disk / "filler").write_bytes(b"\0" * (free - (pages + 3) * page - pages * page // 2))
    run = small_disk / "run"
    assert main(ARGS + ["--steps", "6", "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"stopped: cannot write {run / 'checkpoint.npz'}: No space left on device (free some space)" in err
    assert "the last good checkpoint" in err and "Traceback" not in err
    step = checkpoint.load(run)[0]["step"]
    assert 1 <= step < 6 and not list(run.glob("*.tmp"))
    (small_disk / "filler").unlink()
    assert main(["--resume", str(run), "--quiet"]) == 0
    assert losses(run) == reference
