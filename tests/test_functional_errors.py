"""Bad input is a clear TypeError/ValueError naming the argument, never a crash or a silent cast."""
import numpy as np
import pytest

import minunet as mu
import minunet.functional as F


def t(*shape, dtype=np.float32, device="numpy"):
    return mu.Tensor(np.ones(shape, dtype), device=device)


@pytest.mark.parametrize("call, error, message", [
    (lambda: F.conv3x3(np.ones((1, 1, 5, 5)), t(1, 1, 3, 3)), TypeError, "x must be a minunet Tensor"),
    (lambda: F.conv3x3(t(1, 1, 5, 5, dtype=np.int32), t(1, 1, 3, 3)), TypeError, "float32 or float64"),
    (lambda: F.conv3x3(t(1, 5, 5), t(1, 1, 3, 3)), ValueError, r"4 dimensions \(N, Cin, H, W\)"),
    (lambda: F.conv3x3(t(1, 2, 5, 5), t(4, 3, 3, 3)), ValueError, r"w must have shape \('Cout', 2, 3, 3\)"),
    (lambda: F.conv3x3(t(1, 1, 5, 5), t(1, 1, 3, 3, dtype=np.float64)), TypeError, "w is float64 but x is float32"),
    (lambda: F.conv3x3(t(1, 1, 5, 5), t(2, 1, 3, 3), t(3)), ValueError, r"b must have shape \(2,\)"),
    (lambda: F.conv3x3(t(1, 1, 2, 5), t(1, 1, 3, 3)), ValueError, "needs H, W >= 3"),
    (lambda: F.conv3x3(t(1, 1, 5, 5), t(1, 1, 3, 3), padding=1), ValueError, "padding must be"),
    (lambda: F.conv3x3(t(1, 1, 5, 5), t(1, 1, 3, 3, device="sim")), ValueError, "w is on 'sim' but x is on 'numpy'"),
    (lambda: F.conv3x3(mu.Tensor(np.ones((1, 1, 5, 10), np.float32)[..., ::2]), t(1, 1, 3, 3)), ValueError,
     "not C-contiguous"),
    (lambda: F.max_pool2x2(t(1, 1, 5, 4)), ValueError, "must be even"),
    (lambda: F.up_conv2x2(t(1, 3, 2, 2), t(2, 3, 2, 2)), ValueError, "w must have shape"),
    (lambda: F.conv1x1(t(1, 3, 2, 2), t(2, 3, 3, 3)), ValueError, "w must have shape"),
    (lambda: F.center_crop(t(1, 1, 4, 4), 5, 2), ValueError, r"h must be an int in \[1, 4\]"),
    (lambda: F.concat(t(1, 1, 4, 4), t(1, 1, 4, 5)), ValueError, "center_crop the larger one"),
    (lambda: F.dropout(t(1, 1, 4, 4), 1.0), ValueError, r"p must be in \[0, 1\)"),
])
def test_bad_operator_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def logits(n=1, k=2, h=3, w=3):
    return t(n, k, h, w)


@pytest.mark.parametrize("labels, weights, kwargs, error, message", [
    (np.full((1, 3, 3), 255), None, {}, ValueError, r"found values \[255\] \(a mask stored as 0/255"),
    (np.full((1, 3, 3), -2), None, {}, ValueError, r"found values \[-2\]"),
    (np.zeros((1, 3, 3), np.float32), None, {}, TypeError, "integer array of class indices"),
    (np.zeros((1, 3, 4), np.int64), None, {}, ValueError, r"labels must have shape \(N, H, W\)"),
    (np.zeros((1, 3, 3), np.int64), np.ones((1, 3, 3)), {}, TypeError, "weights are float64 but logits float32"),
    (np.zeros((1, 3, 3), np.int64), -np.ones((1, 3, 3), np.float32), {}, ValueError, "finite and >= 0"),
    (np.zeros((1, 3, 3), np.int64), np.full((1, 3, 3), np.nan, np.float32), {}, ValueError, "finite and >= 0"),
    (np.zeros((1, 3, 3), np.int64), np.ones((1, 2, 3), np.float32), {}, ValueError, "weights must have shape"),
    (np.zeros((1, 3, 3), np.int64), None, {"ignore_index": 1}, ValueError, "outside the classes"),
    (np.full((1, 3, 3), 9), None, {"ignore_index": 9}, ValueError, "every pixel has label ignore_index"),
    (np.zeros((1, 3, 3), np.int64), None, {"ignore_index": 2**40}, ValueError, "must be an int32 outside"),
    ([[0]], None, {}, TypeError, "labels must be a Tensor or a numpy.ndarray"),
])
def test_bad_loss_arguments(labels, weights, kwargs, error, message):
    with pytest.raises(error, match=message):
        F.weighted_softmax_cross_entropy(logits(), labels, weights, **kwargs)


@pytest.mark.parametrize("device", ["numpy", "sim", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_loss_takes_uint8_labels_with_an_ignore_index_outside_uint8(device):
    # Raw labels must live on the logits' device (a host array with cuda logits is a TypeError).
    labels = mu.get_backend(device).asarray(np.array([[[0, 1, 1], [0, 0, 1], [1, 0, 0]]], np.uint8))
    z = mu.Tensor(logits().numpy(), device=device)
    expected = F.weighted_softmax_cross_entropy(z, labels.astype(np.int32)).numpy()
    for ignore_index in (-1, 255, 1000):
        loss = F.weighted_softmax_cross_entropy(z, labels, ignore_index=ignore_index).numpy()
        np.testing.assert_allclose(loss, expected, rtol=1e-6, err_msg=f"ignore_index={ignore_index}")


def test_loss_labels_on_another_device():
    with pytest.raises(ValueError, match="labels is on 'sim' but logits on 'numpy'"):
        F.weighted_softmax_cross_entropy(logits(), mu.Tensor(np.zeros((1, 3, 3), np.int32), device="sim"))


def test_sgd_arguments():
    p = mu.Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="momentum must be < 1"):
        mu.optim.SGD([p], lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        mu.optim.SGD([p], lr=float("nan"))
    with pytest.raises(ValueError, match="non-empty list of Tensors"):
        mu.optim.SGD([mu.Tensor(np.ones(2))], lr=0.1)
    with pytest.raises(TypeError, match="lr must be a number, got str"):
        mu.optim.SGD([p], lr="0.1")


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(depth=2.5), TypeError, "depth must be an int, got float"),
    (dict(base_channels="64"), TypeError, "base_channels must be an int"),
    (dict(dropout="0.5"), TypeError, "dropout must be a number, got str"),
    (dict(depth=0), ValueError, "must be >= 1"),
])
def test_unet_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        mu.UNet(**kwargs)


def test_unet_input_channels_are_named():
    with pytest.raises(ValueError, match=r"x must be \(N, 1, H, W\) for this network \(in_channels=1\)"):
        mu.UNet(depth=2, base_channels=2)(t(1, 3, 44, 44))


@pytest.mark.parametrize("data", [np.array(["a", "b"]), np.array([object()]), "text"])
def test_tensor_refuses_non_numeric_data(data):
    with pytest.raises(TypeError, match="numeric array"):
        mu.Tensor(data)


@pytest.mark.parametrize("device", ["numpy", "sim", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_an_empty_batch_gives_empty_outputs_and_zero_weight_gradients(device):
    x = mu.Tensor(np.ones((0, 2, 6, 6)), requires_grad=True, device=device)
    weights = [mu.Tensor(np.ones(shape), requires_grad=True, device=device)
               for shape in ((3, 2, 3, 3), (2, 1, 2, 2), (1, 2, 1, 1))]
    outputs = [F.conv3x3(x, weights[0]), F.up_conv2x2(x, weights[1]), F.conv1x1(x, weights[2])]
    assert [y.shape for y in outputs] == [(0, 3, 4, 4), (0, 1, 12, 12), (0, 1, 6, 6)]
    for y in outputs:
        y.backward(mu.Tensor(np.ones(y.shape), device=device))
    assert x.grad.shape == x.shape
    for w in weights:
        np.testing.assert_array_equal(mu.get_backend(device).to_numpy(w.grad), np.zeros(w.shape))
