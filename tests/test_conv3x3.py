"""conv3x3, forward and backward (conv3x3_grad_input, conv3x3_grad_weight), against minunet/reference.py.

1. The reference itself, checked independently: against scipy.signal.correlate2d / convolve2d, and its
   gradients as the exact transposes of its forward (adjoint tests).
2. The numpy device's fast path against the reference (float64, tiny sizes) and as the transpose of itself.
3. The kernels on the kernel devices against the reference (in float64): every forward version, the default
   backward versions, both dtypes, both paddings, with and without bias, odd shapes that are not multiples of
   any tile, outputs fully written (the sim poisons outputs with NaN). Every version of the three ops, the
   fused ReLU, the gradient checks and TF32: tests/test_conv3x3_versions.py.
"""
import json

import numpy as np
import pytest
import scipy.signal

from conftest import (DTYPES, as_float64, assert_adjoint, assert_close, assert_close_dtype, assert_outputs_keep, randn,
                      run, terms_scale)
from minunet import reference
from minunet.backends import get_backend
from minunet.ops import choice
from minunet.ops import conv3x3 as conv3x3_ops
from minunet.ops.launching import VERSIONS

NP = get_backend("numpy")
EXACT = dict(atol=1e-12, rtol=1e-12)


# ---------------------------------------------------------------- 1. the reference, checked independently

@pytest.mark.parametrize("pad", [0, 1])
def test_reference_conv3x3_matches_scipy_correlate2d(rng, pad):
    x, w, b = randn(rng, 2, 3, 5, 6), randn(rng, 4, 3, 3, 3), randn(rng, 4)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ref = np.array([[sum(scipy.signal.correlate2d(xp[n, c], w[o, c], mode="valid") for c in range(3)) + b[o]
                     for o in range(4)] for n in range(2)])
    assert_close(reference.conv3x3(x, w, b, pad), ref, **EXACT)


@pytest.mark.parametrize("pad", [0, 1])
def test_reference_conv3x3_grads_match_scipy(rng, pad):
    # gx: gy convolved ("full", the kernel flipped) with w, cropped by the padding; gw: xp correlated with gy.
    x, w = randn(rng, 2, 3, 5, 6), randn(rng, 4, 3, 3, 3)
    gy = randn(rng, 2, 4, 3 + 2 * pad, 4 + 2 * pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    gxp = np.array([[sum(scipy.signal.convolve2d(gy[n, o], w[o, c], mode="full") for o in range(4))
                     for c in range(3)] for n in range(2)])
    gw = np.array([[sum(scipy.signal.correlate2d(xp[n, c], gy[n, o], mode="valid") for n in range(2))
                    for c in range(3)] for o in range(4)])
    assert_close(reference.conv3x3_grad_input(gy, w, pad, x.shape), gxp[:, :, pad:pad + 5, pad:pad + 6], **EXACT)
    assert_close(reference.conv3x3_grad_weight(x, gy, pad), gw, **EXACT)


def test_reference_conv3x3_on_a_delta_image_copies_the_flipped_kernel():
    # Correlation with a single 1 at (2, 2) of a 5x5 image: y[i, j] = w[2-i, 2-j] for i, j in 0..2 (pad 0).
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    w = np.arange(9.0).reshape(1, 1, 3, 3)
    assert_close(reference.conv3x3(x, w, None, 0)[0, 0], w[0, 0, ::-1, ::-1], **EXACT)


# ---------------------------------------------------------------- 2. the numpy fast path against the reference

@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("with_bias", [False, True])
def test_numpy_conv3x3_matches_the_reference(rng, pad, with_bias):
    x, w, gy_shape = randn(rng, 2, 3, 5, 6), randn(rng, 4, 3, 3, 3), (2, 4, 3 + 2 * pad, 4 + 2 * pad)
    b = randn(rng, 4) if with_bias else None
    gy = randn(rng, *gy_shape)
    assert_close(NP.conv3x3(x, w, b, pad), reference.conv3x3(x, w, b, pad), **EXACT, name="y")
    assert_close(NP.conv3x3_grad_input(gy, w, pad, x.shape), reference.conv3x3_grad_input(gy, w, pad, x.shape),
                 **EXACT, name="gx")
    assert_close(NP.conv3x3_grad_weight(x, gy, pad), reference.conv3x3_grad_weight(x, gy, pad), **EXACT, name="gw")


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_conv3x3_keeps_the_dtype(rng, dtype):
    x, w, b, gy = (randn(rng, *s, dtype=dtype) for s in [(1, 2, 5, 5), (3, 2, 3, 3), (3,), (1, 3, 3, 3)])
    outs = {"conv3x3": NP.conv3x3(x, w, b, 0), "conv3x3_grad_input": NP.conv3x3_grad_input(gy, w, 0, x.shape),
            "conv3x3_grad_weight": NP.conv3x3_grad_weight(x, gy, 0)}
    assert_outputs_keep(dtype, outs)


@pytest.mark.parametrize("ops", [NP, reference], ids=["numpy", "reference"])
@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 17, 12, 11), (3, 1, 19, 5)])
def test_conv3x3_backward_is_the_transpose(rng, ops, pad, shape):
    # <conv(x; w), gy> == <x, grad_input(gy)> == <w, grad_weight(x, gy)>: the backward ops are the exact
    # transposes of the forward.
    N, Ci, H, W = shape
    Co = 5
    x, w = randn(rng, *shape), randn(rng, Co, Ci, 3, 3)
    gy = randn(rng, N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad)
    y_dot_gy = np.vdot(ops.conv3x3(x, w, None, pad), gy)
    assert_adjoint(y_dot_gy, np.vdot(x, ops.conv3x3_grad_input(gy, w, pad, x.shape)), "grad_input")
    assert_adjoint(y_dot_gy, np.vdot(w, ops.conv3x3_grad_weight(x, gy, pad)), "grad_weight")


# ---------------------------------------------------------------- 2b. each numpy algorithm, and the choice among them

# (N, Ci, H, W, Co): odd sizes, 1 input channel (where `direct` applies), channel counts past 9*Ci = 32; with
# BAND_BYTES cut to 1 KiB every image is several bands of rows, the last one shorter.
ALGORITHM_SHAPES = [(2, 1, 19, 5, 3), (1, 3, 7, 9, 2), (2, 17, 12, 11, 9), (1, 5, 23, 6, 4)]


def _algorithm_cases():
    return ([("conv3x3_forward", a) for a in conv3x3_ops.FORWARD] + [("conv3x3_grad_input", a) for a in
            conv3x3_ops.FORWARD if a != "direct"] + [("conv3x3_grad_weight", a) for a in conv3x3_ops.GRAD_WEIGHT])


@pytest.fixture
def small_bands(monkeypatch):
    monkeypatch.setattr(conv3x3_ops, "BAND_BYTES", 1024)


@pytest.mark.parametrize("N, Ho, row_bytes", [(1, 186, 12000), (2, 122, 7936), (1, 10, 10 ** 6), (1, 20, 10),
                                             (3, 7, 2 ** 21), (1, 1, 10), (5, 33, 40000)])
def test_bands_cover_every_row_once_in_an_even_number_of_bands_of_about_band_bytes(N, Ho, row_bytes):
    bands = conv3x3_ops._bands(N, Ho, row_bytes)
    assert sorted((n, r) for n, r0, rows in bands for r in range(r0, r0 + rows)) == [(n, r) for n in range(N)
                                                                                     for r in range(Ho)]
    heights = {rows for _, _, rows in bands}
    assert max(heights) - min(heights) <= max(heights) // 2 + 1, heights  # about equal (the last may be shorter)
    assert len(bands) == 1 or len(bands) % 2 == 0 or len(bands) == N * Ho, f"{len(bands)} bands"
    assert max(heights) == 1 or max(heights) * row_bytes <= 2 * conv3x3_ops.BAND_BYTES


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, algorithm", _algorithm_cases())
def test_each_numpy_algorithm_matches_the_reference(rng, monkeypatch, small_bands, op, algorithm, dtype):
    # float64: as exact as the reference (1e-12); float32: the dtype's tolerance widened for the sum's terms.
    monkeypatch.setenv("MINUNET_CONV_ALGO", algorithm)
    for N, Ci, H, W, Co in ALGORITHM_SHAPES:
        if algorithm == "direct" and Ci != 1:
            continue
        for pad in (0, 1):
            x, w, b = randn(rng, N, Ci, H, W), randn(rng, Co, Ci, 3, 3), randn(rng, Co)
            gy = randn(rng, N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad)
            xd, wd, bd, gyd = (a.astype(dtype) for a in (x, w, b, gy))
            name = f"{op} {algorithm} {dtype.__name__} {(N, Ci, H, W, Co)} pad {pad}"
            if op == "conv3x3_forward":
                got, ref, terms = NP.conv3x3(xd, wd, bd, pad, relu=True), np.maximum(reference.conv3x3(x, w, b, pad), 0), 9 * Ci
            elif op == "conv3x3_grad_input":
                got, ref, terms = NP.conv3x3_grad_input(gyd, wd, pad, x.shape), reference.conv3x3_grad_input(gy, w, pad, x.shape), 9 * Co
            else:
                got, ref, terms = NP.conv3x3_grad_weight(xd, gyd, pad), reference.conv3x3_grad_weight(x, gy, pad), gy[:, 0].size
            assert got.dtype == dtype and got.flags.c_contiguous, name
            if dtype == np.float64:
                assert_close(got, ref, **EXACT, name=name)
            else:
                assert_close_dtype(got, ref, dtype, name=name, scale=terms_scale(terms))


@pytest.mark.parametrize("algorithm", sorted(set(conv3x3_ops.FORWARD) | set(conv3x3_ops.GRAD_WEIGHT)))
def test_numpy_conv3x3_gives_the_same_bits_on_any_thread_count(rng, monkeypatch, small_bands, algorithm):
    # The bands do not depend on the thread count, and grad_weight adds their partial sums in band order.
    from minunet import threads
    monkeypatch.setenv("MINUNET_CONV_ALGO", algorithm)
    Ci = 1 if algorithm == "direct" else 6
    x, w, b = randn(rng, 2, Ci, 21, 13, dtype=np.float32), randn(rng, 5, Ci, 3, 3, dtype=np.float32), randn(rng, 5)
    gy = randn(rng, 2, 5, 19, 11, dtype=np.float32)
    # Where a forced algorithm does not apply (grad_input runs the forward's algorithms on gy, 5 channels, where
    # `direct` does not; `shifts` is grad_weight's own), the algorithm is chosen by timing, per thread count, and
    # two choices may differ in their last bits. So each op is compared with one algorithm forced, taps there.
    forced = dict(y=algorithm if algorithm in conv3x3_ops.FORWARD else "taps",
                  gw=algorithm if algorithm in conv3x3_ops.GRAD_WEIGHT else "taps",
                  gx=algorithm if algorithm in conv3x3_ops.FORWARD and algorithm != "direct" else "taps")
    forced["backward"] = "taps"  # grad_input's and grad_weight's algorithms both
    y = NP.conv3x3(x, w, None, 0, relu=True)
    calls = dict(y=lambda: NP.conv3x3(x, w, b.astype(np.float32), 0, relu=True),
                 gw=lambda: NP.conv3x3_grad_weight(x, gy, 0), gx=lambda: NP.conv3x3_grad_input(gy, w, 0, x.shape),
                 backward=lambda: np.concatenate([g.ravel() for g in NP.conv3x3_backward(gy, x, w, y, 0, (1, 1, 1))]))
    runs = []
    for n in (1, 2):
        with threads.cpu_threads(n):
            run = []
            for what, call in calls.items():
                monkeypatch.setenv("MINUNET_CONV_ALGO", forced[what])
                run.append(call())
            runs.append(run)
    for one, two, what in zip(*runs, calls):
        assert np.array_equal(one, two), f"{algorithm} {what}: 1 and 2 threads differ"


@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("relu", [True, False])
def test_numpy_conv3x3_backward_is_relu_grad_then_the_three_gradients(rng, monkeypatch, small_bands, pad, relu):
    # The fused backward (one pass masks gy, pads it for grad_input and sums it for the bias) against the ops it
    # replaces, in float64 on odd sizes, over several bands: gx and gw to the bit (the same algorithm on the same
    # values), gb to rounding (another order of the sum). gy holds NaN and inf where the ReLU's output is 0,
    # which must give zeros (np.where(y > 0, gy, 0)), and y NaN where gy is finite (NaN > 0 is false).
    monkeypatch.setenv("MINUNET_CONV_ALGO", "taps")
    N, Ci, H, W, Co = 2, 3, 13, 9, 4
    x, w = randn(rng, N, Ci, H, W), randn(rng, Co, Ci, 3, 3)
    gy = randn(rng, N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad)
    y = np.maximum(randn(rng, *gy.shape), 0)
    if relu:
        gy[0, 1, 2, :3], gy[1, 0, -1, -2:] = np.nan, np.inf
        y[0, 1, 2, :3], y[1, 0, -1, -2:] = 0, 0
        y[1, 3, 0, 0], gy[1, 3, 0, 0] = np.nan, 1.0
    g = NP.relu_grad(gy, y) if relu else gy
    assert np.isfinite(g).all()
    expected = (NP.conv3x3_grad_input(g, w, pad, x.shape), NP.conv3x3_grad_weight(x, g, pad), NP.bias_grad(g))
    for needs in [(True, True, True), (False, True, True), (True, True), (False, True), (True, False, False)]:
        got = NP.conv3x3_backward(gy, x, w, y if relu else None, pad, needs)
        assert len(got) == len(needs), needs
        for name, have, want, need in zip(("gx", "gw", "gb"), got, expected, needs):
            if not need:
                assert have is None, f"{name} computed though not needed {needs}"
            elif name == "gb":
                assert_close(have, want, **EXACT, name=f"gb {needs}")
            else:
                assert np.array_equal(have, want), f"{name} {needs}: not the per-direction op's bits"
    assert_close(got[0], reference.conv3x3_grad_input(g, w, pad, x.shape), **EXACT, name="gx against the reference")


@pytest.mark.parametrize("source", ["numpy", "scipy"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_blas_shifted_products_add_up_the_windows_and_the_first_ignores_the_old_values(rng, dtype, source,
                                                                                      monkeypatch):
    # The taps' products: windows of an image's flat rows (rows far apart, each window a slice at its shift)
    # times each tap's matrix, added up into c, whose old values (np.empty's garbage, here NaN) must not be read.
    # Both BLAS libraries: NumPy's (the one used where found) and SciPy's (the fallback).
    from minunet.ops import blas
    found = blas._numpys_cblas() if source == "numpy" else blas._scipys_fortran()
    if found is None:
        pytest.skip("this NumPy ships no OpenBLAS with a CBLAS gemm")
    monkeypatch.setattr(blas, "_GEMM", found)
    assert blas.describe().startswith({"numpy": "NumPy's OpenBLAS", "scipy": "SciPy's BLAS"}[source])
    for T, M, K, N, shifts in [(1, 5, 7, 30, [4]), (9, 16, 16, 1000, [0, 1, 2, 40, 41, 42, 80, 81, 82]),
                               (3, 1, 3, 5, [2, 0, 1]), (2, 4, 1, 9, [0, 9])]:
        a, image = randn(rng, T, M, K, dtype=dtype), randn(rng, K, max(shifts) + N + 3, dtype=dtype)
        c = np.full((M, N + 2), np.nan, dtype)[:, 1:-1]  # rows apart by more than their length
        blas.shifted_products(a, image, shifts, c)
        ref = sum(a[t].astype(np.float64) @ image[:, shift:shift + N] for t, shift in enumerate(shifts))
        assert_close_dtype(c, ref, dtype, name=f"{(T, M, K, N)}", scale=terms_scale(T * K))
    with pytest.raises(ValueError, match="do not fit"):
        blas.shifted_products(a, image, [image.shape[1] - N + 1, 0], c)


@pytest.fixture
def fresh_choices(monkeypatch, tmp_path):
    """The choice module as a new process finds it, with its file in tmp_path."""
    monkeypatch.setenv("MINUNET_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MINUNET_CONV_ALGO", raising=False)
    monkeypatch.setattr(choice, "_chosen", {})
    monkeypatch.setattr(choice, "_on_disk", None)
    monkeypatch.setattr(choice, "_read_file", True)
    return tmp_path / "conv-algorithms.json"


def test_the_fastest_algorithm_is_chosen_once_and_remembered_on_disk(monkeypatch, fresh_choices):
    # A fake clock: "taps" takes 3 s a call, "im2col" 1 s. The first call times each REPEATS times, then runs
    # the winner once more (so that its bits are the chosen algorithm's); later calls just run the choice.
    clock, calls = [0.0], []

    def algorithm(name, seconds):
        def run():
            clock[0] += seconds
            calls.append(name)
            return name
        return run
    monkeypatch.setattr(choice.time, "process_time", lambda: clock[0])  # one thread: CPU time
    algorithms = {"taps": algorithm("taps", 3.0), "im2col": algorithm("im2col", 1.0)}
    shapes = (2, 3, 9, 9, 4, 0)

    def call():
        return choice.choose("conv3x3_forward", algorithms, shapes, np.dtype(np.float32), lambda fn: fn())
    assert call() == "im2col"
    assert calls == ["taps", "im2col"] * choice.REPEATS + ["im2col"]
    key = choice.choice_key("conv3x3_forward", shapes, np.float32, 1)
    assert choice.chosen()[key] == dict(algorithm="im2col", seconds=dict(taps=3.0, im2col=1.0))
    calls.clear()
    assert call() == "im2col" and calls == ["im2col"]
    [(on_disk, name)] = json.loads(fresh_choices.read_text()).items()  # by CPU, NumPy, the algorithms' code
    assert name == "im2col" and on_disk.startswith(choice.cpu_model()) and on_disk.endswith(f" | {key}")
    # a new process (the module's state forgotten) reads the file: the same choice, nothing timed
    monkeypatch.setattr(choice, "_chosen", {})
    monkeypatch.setattr(choice, "_on_disk", None)
    algorithms["taps"] = algorithm("taps", 0.5)  # faster now, but the remembered choice stands
    calls.clear()
    assert call() == "im2col" and calls == ["im2col"] and choice.chosen()[key]["seconds"] is None


def test_a_forced_algorithm_runs_where_it_applies_and_an_unknown_one_is_an_error(rng, monkeypatch, fresh_choices):
    x, w = randn(rng, 1, 2, 6, 7, dtype=np.float32), randn(rng, 3, 2, 3, 3, dtype=np.float32)
    monkeypatch.setenv("MINUNET_CONV_ALGO", "direct")  # needs 1 input channel: measured here instead
    NP.conv3x3(x, w, None, 0)
    made = choice.chosen()[choice.choice_key("conv3x3_forward", (1, 2, 6, 7, 3, 0), np.float32, 1)]
    assert set(made["seconds"]) == {"taps", "im2col"}
    monkeypatch.setenv("MINUNET_CONV_ALGO", "taps")
    NP.conv3x3(x[:, :1], w[:, :1], None, 0)  # forced: nothing measured, nothing remembered
    assert len(choice.chosen()) == 1
    monkeypatch.setenv("MINUNET_CONV_ALGO", "winograd")
    with pytest.raises(ValueError, match=r"MINUNET_CONV_ALGO='winograd': conv3x3_forward has the algorithms "
                                         r"taps, im2col, direct"):
        NP.conv3x3(x, w, None, 0)


@pytest.mark.parametrize("content", ["{half a file", "[1, 2]", "the layer's key -> a list", "the layer's key -> 'fft'"])
def test_an_unreadable_choice_file_is_measured_again_and_rewritten(rng, fresh_choices, content):
    x, w = randn(rng, 1, 2, 6, 7, dtype=np.float32), randn(rng, 3, 2, 3, 3, dtype=np.float32)
    if content.startswith("the layer's key"):
        key = choice.choice_key("conv3x3_forward", (1, 2, 6, 7, 3, 0), np.float32, 1)
        disk_key = choice._disk_key(key, conv3x3_ops._applying(conv3x3_ops.FORWARD, 2))
        content = json.dumps({disk_key: [1] if content.endswith("list") else "fft"})
    fresh_choices.write_text(content)
    NP.conv3x3(x, w, None, 0)
    assert [made["seconds"] is not None for made in choice.chosen().values()] == [True]  # measured, not read
    assert list(json.loads(fresh_choices.read_text()).values())[0] in ("taps", "im2col")


# ---------------------------------------------------------------- 3. kernels against the reference

# (N, Ci, H, W, Co): channel counts 1, 3, 17; sizes that fill no 16x16 tile evenly, and one (19x37 with
# pad 1 -> 2 x 3 tiles) that spans several tiles; Co = 9 and 17 leave a partial group of 8 output channels.
CONV_SHAPES = [(2, 3, 7, 9, 2), (1, 17, 12, 11, 9), (2, 1, 19, 5, 1), (1, 3, 19, 37, 17)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("version", VERSIONS["conv3x3_forward"])
@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("with_bias", [False, True])
def test_kernel_conv3x3_forward(backend, rng, dtype, version, pad, with_bias):
    for N, Ci, H, W, Co in CONV_SHAPES:
        x, w = randn(rng, N, Ci, H, W, dtype=dtype), randn(rng, Co, Ci, 3, 3, dtype=dtype)
        b = randn(rng, Co, dtype=dtype) if with_bias else None
        y = run(backend, "conv3x3", x, w, b, pad, version=version)
        assert y.dtype == dtype
        assert_close_dtype(y, reference.conv3x3(*as_float64(x, w, b), pad), dtype,
                           name=f"conv3x3 v{version} {x.shape}", scale=terms_scale(9 * Ci))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pad", [0, 1])
def test_kernel_conv3x3_backward(backend, rng, dtype, pad):
    for N, Ci, H, W, Co in CONV_SHAPES:
        x, w = randn(rng, N, Ci, H, W, dtype=dtype), randn(rng, Co, Ci, 3, 3, dtype=dtype)
        gy = randn(rng, N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad, dtype=dtype)
        gx = run(backend, "conv3x3_grad_input", gy, w, pad, x.shape)
        gw = run(backend, "conv3x3_grad_weight", x, gy, pad)
        assert gx.dtype == dtype and gw.dtype == dtype
        x64, w64, gy64 = as_float64(x, w, gy)
        assert_close_dtype(gx, reference.conv3x3_grad_input(gy64, w64, pad, x.shape), dtype, name=f"gx {x.shape}",
                           scale=terms_scale(9 * Co))
        assert_close_dtype(gw, reference.conv3x3_grad_weight(x64, gy64, pad), dtype, name=f"gw {x.shape}",
                           scale=terms_scale(gy[:, 0].size))


def test_kernel_grad_weight_is_deterministic(backend, rng):
    # Block reductions, no atomics: the same inputs give bit-identical weight gradients.
    x = backend.asarray(randn(rng, 2, 3, 12, 11, dtype=np.float32))
    gy = backend.asarray(randn(rng, 2, 4, 10, 9, dtype=np.float32))
    first = backend.to_numpy(backend.conv3x3_grad_weight(x, gy, 0))
    assert np.array_equal(first, backend.to_numpy(backend.conv3x3_grad_weight(x, gy, 0)))


@pytest.mark.parametrize("version", VERSIONS["conv3x3_forward"])
def test_kernel_conv3x3_on_an_image_too_small_for_valid_padding(backend, rng, version):
    # A 2x2 image with pad 0 has a 0x0 output: nothing to launch, no crash, and the gradients are zeros.
    x, w = randn(rng, 2, 3, 2, 2), randn(rng, 4, 3, 3, 3)
    dx, dw = backend.asarray(x), backend.asarray(w)
    y = backend.conv3x3(dx, dw, backend.asarray(randn(rng, 4)), 0, version=version)
    assert y.shape == (2, 4, 0, 0)
    gy = backend.zeros((2, 4, 0, 0), np.float64)
    assert_close(backend.to_numpy(backend.conv3x3_grad_input(gy, dw, 0, x.shape)), np.zeros(x.shape), **EXACT)
    assert_close(backend.to_numpy(backend.conv3x3_grad_weight(dx, gy, 0)), np.zeros(w.shape), **EXACT)


def test_kernel_conv_rejects_an_unknown_version(backend, rng):
    x, w = backend.asarray(randn(rng, 1, 1, 4, 4)), backend.asarray(randn(rng, 1, 1, 3, 3))
    with pytest.raises(ValueError, match="version"):
        backend.conv3x3(x, w, None, 0, version=99)
