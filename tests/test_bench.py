"""minunet.bench: the counted FLOPs and bytes (by hand on known layers), the U-Net's layer list, the roofline
floor, the report files, the bench's op calls on sim against numpy, check-then-time (a wrong implementation is
never timed, and fails the run), the L2 flush before each CUDA-timed launch, and the CPU run end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_close_dtype
from minunet import bench
from minunet.bench import blas_threads, cpu, gpu, report, roofline_chart, sim_speed
from minunet.bench.layers import arrays, row, spread_to_layers, unique_shapes
from minunet.backends import get_backend

ROOT = Path(__file__).resolve().parents[1]


def test_first_layer_costs_counted_by_hand():
    # 1 -> 64 channels, 572x572 in, 570x570 out: 64*570*570 outputs, each 9 multiply-adds (Ci = 1).
    layer = dict(name="down0.conv1", op="conv3x3", N=1, Ci=1, H=572, W=572, Co=64)
    flops, nbytes = bench.cost(layer, "forward")
    assert flops == 2 * 64 * 570 * 570 * 9 == 374_284_800
    assert nbytes == 4 * (572 * 572 + 64 * 9 + 64 + 64 * 570 * 570)  # x, w, b read; y written
    assert bench.cost(layer, "grad_input") == (flops, 4 * (64 * 570 * 570 + 64 * 9 + 572 * 572))
    assert bench.cost(layer, "grad_weight") == (flops, 4 * (572 * 572 + 64 * 570 * 570 + 64 * 9))
    assert bench.cost(layer, "forward", itemsize=8)[1] == 2 * nbytes


def test_up_conv_and_head_costs_counted_by_hand():
    up = dict(name="up3.upconv", op="up_conv2x2", N=1, Ci=1024, H=28, W=28, Co=512)
    # every input pixel of every input channel feeds a 2x2 block of each of the 512 output channels
    assert bench.cost(up, "forward") == (2 * 1024 * 28 * 28 * 512 * 4,
                                         4 * (1024 * 28 * 28 + 1024 * 512 * 4 + 512 + 512 * 56 * 56))
    head = dict(name="head", op="conv1x1", N=2, Ci=64, H=388, W=388, Co=2)
    assert bench.cost(head, "grad_weight") == (2 * 2 * 64 * 388 * 388 * 2,
                                               4 * (2 * 64 * 388 * 388 + 2 * 2 * 388 * 388 + 2 * 64))


def test_the_paper_unet_layers():
    layers = bench.unet_layers()
    ops = [layer["op"] for layer in layers]
    assert ops.count("conv3x3") == 18 and ops.count("up_conv2x2") == 4 and ops[-1] == "conv1x1"
    first, bottom, head = layers[0], layers[9], layers[-1]
    assert (first["Ci"], first["H"], first["Co"]) == (1, 572, 64)
    assert (bottom["name"], bottom["Ci"], bottom["H"], bottom["Co"]) == ("down4.conv2", 1024, 30, 1024)
    assert layers[10] == dict(name="up3.upconv", op="up_conv2x2", N=1, Ci=1024, H=28, W=28, Co=512)
    assert layers[11]["Ci"] == 1024 and layers[11]["H"] == 56  # concat of the cropped skip and the upsampled
    assert (head["Ci"], head["H"], head["Co"]) == (64, 388, 2)  # the paper's 388x388 output map
    # The paper's Fig. 1, as (output size, Ci, Co) of its 18 3x3 convolutions: 144.8 GMAC in the forward.
    fig1 = [(570, 1, 64), (568, 64, 64), (282, 64, 128), (280, 128, 128), (138, 128, 256), (136, 256, 256),
            (66, 256, 512), (64, 512, 512), (30, 512, 1024), (28, 1024, 1024), (54, 1024, 512), (52, 512, 512),
            (102, 512, 256), (100, 256, 256), (198, 256, 128), (196, 128, 128), (390, 128, 64), (388, 64, 64)]
    by_hand = sum(2 * size * size * ci * co * 9 for size, ci, co in fig1)
    assert sum(bench.cost(layer, "forward")[0] for layer in layers if layer["op"] == "conv3x3") == by_hand
    assert round(by_hand / 2e9, 1) == 144.8
    with pytest.raises(ValueError, match="does not fit"):
        bench.unet_layers(tile=570)


def test_roofline_floor_and_peaks():
    # 1 GFLOP and 1 GB on a 10 TFLOP/s, 2 TB/s machine: memory-bound, 0.5 ms
    assert bench.roofline_floor(1e9, 1e9, 10e12, 2e12) == pytest.approx(5e-4)
    assert bench.roofline_floor(1e12, 1e6, 10e12, 2e12) == pytest.approx(0.1)
    assert bench.peaks_for("NVIDIA H100 80GB HBM3")[0] == "H100"
    assert bench.peaks_for("NVIDIA H100 PCIe")[0] == "H100 PCIe"
    assert bench.peaks_for("NVIDIA H200")[0] == "H200"
    assert bench.peaks_for("NVIDIA A100-SXM4-80GB")[1]["bandwidth"] == 2.039e12
    assert bench.peaks_for("Tesla T4") == (None, None)
    rows = [dict(flops=1e9, bytes=1e9, seconds=1e-3, tf32=False), dict(flops=1e12, bytes=1e6, seconds=0.05, tf32=True)]
    bench.add_roofline(rows, dict(fp32=10e12, tf32=100e12, bandwidth=2e12))
    assert rows[0]["of_roofline"] == pytest.approx(0.5) and rows[1]["floor_s"] == pytest.approx(0.01)


@pytest.mark.parametrize("op", ["conv3x3", "up_conv2x2", "conv1x1"])
def test_bench_calls_launch_the_right_op(op):
    # The bench's (op, direction) -> backend call mapping, on sim against the numpy device.
    sim, NP = get_backend("sim"), get_backend("numpy")
    layer = dict(name="t", op=op, N=1, Ci=3, H=6, W=5, Co=4)
    a = arrays(layer, np.random.default_rng(0), dtype=np.float64)
    ref = {"forward": getattr(NP, op)(a["x"], a["w"], a["b"], *([0] if op == "conv3x3" else [])),
           "grad_input": (NP.conv3x3_grad_input(a["gy"], a["w"], 0, a["x"].shape) if op == "conv3x3"
                          else getattr(NP, f"{op}_grad_input")(a["gy"], a["w"])),
           "grad_weight": (NP.conv3x3_grad_weight(a["x"], a["gy"], 0) if op == "conv3x3"
                           else getattr(NP, f"{op}_grad_weight")(a["x"], a["gy"]))}
    for direction in bench.DIRECTIONS:
        for version, is_tf32 in bench.kernel_versions(layer, direction):
            if is_tf32:
                continue  # float32 only; checked in tests/test_conv3x3_versions.py
            out = bench.minunet_call(sim, layer, direction, a, version)()
            assert_close_dtype(out, ref[direction], np.float64, name=f"{op} {direction} v{version}")


def test_report_files_hold_tables_and_environment(tmp_path):
    env = dict(device="numpy", device_name="test cpu", date="2026-01-02T03:04:05",
               versions={"numpy": np.__version__, "torch": None}, default_kernel_versions={"conv3x3_forward": 3})
    layer = dict(name="L", op="conv3x3", N=1, Ci=2, H=5, W=5, Co=3)
    flops, nbytes = bench.cost(layer, "forward")
    rows = [row(layer, "forward", "v1", flops, nbytes, 2e-3, 7, check="ok"),
            row(layer, "forward", "torch fp32", flops, nbytes, None, 0, error="RuntimeError('x')")]
    md, js = report.write_report(tmp_path, env, {"kernels": rows, "markdown": [("Per kernel", bench.kernel_table(rows))]})
    assert md.name == "results-numpy-2026-01-02.md" and js.name == "results-numpy-2026-01-02.json"
    text = md.read_text()
    assert "test cpu" in text and "## Per kernel" in text and "conv3x3_forward v3" in text
    assert "| L | conv3x3 | forward | 1,2,5,5,3 | v1 | 2 |" in text and "error: RuntimeError('x')" in text
    data = json.loads(js.read_text())
    assert data["device_name"] == "test cpu" and data["versions"]["numpy"] == np.__version__
    assert data["kernels"][0]["gflops"] == pytest.approx(flops / 2e-3 / 1e9) and "markdown" not in data


def test_totals_sum_every_layer_of_a_shape():
    layer = dict(name="a", op="conv1x1", N=1, Ci=2, H=3, W=3, Co=2)
    rows = [dict(row(layer, d, impl, 1, 1, t, 1), layers=["a", "b"])
            for d in bench.DIRECTIONS for impl, t in (("v1", 1e-3), ("v2", 2e-3))]
    table = bench.totals_table(rows)
    assert "| minunet v1 | 6.00 |" in table  # 3 directions x 2 layers x 1 ms


def test_cpu_totals_give_the_ratio_to_pytorch_and_to_the_roofline():
    layer = dict(name="a", op="conv1x1", N=1, Ci=2, H=3, W=3, Co=2)
    rows = [dict(row(layer, "forward", impl, 1, 1, t, 1), layers=["a", "b"])
            for impl, t in (("numpy", 4e-3), ("torch cpu", 2e-3))]
    bench.add_roofline(rows, dict(fp32=1e3, tf32=None, bandwidth=1e9))  # floor: 1 FLOP at 1 kFLOP/s = 1 ms
    assert "| conv1x1_forward | 8 | 4 | 2.00 | 25% |" in bench.cpu_totals_table(rows)  # 2 layers; 1 ms of 4


def test_keep_freed_memory_takes_on_glibc():
    import platform

    from minunet.memory import keep_freed_memory
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")


def fake_kernel_rows(layers, times):
    """Rows as bench_kernels_cuda returns them, for the conv3x3 forward only: times[impl] = seconds, or
    (seconds, check) / None (the launch failed) per layer name."""
    rows = []
    for layer in unique_shapes(layers):
        flops, nbytes = bench.cost(layer, "forward")
        for impl, t in times.items():
            t = t(layer["name"]) if callable(t) else t
            seconds, check = t if isinstance(t, tuple) else (t, "ok")
            extra = (dict(error="RuntimeError()") if seconds is None else
                     {} if impl.startswith("torch") else dict(check=check))
            rows.append(row(layer, "forward", impl, flops, nbytes, seconds, 5, tf32="tf32" in impl, **extra))
    return spread_to_layers(rows, layers)


def test_op_totals_pick_the_fastest_exact_version_that_passed_everywhere():
    layers = [dict(name=n, op="conv3x3", N=1, Ci=c, H=9, W=9, Co=c) for n, c in (("a", 2), ("b", 2), ("c", 4))]
    rows = fake_kernel_rows(layers, {
        "v1": 3e-3,
        "v2": lambda name: None if name == "c" else 1e-3,           # failed on one layer: not a candidate
        "v3": lambda name: (1e-3, "MISMATCH") if name == "a" else 1e-3,  # wrong on one layer: neither
        "v4": 2e-3,
        "v5 tf32": 1e-4,                                             # fastest, but not exact
        "torch fp32": 5e-4})
    totals = bench.op_totals(rows)["conv3x3_forward"]
    assert totals == pytest.approx({"v1": 9e-3, "v4": 6e-3, "v5 tf32": 3e-4, "torch fp32": 1.5e-3})  # a, b share a shape
    assert bench.fastest_exact_versions(rows) == {"conv3x3_forward": 4}
    table = bench.op_totals_table(rows)
    assert "| conv3x3_forward | 9 | - | - | 6 | 0.3 | 1.5 | v4 |" in table
    assert "`{'conv3x3_forward': 4}`" in table


def test_gpu_report_is_kept_when_the_training_step_dies(tmp_path, monkeypatch):
    # run()'s GPU-only part with the measurements faked: the kernels' report must be on disk before the
    # training step starts, and the final report must have every section.
    import minunet.backends
    monkeypatch.setattr(minunet.backends, "resolve_device", lambda device: "cuda")
    monkeypatch.setattr(report, "environment", lambda device: dict(
        device="cuda", device_name="NVIDIA H100 80GB HBM3", date="2026-01-02T03:04:05", versions={},
        default_kernel_versions={}))
    wrong = dict(row(dict(name="down0.conv1", op="conv3x3", N=1, Ci=1, H=572, W=572, Co=64), "forward", "v4", 1, 1,
                     None, 0, check="MISMATCH", mismatch="1 of 9 elements off"), layers=["down0.conv1"])
    monkeypatch.setattr(gpu, "bench_kernels_cuda", lambda layers, quick, log: fake_kernel_rows(
        layers, {"v1": 2e-3, "v3": 1e-3, "torch fp32": 1e-3}) + [wrong])

    def out_of_time(quick, log, network):
        raise KeyboardInterrupt

    monkeypatch.setattr(gpu, "bench_training_cuda", out_of_time)
    with pytest.raises(KeyboardInterrupt):
        bench.run(out=tmp_path, plot=True, log=lambda *a: None)
    md = tmp_path / "results-cuda-2026-01-02.md"
    assert "## Per op and version" in md.read_text() and "Training step" not in md.read_text()
    assert md.read_text().index("## CHECKS THAT FAILED") < md.read_text().index("## Totals")  # loud, and kept

    monkeypatch.setattr(gpu, "bench_training_cuda",
                        lambda quick, log, network: {"minunet": dict(seconds=0.25, runs=5, peak_reserved_bytes=2**30)})
    bench.run(out=tmp_path, plot=True, log=lambda *a: None)
    text = md.read_text()
    assert text.index("## Training step") < text.index("## Totals") < text.index("## Per kernel")
    assert text.count("## CHECKS THAT FAILED") == 1 and text.index("## CHECKS THAT FAILED") < text.index("## Training")
    assert "| minunet | 250.0 | 5 | 1024 reserved |" in text and "'conv3x3_forward': 3" in text
    assert (tmp_path / "roofline-cuda-2026-01-02.png").stat().st_size > 0
    assert json.loads((tmp_path / "results-cuda-2026-01-02.json").read_text())["training"]["minunet"]["runs"] == 5

    def broken_plot(*args):
        raise RuntimeError("no matplotlib backend")

    md.unlink()
    monkeypatch.setattr(roofline_chart, "plot_roofline", broken_plot)
    with pytest.raises(RuntimeError, match="no matplotlib backend"):
        bench.run(out=tmp_path, plot=True, log=lambda *a: None)
    assert "| minunet | 250.0 | 5 |" in md.read_text()  # the plot comes last: its failure keeps the numbers


def test_cpu_run_end_to_end(tmp_path):
    out = tmp_path / "results"
    env = dict(os.environ, MINUNET_CACHE_DIR=str(tmp_path / "cache"))  # the conv3x3 algorithms measured afresh
    env.pop("MINUNET_CONV_ALGO", None)
    result = subprocess.run([sys.executable, "-m", "minunet.bench", "--device", "numpy", "--quick", "--plot",
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PyTorch is not installed" in result.stdout or "training step torch cpu" in result.stdout
    [md], [js] = sorted(out.glob("results-numpy-*.md")), sorted(out.glob("results-numpy-*.json"))
    data = json.loads(js.read_text())
    assert data["device"] == "numpy" and data["versions"]["minunet"] and data["date"]
    assert data["training"]["minunet numpy"]["seconds"] > 0
    assert {row["impl"] for row in data["sim"]} >= {"v1", "v2", "v3", "v4", "v5 tf32"}
    assert "minunet numpy" in md.read_text() and "numpy % of roofline" in md.read_text()
    assert data["peaks"]["fp32"] > 1e9 and data["peaks"]["bandwidth"] > 1e8  # measured: any CPU does this
    small_unet = bench.unet_layers(**cpu.SMALL_UNET)
    numpy_rows = [row for row in data["kernels"] if row["impl"] == "numpy"]
    assert {name for row in numpy_rows for name in row["layers"]} == {layer["name"] for layer in small_unet}
    assert all(row["floor_s"] > 0 and row["of_roofline"] > 0 for row in numpy_rows)
    assert sorted(out.glob("roofline-numpy-*.png"))
    # BLAS threads: the reported setting is the one timed; each thread count idle and beside a busy process.
    from minunet import threads
    assert data["training"]["threads"] == threads.default_threads()
    assert f"threads {threads.default_threads()} (default: " in result.stdout
    by_setting = {(r["threads"], r["competing"], r["impl"]) for r in data["step_by_threads"]}
    assert {(n, c) for n, c, _ in by_setting} == {(n, c) for n in blas_threads.thread_counts() for c in (0, 1)}
    assert {1, threads.usable_cores()} <= set(blas_threads.thread_counts())
    assert all(r["seconds"] > 0 and r["load"] for r in data["step_by_threads"])
    assert "competing processes" in md.read_text() and "load averages" in md.read_text()
    # against PyTorch at 1 thread and every core: both networks' steps, conv3x3's directions, the algorithms
    against = data["against_torch"]
    counts = {1, threads.usable_cores()}
    assert {(r["network"], r["threads"]) for r in against["steps"] if r["impl"] == "minunet numpy"} == {
        (network, n) for network in cpu.NETWORKS for n in counts}
    assert {(r["direction"], r["threads"]) for r in against["conv"] if r["impl"] == "numpy"} == {
        (d, n) for d in bench.DIRECTIONS for n in counts}
    conv_layers = [layer["name"] for layer in small_unet if layer["op"] == "conv3x3"]
    chosen = {(r["threads"], r["layer"], r["direction"]): r for r in against["choices"]}
    assert set(chosen) == {(n, name, d) for n in counts for name in conv_layers for d in bench.DIRECTIONS}
    assert all(r["algorithm"] in r["seconds"] and min(r["seconds"], key=r["seconds"].get) == r["algorithm"]
               for r in chosen.values())  # measured in this run: the least time won
    assert chosen[1, "down0.conv1", "forward"]["seconds"].keys() == {"taps", "im2col", "direct"}
    assert "numpy / torch" in md.read_text() and "conv3x3 algorithm per layer" in md.read_text()


def test_threads_option_of_the_bench(capsys):
    assert bench.main(["--device", "numpy", "--threads", "0"]) == 2
    assert "--threads must be an int >= 1, got 0" in capsys.readouterr().err


def test_default_runs_table_states_the_load():
    rows = [dict(threads=1, competing=1, seconds=61.4, iou=0.9123, load="1.50 1.20 0.90", exit=0, timeout_s=300),
            dict(threads=2, competing=1, seconds=None, iou=None, load="3.00 2.00 1.00", exit="stopped", timeout_s=300)]
    table = blas_threads.default_runs_table(rows)
    assert "| 1 | 61 | 0.912 | 1.50 1.20 0.90 |" in table
    assert "| 1 | over 300 (stopped) | - | 3.00 2.00 1.00 |" in table


def test_step_table_without_pytorch():
    rows = [dict(threads=1, competing=0, impl="minunet numpy", seconds=0.1234, runs=3, load="0.10 0.20 0.30")]
    assert "| 0 | 123.4 | not installed | - | 0.10 0.20 0.30 |" in blas_threads.step_table(rows)


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="counts child processes in /proc (Linux)")
def test_competing_processes_run_only_inside_the_block():
    import os

    with blas_threads.competing_processes(1):
        children = [p for p in os.listdir("/proc") if p.isdigit() and _parent(p) == os.getpid()]
        assert len(children) == 1
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _parent(p) == os.getpid()]


def _parent(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_a_wrong_implementation_is_reported_and_never_timed():
    # llm.c's order: every candidate is checked against the float64 reference before any is timed; a wrong one
    # is never timed, on this layer or a later one, and the log says MISMATCH with its worst element.
    from minunet.bench.check_then_time import Candidate, check_then_time
    from minunet.bench.layers import minunet_call
    NP = get_backend("numpy")
    timed, log = [], []

    def timer_of(name):
        def timer(run):
            timed.append(name)
            run()
            return 1e-3
        return timer

    failed, rows = {}, []
    for layer in [dict(name="a", op="conv1x1", N=1, Ci=3, H=4, W=5, Co=2), dict(name="b", op="conv1x1", N=1, Ci=2,
                                                                               H=3, W=3, Co=4)]:
        host = arrays(layer, np.random.default_rng(0))
        right = minunet_call(NP, layer, "forward", host)
        wrong = lambda right=right: right() * np.float32(1.001)  # noqa: E731  off by 1e-3: past 1e-4 of max|ref|
        rows += check_then_time(layer, "forward", host, [Candidate("v1", False, right, timer_of("v1")),
                                                         Candidate("v2", False, wrong, timer_of("v2"))],
                                dict(min_runs=2, max_runs=2, warmup=0), failed, log.append)
    assert "v2" not in timed and timed.count("v1") == 4  # two timed runs on each layer
    by = {(r["layer"], r["impl"]): r for r in rows}
    assert by["a", "v1"]["check"] == "ok" and by["a", "v1"]["seconds"] == 1e-3 and by["a", "v1"]["rel_error"] < 1e-6
    assert by["a", "v2"]["check"] == "MISMATCH" and by["a", "v2"]["seconds"] is None
    assert "worst at" in by["a", "v2"]["mismatch"] and by["a", "v2"]["rel_error"] > 1e-4
    assert by["b", "v2"]["check"] == "not run: failed its check on a" and by["b", "v2"]["seconds"] is None
    assert [line for line in log if line.startswith("MISMATCH conv1x1_forward v2 on a: ")]
    assert failed == {"conv1x1_forward v2": "a"}


def test_the_check_fails_on_nan_and_names_the_worst_element():
    from minunet.bench.check_then_time import check
    ref = np.array([[1.0, -2.0], [0.5, 4.0]])
    assert check(ref.astype(np.float32), ref)["check"] == "ok"
    out = ref.copy()
    out[1, 0] = np.nan  # an element never written
    result = check(out, ref)
    assert result["check"] == "MISMATCH" and "NaN, never written" in result["mismatch"]
    assert "the first at index (1, 0)" in result["mismatch"]  # the only wrong element, so the worst
    off = ref + np.array([[0, 0], [0, 4e-3]])  # 1e-3 of max|ref|: only TF32's tolerance takes it
    assert check(off, ref)["check"] == "MISMATCH" and check(off, ref, tf32=True)["check"] == "ok"


def test_the_cuda_timer_flushes_l2_outside_the_timed_interval(monkeypatch):
    # A stand-in for CuPy records the order of what reaches the GPU's stream.
    import types
    events = []

    class Event:
        def record(self):
            events.append("event")

        def synchronize(self):
            pass

    class Buffer:
        def __init__(self, nbytes):
            self.nbytes = nbytes

        def fill(self, value):
            events.append(f"write {self.nbytes} bytes")

    runtime = types.SimpleNamespace(cudaDevAttrL2CacheSize=38, deviceGetAttribute=lambda attr, device: {38: 50 << 20}[attr])
    cuda = types.SimpleNamespace(runtime=runtime, Event=Event, Device=lambda: types.SimpleNamespace(id=0),
                                 get_elapsed_time=lambda start, end: 2.0)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=cuda, uint8=np.uint8,
                                                                   empty=lambda n, dtype: Buffer(n)))
    from minunet.bench.timing import cupy_timer
    timer = cupy_timer()
    assert timer(lambda: events.append("launch")) == 2e-3
    assert events == [f"write {100 << 20} bytes", "event", "launch", "event"]  # twice L2, before the start event


def test_a_failed_check_fails_the_run_and_comes_first_in_the_report(tmp_path, monkeypatch, capsys):
    layer = dict(name="tiny", op="conv3x3", N=1, Ci=1, H=4, W=4, Co=1)
    wrong = row(layer, "forward", "v4", 1, 1, None, 0, check="MISMATCH", rel_error=0.5,
                mismatch="3 of 4 elements off by more than 0.0001; worst at (0, 0, 1, 1): got 1.0, expected 2.0")
    monkeypatch.setattr(sim_speed, "bench_sim", lambda quick, log: [wrong, row(layer, "forward", "v1", 1, 1, 1e-3, 1,
                                                                          check="ok")])
    assert bench.main(["--device", "sim", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "FAILED: 1 implementation(s) failed their check" in err and "conv3x3_forward v4" in err
    [md] = tmp_path.glob("results-sim-*.md")
    text = md.read_text()
    assert text.index("## CHECKS THAT FAILED (not timed)") < text.index("## The sim device")
    assert "| tiny | conv3x3 | forward | v4 | 3 of 4 elements off" in text


# python -m minunet.bench OP DIRECTION: one kernel, checked on every layer of the op, then timed.

def test_one_kernel_on_sim_checks_every_version_then_times_it(capsys):
    assert bench.main(["conv1x1", "forward", "--device", "sim", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "on 1 layer(s) of the small U-Net of the CPU bench" in out and "load averages" in out
    for version in ("v1", "v2"):  # the small U-Net's head: 16 -> 2 channels on 84x84, batch 2
        assert f"| head | conv1x1 | forward | 2,16,84,84,2 | {version} | " in out
    assert "no roofline" in out and "total over the 1 layer(s): " in out
    assert bench.main(["conv3x3", "grad_weight", "--version", "3", "--layer", "down2.conv1", "--device", "sim",
                       "--quick"]) == 0
    out = capsys.readouterr().out
    assert "| down2.conv1 | conv3x3 | grad_weight | 2,32,28,28,64 | v3 | " in out and "| v1 |" not in out


def test_one_kernel_on_numpy_gives_the_fraction_of_the_measured_roofline(capsys):
    assert bench.main(["conv1x1", "grad_weight", "--layer", "head", "--device", "numpy", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "of the paper's U-Net" in out and "roofline measured now: " in out
    [line] = [line for line in out.splitlines() if line.startswith("| head | conv1x1 | grad_weight | 1,64,388,388,2 | numpy |")]
    ms, gflops, _, floor_ms, of_roofline, check = [cell.strip() for cell in line.split("|")[6:12]]
    assert float(ms) > 0 and float(gflops) > 0 and float(floor_ms) > 0 and of_roofline.endswith("%")
    assert check == "ok"
    assert "PyTorch is not installed" in out or "| torch cpu |" in out


@pytest.mark.parametrize("argv, words", [
    (["conv5x5", "forward"], "unknown op 'conv5x5': one of conv3x3, up_conv2x2, conv1x1"),
    (["conv3x3", "fwd"], "unknown direction 'fwd' of conv3x3: one of forward, grad_input, grad_weight"),
    (["conv3x3"], "give a direction after the op: one of forward, grad_input, grad_weight"),
    (["conv3x3", "forward", "--version", "9", "--device", "sim"], "has no version '9': one of 1, 2, 3, 4, 5 (tf32)"),
    (["conv3x3", "forward", "--version", "2", "--device", "numpy"], "the numpy device has one implementation"),
    (["conv3x3", "forward", "--layer", "head", "--device", "sim"], "the conv3x3 layers of the small U-Net of the CPU "
                                                                   "bench (tile 124, batch 2, depth 3, base 16) are "
                                                                   "down0.conv1, down0.conv2, down1.conv1,"),
    (["conv1x1", "forward", "--layer", "down0.conv1", "--device", "numpy"], "the conv1x1 layers of the paper's U-Net "
                                                                            "(572x572 tile, batch 1) are head"),
    (["conv3x3", "forward", "--plot"], "--plot: for the whole bench"),
    (["--version", "3"], "--version and --layer go with OP DIRECTION"),
])
def test_one_kernel_bad_names_get_one_line_listing_the_valid_ones(argv, words, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_one_kernel_never_times_a_version_that_fails_on_any_layer(monkeypatch, capsys):
    # v2 of the up-convolution is made wrong on the second layer only: it must not be timed on the first either.
    from minunet.bench import one_kernel
    calls = {}

    def counted(backend, layer, direction, a, version=None):
        run = bench.minunet_call(backend, layer, direction, a, version)

        def call():
            calls[layer["name"], version] = calls.get((layer["name"], version), 0) + 1
            out = run()
            return out * np.float32(1.001) if (layer["name"], version) == ("up0.upconv", 2) else out
        return call

    monkeypatch.setattr(one_kernel, "minunet_call", counted)
    assert bench.main(["up_conv2x2", "forward", "--device", "sim", "--quick"]) == 1
    out = capsys.readouterr().out
    assert calls["up1.upconv", 2] == calls["up0.upconv", 2] == 1  # checked once on each layer, never timed
    assert calls["up1.upconv", 1] > 1 and calls["up0.upconv", 1] > 1  # v1 passed: checked, then timed
    [mismatch] = [line for line in out.splitlines() if line.startswith("MISMATCH up_conv2x2_forward v2 on up0.upconv")]
    assert "elements wrong" in mismatch and "the worst at (" in mismatch
    assert "| up0.upconv | up_conv2x2 | forward | 2,32,44,44,16 | v1 | " in out and "| v2 |" not in out
    assert "FAILED: v2 failed the check against the float64 reference and was not timed" in out


def test_one_kernel_reports_a_version_that_raises_and_fails_the_run(monkeypatch, capsys):
    from minunet.bench import one_kernel

    def v2_raises(backend, layer, direction, a, version=None):
        if version == 2:
            def launch():
                raise RuntimeError("too many resources requested for launch")
            return launch
        return bench.minunet_call(backend, layer, direction, a, version)

    monkeypatch.setattr(one_kernel, "minunet_call", v2_raises)
    assert bench.main(["conv1x1", "grad_input", "--device", "sim", "--quick"]) == 1
    out = capsys.readouterr().out
    assert "ERROR conv1x1_grad_input v2 on head: RuntimeError('too many resources requested for launch'); never timed" in out
    assert "| head | conv1x1 | grad_input | 2,16,84,84,2 | v1 | " in out and "| v2 |" not in out


def test_the_unet_option_names_a_bad_value_and_is_for_cuda_only(capsys):
    from minunet.bench.driver import main
    with pytest.raises(SystemExit):
        main(["--unet", "depth=2,width=3"])
    assert "unknown ['width']; the numbers are tile, batch, depth, base" in capsys.readouterr().err
    assert main(["--device", "numpy", "--unet", "depth=2"]) == 2
    assert "--unet chooses the network measured on cuda" in capsys.readouterr().err


def test_train_before_after_runs_both_checkouts_in_turn():
    # HEAD against this checkout: both train, each row says its time, CPU time and IoU (tiny network, 2 steps).
    tiny = ["--depth", "2", "--base-channels", "4", "--tile", "44", "--batch-size", "1", "--n-synthetic", "5",
            "--steps", "2", "--val-every", "2"]
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_before_after.py"), "HEAD", "--rounds", "1",
                             "--", *tiny], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| before", "| after"))]
    assert [row.split(" | ")[0] for row in rows] == ["| before, round 1", "| after, round 1"]
    assert all(0 <= float(row.split(" | ")[5]) <= 1 for row in rows), result.stdout  # the validation IoU


def test_settle_waits_while_a_thread_of_the_process_still_runs():
    # What PyTorch's OpenMP threads do after a call: spin for some milliseconds. On fake clocks (a real spinning
    # thread is descheduled now and then on a loaded machine): another thread burns CPU until 32 ms, so
    # settle() returns after the first 5 ms window past it; on a quiet process, after one window; never past
    # its limit.
    from minunet.bench.cpu import settle

    def clocks(busy_until):
        now = {"wall": 0.0, "cpu": 0.0}

        def sleep(seconds):
            start, now["wall"] = now["wall"], now["wall"] + seconds
            now["cpu"] += max(0.0, min(now["wall"], busy_until) - start)
        return now, (lambda: now["wall"], lambda: now["cpu"], sleep)

    for busy_until, settled_at in [(0.032, 0.040), (0.0, 0.005), (1.0, 0.1)]:
        now, fake = clocks(busy_until)
        settle(clocks=fake)
        assert abs(now["wall"] - settled_at) < 1e-9, (busy_until, now["wall"])
