"""minunet.bench: the counted FLOPs and bytes (by hand on known layers), the U-Net's layer list, the roofline
floor, the report files, the bench's op calls on sim against numpy, and the CPU run end to end."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_close_dtype
from minunet import bench
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
    a = bench._arrays(layer, np.random.default_rng(0), dtype=np.float64)
    ref = {"forward": getattr(NP, op)(a["x"], a["w"], a["b"], *([0] if op == "conv3x3" else [])),
           "grad_input": (NP.conv3x3_grad_input(a["gy"], a["w"], 0, a["x"].shape) if op == "conv3x3"
                          else getattr(NP, f"{op}_grad_input")(a["gy"], a["w"])),
           "grad_weight": (NP.conv3x3_grad_weight(a["x"], a["gy"], 0) if op == "conv3x3"
                           else getattr(NP, f"{op}_grad_weight")(a["x"], a["gy"]))}
    for direction in bench.DIRECTIONS:
        for version, is_tf32 in bench.kernel_versions(layer, direction):
            if is_tf32:
                continue  # float32 only; checked in tests/test_conv_versions.py
            out = bench.minunet_call(sim, layer, direction, a, version)()
            assert_close_dtype(out, ref[direction], np.float64, name=f"{op} {direction} v{version}")


def test_report_files_hold_tables_and_environment(tmp_path):
    env = dict(device="numpy", device_name="test cpu", date="2026-01-02T03:04:05",
               versions={"numpy": np.__version__, "torch": None}, default_kernel_versions={"conv3x3_forward": 3})
    layer = dict(name="L", op="conv3x3", N=1, Ci=2, H=5, W=5, Co=3)
    flops, nbytes = bench.cost(layer, "forward")
    rows = [bench._row(layer, "forward", "v1", flops, nbytes, 2e-3, 7, check="ok"),
            bench._row(layer, "forward", "torch fp32", flops, nbytes, None, 0, error="RuntimeError('x')")]
    md, js = bench.write_report(tmp_path, env, {"kernels": rows, "markdown": [("Per kernel", bench.kernel_table(rows))]})
    assert md.name == "results-numpy-2026-01-02.md" and js.name == "results-numpy-2026-01-02.json"
    text = md.read_text()
    assert "test cpu" in text and "## Per kernel" in text and "conv3x3_forward v3" in text
    assert "| L | conv3x3 | forward | 1,2,5,5,3 | v1 | 2 |" in text and "error: RuntimeError('x')" in text
    data = json.loads(js.read_text())
    assert data["device_name"] == "test cpu" and data["versions"]["numpy"] == np.__version__
    assert data["kernels"][0]["gflops"] == pytest.approx(flops / 2e-3 / 1e9) and "markdown" not in data


def test_totals_sum_every_layer_of_a_shape():
    layer = dict(name="a", op="conv1x1", N=1, Ci=2, H=3, W=3, Co=2)
    rows = [dict(bench._row(layer, d, impl, 1, 1, t, 1), layers=["a", "b"])
            for d in bench.DIRECTIONS for impl, t in (("v1", 1e-3), ("v2", 2e-3))]
    table = bench.totals_table(rows)
    assert "| minunet v1 | 6.00 |" in table  # 3 directions x 2 layers x 1 ms


def test_cpu_totals_give_the_ratio_to_pytorch_and_to_the_roofline():
    layer = dict(name="a", op="conv1x1", N=1, Ci=2, H=3, W=3, Co=2)
    rows = [dict(bench._row(layer, "forward", impl, 1, 1, t, 1), layers=["a", "b"])
            for impl, t in (("numpy", 4e-3), ("torch cpu", 2e-3))]
    bench.add_roofline(rows, dict(fp32=1e3, tf32=None, bandwidth=1e9))  # floor: 1 FLOP at 1 kFLOP/s = 1 ms
    assert "| conv1x1_forward | 8 | 4 | 2.00 | 25% |" in bench.cpu_totals_table(rows)  # 2 layers; 1 ms of 4


def test_keep_freed_memory_takes_on_glibc():
    import platform

    from minunet.backends.numpy_backend import keep_freed_memory
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")


def fake_kernel_rows(layers, times):
    """Rows as bench_kernels_cuda returns them, for the conv3x3 forward only: times[impl] = seconds, or
    (seconds, check) / None (the launch failed) per layer name."""
    rows = []
    for layer in bench._unique_shapes(layers):
        flops, nbytes = bench.cost(layer, "forward")
        for impl, t in times.items():
            t = t(layer["name"]) if callable(t) else t
            seconds, check = t if isinstance(t, tuple) else (t, "ok")
            extra = (dict(error="RuntimeError()") if seconds is None else
                     {} if impl.startswith("torch") else dict(check=check))
            rows.append(bench._row(layer, "forward", impl, flops, nbytes, seconds, 5, tf32="tf32" in impl, **extra))
    return bench._spread_to_layers(rows, layers)


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
    monkeypatch.setattr(bench, "environment", lambda device: dict(
        device="cuda", device_name="NVIDIA H100 80GB HBM3", date="2026-01-02T03:04:05", versions={},
        default_kernel_versions={}))
    monkeypatch.setattr(bench, "bench_kernels_cuda",
                        lambda layers, quick, log: fake_kernel_rows(layers, {"v1": 2e-3, "v3": 1e-3, "torch fp32": 1e-3}))

    def out_of_time(quick, log):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "bench_training_cuda", out_of_time)
    with pytest.raises(KeyboardInterrupt):
        bench.run(out=tmp_path, plot=True, log=lambda *a: None)
    md = tmp_path / "results-cuda-2026-01-02.md"
    assert "## Per op and version" in md.read_text() and "Training step" not in md.read_text()

    monkeypatch.setattr(bench, "bench_training_cuda",
                        lambda quick, log: {"minunet": dict(seconds=0.25, runs=5, peak_reserved_bytes=2**30)})
    bench.run(out=tmp_path, plot=True, log=lambda *a: None)
    text = md.read_text()
    assert text.index("## Training step") < text.index("## Totals") < text.index("## Per kernel")
    assert "| minunet | 250.0 | 5 | 1024 reserved |" in text and "'conv3x3_forward': 3" in text
    assert (tmp_path / "roofline-cuda-2026-01-02.png").stat().st_size > 0
    assert json.loads((tmp_path / "results-cuda-2026-01-02.json").read_text())["training"]["minunet"]["runs"] == 5

    def broken_plot(*args):
        raise RuntimeError("no matplotlib backend")

    md.unlink()
    monkeypatch.setattr(bench, "plot_roofline", broken_plot)
    with pytest.raises(RuntimeError, match="no matplotlib backend"):
        bench.run(out=tmp_path, plot=True, log=lambda *a: None)
    assert "| minunet | 250.0 | 5 |" in md.read_text()  # the plot comes last: its failure keeps the numbers


def test_cpu_run_end_to_end(tmp_path):
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, "-m", "minunet.bench", "--device", "numpy", "--quick", "--plot",
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PyTorch is not installed" in result.stdout or "training step torch cpu" in result.stdout
    [md], [js] = sorted(out.glob("results-numpy-*.md")), sorted(out.glob("results-numpy-*.json"))
    data = json.loads(js.read_text())
    assert data["device"] == "numpy" and data["versions"]["minunet"] and data["date"]
    assert data["training"]["minunet numpy"]["seconds"] > 0
    assert {row["impl"] for row in data["sim"]} >= {"v1", "v2", "v3", "v4", "v5 tf32"}
    assert "minunet numpy" in md.read_text() and "numpy % of roofline" in md.read_text()
    assert data["peaks"]["fp32"] > 1e9 and data["peaks"]["bandwidth"] > 1e8  # measured: any CPU does this
    small_unet = bench.unet_layers(**bench.SMALL_UNET)
    numpy_rows = [row for row in data["kernels"] if row["impl"] == "numpy"]
    assert {name for row in numpy_rows for name in row["layers"]} == {layer["name"] for layer in small_unet}
    assert all(row["floor_s"] > 0 and row["of_roofline"] > 0 for row in numpy_rows)
    assert sorted(out.glob("roofline-numpy-*.png"))
