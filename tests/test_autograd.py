"""The autograd contract: accumulation, zero_grad, graph freeing, no_grad, devices, custom Functions."""
import gc
import tracemalloc

import numpy as np
import pytest

import minunet as mu
import minunet.functional as F
from minunet.gradcheck import check_backward


def test_add_mul_sum_gradients():
    a = mu.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = mu.Tensor(np.array([4.0, 5.0, 6.0]), requires_grad=True)
    ((a * b + a) * 2.0).sum().backward()
    np.testing.assert_array_equal(a.grad, 2 * (b.data + 1))
    np.testing.assert_array_equal(b.grad, 2 * a.data)


def test_gradients_accumulate_until_zero_grad():
    x = mu.Tensor(np.ones(3), requires_grad=True)
    opt = mu.optim.SGD([x], lr=0.1)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 6.0, 6.0])
    opt.zero_grad()
    assert x.grad is None


def test_a_tensor_used_twice_gets_both_gradients():
    x = mu.Tensor(np.array([2.0]), requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [4.0])


def test_backward_frees_the_graph():
    x = mu.Tensor(np.ones(4), requires_grad=True)
    y = (x * 2.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="already freed"):
        y.backward()


def test_backward_needs_scalar_or_explicit_grad():
    x = mu.Tensor(np.ones(4), requires_grad=True)
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2.0).backward()
    y = x * 2.0
    y.backward(np.arange(4.0))
    np.testing.assert_array_equal(x.grad, 2 * np.arange(4.0))


def test_no_grad_records_nothing():
    x = mu.Tensor(np.ones(2), requires_grad=True)
    with mu.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y._ctx is None
    assert mu.is_grad_enabled()


def test_requires_grad_needs_float():
    with pytest.raises(TypeError, match="float32 or float64"):
        mu.Tensor(np.arange(3), requires_grad=True)


def test_custom_function_in_the_docs_style():
    class Square(mu.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 2 * x * grad

    x = mu.Tensor(np.array([1.0, -3.0]), requires_grad=True)
    check_backward(lambda t: Square.apply(t), [x])


def test_to_moves_between_devices_and_numpy_copies():
    a = np.arange(6.0).reshape(2, 3)
    t = mu.Tensor(a, device="sim")
    assert t.device == "sim" and t.to("numpy").device == "numpy"
    np.testing.assert_array_equal(t.to("numpy").numpy(), a)
    with pytest.raises(ValueError, match="device must be one of"):
        t.to("gpu")


@pytest.mark.parametrize("device", ["numpy", "sim", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_moving_to_a_device_keeps_the_shape_and_makes_it_contiguous(device):
    # np/cupy.ascontiguousarray turn a 0-d array (a loss, its seed gradient) into shape (1,): never use it.
    backend = mu.get_backend(device)
    scalar = backend.asarray(np.array(1.5))
    assert scalar.shape == () and float(scalar) == 1.5
    assert mu.Tensor(np.array(1.5), device=device).shape == ()
    strided = backend.asarray(np.arange(12.0).reshape(3, 4)[:, ::2])
    assert strided.flags.c_contiguous and backend.to_numpy(strided).tolist() == [[0, 2], [4, 6], [8, 10]]
    for other in ("numpy", "sim"):
        assert mu.Tensor(mu.Tensor(np.array(2.0), device=device), device=other).shape == ()


@pytest.mark.parametrize("device", ["numpy", "sim"])
def test_a_function_result_is_wrapped_not_copied(device):
    # sim keeps its arrays in NumPy; Tensor(array, device="sim") copies, a Function's result must not be
    held = np.arange(4.0)

    class Hand(mu.Function):
        @staticmethod
        def forward(ctx, x):
            return held

    out = Hand.apply(mu.Tensor(np.ones(4), device=device))
    assert out.data is held and out.device == device
    assert out.detach().data is held and out.detach().device == device


def test_mixed_devices_are_an_error():
    a = mu.Tensor(np.ones(2), requires_grad=True)
    b = mu.Tensor(np.ones(2), device="sim")
    with pytest.raises(ValueError, match="one device"):
        a * b


def test_memory_stays_flat_over_many_steps():
    """1000 training steps of a small conv net: the graph and its saved arrays are freed every step."""
    rng = np.random.default_rng(0)
    w = mu.Tensor(rng.standard_normal((4, 1, 3, 3)) * 0.3, requires_grad=True)
    v = mu.Tensor(rng.standard_normal((2, 4, 1, 1)) * 0.3, requires_grad=True)
    x = mu.Tensor(rng.standard_normal((1, 1, 12, 12)))
    labels = rng.integers(0, 2, (1, 8, 8))
    opt = mu.optim.SGD([w, v], lr=1e-3)

    def step():
        opt.zero_grad()
        h = F.max_pool2x2(F.relu(F.conv3x3(x, w)))
        logits = F.conv1x1(F.up_conv2x2(h, mu.Tensor(np.ones((4, 4, 2, 2)) * 0.1)), v)
        loss = F.weighted_softmax_cross_entropy(F.center_crop(logits, 8, 8), labels)
        loss.backward()
        opt.step()

    tracemalloc.start()
    for _ in range(20):
        step()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(980):
        step()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert after - before < 64 * 1024, f"memory grew by {after - before} bytes over 980 steps"
