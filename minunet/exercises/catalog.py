"""The exercises: which functions of which kernels/ file the learner writes, and how they are checked.

Each exercise's `run(trial)` feeds random odd-sized inputs to the project's own launch code (the kernel
backend's op, so grid, block and shared memory are the ones the GPU gets) with the learner's file compiled
in place of the solution, and compares every output with the NumPy reference, minunet/reference.py; its
`edges(trial)` feeds what breaks naive code: sizes 1, 31, 32, 33 and 257 (one block, a warp less, a warp,
a warp more, a block more), extreme values, NaN and infinities where the reference defines the result, ties
and all-equal inputs. `any_block`: the kernels that take any block size (one thread per element), which the
checker also launches with blocks whose thread count is not a power of two. A header's exercise
(common.cuh, gemm_tile.cuh) is checked through every kernel that calls it (`callers`), compiled with the
learner's header in place of the project's.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import reference as REFERENCE  # minunet/reference.py: the readable loops, the ground truth

SIZES = (1, 31, 32, 33, 257)  # one element, around a warp, more than a block of 256


@dataclass(frozen=True)
class Exercise:
    name: str
    chapter: str          # the tutorial chapter that ends with it
    file: str             # kernels/<file> holds the solution
    write: tuple          # functions whose bodies the learner writes (overloads that call them are kept whole)
    keep: tuple           # helpers copied whole into the skeleton (a header's skeleton keeps the whole file)
    header: tuple         # entries of the solution file's header comment that explain them
    summary: str
    hint: str
    run: Callable         # run(trial): launches the learner's kernels on random sizes, compares their outputs
    edges: Callable       # edges(trial): the same on the edge cases
    callers: tuple = ()   # a header's exercise: every (kernel file stem, kernel) that calls it; run() launches each
    any_block: tuple = () # kernels launched one thread per element, which must work with any block size
    targets: tuple = ()   # (kernel, counts.Counted metric, factor): at most factor times the solution's
    target_hint: str = "" # what a solution that misses a target does instead
    machine_code: tuple = ()  # (stem, kernel) whose compiled hot loop is held to the solution's (machine_code.py)
    counted: Callable = None  # counted(trial): what the access counts run (None: run); a header's: its targets'
                              # kernels only (each kernel file is one more build)

    @property
    def is_header(self):
        return self.file.endswith(".cuh")

    @property
    def learner_file(self):
        """The learner's file name: the exercise's name with the solution's suffix (.cu or .cuh)."""
        return self.name + self.file[self.file.rindex("."):]


def _given(b):
    return "given" if b is not None else "None"


# ---- relu (chapter 2) -------------------------------------------------------------------------------------
def _relu(t):
    data = t.rng.standard_normal(t.odd_shape(4, 1, 11)).astype(t.dtype)
    data.ravel()[::7] = 0  # exact zeros: relu_backward's y > 0 must not let them through
    x = t.input("x", data)
    t.compare("y", t.backend.relu(x), REFERENCE.relu(x))
    y = t.input("y", REFERENCE.relu(x))
    gy = t.randn("gy", x.shape)
    t.compare("gx", t.backend.relu_grad(gy, y), REFERENCE.relu_grad(gy, y))


def _relu_edges(t):
    for n in SIZES:  # NaN stays NaN (as in PyTorch: a diverging run must show), -inf -> 0, +inf stays
        x = t.with_specials("x", (n,))
        t.compare(f"y (n={n}; NaN, inf, 0, huge values)", t.backend.relu(x), REFERENCE.relu(x))
        y = t.input("y", REFERENCE.relu(x))
        gy = t.with_specials("gy", (n,))
        t.compare(f"gx (n={n}; NaN, inf, 0, huge values)", t.backend.relu_grad(gy, y), REFERENCE.relu_grad(gy, y))


# ---- block_sum (chapter 2): through every kernel that calls minunet_block_sum ------------------------------
def _bias_grad(t, shape=None):
    shape = shape or (t.odd(1, 3), t.odd(1, 5), t.odd(9, 25), t.odd(9, 25))  # N*H*W around 1 to 5 blocks
    gy = t.randn("gy", shape)
    t.compare(f"gb (gy {shape})", t.backend.bias_grad(gy), REFERENCE.bias_grad(gy), scale=10)


def _grad_weights(t, N, Ci, Co, H, W):
    """The weight gradients whose blocks reduce several sums and whose threads 0..8 (0..3) read them."""
    x = t.randn("x", (N, Ci, H, W))
    for pad in (0, 1) if H >= 3 and W >= 3 else (1,):
        gy = t.randn("gy", (N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad))
        for version in (1, 2):
            t.compare(f"conv3x3 gw (v{version}, pad={pad})", t.backend.conv3x3_grad_weight(x, gy, pad, version=version),
                      REFERENCE.conv3x3_grad_weight(x, gy, pad), scale=10)
    gy = t.randn("gy", (N, Co, H, W))
    t.compare("conv1x1 gw (v1)", t.backend.conv1x1_grad_weight(x, gy, version=1), REFERENCE.conv1x1_grad_weight(x, gy),
              scale=10)
    gy = t.randn("gy", (N, Co, 2 * H, 2 * W))
    t.compare("up_conv2x2 gw (v1)", t.backend.up_conv2x2_grad_weight(x, gy, version=1),
              REFERENCE.up_conv2x2_grad_weight(x, gy), scale=10)


def _block_sum(t):
    _bias_grad(t)                # one real per thread, a block per channel
    _softmax_cross_entropy(t)    # one double per thread, partial sums of several blocks
    _grad_weights(t, t.odd(1, 3), t.odd(1, 5), t.odd(1, 3), t.odd(5, 13), t.odd(5, 13))  # 9 and 4 sums per block


def _block_sum_counted(t):
    _bias_grad(t)
    _up_conv2x2_grad_weight(t)


def _block_sum_edges(t):
    for n in SIZES:  # pixels per channel: fewer than the threads, and one more than a block holds
        _bias_grad(t, (1, 2, 1, n))
    _softmax_edges(t)
    _grad_weights(t, 1, 5, 2, 1, 1)    # one pixel
    _grad_weights(t, 1, 2, 1, 17, 17)  # more pixels than threads


# ---- conv3x3 (chapter 3) ----------------------------------------------------------------------------------
def _conv3x3_tiled(t):
    N, Ci, Co = t.odd(1, 3), t.odd(1, 5), t.odd(9, 11)  # Co not a multiple of the 8 channels of a block
    x = t.randn("x", (N, Ci, t.odd(17, 21), t.odd(17, 21)))  # tiles of 16: a partial tile at each edge
    w = t.randn("w", (Co, Ci, 3, 3))
    b = t.randn("b", (Co,))
    for pad, bias in ((0, b), (1, None)):
        t.compare(f"y (pad={pad}, bias {_given(bias)})", t.backend.conv3x3(x, w, bias, pad, version=2),
                  REFERENCE.conv3x3(x, w, bias, pad), scale=10)


def _image_with_infinities(t, name, shape):
    """Sparse NaN and infinities, and an infinity on each border row (where the padding is)."""
    x = t.specials(shape, every=40, huge=False)
    x[:, :, 0, ::3] = np.inf
    x[:, :, -1, 1::3] = -np.inf
    return t.input(name, x)


def _conv3x3_tiled_edges(t):
    for (H, W), pad in (((1, 1), 1), ((3, 3), 0), ((31, 33), 1), ((32, 32), 0), ((3, 257), 1)):
        Ci, Co = (2, 9) if H * W < 1000 else (1, 1)
        x = _image_with_infinities(t, "x", (1, Ci, H, W))
        w = t.randn("w", (Co, Ci, 3, 3))
        b = t.randn("b", (Co,))
        t.compare(f"y ({H}x{W}, pad={pad}; NaN and inf in x)", t.backend.conv3x3(x, w, b, pad, version=2),
                  REFERENCE.conv3x3(x, w, b, pad), scale=10)


def _conv3x3_grad_input(t):
    N, Ci, Co, H, W = t.odd(1, 3), t.odd(1, 5), t.odd(1, 5), t.odd(5, 13), t.odd(5, 13)
    w = t.randn("w", (Co, Ci, 3, 3))
    for pad in (0, 1):
        gy = t.randn("gy", (N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad))
        t.compare(f"gx (pad={pad})", t.backend.conv3x3_grad_input(gy, w, pad, (N, Ci, H, W), version=1),
                  REFERENCE.conv3x3_grad_input(gy, w, pad, (N, Ci, H, W)), scale=10)


def _conv3x3_grad_input_edges(t):
    for (H, W), pad in (((1, 1), 1), ((3, 3), 0), ((31, 1), 1), ((32, 33), 0), ((3, 257), 1)):
        Ci, Co = 3, 2
        w = t.randn("w", (Co, Ci, 3, 3))
        gy = _image_with_infinities(t, "gy", (1, Co, H - 2 + 2 * pad, W - 2 + 2 * pad))
        t.compare(f"gx ({H}x{W}, pad={pad}; NaN and inf in gy)",
                  t.backend.conv3x3_grad_input(gy, w, pad, (1, Ci, H, W), version=1),
                  REFERENCE.conv3x3_grad_input(gy, w, pad, (1, Ci, H, W)), scale=10)


def _conv3x3_grad_weight(t, shapes=None):
    for N, Ci, Co, H, W in shapes or [(t.odd(1, 3), t.odd(1, 5), t.odd(1, 5), t.odd(5, 21), t.odd(5, 21))]:
        x = t.randn("x", (N, Ci, H, W))
        for pad in (0, 1) if H >= 3 and W >= 3 else (1,):
            gy = t.randn("gy", (N, Co, H - 2 + 2 * pad, W - 2 + 2 * pad))
            t.compare(f"gw ({N}x{H}x{W} pixels, pad={pad})", t.backend.conv3x3_grad_weight(x, gy, pad, version=1),
                      REFERENCE.conv3x3_grad_weight(x, gy, pad), scale=10)


def _conv3x3_grad_weight_edges(t):
    # N*Ho*Wo pixels: 1, 31, 32, 33 and 257 (pad 1), with 2 x 3 blocks of CONV3X3_GW_THREADS
    _conv3x3_grad_weight(t, [(1, 2, 3, 1, n) for n in SIZES])
    x = _image_with_infinities(t, "x", (1, 2, 5, 5))
    gy = t.randn("gy", (1, 3, 5, 5))
    t.compare("gw (pad=1; NaN and inf in x)", t.backend.conv3x3_grad_weight(x, gy, 1, version=1),
              REFERENCE.conv3x3_grad_weight(x, gy, 1), scale=10)


# ---- max_pool2x2 (chapter 4) ------------------------------------------------------------------------------
def _max_pool2x2(t):
    shape = (t.odd(1, 3), t.odd(1, 5), 2 * t.odd(3, 9), 2 * t.odd(3, 9))  # H, W even, as the op needs
    ties = t.rng.integers(-1, 2, shape).astype(t.dtype)  # mostly ties: the lowest index must win
    for label, data in (("random", t.rng.standard_normal(shape).astype(t.dtype)), ("with ties", ties)):
        _pool_and_back(t, label, t.input("x", data))


def _pool_and_back(t, label, x, gy=None):
    (y, argmax), (y_ref, argmax_ref) = t.backend.max_pool2x2(x, version=1), REFERENCE.max_pool2x2(x)
    t.compare(f"y ({label})", y, y_ref)
    t.compare(f"argmax ({label})", argmax, argmax_ref)
    gy = t.randn("gy", y_ref.shape) if gy is None else gy(y_ref.shape)
    argmax = t.input("argmax", argmax_ref)
    t.compare(f"gx ({label})", t.backend.max_pool2x2_grad(gy, argmax, version=1),
              REFERENCE.max_pool2x2_grad(gy, argmax))


def _max_pool2x2_edges(t):
    specials = lambda shape: t.with_specials("gy", shape)  # noqa: E731 (NaN in gy goes only to the argmax)
    for n in SIZES:  # windows: NaN anywhere in a window wins (as in PyTorch), ties, -inf
        _pool_and_back(t, f"{n} windows; NaN, inf, ties", t.with_specials("x", (1, 1, 2, 2 * n), every=3), specials)
    _pool_and_back(t, "all equal", t.input("x", np.full((2, 3, 4, 6), 2.5, t.dtype)), specials)


# ---- up_conv2x2 (chapter 5) -------------------------------------------------------------------------------
def _up_conv2x2(t, shapes=None, data=None):
    for N, Ci, Co, H, W in shapes or [(t.odd(1, 3), t.odd(1, 5), t.odd(1, 5), t.odd(3, 9), t.odd(3, 9))]:
        x = (data or t.randn)("x", (N, Ci, H, W))
        w = t.randn("w", (Ci, Co, 2, 2))
        b = t.randn("b", (Co,))
        for bias in (b, None):
            t.compare(f"y ({H}x{W}, bias {_given(bias)})", t.backend.up_conv2x2(x, w, bias, version=1),
                      REFERENCE.up_conv2x2(x, w, bias), scale=10)
        gy = (data or t.randn)("gy", (N, Co, 2 * H, 2 * W))
        t.compare(f"gx ({H}x{W})", t.backend.up_conv2x2_grad_input(gy, w, version=1),
                  REFERENCE.up_conv2x2_grad_input(gy, w), scale=10)


def _sparse_specials(t):
    return lambda name, shape: t.with_specials(name, shape, every=40, huge=False)


def _up_conv2x2_edges(t):
    _up_conv2x2(t, [(1, 2, 3, 1, n) for n in SIZES], _sparse_specials(t))


def _up_conv2x2_grad_weight(t, shapes=None, data=None):
    # at most 3 x 9 x 9 = 243 pixels: a block of 256 threads has one each; more than a block is an edge case
    for N, Ci, Co, H, W in shapes or [(t.odd(1, 3), t.odd(1, 5), t.odd(1, 5), t.odd(3, 9), t.odd(3, 9))]:
        x = (data or t.randn)("x", (N, Ci, H, W))
        gy = t.randn("gy", (N, Co, 2 * H, 2 * W))
        t.compare(f"gw ({N}x{H}x{W} pixels)", t.backend.up_conv2x2_grad_weight(x, gy, version=1),
                  REFERENCE.up_conv2x2_grad_weight(x, gy), scale=10)


def _up_conv2x2_grad_weight_edges(t):
    _up_conv2x2_grad_weight(t, [(1, 2, 3, 1, n) for n in SIZES])  # 257: more pixels than threads
    _up_conv2x2_grad_weight(t, [(2, 2, 3, 3, 5)], _sparse_specials(t))  # (a NaN makes its channel's sums NaN)


# ---- softmax_cross_entropy (chapter 6) --------------------------------------------------------------------
def _loss(t, logits, labels, K, cases):
    weights = t.input("weights", t.rng.uniform(0.5, 2.0, labels.shape).astype(t.dtype))
    for wts, ignore in cases:
        lab = labels if ignore == K else t.input("labels", np.minimum(labels, K - 1))
        given = weights if wts else None
        loss, grad = t.backend.softmax_cross_entropy(logits, lab, given, ignore, 0.5, version=1)
        loss_ref, grad_ref = REFERENCE.softmax_cross_entropy(logits, lab, given, ignore, 0.5)
        case = f"{logits.shape[0] * logits[0, 0].size} pixels, weights {'given' if wts else 'None'}, ignore_index {ignore}"
        t.compare(f"grad ({case})", grad, grad_ref)
        t.compare(f"the loss ({case})", np.float64(loss), np.float64(loss_ref), scale=100 + abs(loss_ref))


def _softmax_cross_entropy(t):
    N, K, H, W = t.odd(1, 3), t.odd(2, 5), t.odd(9, 19), t.odd(9, 19)  # N*H*W: 1 to 5 blocks of 256 pixels
    logits = t.randn("logits", (N, K, H, W))
    labels = t.rng.integers(0, K, (N, H, W)).astype(np.int32)
    labels.ravel()[::5] = K  # ignored pixels
    _loss(t, logits, t.input("labels", labels), K, ((True, K), (False, -1)))


def _softmax_edges(t):
    K = 3
    for n in SIZES:  # logits near +-100: exp overflows float32 unless the max is subtracted first
        logits = t.rng.choice([-100.0, 100.0], (1, K, 1, n)) + t.rng.standard_normal((1, K, 1, n))
        logits[..., ::4] = 7.0  # all classes equal: p = 1/K
        labels = t.rng.integers(0, K, (1, 1, n)).astype(np.int32)
        labels.ravel()[1::5] = K
        _loss(t, t.input("logits", logits.astype(t.dtype)), t.input("labels", labels), K, ((True, K),))


# ---- dropout (chapter 7; the hash of common.cuh) --------------------------------------------
def _dropout(t, n=None, p=None, data=None):
    x = (data or t.randn)("x", t.odd_shape(4, 1, 9) if n is None else (n,))
    seed, offset = int(t.rng.integers(0, 2**32)), int(t.rng.integers(0, 2**30))
    if p is None:
        p = float(t.rng.uniform(0.1, 0.9))
    elif p == "tie":  # p equal to the hash's number of an element: that element is kept (>= p)
        p = REFERENCE.hash_uniform(seed, offset + int(t.rng.integers(0, x.size)))
    (y, mask), (y_ref, mask_ref) = t.backend.dropout(x, p, seed, offset, version=1), REFERENCE.dropout(x, p, seed, offset)
    case = f"{x.size} elements, p={p:.7g}, seed={seed}, offset={offset}"
    t.compare(f"mask ({case})", mask, mask_ref)
    t.compare(f"y ({case})", y, y_ref)
    gy = (data or t.randn)("gy", x.shape)
    mask = t.input("mask", mask_ref)
    t.compare(f"gx ({case})", t.backend.dropout_grad(gy, mask, version=1), REFERENCE.dropout_grad(gy, mask))


def _dropout_edges(t):
    for n in SIZES:
        _dropout(t, n, "tie" if n > 1 else 0.5, lambda name, shape: t.with_specials(name, shape))


# ---- gemm_tile (chapter 3b): minunet_gemm_fma through every kernel that calls it ---------------------------
def _gemm_tile(t, N=None, Ci=None, Co=None, H=None, W=None):
    N, Ci, Co = N or t.odd(3, 3), Ci or t.odd(1, 5), Co or t.odd(3, 11)
    H, W = H or t.odd(9, 13), W or t.odd(9, 13)  # N*H*W > 256 pixels: the weight gradients split over blocks
    x, w, b = t.randn("x", (N, Ci, H, W)), t.randn("w", (Co, Ci, 3, 3)), t.randn("b", (Co,))
    for version in (3, 4):  # the 64 x 64 and the 128 x 128 block tiles
        for pad, relu in ((0, False), (1, True)):
            t.compare(f"conv3x3 y (v{version}, pad={pad}, relu={relu})",
                      t.backend.conv3x3(x, w, b, pad, version=version, relu=relu),
                      np.maximum(REFERENCE.conv3x3(x, w, b, pad), 0) if relu else REFERENCE.conv3x3(x, w, b, pad),
                      scale=10)
        gy = t.randn("gy", (N, Co, H, W))
        t.compare(f"conv3x3 gx (v{version}, pad=1)", t.backend.conv3x3_grad_input(gy, w, 1, x.shape, version=version),
                  REFERENCE.conv3x3_grad_input(gy, w, 1, x.shape), scale=10)
        t.compare(f"conv3x3 gw (v{version}, pad=1; split over {N * H * W} pixels)",
                  t.backend.conv3x3_grad_weight(x, gy, 1, version=version),
                  REFERENCE.conv3x3_grad_weight(x, gy, 1), scale=10)
    w1 = t.randn("w", (Co, Ci, 1, 1))
    gy = t.randn("gy", (N, Co, H, W))
    t.compare("conv1x1 y (v2)", t.backend.conv1x1(x, w1, b, version=2), REFERENCE.conv1x1(x, w1, b), scale=10)
    t.compare("conv1x1 gx (v2)", t.backend.conv1x1_grad_input(gy, w1, version=2),
              REFERENCE.conv1x1_grad_input(gy, w1), scale=10)
    t.compare("conv1x1 gw (v2)", t.backend.conv1x1_grad_weight(x, gy, version=2),
              REFERENCE.conv1x1_grad_weight(x, gy), scale=10)
    wu = t.randn("w", (Ci, Co, 2, 2))
    gy = t.randn("gy", (N, Co, 2 * H, 2 * W))
    t.compare("up_conv2x2 y (v2)", t.backend.up_conv2x2(x, wu, b, version=2), REFERENCE.up_conv2x2(x, wu, b),
              scale=10)
    t.compare("up_conv2x2 gx (v2)", t.backend.up_conv2x2_grad_input(gy, wu, version=2),
              REFERENCE.up_conv2x2_grad_input(gy, wu), scale=10)
    t.compare("up_conv2x2 gw (v2)", t.backend.up_conv2x2_grad_weight(x, gy, version=2),
              REFERENCE.up_conv2x2_grad_weight(x, gy), scale=10)


def _gemm_tile_counted(t):
    x, w, b = t.randn("x", (2, 5, 11, 13)), t.randn("w", (9, 5, 3, 3)), t.randn("b", (9,))
    t.compare("conv3x3 y (v3)", t.backend.conv3x3(x, w, b, 1, version=3), REFERENCE.conv3x3(x, w, b, 1), scale=10)


def _gemm_tile_edges(t):
    _gemm_tile(t, 1, 1, 1, 1, 1)                    # one pixel, one channel: one element of every tile
    _gemm_tile(t, 1, 8, 65, 17, 17)  # 65 rows: a second row tile; 289 pixels: split-K


SERIAL = ("one thread does what the block's tree should share (a serial sum): every thread adds one pair per "
          "step of the tree, log2(threads) steps")

GEMM_CALLERS = tuple((stem, kernel) for stem, kernels in (
    ("conv3x3", ("conv3x3_forward_v3", "conv3x3_forward_v4", "conv3x3_grad_input_v3", "conv3x3_grad_input_v4",
                 "conv3x3_grad_weight_v3", "conv3x3_grad_weight_v4")),
    ("conv1x1", ("conv1x1_forward_v2", "conv1x1_grad_input_v2", "conv1x1_grad_weight_v2")),
    ("up_conv2x2", ("up_conv2x2_forward_v2", "up_conv2x2_grad_input_v2", "up_conv2x2_grad_weight_v2")))
    for kernel in kernels)

EXERCISES = {e.name: e for e in [
    Exercise(
        "relu", "tutorials/02-first-kernel.md", "elementwise.cu", ("relu_forward_v1", "relu_backward_v1"), (),
        ("relu_forward:", "relu_backward:", "relu_forward_v1, relu_backward_v1"),
        "ReLU forward and backward, one thread per element",
        "i = blockIdx.x * blockDim.x + threadIdx.x (blockDim.x, not 256: any block size must work); the grid is "
        "rounded up to whole blocks, so the last threads must do nothing. A NaN stays NaN (x < 0 is false for "
        "it). The backward lets gy through where y > 0, and not where y == 0.", _relu, _relu_edges,
        any_block=("relu_forward_v1", "relu_backward_v1")),
    Exercise(
        "block_sum", "tutorials/02-first-kernel.md", "common.cuh", ("minunet_block_sum",), (), (),
        "the block reduction of common.cuh, a tree in shared memory; checked through every kernel that calls it",
        "Every thread stores its acc[k] in partial[k][t]; __syncthreads(); then for s = threads/2 down to 1, "
        "threads t < s add partial[k][t + s] to partial[k][t], with a __syncthreads() after every step, "
        "reached by ALL threads (no early return). After the last step too: any thread may read any of the K "
        "sums (the grad_weight kernels' threads 0..8 do).", _block_sum, _block_sum_edges,
        targets=(("bias_grad_v1", "accesses of the busiest thread", 1.5),
                 ("up_conv2x2_grad_weight_v1", "accesses of the busiest thread", 1.5)), target_hint=SERIAL,
        counted=_block_sum_counted,
        callers=(("elementwise", "bias_grad_v1"), ("softmax_cross_entropy", "softmax_cross_entropy_v1"),
                 ("conv3x3", "conv3x3_grad_weight_v1"), ("conv3x3", "conv3x3_grad_weight_v2"),
                 ("conv1x1", "conv1x1_grad_weight_v1"), ("up_conv2x2", "up_conv2x2_grad_weight_v1"))),
    Exercise(
        "conv3x3_tiled", "tutorials/03-conv3x3.md", "conv3x3.cu", ("conv3x3_tiled",), ("conv3x3_forward_v2",),
        ("forward:", "conv3x3_forward_v2:"),
        "the 3x3 convolution forward with an input tile and its halo in shared memory (only kGradInput = false "
        "is checked)",
        "Per input channel: every thread helps load the (TILE+2)^2 tile (zeros outside the image: that is the "
        "padding, chosen, not multiplied by 0, since inf * 0 is NaN) and the COUT x 9 weights (only those of "
        "channels m < Cout: no load past w), __syncthreads(), accumulate, __syncthreads() again before the "
        "next channel overwrites the tile. Leave early only after the last barrier.",
        _conv3x3_tiled, _conv3x3_tiled_edges, targets=(("conv3x3_forward_v2", "global loads per output", 1.25),),
        target_hint="the inner loop reads x or w from global memory instead of the tiles in shared memory: each "
                    "input value is then fetched 9 times per output channel, instead of about once per block"),
    Exercise(
        "conv3x3_grad_input", "tutorials/03-conv3x3.md", "conv3x3.cu", ("conv3x3_grad_input_v1",), (),
        ("grad_input:", "conv3x3_grad_input_v1:"),
        "the 3x3 convolution's input gradient, one thread per input element gathering through the flipped taps",
        "Input pixel (iy, ix) was seen by output pixel (iy - ky + pad, ix - kx + pad) through tap (ky, kx): sum "
        "gy there times w[o, c, ky, kx] over o and the taps whose output pixel lies inside gy (0 <= oy < Ho).",
        _conv3x3_grad_input, _conv3x3_grad_input_edges, any_block=("conv3x3_grad_input_v1",)),
    Exercise(
        "conv3x3_grad_weight", "tutorials/03-conv3x3.md", "conv3x3.cu", ("conv3x3_grad_weight_v1",), (),
        ("grad_weight:", "conv3x3_grad_weight_v1:"),
        "the 3x3 convolution's weight gradient: one block per (o, c), a reduction over every pixel",
        "Block (o, c): its CONV3X3_GW_THREADS threads stride over the N*Ho*Wo output pixels, each keeping 9 "
        "sums acc[ky*3 + kx] += gy * x (x inside the image only), then minunet_block_sum(partial, acc, t) of "
        "common.cuh, which all threads must reach; threads t < 9 write gw[blockIdx.x*9 + t] = partial[t][0].",
        _conv3x3_grad_weight, _conv3x3_grad_weight_edges,
        targets=(("conv3x3_grad_weight_v1", "accesses of the busiest thread", 1.5),), target_hint=SERIAL),
    Exercise(
        "gemm_tile", "tutorials/03b-gemm-ladder.md", "gemm_tile.cuh", ("minunet_gemm_fma",), (), (),
        "the GEMM block tile of gemm_tile.cuh (minunet_gemm_fma): the register-blocked k loop of every GEMM "
        "kernel; checked through all of them, and its machine code against the solution's",
        "Threads as a TY x TX = 16 x 16 grid; each keeps TM x TN = (BM/TY) x (BN/TX) sums. For k0 from k_begin "
        "(not 0: split-K) to k_end in steps of BK: load(As, Bs, k0); __syncthreads(); for each kk, a[i] = "
        "As[kk][ty*TM + i] (contiguous rows: 16-byte loads), b[j] = Bs[kk][tx + TX*j], acc[i][j] += a[i]*b[j]; "
        "__syncthreads(). Then store(ty*TM + i, tx + TX*j, acc[i][j]) for every i, j.",
        _gemm_tile, _gemm_tile_edges, callers=GEMM_CALLERS,
        machine_code=(("conv3x3", "conv3x3_forward_v3"), ("conv3x3", "conv3x3_forward_v4")), counted=_gemm_tile_counted,
        targets=(("conv3x3_forward_v3", "shared loads per output", 1.5),
                 ("conv3x3_forward_v3", "accesses of the busiest thread", 1.5)),
        target_hint="each multiply-add reads its operands from shared memory (keep a[TM] and b[TN] in registers "
                    "per kk: TM + TN loads feed TM * TN multiply-adds), or a few threads do the block's work"),
    Exercise(
        "max_pool2x2", "tutorials/04-max-pooling.md", "max_pool2x2.cu",
        ("max_pool2x2_forward_v1", "max_pool2x2_backward_v1"), (),
        ("forward:", "backward:", "max_pool2x2_forward_v1:", "max_pool2x2_backward_v1:"),
        "2x2 max pooling with its uint8 argmax, and the backward that routes the gradient to it",
        "The forward: one thread per output, argmax = 2*dy + dx, ties to the lowest index (compare with a "
        "strict >), and a NaN wins (v != v), as in PyTorch. The backward: one thread per INPUT element, gx = gy "
        "of its window if it is the argmax, else 0 (chosen, not gy * 0: NaN * 0 is NaN), so every element is "
        "written once.", _max_pool2x2, _max_pool2x2_edges,
        any_block=("max_pool2x2_forward_v1", "max_pool2x2_backward_v1")),
    Exercise(
        "up_conv2x2", "tutorials/05-up-convolution.md", "up_conv2x2.cu",
        ("up_conv2x2_forward_v1", "up_conv2x2_grad_input_v1"), (),
        ("forward:", "grad_input:", "up_conv2x2_forward_v1:", "up_conv2x2_grad_input_v1:"),
        "the 2x2 stride-2 up-convolution forward and its input gradient, as gathers",
        "Output pixel (oy, ox) reads input pixel (oy/2, ox/2) with weight tap 2*(oy&1) + (ox&1) of "
        "w[c, o], summed over the Ci input channels; w is (Ci, Co, 2, 2). grad_input: each input pixel sums "
        "its 2x2 block of gy over the Co channels.", _up_conv2x2, _up_conv2x2_edges,
        any_block=("up_conv2x2_forward_v1", "up_conv2x2_grad_input_v1")),
    Exercise(
        "up_conv2x2_grad_weight", "tutorials/05-up-convolution.md", "up_conv2x2.cu", ("up_conv2x2_grad_weight_v1",),
        (), ("grad_weight:", "up_conv2x2_grad_weight_v1:"),
        "the up-convolution's weight gradient: one block per (c, o), a reduction over every input pixel",
        "Block c*Co + o: threads stride over the N*H*W input pixels, each keeping 4 sums acc[2a + d] += "
        "x[n, c, i, j] * gy[n, o, 2i + a, 2j + d], then minunet_block_sum(partial, acc, t); threads t < 4 "
        "write gw[blockIdx.x*4 + t] = partial[t][0].", _up_conv2x2_grad_weight, _up_conv2x2_grad_weight_edges,
        targets=(("up_conv2x2_grad_weight_v1", "accesses of the busiest thread", 1.5),), target_hint=SERIAL),
    Exercise(
        "softmax_cross_entropy", "tutorials/06-loss-and-weight-map.md", "softmax_cross_entropy.cu",
        ("softmax_cross_entropy_v1",), ("real_exp", "real_log"),
        ("For each pixel", "softmax_cross_entropy_v1:"),
        "the fused softmax cross-entropy: per-pixel loss and gradient, block partial sums of the loss",
        "One thread per pixel: subtract the max before exp (logits of 100 overflow a float's exp), write all K "
        "gradient entries (zeros where ignored), then the block's sum of the losses, "
        "minunet_block_sum<MINUNET_THREADS>(the double shared array, loss, threadIdx.x) of common.cuh, which "
        "every thread of the block must reach (no early return).", _softmax_cross_entropy, _softmax_edges,
        targets=(("softmax_cross_entropy_v1", "accesses of the busiest thread", 1.5),), target_hint=SERIAL),
    Exercise(
        "dropout", "tutorials/07-assembling-the-unet.md", "elementwise.cu", ("dropout_forward_v1", "multiply_v1"),
        (), ("dropout_forward:", "multiply:"),
        "dropout's mask from the counter hash of common.cuh (the same elements dropped on every device), and its "
        "backward",
        "Element i is kept iff minunet_hash_uniform(seed, offset + i) >= p (>=: a number equal to p is kept), in "
        "float as NumPy compares; mask = kept ? scale : 0, y = x * mask. multiply_v1: out = a * b. One thread "
        "per element, i = blockIdx.x * blockDim.x + threadIdx.x, nothing past n.", _dropout, _dropout_edges,
        any_block=("dropout_forward_v1", "multiply_v1")),
]}
