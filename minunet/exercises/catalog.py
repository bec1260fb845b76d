"""The exercises: which functions of which kernels/ file the learner writes, and how they are checked.

Each exercise's `run(trial)` feeds random odd-sized inputs to the project's own launch code (the kernel
backend's op, so grid, block and shared memory are the ones the GPU gets) with the learner's file compiled
in place of the solution, and compares every output with the NumPy reference, minunet/reference.py. A
header's exercise (common.cuh) is checked through the kernels that include it (`callers`), compiled with the
learner's header in place of the project's.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import reference as REFERENCE  # minunet/reference.py: the readable loops, the ground truth


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
    run: Callable         # run(trial): launches the learner's kernels and compares their outputs
    callers: tuple = ()   # a header's exercise: (kernel file stem, kernel) that run() launches through it

    @property
    def is_header(self):
        return self.file.endswith(".cuh")

    @property
    def learner_file(self):
        """The learner's file name: the exercise's name with the solution's suffix (.cu or .cuh)."""
        return self.name + self.file[self.file.rindex("."):]


def _relu(t):
    data = t.rng.standard_normal(t.odd_shape(4, 1, 11)).astype(t.dtype)
    data.ravel()[::7] = 0  # exact zeros: relu_backward's y > 0 must not let them through
    x = t.input("x", data)
    t.compare("y", t.backend.relu(x), REFERENCE.relu(x))
    y = t.input("y", REFERENCE.relu(x))
    gy = t.randn("gy", x.shape)
    t.compare("gx", t.backend.relu_grad(gy, y), REFERENCE.relu_grad(gy, y))


def _bias_grad(t):
    gy = t.randn("gy", (t.odd(1, 3), t.odd(1, 5), t.odd(9, 25), t.odd(9, 25)))  # N*H*W around 1 to 5 blocks
    t.compare("gb", t.backend.bias_grad(gy), REFERENCE.bias_grad(gy), scale=10)


def _block_sum(t):
    _bias_grad(t)                # one real per thread, a block per channel
    _softmax_cross_entropy(t)    # one double per thread, partial sums of several blocks


def _conv3x3_tiled(t):
    N, Ci, Co = t.odd(1, 3), t.odd(1, 5), t.odd(9, 11)  # Co not a multiple of the 8 channels of a block
    x = t.randn("x", (N, Ci, t.odd(17, 21), t.odd(17, 21)))  # tiles of 16: a partial tile at each edge
    w = t.randn("w", (Co, Ci, 3, 3))
    b = t.randn("b", (Co,))
    for pad, bias in ((0, b), (1, None)):
        t.compare(f"y (pad={pad}, bias {'given' if bias is not None else 'None'})",
                  t.backend.conv3x3(x, w, bias, pad, version=2), REFERENCE.conv3x3(x, w, bias, pad), scale=10)


def _max_pool2x2(t):
    shape = (t.odd(1, 3), t.odd(1, 5), 2 * t.odd(3, 9), 2 * t.odd(3, 9))  # H, W even, as the op needs
    ties = t.rng.integers(-1, 2, shape).astype(t.dtype)  # mostly ties: the lowest index must win
    for label, data in (("random", t.rng.standard_normal(shape).astype(t.dtype)), ("with ties", ties)):
        x = t.input("x", data)
        (y, argmax), (y_ref, argmax_ref) = t.backend.max_pool2x2(x, version=1), REFERENCE.max_pool2x2(x)
        t.compare(f"y ({label})", y, y_ref)
        t.compare(f"argmax ({label})", argmax, argmax_ref)
    gy = t.randn("gy", y_ref.shape)
    argmax = t.input("argmax", argmax_ref)
    t.compare("gx", t.backend.max_pool2x2_grad(gy, argmax, version=1), REFERENCE.max_pool2x2_grad(gy, argmax))


def _up_conv2x2(t):
    N, Ci, Co = t.odd(1, 3), t.odd(1, 5), t.odd(1, 5)
    x = t.randn("x", (N, Ci, t.odd(3, 9), t.odd(3, 9)))
    w = t.randn("w", (Ci, Co, 2, 2))
    b = t.randn("b", (Co,))
    for bias in (b, None):
        t.compare(f"y (bias {'given' if bias is not None else 'None'})", t.backend.up_conv2x2(x, w, bias, version=1),
                  REFERENCE.up_conv2x2(x, w, bias), scale=10)
    gy = t.randn("gy", (N, Co, 2 * x.shape[2], 2 * x.shape[3]))
    t.compare("gx", t.backend.up_conv2x2_grad_input(gy, w, version=1), REFERENCE.up_conv2x2_grad_input(gy, w),
              scale=10)


def _softmax_cross_entropy(t):
    N, K, H, W = t.odd(1, 3), t.odd(2, 5), t.odd(9, 19), t.odd(9, 19)  # N*H*W: 1 to 5 blocks of 256 pixels
    logits = t.randn("logits", (N, K, H, W))
    labels = t.rng.integers(0, K, (N, H, W)).astype(np.int32)
    labels.ravel()[::5] = K  # ignored pixels
    labels = t.input("labels", labels)
    weights = t.input("weights", t.rng.uniform(0.5, 2.0, (N, H, W)).astype(t.dtype))
    for wts, ignore in ((weights, K), (None, -1)):
        lab = labels if ignore == K else t.input("labels", np.minimum(labels, K - 1))
        loss, grad = t.backend.softmax_cross_entropy(logits, lab, wts, ignore, 0.5, version=1)
        loss_ref, grad_ref = REFERENCE.softmax_cross_entropy(logits, lab, wts, ignore, 0.5)
        case = f"weights {'given' if wts is not None else 'None'}, ignore_index {ignore}"
        t.compare(f"grad ({case})", grad, grad_ref)
        t.compare(f"the loss ({case})", np.float64(loss), np.float64(loss_ref), scale=100)


EXERCISES = {e.name: e for e in [
    Exercise(
        "relu", "tutorials/02-first-kernel.md", "elementwise.cu", ("relu_forward_v1", "relu_backward_v1"), (),
        ("relu_forward:", "relu_backward:", "relu_forward_v1, relu_backward_v1"),
        "ReLU forward and backward, one thread per element",
        "i = blockIdx.x * blockDim.x + threadIdx.x; the grid is rounded up to whole blocks, so the last threads "
        "must do nothing. The backward lets gy through where y > 0, and not where y == 0.", _relu),
    Exercise(
        "block_sum", "tutorials/02-first-kernel.md", "common.cuh", ("minunet_block_sum",), (), (),
        "the block reduction of common.cuh, a tree in shared memory; checked through bias_grad and the loss",
        "Every thread stores its acc[k] in partial[k][t]; __syncthreads(); then for s = threads/2 down to 1, "
        "threads t < s add partial[k][t + s] to partial[k][t], with a __syncthreads() after every step, "
        "reached by ALL threads (no early return).", _block_sum,
        callers=(("elementwise", "bias_grad_v1"), ("softmax_cross_entropy", "softmax_cross_entropy_v1"))),
    Exercise(
        "conv3x3_tiled", "tutorials/03-conv3x3.md", "conv3x3.cu", ("conv3x3_tiled",), ("conv3x3_forward_v2",),
        ("forward:", "conv3x3_forward_v2:"),
        "the 3x3 convolution forward with an input tile and its halo in shared memory (only kGradInput = false "
        "is checked)",
        "Per input channel: every thread helps load the (TILE+2)^2 tile (zeros outside the image: that is the "
        "padding) and the COUT x 9 weights, __syncthreads(), accumulate, __syncthreads() again before the next "
        "channel overwrites the tile. Leave early only after the last barrier.", _conv3x3_tiled),
    Exercise(
        "max_pool2x2", "tutorials/04-max-pooling.md", "max_pool2x2.cu",
        ("max_pool2x2_forward_v1", "max_pool2x2_backward_v1"), (),
        ("forward:", "backward:", "max_pool2x2_forward_v1:", "max_pool2x2_backward_v1:"),
        "2x2 max pooling with its uint8 argmax, and the backward that routes the gradient to it",
        "The forward: one thread per output, argmax = 2*dy + dx, ties to the lowest index (compare with a "
        "strict >). The backward: one thread per INPUT element, gx = gy of its window if it is the argmax, "
        "else 0, so every element is written once.", _max_pool2x2),
    Exercise(
        "up_conv2x2", "tutorials/05-up-convolution.md", "up_conv2x2.cu",
        ("up_conv2x2_forward_v1", "up_conv2x2_grad_input_v1"), (),
        ("forward:", "grad_input:", "up_conv2x2_forward_v1:", "up_conv2x2_grad_input_v1:"),
        "the 2x2 stride-2 up-convolution forward and its input gradient, as gathers",
        "Output pixel (oy, ox) reads input pixel (oy/2, ox/2) with weight tap 2*(oy&1) + (ox&1) of "
        "w[c, o], summed over the Ci input channels; w is (Ci, Co, 2, 2). grad_input: each input pixel sums "
        "its 2x2 block of gy over the Co channels.", _up_conv2x2),
    Exercise(
        "softmax_cross_entropy", "tutorials/06-loss-and-weight-map.md", "softmax_cross_entropy.cu",
        ("softmax_cross_entropy_v1",), ("real_exp", "real_log"),
        ("For each pixel", "softmax_cross_entropy_v1:"),
        "the fused softmax cross-entropy: per-pixel loss and gradient, block partial sums of the loss",
        "One thread per pixel: subtract the max before exp, write all K gradient entries (zeros where ignored), "
        "then the block's sum of the losses, minunet_block_sum<MINUNET_THREADS>(the double shared array, loss, "
        "threadIdx.x) of common.cuh, which every thread of the block must reach (no early return).",
        _softmax_cross_entropy),
]}
