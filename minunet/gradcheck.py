"""Gradient checking by finite differences, after Chainer's check_backward.

Two checks, both in float64:
- directional: along a random direction d, (L(x + eps*d) - L(x - eps*d)) / (2*eps) must equal <grad, d>,
  which tests every element of every gradient at once;
- sampled elements: central differences for a few single elements of each input, which localises a bug.
L(x) = <f(x), gy> for a fixed random gy, so the whole backward of f is exercised, not only its sum.
"""
import numpy as np

from .tensor import Tensor, no_grad


def check_backward(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, n_samples=4, seed=0):
    """fn(*inputs) -> Tensor; inputs: float64 Tensors with requires_grad=True (any device).

    Raises AssertionError naming the input and the worst element if analytic and numeric gradients differ.
    """
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or x.dtype != np.float64 or not x.requires_grad:
            raise TypeError(f"check_backward: input {i} must be a float64 Tensor with requires_grad=True")
    rng = np.random.default_rng(seed)
    out = fn(*inputs)
    gy = rng.standard_normal(out.shape)
    for x in inputs:
        x.grad = None
    out.backward(Tensor(gy, device=out.device))
    analytic = [x.backend.to_numpy(x.grad) if x.grad is not None else np.zeros(x.shape) for x in inputs]

    originals = [x.numpy().copy() for x in inputs]

    def loss_at(shifts):
        with no_grad():
            moved = [Tensor(o + s, device=x.device) for o, s, x in zip(originals, shifts, inputs)]
            return float(np.sum(fn(*moved).numpy() * gy))

    zeros = [np.zeros_like(o) for o in originals]
    directions = [rng.standard_normal(o.shape) for o in originals]
    numeric = (loss_at([eps * d for d in directions]) - loss_at([-eps * d for d in directions])) / (2 * eps)
    expected = sum(float(np.sum(a * d)) for a, d in zip(analytic, directions))
    if abs(numeric - expected) > atol + rtol * abs(numeric):
        raise AssertionError(f"directional derivative: numeric {numeric!r}, analytic {expected!r}")

    for i, o in enumerate(originals):
        for flat in rng.choice(o.size, size=min(n_samples, o.size), replace=False):
            index = np.unravel_index(flat, o.shape)
            shift = [z.copy() for z in zeros]
            shift[i][index] = eps
            plus = loss_at(shift)
            shift[i][index] = -eps
            num = (plus - loss_at(shift)) / (2 * eps)
            if abs(num - analytic[i][index]) > atol + rtol * abs(num):
                raise AssertionError(f"input {i} element {index}: numeric {num!r}, analytic {analytic[i][index]!r}")
