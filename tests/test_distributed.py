"""Data parallelism (minunet/distributed.py): the flat gradient buffer, and, launched by mpiexec, 2 processes
training exactly as 1 process with twice the batch; Ctrl-C, resume, a dead or hung process."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minunet import checkpoint, distributed, threads
from minunet.train import build_parser, main, resolve_config, run

HERE = Path(__file__).resolve().parent
MPIEXEC = distributed.mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="MPI is not installed (pip install -e \".[mpi]\": mpi4py "
                                                       "and the mpich wheel)")

TINY = ["--depth", "2", "--base-channels", "4", "--tile", "44", "--n-synthetic", "5", "--val-every", "3",
        "--checkpoint-every", "3", "--dtype", "float64", "--quiet", "--steps", "4"]


# -- the flat buffer: no MPI needed ------------------------------------------------------------------------
def test_flat_gradients_lay_out_parameters_last_first_in_buckets_at_parameter_borders():
    shapes = [(4, 3), (5,), (2, 2, 2), (7,)]  # 12, 5, 8, 7 numbers: 32 in all
    flat = distributed.FlatGradients(shapes, np.float64, bucket_bytes=8 * 13)
    assert [s.start for s in flat.slices] == [20, 15, 7, 0]  # backward finishes the last parameter first
    # buckets of at most 13 numbers, cut at parameter borders: 7 (7 + 8 would be 15), 8 + 5, then 12 and the
    # two slots of the loss and the stop flag
    assert flat.buckets == [slice(0, 7), slice(7, 20), slice(20, 34)]
    assert flat.buffer.shape == (34,)
    big = distributed.FlatGradients([(100,), (3,)], np.float32, bucket_bytes=40)
    assert big.buckets == [slice(0, 3), slice(3, 105)]  # a parameter larger than a bucket gets one of its own
    assert distributed.FlatGradients(shapes, np.float32).buckets == [slice(0, 34)]  # default: one call


def test_flat_gradients_round_trip_and_scale():
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (5,), (2, 2, 2)]
    grads = [rng.standard_normal(s) for s in shapes]
    flat = distributed.FlatGradients(shapes, np.float64)
    flat.pack([grads[0], None, grads[2]], loss=3.0, stop=True)
    out, loss, stop = flat.unpack(0.5)
    np.testing.assert_array_equal(out[0], grads[0] * 0.5)
    np.testing.assert_array_equal(out[1], np.zeros(5))  # a parameter without a gradient counts as zeros
    np.testing.assert_array_equal(out[2], grads[2] * 0.5)
    assert (loss, stop) == (1.5, True)  # the loss is averaged with the gradients; the flag is "any"
    assert all(np.shares_memory(g, flat.buffer) for g in out)  # views: no copy back
    flat.pack(grads, loss=1.0, stop=False)
    assert flat.unpack(1.0)[2] is False


def test_one_process_changes_nothing(monkeypatch):
    for name in distributed.SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    comm = distributed.world("numpy")
    assert (comm.rank, comm.size) == (0, 1)
    assert comm.average_gradients([], 2.5, False) == (2.5, False)
    monkeypatch.setenv("PMI_SIZE", "1")  # mpiexec -n 1
    assert isinstance(distributed.world("numpy"), distributed.SingleProcess)


def test_several_processes_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails as if it were not installed
    with pytest.raises(RuntimeError, match=r"one of 2 processes, but mpi4py is not installed"):
        distributed.world("numpy")


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_collective_timeout_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, value)
    with pytest.raises(ValueError, match="MINUNET_COLLECTIVE_TIMEOUT must be a number of seconds > 0"):
        distributed.collective_timeout()


def test_processes_on_one_machine_share_its_cores_for_blas(monkeypatch):
    for name in threads.ENV_NAMES + threads.LOCAL_PROCESS_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")
    assert threads.default_threads() == 4
    assert threads.describe(4, given=False) == "threads 4 (default: 8 usable cores shared by 2 processes)"
    monkeypatch.delenv("MPI_LOCALNRANKS")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "64")
    assert threads.default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3  # the user's choice stands
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("OMPI_COMM_WORLD_LOCAL_SIZE")
    assert threads.default_threads() == 7  # one process: a core left for the rest of the machine


# -- 2 processes under mpiexec ----------------------------------------------------------------------------
def launch(command, cwd, env=None):
    """Start mpiexec in a session of its own, so that cleanup can end it with every process it started."""
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))


def finish(launcher, timeout):
    """(stdout, stderr) once it exits; never hangs the suite: past the timeout the whole session is killed."""
    try:
        return launcher.communicate(timeout=timeout)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()


def mpiexec(n, args, cwd, scenario="replicas", timeout=180, env=None):
    """mpiexec -n n tests/mpi_driver.py scenario args... -> (return code, stdout, stderr)."""
    launcher = launch([MPIEXEC, "-n", str(n), sys.executable, str(HERE / "mpi_driver.py"), scenario, *args], cwd, env)
    out, err = finish(launcher, timeout)
    return subprocess.CompletedProcess(launcher.args, launcher.returncode, out, err)


def losses(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "loss" in r]


def one_process(tmp_path, device, batch_size, *extra):
    config, _ = resolve_config(build_parser().parse_args(TINY + ["--device", device, "--batch-size",
                                                                 str(batch_size), *extra]))
    _, code = run(config, tmp_path / "one", quiet=True)
    assert code == 0
    return tmp_path / "one"


def assert_same_run(a, b, rtol):
    """Same losses, weights and velocities, up to summation order."""
    np.testing.assert_allclose(losses(a), losses(b), rtol=rtol, atol=0)
    meta_a, model_a, optim_a = checkpoint.load(a / "checkpoint.npz")
    meta_b, model_b, optim_b = checkpoint.load(b / "checkpoint.npz")
    assert meta_a["step"] == meta_b["step"]
    for name in model_a:
        np.testing.assert_allclose(model_a[name], model_b[name], rtol=rtol, atol=1e-15, err_msg=name)
    for name in optim_a:
        np.testing.assert_allclose(optim_a[name], optim_b[name], rtol=rtol, atol=1e-15, err_msg=name)


@needs_mpi
@pytest.mark.parametrize("device, extra", [("numpy", []), ("sim", ["--base-channels", "2", "--steps", "2"])])
def test_two_processes_train_exactly_as_one_with_twice_the_batch(tmp_path, device, extra):
    # Dropout (0.5) and augmentation are on: each process must drop and draw what its slice of the batch would.
    result = mpiexec(2, TINY + ["--device", device, "--batch-size", "1", "--out", "two", *extra], tmp_path)
    assert result.returncode == 0, result.stderr  # "replicas": both processes end with equal weights
    assert result.stdout.count("done:") == 1  # process 0 speaks for both
    assert json.loads((tmp_path / "two" / "config.json").read_text())["processes"] == 2
    assert_same_run(tmp_path / "two", one_process(tmp_path, device, 2, *extra), rtol=1e-12)


@needs_mpi
def test_ctrl_c_on_one_process_stops_both_after_the_same_step_and_resume_continues(tmp_path, capsys):
    two = TINY + ["--device", "numpy", "--batch-size", "1"]
    result = mpiexec(2, two + ["--out", "cut"], tmp_path, scenario="interrupt")
    assert result.returncode == 130, result.stderr
    assert "interrupted: checkpoint saved at step 3" in result.stderr  # the flag travels with step 3's all-reduce
    assert checkpoint.load(tmp_path / "cut" / "checkpoint.npz")[0]["step"] == 3
    assert main(["--resume", str(tmp_path / "cut"), "--quiet"]) == 2
    assert "was trained by 2 process(es) (global batch 2 x 1); resume it with mpiexec -n 2" in capsys.readouterr().err
    result = mpiexec(2, ["--resume", "cut", "--quiet"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert_same_run(tmp_path / "cut", one_process(tmp_path, "numpy", 2), rtol=1e-12)


@needs_mpi
def test_ctrl_c_at_the_terminal_stops_every_process_with_a_checkpoint(tmp_path):
    # The terminal's Ctrl-C reaches mpiexec, which forwards SIGINT to every process.
    command = [MPIEXEC, "-n", "2", sys.executable, "-m", "minunet.train", *TINY, "--device", "numpy",
               "--batch-size", "1", "--steps", "100000", "--checkpoint-every", "100000", "--out", "run"]
    launcher = launch(command, tmp_path)
    deadline = time.monotonic() + 120
    while launcher.poll() is None and time.monotonic() < deadline and not (
            (tmp_path / "run" / "metrics.jsonl").exists() and len(losses(tmp_path / "run")) >= 2):
        time.sleep(0.2)
    launcher.send_signal(signal.SIGINT)
    _, err = finish(launcher, 60)
    assert launcher.returncode == 130, err
    step = checkpoint.load(tmp_path / "run" / "checkpoint.npz")[0]["step"]
    assert step == len(losses(tmp_path / "run")) and f"checkpoint saved at step {step}" in err


@needs_mpi
@pytest.mark.parametrize("scenario", ["die", "stall"])
def test_a_dead_or_stalled_process_makes_the_others_exit_with_an_error_not_hang(tmp_path, scenario):
    start = time.monotonic()
    result = mpiexec(2, TINY + ["--device", "numpy", "--batch-size", "1", "--out", scenario], tmp_path,
                     scenario=scenario, env={distributed.TIMEOUT_VARIABLE: "10"})
    assert result.returncode != 0
    if scenario == "stall":  # a dead process is seen by the launcher, which ends the job; a hung one is not
        assert "process 0 of 2: the other processes did not join the all-reduce within 10 s" in result.stderr
    assert time.monotonic() - start < 60


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None,
                    reason="mpi4py is not installed (pip install -e \".[mpi]\")")
@pytest.mark.gpu
def test_nccl_all_reduce_on_one_gpu(tmp_path):
    # One process is a complete NCCL communicator: the all-reduce must hand back the gradients unchanged. No
    # launcher: MPI starts as a singleton, so this runs where mpi4py is installed without an mpiexec (as on the
    # lent GPU machine, where a skip would fail gpu_session.sh's check).
    code = ("import cupy, numpy as np; from mpi4py import MPI; from minunet import distributed, Tensor\n"
            "p = [Tensor(np.ones((3, 2)), requires_grad=True, device='cuda') for _ in range(2)]\n"
            "for i, q in enumerate(p): q.grad = cupy.full((3, 2), i + 1.0)\n"
            "comm = distributed.NCCLComm(MPI.COMM_WORLD, 60)\n"
            "assert comm.average_gradients(p, 0.5, True) == (0.5, True)\n"
            "assert all(float(q.grad.sum()) == 6 * (i + 1) for i, q in enumerate(p))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
