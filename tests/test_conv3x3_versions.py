"""Every version of the three conv3x3 kernels against minunet/reference.py, on the kernel devices.

tests/test_conv3x3.py checks the ops at their default versions (and every forward version); this file sweeps
ALL versions of conv3x3_forward, conv3x3_grad_input and conv3x3_grad_weight (all_versions), with
channel counts that are not multiples of the GEMM versions' register block or tile (1, 3, 17, 33, 65), odd
image sizes, batch > 1, both dtypes, outputs poisoned with NaN by the sim (assert_close fails on an element
never written). Then:
- the fused bias + ReLU epilogue (relu=True) against max(conv + b, 0), for every forward version;
- the gradient check (minunet.gradcheck.check_backward, float64, sim) of conv3x3 through each version;
- all of it also on the sim in GPU arithmetic mode (MINUNET_SIM_GPU_MATH: contracted multiply-adds, -ftz);
- the TF32 tensor-core versions: on sim (which emulates the mma fragment layout) against the reference on
  inputs rounded to TF32 exactly as cvt.rna does; on a GPU (marked gpu) against float64 with TF32's error bound.
The same sweep for up_conv2x2 and conv1x1 is in their files; the split-K weight gradients in test_split_k.py.
"""
import numpy as np
import pytest

import minunet.functional as F
from conftest import as_float64, assert_close, assert_close_dtype, randn, run, terms_scale
from minunet import Tensor, reference
from minunet.backends import get_backend
from minunet.ops.launching import DEFAULT_VERSIONS, TF32_VERSIONS, VERSIONS, all_versions
from minunet.gradcheck import check_backward

# (N, Ci, H, W, Co): no size a multiple of 4, 16 or 64 except by accident of the partial tiles it makes;
# 65 channels give a second 64-row tile (Co for the forward, Ci for grad_input), 130 a second 128-row tile,
# 19x37 several pixel tiles.
CONV_SHAPES = [(2, 3, 7, 9, 17), (1, 17, 12, 11, 33), (2, 1, 5, 6, 1), (1, 33, 9, 13, 3), (1, 3, 19, 37, 65),
               (1, 65, 6, 7, 3), (1, 2, 3, 4, 130), (1, 130, 3, 4, 2)]


def versions(op, dtype):
    """The versions of op that take dtype (the TF32 ones take float32 only)."""
    return [v for v in all_versions(op) if not (TF32_VERSIONS.get(op) == v and dtype != np.float32)]


def tf32(a):
    """Round float32 values to TF32 (10 mantissa bits), to nearest with ties away from zero: cvt.rna.tf32.f32;
    returned as float64, the reference's precision."""
    bits = np.asarray(a, np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32).astype(np.float64)


def check_tf32_or_exact(out, ref_exact, ref_tf32, terms, dtype, version, op, name):
    """Non-TF32 versions: the dtype's tolerance against the exact reference. TF32 ones on sim: against the
    reference computed from TF32-rounded inputs (only float accumulation differs)."""
    if TF32_VERSIONS.get(op) == version:
        assert_close_dtype(out, ref_tf32(), np.float32, name=name, scale=terms_scale(terms))
    else:
        assert_close_dtype(out, ref_exact, dtype, name=name, scale=terms_scale(terms))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pad", [0, 1])
def test_conv3x3_every_version(every_backend, rng, dtype, pad):
    backend = every_backend
    for N, Ci, H, W, Co in CONV_SHAPES:
        x, w, b = randn(rng, N, Ci, H, W, dtype=dtype), randn(rng, Co, Ci, 3, 3, dtype=dtype), randn(rng, Co, dtype=dtype)
        gy = randn(rng, N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad, dtype=dtype)
        where = f"{(N, Ci, H, W, Co)} pad {pad} {np.dtype(dtype)}"
        x64, w64, b64, gy64 = as_float64(x, w, b, gy)
        y_ref, gx_ref, gw_ref = (reference.conv3x3(x64, w64, b64, pad),
                                 reference.conv3x3_grad_input(gy64, w64, pad, x.shape),
                                 reference.conv3x3_grad_weight(x64, gy64, pad))
        for v in versions("conv3x3_forward", dtype):
            y = run(backend, "conv3x3", x, w, b, pad, version=v)
            assert y.dtype == dtype
            check_tf32_or_exact(y, y_ref, lambda: reference.conv3x3(tf32(x), tf32(w), b64, pad), 9 * Ci, dtype, v,
                                "conv3x3_forward", f"y v{v} {where}")
        for v in versions("conv3x3_grad_input", dtype):
            gx = run(backend, "conv3x3_grad_input", gy, w, pad, x.shape, version=v)
            check_tf32_or_exact(gx, gx_ref, lambda: reference.conv3x3_grad_input(tf32(gy), tf32(w), pad, x.shape),
                                9 * Co, dtype, v, "conv3x3_grad_input", f"gx v{v} {where}")
        for v in versions("conv3x3_grad_weight", dtype):
            gw = run(backend, "conv3x3_grad_weight", x, gy, pad, version=v)
            check_tf32_or_exact(gw, gw_ref, lambda: reference.conv3x3_grad_weight(tf32(x), tf32(gy), pad),
                                gy[:, 0].size, dtype, v, "conv3x3_grad_weight", f"gw v{v} {where}")


def test_conv3x3_fused_relu_keeps_nan(every_backend, rng):
    # A NaN stays NaN through the fused ReLU, as through relu_forward_v1, numpy and PyTorch (a run that
    # diverges must show it): the GEMM versions' epilogue once turned NaN into 0 (!(v > 0) -> 0).
    x, w, b = randn(rng, 1, 3, 6, 7, dtype=np.float32), randn(rng, 5, 3, 3, 3, dtype=np.float32), None
    x[0, 1, 2, 3] = np.nan
    expected = np.isnan(reference.conv3x3(x, w, b, 1, relu=True))
    for v in versions("conv3x3_forward", np.float32):
        y = run(every_backend, "conv3x3", x, w, b, 1, version=v, relu=True)
        assert (np.isnan(y) == expected).all(), f"v{v}: the fused ReLU did not keep the NaNs"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv3x3_fused_bias_relu(every_backend, rng, dtype):
    # relu=True must equal max(conv + b, 0) for every version: fused in the epilogue of the GEMM versions,
    # a separate relu launch for v1/v2. Exact zeros where the pre-activation is negative.
    backend = every_backend
    x, w, b = randn(rng, 2, 17, 9, 11, dtype=dtype), randn(rng, 33, 17, 3, 3, dtype=dtype), randn(rng, 33, dtype=dtype)
    x64, w64, b64 = as_float64(x, w, b)
    for pad in (0, 1):
        pre = reference.conv3x3(x64, w64, b64, pad)
        for v in versions("conv3x3_forward", dtype):
            y = run(backend, "conv3x3", x, w, b, pad, version=v, relu=True)
            assert (y[pre < -1e-3] == 0).all(), f"v{v}: negative pre-activations not zeroed"
            tf32_version = TF32_VERSIONS["conv3x3_forward"] == v
            ref = reference.conv3x3(tf32(x), tf32(w), b64, pad, relu=True) if tf32_version else np.maximum(pre, 0)
            assert_close_dtype(y, ref, np.float32 if tf32_version else dtype, name=f"relu v{v}",
                               scale=terms_scale(9 * 17))
        y = run(backend, "conv3x3", x, w, None, pad, version=3, relu=True)  # fused ReLU without a bias
        assert_close_dtype(y, reference.conv3x3(x64, w64, None, pad, relu=True), dtype, name="relu, no bias",
                           scale=terms_scale(9 * 17))


# ---------------------------------------------------------------- gradient checks through each version

GRADCHECK_VERSIONS = [(1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 4)]  # (forward, grad_input, grad_weight)


@pytest.mark.parametrize("fwd, gin, gwt", GRADCHECK_VERSIONS)
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv3x3_gradient_check_through_each_version(rng, monkeypatch, fwd, gin, gwt, padding):
    # The functional layer launches the DEFAULT versions; point them at the versions under test. (TF32
    # versions are float32 only, so they cannot pass a float64 finite-difference check; they are checked
    # against the reference above.)
    for op, v in [("conv3x3_forward", fwd), ("conv3x3_grad_input", gin), ("conv3x3_grad_weight", gwt)]:
        monkeypatch.setitem(DEFAULT_VERSIONS, op, v)
    x = Tensor(randn(rng, 2, 3, 7, 6), requires_grad=True, device="sim")
    w = Tensor(randn(rng, 17, 3, 3, 3) * 0.3, requires_grad=True, device="sim")
    b = Tensor(randn(rng, 17), requires_grad=True, device="sim")
    check_backward(lambda x, w, b: F.conv3x3(x, w, b, padding=padding), [x, w, b])


def test_every_version_is_covered_by_the_gradient_checks():
    covered = {op: {row[i] for row in GRADCHECK_VERSIONS}
               for i, op in enumerate(["conv3x3_forward", "conv3x3_grad_input", "conv3x3_grad_weight"])}
    for op, seen in covered.items():
        assert seen == set(VERSIONS[op]), f"{op}: versions {seen} checked, {VERSIONS[op]} exist"


# ---------------------------------------------------------------- argument checks

def test_tf32_versions_refuse_float64_and_unknown_versions_are_named():
    sim = get_backend("sim")
    x, w = np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match="TF32.*float32 only"):
        sim.conv3x3(x, w, None, 0, version=5)
    with pytest.raises(ValueError, match="TF32.*float32 only"):
        sim.conv3x3_grad_weight(x, np.zeros((1, 1, 2, 2)), 0, version=5)
    for method, args in [("up_conv2x2", (x, np.zeros((1, 1, 2, 2)), None)), ("conv1x1", (x, np.zeros((1, 1, 1, 1)), None))]:
        with pytest.raises(ValueError, match=r"version must be one of \(1, 2\)"):
            getattr(sim, method)(*args, version=3)


# ---------------------------------------------------------------- TF32 on a real GPU

@pytest.mark.gpu
@pytest.mark.parametrize("pad", [0, 1])
def test_tf32_versions_on_the_gpu_within_the_tf32_error_bound(rng, pad):
    # TF32 keeps 10 of float32's 23 mantissa bits: each product is off by at most about 2 * 2^-11 of
    # |x||w|, so |y - y_exact| <= 2^-9 * sum |x||w| (plus float accumulation) bounds every element.
    cuda = get_backend("cuda")
    x, w = randn(rng, 2, 33, 21, 19, dtype=np.float32), randn(rng, 65, 33, 3, 3, dtype=np.float32)
    gy = randn(rng, 2, 65, 19 + 2 * pad, 17 + 2 * pad, dtype=np.float32)
    x64, w64, gy64 = as_float64(x, w, gy)
    R = reference
    cases = [("conv3x3", (x, w, None, pad), R.conv3x3(x64, w64, None, pad), R.conv3x3(abs(x64), abs(w64), None, pad)),
             ("conv3x3_grad_input", (gy, w, pad, x.shape), R.conv3x3_grad_input(gy64, w64, pad, x.shape),
              R.conv3x3_grad_input(abs(gy64), abs(w64), pad, x.shape)),
             ("conv3x3_grad_weight", (x, gy, pad), R.conv3x3_grad_weight(x64, gy64, pad),
              R.conv3x3_grad_weight(abs(x64), abs(gy64), pad))]
    for method, args, ref, magnitude in cases:
        op = "conv3x3_forward" if method == "conv3x3" else method
        out = run(cuda, method, *args, version=TF32_VERSIONS[op])
        excess = np.abs(out - ref) - (2.0 ** -9 * magnitude + 1e-5)
        assert excess.max() <= 0, f"{method} TF32: worst excess {excess.max()} over the TF32 bound"
        assert_close(out, ref, atol=1e-2 * np.abs(ref).max(), rtol=0, name=f"{method} TF32")
