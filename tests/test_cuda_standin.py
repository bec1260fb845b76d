"""The cuda device's Python, on every commit: minunet's commands with `--device cuda` and benchmarks/gpu_session.sh,
end to end, in subprocesses whose `import cupy` finds the CuPy stand-in (tests/cupy_standin) over the simulator.

Where PyTorch is installed (CI installs its CPU build), its companion tests/cupy_standin/torch_cuda_standin.py
gives the bench's PyTorch-with-CUDA code a `torch.cuda` over PyTorch's CPU.

What this proves: every line of Python that runs only on cuda runs (the launcher, the bench's GPU part with
PyTorch's, NCCL's all-reduce, the script's steps, cut-offs, files and verdicts), with CuPy's strictness; the
kernels compute on the simulator as NVRTC compiles them. What only a GPU can show: speed, CUDA's own errors and
math library.
Line coverage of the cuda-only files is measured in every Python process started here (coverage.py).
"""
import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minunet import checkpoint, distributed, run_folder
from minunet.plots import plot_metrics
from test_distributed import TINY, assert_same_run

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "cupy_standin"
NOTE = "CuPy stand-in on the CPU simulator, not a GPU"
SMALL_UNET = "tile=44,depth=2,base=4"
# The stand-in takes its kernels' attributes from CuPy's NVRTC (a skip here, not at import: this file is also
# collected by the gpu_session.sh run below, whose `cupy` is the stand-in).
TORCH = importlib.util.find_spec("torch") is not None  # with it, the stand-in's torch.cuda runs the bench's PyTorch
needs_nvrtc = pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy (for NVRTC) is not installed: "
                                 "pip install -e \".[dev]\"")


def standin_env(tmp_path, **extra):
    """The environment of a process under the stand-in, measured by coverage (parallel data files in tmp_path)."""
    rc = tmp_path / "coveragerc"
    rc.write_text(f"[run]\nparallel = true\nsource = minunet\ndata_file = {tmp_path / '.coverage'}\n")
    startup = tmp_path / "startup"
    startup.mkdir(exist_ok=True)
    (startup / "sitecustomize.py").write_text("import coverage\ncoverage.process_startup()\n")
    path = [str(startup), str(STANDIN), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p), COVERAGE_PROCESS_START=str(rc),
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1", **extra)


def covered(tmp_path, file, lines=None):
    """(percent of the file's statements run (only those in `lines` if given), the line numbers not run)."""
    import coverage
    cov = coverage.Coverage(data_file=str(tmp_path / ".coverage"))
    cov.combine(keep=True)  # the parallel files stay for the next file's look
    _, statements, _, missing, _ = cov.analysis2(str(ROOT / "minunet" / file))
    if lines is not None:
        statements, missing = [s for s in statements if s in lines], [m for m in missing if m in lines]
    return 100.0 * (len(statements) - len(missing)) / len(statements), missing


def span(node):
    return set(range(node.lineno, node.end_lineno + 1))


def definition_lines(file, name):
    """The lines of the class or function `name` in minunet/<file>."""
    tree = ast.parse((ROOT / "minunet" / file).read_text())
    return span(next(n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == name))


def session(env, out, *parts):
    env = dict(env, OUT=str(out), NVRTC_ARCHS="sm_90", TRAIN_STEPS="3", CUT_FACTOR="4",  # CI's 2 busy cores
               BENCH_ARGS=f"--quick --unet {SMALL_UNET}",
               TRAIN_ARGS="--depth 2 --base-channels 4 --tile 44 --n-synthetic 4 --val-every 3")
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), *parts], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)


@needs_nvrtc
def test_gpu_session_runs_end_to_end_under_the_standin(tmp_path):
    env = standin_env(tmp_path)
    refused = session(env, ROOT / "benchmarks" / "results", "check")
    assert refused.returncode == 2 and "results-cuda-* files in benchmarks/results are a GPU's" in refused.stderr

    out = tmp_path / "out"
    check = session(env, out, "check")
    assert check.returncode == 0 and "all steps ok" in check.stdout, check.stdout[-3000:] + check.stderr
    count = next(line for line in (out / "check.txt").read_text().splitlines() if line.startswith("gpu tests:"))
    ran = int(count.split()[2])
    assert ran >= 100 and count.startswith(f"gpu tests: {ran} of {ran} collected ran (passed {ran}, "), count
    bench_train = session(env, out, "bench", "train")
    assert bench_train.returncode == 0 and "all steps ok" in bench_train.stdout, (
        bench_train.stdout[-3000:] + bench_train.stderr)

    # The files a GPU run writes (3 + 7), each text file saying first what wrote it.
    date = next(out.glob("results-cuda-*.md")).stem[len("results-cuda-"):]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["gpu.txt", "check.txt", "nvrtc_table.txt", "bench.txt", f"results-cuda-{date}.md",
         f"results-cuda-{date}.json", f"roofline-cuda-{date}.png", "train.txt", "train-cuda-metrics.jsonl",
         "train-cuda-loss.png"])
    for path in out.iterdir():
        if path.suffix != ".png":
            assert NOTE in path.read_text().splitlines()[0], path.name
    from PIL import Image
    assert Image.open(out / "train-cuda-loss.png").text["Title"] == NOTE
    report = json.loads((out / f"results-cuda-{date}.json").read_text())
    assert report["training"]["minunet"]["runs"] >= 3 and not report.get("failed")
    assert all(r["check"] == "ok" for r in report["kernels"]), [r for r in report["kernels"] if r["check"] != "ok"]
    assert f"{len(report['kernels'])} kernel timings (" in (out / "bench.txt").read_text()  # counted right
    assert "train: 3 of 3 steps" in (out / "train.txt").read_text()

    if TORCH:  # what a GPU run meets only without PyTorch (the bench ran with it), or when PyTorch fails
        edges = subprocess.run([sys.executable, "-c", GPU_BENCH_EDGES], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=300)
        assert edges.returncode == 0, edges.stderr
        assert edges.stdout.splitlines() == [
            "PyTorch without CUDA: None", "without PyTorch: {'skipped': 'PyTorch with CUDA is not installed'}",
            "PyTorch failing: RuntimeError('CUDA out of memory') RuntimeError('CUDA out of memory')"], edges.stdout

    for file, function, needs_torch in (("backends/cuda_launcher.py", None, False), ("bench/gpu.py", None, True),
                                        ("bench/timing.py", "cupy_timer", False),
                                        ("bench/timing.py", "torch_timer", True)):
        percent, missing = covered(tmp_path, file, function and definition_lines(file, function))
        print(f"coverage of {function + ' in ' if function else ''}minunet/{file} under the stand-in: {percent:.1f}%, "
              f"lines not run: {missing}")
        assert percent >= 95 or needs_torch and not TORCH, (file, function, percent, missing)


GPU_BENCH_EDGES = r"""
import sys
import torch
from minunet.bench import gpu
network = dict(tile=44, batch=1, depth=2, base=4)  # SMALL_UNET
quiet = lambda line: None
is_available, torch.cuda.is_available = torch.cuda.is_available, lambda: False
print("PyTorch without CUDA:", gpu.torch_cuda())
torch.cuda.is_available, sys.modules["torch"] = is_available, None  # import torch: ImportError
print("without PyTorch:", gpu.bench_training_cuda(True, quiet, network)["torch"])
sys.modules["torch"] = torch
def out_of_memory(*args, **kwargs):
    raise RuntimeError("CUDA out of memory")
gpu.training_step_torch = out_of_memory
failing = gpu.bench_training_cuda(True, quiet, network)
print("PyTorch failing:", failing["torch fp32"]["error"], failing["torch tf32"]["error"])
"""


def notes_in(run):
    """What each file of a run folder says first: config.json's and the checkpoint's first key, metrics.jsonl's
    first record, the plots' PNG Title."""
    from PIL import Image
    config, meta = json.loads((run / "config.json").read_text()), checkpoint.load(run / "checkpoint.npz")[0]
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    titles = {png: Image.open(run / png).text.get("Title") for png in ("loss.png", "panel.png")}
    return {"config.json": next(iter(config.items())), "checkpoint.npz": next(iter(meta.items())),
            "metrics.jsonl": first, **titles}


def red_title(png):
    """Whether the figure's top band (its title's place) holds red text."""
    from PIL import Image
    top = np.asarray(Image.open(png).convert("RGB"))[:30].astype(int)
    return bool(((top[..., 0] > 200) & (top[..., 1] < 80) & (top[..., 2] < 80)).any())


@needs_nvrtc
def test_every_file_of_a_run_folder_says_first_that_the_standin_wrote_it(tmp_path):
    env = standin_env(tmp_path)
    train = [sys.executable, "-m", "minunet.train", *TINY]
    for device in ("cuda", "numpy"):
        done = subprocess.run(train + ["--device", device, "--steps", "3", "--out", device], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    run = tmp_path / "cuda"
    assert notes_in(run) == {"config.json": ("note", NOTE), "checkpoint.npz": ("note", NOTE),
                             "metrics.jsonl": {"note": NOTE}, "loss.png": NOTE, "panel.png": NOTE}
    plot_metrics(run / "metrics.jsonl", tmp_path / "with.png", NOTE)  # the Title is also seen: red, on top
    plot_metrics(run / "metrics.jsonl", tmp_path / "without.png")
    assert red_title(tmp_path / "with.png") and not red_title(tmp_path / "without.png")
    # A resume keeps the note once, first; config.json's note is not configuration.
    resumed = subprocess.run(train + ["--resume", "cuda", "--steps", "4"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[0] == {"note": NOTE} and [r["step"] for r in records[1:] if "loss" in r] == [1, 2, 3, 4]
    assert "note" not in run_folder.read_config(run / "config.json") and not any("note" in r for r in records[1:])

    notes = notes_in(tmp_path / "numpy")  # another device, the stand-in on the path: nothing changes
    assert notes["config.json"][0] != "note" and notes["checkpoint.npz"][0] != "note", notes
    assert notes["metrics.jsonl"]["step"] == 1 and notes["loss.png"] is None and notes["panel.png"] is None, notes


NCCL_EDGES = r"""
from cupy.cuda import nccl
from mpi4py import MPI
from minunet import distributed
nccl.available = False
try:
    distributed.NCCLComm(MPI.COMM_WORLD, 60)
except RuntimeError as e:
    print(e)
nccl.available = True
comm = distributed.NCCLComm(MPI.COMM_WORLD, 60)
nccl_abort = comm.nccl.abort
comm.nccl.abort = lambda: (nccl_abort(), print("NCCL aborted"))
def abort_job(mpi_comm, code):
    print("job aborted")
    raise SystemExit(code)
distributed.abort_job = abort_job
comm.abort("stalled on purpose")
"""


@needs_nvrtc
@pytest.mark.skipif(distributed.mpiexec() is None, reason="MPI is not installed (pip install -e \".[mpi]\")")
def test_two_processes_on_nccl_train_as_one_with_twice_the_batch_and_predict_runs(tmp_path):
    env = standin_env(tmp_path, CUPY_STANDIN_DEVICES="2")
    train = [sys.executable, "-m", "minunet.train", *TINY, "--device", "cuda"]
    one = subprocess.run(train + ["--batch-size", "2", "--out", "one"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith(f"device cuda: {NOTE}; ")
    two = subprocess.run([distributed.mpiexec(), "-n", "2", *train, "--batch-size", "1", "--out", "two"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    assert json.loads((tmp_path / "two" / "config.json").read_text())["processes"] == 2
    assert_same_run(tmp_path / "two", tmp_path / "one", rtol=1e-12)

    from PIL import Image
    Image.fromarray((np.random.default_rng(0).random((40, 36)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    predict = subprocess.run([sys.executable, "-m", "minunet.predict", "--checkpoint", "one/checkpoint.npz",
                              "--input", "a.png", "--out", "pred", "--device", "cuda", "--tta"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert predict.returncode == 0, predict.stderr
    assert f"on cuda ({NOTE})" in predict.stdout.splitlines()[0]
    prob = np.load(tmp_path / "pred" / "a_prob.npy")
    assert prob.shape[-2:] == (40, 36) and np.isfinite(prob).all() and ((0 <= prob) & (prob <= 1)).all()
    for name in ("a_prob.png", "a_labels.png", "a_overlay.png"):
        assert Image.open(tmp_path / "pred" / name).text.get("Title") == NOTE, name
    Image.open(tmp_path / "a.png").save(tmp_path / "stack.tif", save_all=True, append_images=[Image.open(tmp_path / "a.png")])
    stack = subprocess.run([sys.executable, "-m", "minunet.predict", "--checkpoint", "one/checkpoint.npz",
                            "--input", "stack.tif", "--out", "pred", "--device", "cuda"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert stack.returncode == 0, stack.stderr
    for name in ("stack_prob.tif", "stack_labels.tif"):
        assert Image.open(tmp_path / "pred" / name).tag_v2.get(270) == NOTE, name

    # What a GPU run hits only when things go wrong: CuPy without NCCL, and a stalled peer (the abort; MPI_Abort
    # itself replaced, so that this one process ends normally and its coverage is written).
    edges = subprocess.run([sys.executable, "-c", NCCL_EDGES], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)
    assert edges.returncode == 3, edges.stderr
    assert edges.stdout.splitlines() == ["data parallelism on cuda needs NCCL, which CuPy could not load: "
                                         "pip install \"nvidia-nccl-cu13>=2.27.7,<3\"", "NCCL aborted", "job aborted"]
    assert "error: process 0 of 1: stalled on purpose" in edges.stderr

    percent, missing = covered(tmp_path, "distributed.py", definition_lines("distributed.py", "NCCLComm"))
    print(f"coverage of NCCLComm (minunet/distributed.py) under the stand-in: {percent:.1f}%, not run: {missing}")
    assert percent >= 95, missing
