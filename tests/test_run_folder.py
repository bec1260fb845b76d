"""The run folder (issue #23): never overwritten by a new run, one writer at a time, metrics.jsonl whole and
checked on resume, no temporary file left behind, a last checkpoint that is always finite."""
import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from minunet import checkpoint, run_folder
from minunet.train import main
from test_train import TINY, losses

ARGS = TINY + ["--device", "numpy", "--lr-decay", "none"]


def train(out, steps, *extra):
    return main(ARGS + ["--steps", str(steps), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 3-step run (steps 1, 2, 3 and a validation at 3), copied by the tests that change it."""
    folder = tmp_path_factory.mktemp("finished")
    assert train(folder, 3) == 0
    return folder


def copy_of(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name != run_folder.LOCK_NAME}


def test_a_new_run_never_replaces_a_run(finished, tmp_path, capsys):  # issue #23, case 1
    tmp_path = copy_of(finished, tmp_path)
    before = snapshot(tmp_path)
    for extra in ([], ["--tile", "45"]):  # the second would fail before its first step: it emptied metrics.jsonl
        assert train(tmp_path, 2, *extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--out {tmp_path} holds a run already" in err
        assert f"--resume {tmp_path}" in err and "another --out" in err and "--overwrite" in err
        assert snapshot(tmp_path) == before
    assert train(tmp_path, 2, "--overwrite") == 0  # asked for: replaced, not mixed
    assert [step for step, _ in losses(tmp_path)] == [1, 2]
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 2


def hold_lock(folder):
    """Another process holding the run folder's lock (as a running training does); it says when it holds it."""
    code = ("import sys; from minunet import run_folder\n"
            f"with run_folder.locked({str(folder)!r}):\n    print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def test_one_writer_at_a_time_and_a_stale_lock_is_said(finished, tmp_path, capsys):  # case 2
    tmp_path = copy_of(finished, tmp_path)
    before = snapshot(tmp_path)
    holder = hold_lock(tmp_path)
    try:
        assert main(["--resume", str(tmp_path), "--steps", "4", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path} is being written by another run (process {holder.pid} on " in err
        assert "wait for it to end" in err and err.count("\n") == 1
        assert train(tmp_path.parent / (tmp_path.name + "-other"), 1) == 0  # another folder: no conflict
    finally:
        holder.kill()  # kill -9: the lock file still names it
        holder.wait()
    assert snapshot(tmp_path) == before
    assert main(["--resume", str(tmp_path), "--steps", "4", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"was left locked by process {holder.pid} on" in err and "ended without releasing it" in err
    assert (tmp_path / run_folder.LOCK_NAME).read_bytes() == b""  # released on exit, and said so in the file


def test_the_lock_is_released_on_every_exit_and_a_failed_start_leaves_no_folder(tmp_path):
    with pytest.raises(RuntimeError), run_folder.locked(tmp_path / "run"):
        raise RuntimeError
    assert not (tmp_path / "run").exists()  # made by the lock, holding nothing else: removed
    assert train(tmp_path / "run", 1, "--data", "folder", "--data-dir", str(tmp_path)) == 2  # no images there
    assert not (tmp_path / "run").exists()
    with run_folder.locked(tmp_path):  # released: it can be taken again, here and by another process
        pass
    hold_lock(tmp_path).kill()


def test_a_torn_last_line_is_dropped_on_resume_and_the_losses_continue_exactly(tmp_path, capsys):  # case 3
    assert train(tmp_path / "whole", 6) == 0
    assert train(tmp_path / "cut", 3) == 0
    metrics = tmp_path / "cut" / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes() + b'\n{"step": 4, "loss": 0.6')  # a blank line; a write cut short
    assert main(["--resume", str(tmp_path / "cut"), "--steps", "6", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "blank line 5 dropped" in err and "its last line, 6, cut short by an interrupted write, dropped" in err
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")


@pytest.mark.parametrize("line, says", [
    (b'{"step": 2, "loss": 0.5', "not a JSON record (Expecting ',' delimiter)"),  # was: only NumPy's words
    (b'{"loss": 0.5}', 'not a record with a "step" number'),  # was: KeyError
    (b'[1, 2]', 'not a record with a "step" number'),
    (b'{"step": 1, "loss": 0.5}', "step 1 after step 1"),  # two runs' records mixed
])
def test_a_record_resume_cannot_use_is_named_by_file_and_line(finished, tmp_path, capsys, line, says):
    tmp_path = copy_of(finished, tmp_path)
    metrics = tmp_path / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines()
    metrics.write_bytes(b"\n".join(lines[:1] + [line] + lines[1:]) + b"\n")
    before = snapshot(tmp_path)
    assert main(["--resume", str(tmp_path), "--steps", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"error: {metrics} line 2: {says}" in err and "correct or delete that line" in err, err
    assert err.count("\n") == 1 and snapshot(tmp_path) == before


def test_a_full_disk_while_logging_leaves_whole_lines_and_a_resumable_run(tmp_path, monkeypatch, capsys):
    """A patched writer: the 5th record's write stores half of its line and fails (ENOSPC), as a full disk does."""
    metrics = tmp_path / "metrics.jsonl"
    real_write, calls = os.write, []

    def full_disk(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}") == str(metrics):
            calls.append(1)
            if len(calls) == 5:
                real_write(fd, data[:len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    assert train(tmp_path, 6, "--checkpoint-every", "2", "--val-every", "100") == 1
    err = capsys.readouterr().err
    assert f"stopped: cannot write {metrics}: No space left on device (free some space)" in err
    assert f"the last good checkpoint, {tmp_path / 'checkpoint.npz'} (step 4), is kept: continue with --resume" in err
    assert metrics.read_bytes().endswith(b"\n") and [s for s, _ in losses(tmp_path)] == [1, 2, 3, 4]
    monkeypatch.setattr(os, "write", real_write)
    assert main(["--resume", str(tmp_path), "--quiet"]) == 0
    assert [s for s, _ in losses(tmp_path)] == [1, 2, 3, 4, 5, 6]


def test_temporary_files_of_killed_writes_are_removed_at_the_next_start(finished, tmp_path, capsys):  # case 5
    tmp_path = copy_of(finished, tmp_path)
    for name in ("checkpoint.npz.4242.ab12cd34.tmp", "checkpoint.npz.x8y7z6w5.tmp", "metrics.jsonl.77.q.tmp"):
        (tmp_path / name).write_bytes(b"PK\x03\x04 half a checkpoint")
    (tmp_path / "notes.tmp").write_text("the user's own file")
    assert main(["--resume", str(tmp_path), "--steps", "4", "--quiet"]) == 0
    assert "removed 3 temporary file(s) left in" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.glob("*.tmp")) == ["notes.tmp"]


def test_a_diverging_run_never_saves_non_finite_weights(tmp_path, capsys):  # case 6
    assert train(tmp_path, 3, "--lr", "1e39", "--dtype", "float32", "--checkpoint-every", "1") == 1
    err = capsys.readouterr().err
    assert "stopped: the weights became non-finite by step 1 (learning rate 1e+39 too high?)" in err
    assert "NaN or infinity in model/" in err and "no checkpoint had been saved yet" in err
    assert "RuntimeWarning" not in err and "overflow" not in err  # was: NumPy's warnings before the clean stop
    assert not (tmp_path / "checkpoint.npz").exists() and not list(tmp_path.glob("*.tmp"))


def test_a_checkpoint_holding_non_finite_values_is_refused(finished, tmp_path, capsys):
    tmp_path = copy_of(finished, tmp_path)
    meta, model, optim = checkpoint.load(tmp_path)
    name = sorted(model)[0]
    model[name] = np.full_like(model[name], np.inf)  # as the diverged runs of before issue #23 saved them
    arrays = {f"model/{k}": v for k, v in model.items()} | {f"optim/{k}": v for k, v in optim.items()}
    np.savez(tmp_path / "checkpoint.npz", meta=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(checkpoint.NonFiniteError, match=f"NaN or infinity in model/{name}"):
        checkpoint.load(tmp_path / "checkpoint.npz")
    assert main(["--resume", str(tmp_path), "--steps", "4"]) == 2
    assert "it was saved after its run diverged" in capsys.readouterr().err


def test_a_run_killed_before_its_first_checkpoint_starts_again_on_resume(finished, tmp_path, capsys):
    run = copy_of(finished, tmp_path)
    (run / "checkpoint.npz").unlink()  # as kill -9 between step 1's metrics and its checkpoint leaves it
    assert train(run, 3) == 2  # a new run would replace it: refused
    capsys.readouterr()
    assert main(["--resume", str(run), "--quiet"]) == 0  # was: "checkpoint ... does not exist", so --overwrite
    assert "at step 0 of 3 on device numpy (it stopped before its first checkpoint: it starts again)" in \
        capsys.readouterr().out
    assert losses(run) == losses(finished)
