"""gemm_tile.cuh's sizes live in one place: another tile size works in every GEMM kernel, or stops the compile.

No GPU needed: NVRTC compiles a copy of kernels/ with a changed #define, the simulator runs conv1x1's GEMM
versions with it. A size the threads cannot cover must fail at the static_assert that names the reason.
"""
import re
import shutil

import numpy as np
import pytest

from minunet import nvrtc, paths
from minunet.sim import SimModule
from test_nvrtc import _nvrtc_unusable

pytestmark = pytest.mark.skipif(_nvrtc_unusable() is not None, reason=str(_nvrtc_unusable()))


def kernels_with_tile(tmp_path, defines):
    """A copy of kernels/ with some of gemm_tile.cuh's #defines changed, e.g. {"MINUNET_GEMM_BM": 128}."""
    folder = tmp_path / "kernels"
    shutil.copytree(paths.kernels_dir(), folder)
    text = (folder / "gemm_tile.cuh").read_text()
    for name, value in defines.items():
        text, count = re.subn(rf"^#define {name} \d+", f"#define {name} {value}", text, flags=re.M)
        assert count == 1, f"gemm_tile.cuh has no #define {name}"
    (folder / "gemm_tile.cuh").write_text(text)
    return folder


def compile_errors(folder, stem):
    result = nvrtc.compile_matrix([folder / f"{stem}.cu"], ["sm_80"], ["float"])[0][3]
    return str(result) if isinstance(result, Exception) else "\n".join(nvrtc.warnings_in(result.log))


def run_conv1x1_gemm_on_sim(folder, BM, BN, BK, THREADS):
    """conv1x1's forward and split-K weight gradient (v2) on the sim with the changed tile, against NumPy."""
    rng = np.random.default_rng(0)
    N, Ci, P, Co = 2, 37, 45, 70  # partial tiles along every side
    x, w, b = (rng.standard_normal(shape).astype(np.float32) for shape in ((N, Ci, P), (Co, Ci), (Co,)))
    module = SimModule(folder / "conv1x1.cu", defines={"MINUNET_REAL": "float"}, include_dirs=[folder])
    y = np.full((N, Co, P), np.nan, np.float32)
    args = (x, w, b, y, *map(np.int32, (N, Ci, P, Co, 1)))
    module.get_function("conv1x1_forward_v2")((-(-N * P // BN), -(-Co // BM), 1), (THREADS, 1, 1), args)
    y_ref = np.einsum("oc,ncp->nop", w, x) + b[:, None]
    assert np.allclose(y, y_ref, rtol=1e-5, atol=1e-5), np.abs(y - y_ref).max()
    gy = rng.standard_normal((N, Co, P)).astype(np.float32)
    chunk, splits = 2 * BK, -(-N * P // (2 * BK))
    partial = np.full((splits, Co, Ci), np.nan, np.float32)
    args = (x, gy, partial, *map(np.int32, (N, Ci, P, Co, chunk)))
    module.get_function("conv1x1_grad_weight_v2")((-(-Ci // BN), -(-Co // BM), splits), (THREADS, 1, 1), args)
    gw_ref = np.einsum("nop,ncp->oc", gy, x)
    assert np.allclose(partial.sum(0), gw_ref, rtol=1e-4, atol=1e-4), np.abs(partial.sum(0) - gw_ref).max()


TILE = dict(MINUNET_GEMM_BM=64, MINUNET_GEMM_BN=64, MINUNET_GEMM_BK=16, MINUNET_GEMM_THREADS=256)


@pytest.mark.parametrize("change, conv3x3_stops_at", [
    ({"MINUNET_GEMM_BM": 128}, None),
    ({"MINUNET_GEMM_BN": 32, "MINUNET_GEMM_BK": 32}, None),
    ({"MINUNET_GEMM_THREADS": 128}, "the warps must cover the block tile"),  # the TF32 tile (conv3x3's v5): 8 warps
], ids=["BM128", "BN32-BK32", "THREADS128"])
def test_another_gemm_tile_size_works_or_stops_the_compile(tmp_path, change, conv3x3_stops_at):
    folder = kernels_with_tile(tmp_path, change)
    for stem in ("conv1x1", "up_conv2x2"):
        assert compile_errors(folder, stem) == "", stem
    errors = compile_errors(folder, "conv3x3")
    assert (errors == "") if conv3x3_stops_at is None else (conv3x3_stops_at in errors), errors[-2000:]
    sizes = {**TILE, **change}
    run_conv1x1_gemm_on_sim(folder, *(sizes[f"MINUNET_GEMM_{k}"] for k in ("BM", "BN", "BK", "THREADS")))


# conv3x3.cu's GEMM versions take their tiles from its own #defines (CONV3X3_V3_BM, ...), so a change of
# MINUNET_GEMM_BM or _BN reaches only conv1x1.cu and up_conv2x2.cu; BK, PAD and THREADS reach all three.
@pytest.mark.parametrize("change, stems, message", [
    ({"MINUNET_GEMM_BK": 12}, ("conv1x1", "up_conv2x2", "conv3x3"), "the threads must cover whole columns of depth BK"),
    ({"MINUNET_GEMM_BN": 40}, ("conv1x1", "up_conv2x2"), "the threads must tile BM x BN"),
    ({"MINUNET_GEMM_PAD": 6}, ("conv1x1", "up_conv2x2", "conv3x3"), "16-byte row loads need 16-byte aligned rows"),
], ids=["BK12", "BN40", "PAD6"])
def test_a_gemm_tile_the_threads_cannot_cover_stops_the_compile(tmp_path, change, stems, message):
    folder = kernels_with_tile(tmp_path, change)
    for stem in stems:
        errors = compile_errors(folder, stem)
        assert "static assertion failed" in errors and message in errors, f"{stem}: {errors[-2000:]}"
