"""No traceback for a user's mistake (issue #23): every path and option checked before the work, one line naming
it and the fix; a full disk, a missing GPU and Ctrl-C at any moment (once or twice) handled the same way."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minunet import checkpoint
from minunet import evaluate
from minunet.backends import cuda_available
from minunet.train import main
from test_train import TINY, write_folder

ARGS = TINY + ["--device", "numpy", "--steps", "2"]


def train(*argv):
    return main(ARGS + [str(a) for a in argv])


def one_line(capsys, says):
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write: permissions for a user, a read-only tmpfs for root (skipped where it cannot
    be mounted)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("as root, a read-only folder needs a tmpfs mount, which is not permitted here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("out, says", [  # case 7: each was a traceback
    ("FILE", "--out {tmp}/file.txt is a file, not a folder: give a folder"),
    ("FILE/run", "--out {tmp}/file.txt/run: {tmp}/file.txt is a file, so no folder can be made under it"),
    ("{tmp}/" + "n" * 300, "bytes long, over this file system's 255: choose a shorter name"),
])
def test_a_run_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, out, says):
    (tmp_path / "file.txt").write_text("x")
    out = out.replace("FILE", str(tmp_path / "file.txt")).replace("{tmp}", str(tmp_path))
    assert train("--out", out) == 2
    one_line(capsys, says.format(tmp=tmp_path))


def test_an_unwritable_run_folder_is_one_line(read_only_folder, capsys):
    assert train("--out", read_only_folder / "run") == 2
    one_line(capsys, f"{read_only_folder} is not writable (permission denied or a read-only file system)")


def test_a_folder_where_the_checkpoint_goes_is_one_line_before_training(tmp_path, capsys):
    (tmp_path / "checkpoint.npz").mkdir()
    assert train("--out", tmp_path) == 2
    one_line(capsys, f"{tmp_path / 'checkpoint.npz'} is a folder, where the run writes its checkpoint.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_data_folders_that_cannot_be_read_are_named(tmp_path, capsys, monkeypatch):
    write_folder(tmp_path / "d", 3, seed=0)
    masks = tmp_path / "d" / "masks"
    iterdir = Path.iterdir

    def denied(self):
        if self == masks:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", denied)  # as chmod 000 does for a user (root reads through it)
    assert train("--data", "folder", "--data-dir", tmp_path / "d", "--out", tmp_path / "run") == 2
    one_line(capsys, f"{masks} cannot be read (Permission denied)")
    monkeypatch.undo()
    (masks / "9.png").symlink_to(tmp_path / "gone.png")  # was: skipped without a word
    assert train("--data", "folder", "--data-dir", tmp_path / "d", "--out", tmp_path / "run") == 2
    one_line(capsys, f"{masks / '9.png'} is a broken symbolic link (to {tmp_path / 'gone.png'}, which does not exist)")
    assert not (tmp_path / "run").exists()


def test_misleading_messages_of_train_name_the_option_and_the_file(tmp_path, capsys):
    write_folder(tmp_path / "d", 3, seed=0)
    assert train("--data", "folder", "--data-dir", tmp_path / "d", "--val-data-dir", tmp_path / "none") == 2
    one_line(capsys, f"--val-data-dir {tmp_path / 'none'} is not a folder")  # was: "data_dir ... is not a folder"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "d" / "images" / "0.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "d" / "masks" / "0.png")
    assert train("--data", "folder", "--data-dir", tmp_path / "d", "--val-fraction", "0.34",
                 "--out", tmp_path / "run") == 2
    one_line(capsys, f"{tmp_path / 'd' / 'images' / '0.png'} is 20x20 px, smaller than the 28 px output tile")
    assert not (tmp_path / "run").exists()  # was: found at the first step, after config.json was written


def test_a_checkpoint_without_the_training_state_cannot_be_resumed(tmp_path, capsys):  # case 12
    assert train("--out", tmp_path) == 0
    meta, model, optim = checkpoint.load(tmp_path)
    del meta["train_config"]
    arrays = {f"model/{k}": v for k, v in model.items()} | {f"optim/{k}": v for k, v in optim.items()}
    np.savez(tmp_path / "checkpoint.npz", meta=np.array(json.dumps(meta)), **arrays)
    assert main(["--resume", str(tmp_path), "--steps", "3"]) == 2
    one_line(capsys, "lacks train_config in its metadata, so it cannot be resumed")


def test_a_full_disk_at_a_checkpoint_or_at_the_plots_is_one_line(tmp_path, capsys, monkeypatch):  # case 9
    savez = np.savez

    def full_disk(file, **arrays):
        if json.loads(str(arrays["meta"]))["step"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write to a full disk: no file name
        return savez(file, **arrays)

    monkeypatch.setattr(np, "savez", full_disk)
    assert train("--out", tmp_path / "a", "--checkpoint-every", "1") == 1
    err = one_line(capsys, f"stopped: cannot write {tmp_path / 'a' / 'checkpoint.npz'}: No space left on device")
    assert f"the last good checkpoint, {tmp_path / 'a' / 'checkpoint.npz'} (step 1), is kept: continue with" in err
    assert checkpoint.load(tmp_path / "a")[0]["step"] == 1 and not list((tmp_path / "a").glob("*.tmp"))
    monkeypatch.undo()
    import matplotlib.figure

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", no_space)
    assert train("--out", tmp_path / "b") == 0  # the run finished: said so
    out, err = capsys.readouterr()
    assert "done: 2 steps" in out and "metrics.jsonl" in out and "loss.png" not in out
    assert f"warning: the plots were not all written (cannot write {tmp_path / 'b' / 'loss.png'}: No space" in err


def test_a_diverging_run_stops_without_numpy_warnings(tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train("--out", tmp_path, "--lr", "1e39", "--dtype", "float32", "--steps", "3") == 1
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


def wait_for_minunet(child):
    """Until minunet's package has begun loading (NumPy, which it imports first, is mapped): before that, Python
    itself is starting, and a Ctrl-C there is Python's own traceback."""
    maps = Path(f"/proc/{child.pid}/maps")
    while child.poll() is None and "_multiarray_umath" not in maps.read_text():
        time.sleep(0.005)


def run_train(tmp_path, interrupt):
    child = subprocess.Popen([sys.executable, "-m", "minunet.train", *TINY, "--device", "numpy", "--steps", "400",
                              "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    interrupt(child)
    out, err = child.communicate(timeout=120)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    return child.returncode, out, err


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4])
def test_ctrl_c_in_the_first_second_is_quiet(tmp_path, delay):  # case 10
    def interrupt(child):
        wait_for_minunet(child)
        time.sleep(delay)
        child.send_signal(signal.SIGINT)

    code, _, _ = run_train(tmp_path, interrupt)
    assert code == 130
    if (tmp_path / "run").exists():  # interrupted once training began: resumable
        assert checkpoint.load(tmp_path / "run")[0]["step"] >= 0


def test_a_second_ctrl_c_does_not_cut_the_checkpoint_or_the_plots_short(tmp_path):  # case 10
    def interrupt(child):
        while not (tmp_path / "run" / "metrics.jsonl").exists():  # training has begun
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        time.sleep(0.02)
        child.send_signal(signal.SIGINT)

    code, _, err = run_train(tmp_path, interrupt)
    assert code == 130 and "interrupted: checkpoint saved at step" in err
    assert (tmp_path / "run" / "loss.png").is_file() and checkpoint.load(tmp_path / "run")[0]["step"] >= 1


def test_evaluate_limits_the_thresholds_and_names_bad_npy_files(tmp_path, capsys):  # case 13
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_code:
        evaluate.main(["--pred", str(tmp_path), "--truth", str(tmp_path), "--thresholds", "0:1:1e-9"])
    assert exit_code.value.code == 2 and time.perf_counter() - start < 5  # was: 1.9 GB after 18 s and climbing
    assert "makes 1,000,000,00" in capsys.readouterr().err  # thresholds; at most 1000
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "truth.png")
    np.save(tmp_path / "empty.npy", np.zeros(0))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name, says in (("empty.npy", "an empty array (shape (0,))"), ("objects.npy", "holds Python objects")):
        assert evaluate.main(["--pred", str(tmp_path / name), "--truth", str(tmp_path / "truth.png")]) == 2
        err = one_line(capsys, f"{tmp_path / name}: {says}")
        assert "allow_pickle" not in err and "reduction operation" not in err


def test_evaluate_says_swapped_for_a_truth_folder_of_probabilities(tmp_path, capsys):
    for folder in ("pred", "truth"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "pred" / "a.png")
    np.save(tmp_path / "truth" / "a_prob.npy", np.zeros((2, 4, 4), np.float32))
    assert evaluate.main(["--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth")]) == 2
    one_line(capsys, "were --pred and --truth swapped?")  # was: "no prediction for 1 of 1 truth images (a_prob)"


def test_evaluate_json_path_is_checked_before_scoring(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    assert evaluate.main(["--pred", str(tmp_path), "--truth", str(tmp_path), "--json",
                          str(tmp_path / "file.txt" / "s.json")]) == 2
    one_line(capsys, f"--json {tmp_path / 'file.txt' / 's.json'}: {tmp_path / 'file.txt'} is a file")


def test_bench_checks_out_and_the_device_before_measuring(tmp_path, capsys):  # cases 7 and 8
    from minunet.bench import main as bench
    (tmp_path / "file.txt").write_text("x")
    start = time.perf_counter()
    assert bench(["--device", "numpy", "--quick", "--out", str(tmp_path / "file.txt")]) == 2
    assert time.perf_counter() - start < 5  # was: a traceback after 24 s of measuring, the results lost
    one_line(capsys, f"--out {tmp_path / 'file.txt'} is a file, not a folder")
    if not cuda_available():
        assert bench(["--device", "cuda", "--out", str(tmp_path)]) == 2
        one_line(capsys, "--device cuda: device 'cuda' asked for, but no usable GPU was found")


def test_exercises_timeout_must_be_positive(capsys):
    from minunet.exercises.__main__ import main as exercises
    assert exercises(["check", "relu", "--timeout", "-5"]) == 2
    one_line(capsys, "--timeout must be a number of seconds > 0, got -5")  # was: FAILED, blaming the kernel


def test_a_reader_that_stops_reading_ends_a_tool_without_a_traceback():
    """`python -m minunet.exercises list | head -1`: the pipe's reader is gone before the tool prints."""
    child = subprocess.Popen([sys.executable, "-m", "minunet.exercises", "list"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    child.stdout.close()  # before the tool has imported, let alone printed
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err
