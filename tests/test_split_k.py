"""Split-K weight gradients (conv3x3, up_conv2x2, conv1x1): the pixels summed in slices by separate blocks,
the slices added by gemm_split_k_reduce. Every slice covered, several slices right and deterministic."""
import numpy as np

from conftest import as_float64, assert_close_dtype, randn, run, terms_scale
from minunet import reference
from minunet.ops.launching import TF32_VERSIONS, all_versions, split_k


def test_split_k_covers_every_pixel_in_slices_of_16():
    for pixels, tiles in [(0, 1), (1, 1), (255, 1), (1300, 1), (325_000, 1), (784, 2304), (10_000, 9)]:
        chunk, splits = split_k(pixels, tiles)
        assert chunk % 16 == 0 and chunk > 0 and 1 <= splits <= 65535
        assert (splits - 1) * chunk < max(pixels, 1) <= splits * chunk, (pixels, tiles, chunk, splits)
    assert split_k(1300, 1)[1] > 1 and split_k(200, 1)[1] == 1


def test_split_k_grad_weights_with_several_slices_are_right_and_deterministic(every_backend, rng):
    # 2 x 19 x 37 pixels: several slices, the last one partial (split_k says how many).
    x, gy3 = randn(rng, 2, 3, 21, 39, dtype=np.float32), randn(rng, 2, 5, 19, 37, dtype=np.float32)
    assert split_k(gy3[:, 0].size, 1)[1] > 2
    gyu, x1 = randn(rng, 2, 4, 42, 78, dtype=np.float32), randn(rng, 2, 3, 19, 37, dtype=np.float32)
    gy1 = randn(rng, 2, 2, 19, 37, dtype=np.float32)
    x64, gy3_64, gyu64, x1_64, gy1_64 = as_float64(x, gy3, gyu, x1, gy1)
    cases = [("conv3x3_grad_weight", (x, gy3, 0), reference.conv3x3_grad_weight(x64, gy3_64, 0), gy3[:, 0].size),
             ("up_conv2x2_grad_weight", (x, gyu), reference.up_conv2x2_grad_weight(x64, gyu64), x[:, 0].size),
             ("conv1x1_grad_weight", (x1, gy1), reference.conv1x1_grad_weight(x1_64, gy1_64), x1[:, 0].size)]
    for op, args, ref, terms in cases:
        for v in all_versions(op):
            first = run(every_backend, op, *args, version=v)
            again = run(every_backend, op, *args, version=v)
            assert np.array_equal(first, again), f"{op} v{v}: two runs differ (a non-deterministic reduction?)"
            if TF32_VERSIONS.get(op) != v:
                assert_close_dtype(first, ref, np.float32, name=f"{op} v{v}", scale=terms_scale(terms))
