"""Every operator's backward by finite differences in float64, on numpy and on the kernels (sim, cuda)."""
import numpy as np
import pytest

import minunet as mu
import minunet.functional as F
from minunet.gradcheck import check_backward

DEVICES = ["numpy", "sim", pytest.param("cuda", marks=pytest.mark.gpu)]


def param(rng, device, *shape, scale=1.0):
    return mu.Tensor(rng.standard_normal(shape) * scale, requires_grad=True, device=device)


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv3x3(device, rng, padding):
    x, w, b = param(rng, device, 2, 3, 7, 6), param(rng, device, 4, 3, 3, 3), param(rng, device, 4)
    check_backward(lambda x, w, b: F.conv3x3(x, w, b, padding), [x, w, b])


def test_conv3x3_without_bias(device, rng):
    check_backward(lambda x, w: F.conv3x3(x, w), [param(rng, device, 1, 2, 5, 5), param(rng, device, 3, 2, 3, 3)])


def test_conv1x1(device, rng):
    x, w, b = param(rng, device, 2, 3, 5, 4), param(rng, device, 2, 3, 1, 1), param(rng, device, 2)
    check_backward(F.conv1x1, [x, w, b])


def test_up_conv2x2(device, rng):
    x, w, b = param(rng, device, 2, 3, 3, 4), param(rng, device, 3, 2, 2, 2), param(rng, device, 2)
    check_backward(F.up_conv2x2, [x, w, b])


def test_max_pool2x2_without_ties(device, rng):
    # A shuffled arange has no ties, so the argmax is unique and the function is differentiable (Chainer).
    values = rng.permutation(2 * 3 * 6 * 8).reshape(2, 3, 6, 8) * 0.1
    check_backward(F.max_pool2x2, [mu.Tensor(values, requires_grad=True, device=device)])


def test_relu_away_from_the_kink(device, rng):
    values = rng.standard_normal((2, 3, 5, 3))
    values += np.sign(values) * 0.1  # keep |x| >= 0.1, far from the kink at 0 compared with eps
    check_backward(F.relu, [mu.Tensor(values, requires_grad=True, device=device)])


def test_center_crop_and_concat(device, rng):
    a, b = param(rng, device, 2, 3, 9, 8), param(rng, device, 2, 2, 5, 4)
    check_backward(lambda a, b: F.concat(F.center_crop(a, 5, 4), b), [a, b])


def test_dropout_with_a_fixed_seed(device, rng):
    check_backward(lambda x: F.dropout(x, 0.3, True, seed=7), [param(rng, device, 2, 3, 4, 5)])


@pytest.mark.parametrize("ignore_index", [None, 5])
def test_weighted_softmax_cross_entropy(device, rng, ignore_index):
    logits = param(rng, device, 2, 3, 4, 5)
    labels = rng.integers(0, 3, (2, 4, 5)).astype(np.int32)
    if ignore_index is not None:
        labels[0, 1, :3] = ignore_index
    weights = mu.Tensor(rng.uniform(0.5, 3.0, (2, 4, 5)), device=device)
    labels = mu.Tensor(labels, device=device)
    check_backward(lambda z: F.weighted_softmax_cross_entropy(z, labels, weights, ignore_index), [logits])


def test_a_small_unet_end_to_end(device):
    """The whole composition: valid convs, pooling, up-convs, crop-and-concat, 1x1 head, loss."""
    net = mu.UNet(in_channels=1, n_classes=2, depth=2, base_channels=2, dropout=0.0, dtype=np.float64,
                  device=device, seed=3)
    rng = np.random.default_rng(5)
    x = mu.Tensor(rng.standard_normal((1, 1, 20, 20)), device=device)
    out = net.output_size(20)
    labels = mu.Tensor(rng.integers(0, 2, (1, out, out)), device=device)
    names = [name for name, _ in net.named_parameters()]

    def put(name, tensor):  # swap a parameter Tensor in, so gradients flow to check_backward's inputs
        *path, last = name.split(".")
        owner = net
        for part in path:
            owner = owner[int(part)] if part.isdigit() else getattr(owner, part)
        setattr(owner, last, tensor)

    def loss(*ps):
        for name, p in zip(names, ps):
            put(name, p)
        return F.weighted_softmax_cross_entropy(net(x), labels)

    check_backward(loss, [mu.Tensor(p.data.copy(), requires_grad=True, device=device) for p in net.parameters()],
                   n_samples=2)


def test_conv3x3_with_fused_relu(device, rng):
    x, w, b = param(rng, device, 2, 3, 6, 7), param(rng, device, 4, 3, 3, 3), param(rng, device, 4)
    check_backward(lambda x, w, b: F.conv3x3(x, w, b, "same", relu=True), [x, w, b])


def test_fused_relu_equals_conv_then_relu(device, rng):
    x, w, b = param(rng, device, 2, 3, 9, 8), param(rng, device, 5, 3, 3, 3), param(rng, device, 5)
    fused = F.conv3x3(x, w, b, relu=True).numpy()
    np.testing.assert_array_equal(fused, F.relu(F.conv3x3(x, w, b)).numpy())
