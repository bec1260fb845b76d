"""minunet/torch_twin.py: the PyTorch U-Net is the same network as mu.UNet (same output, same gradients for the
same weights), micrograd's cross-check at the scale of the whole network. Needs PyTorch: each test is skipped
without it (a skip at collection would count as a gpu test that did not run in `pytest -m gpu`'s report)."""
import importlib

import numpy as np
import pytest

import minunet as mu


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def torch_twin(torch):
    return importlib.import_module("minunet.torch_twin")


def assert_close(out, ref, name, atol=1e-10, rtol=1e-9):
    err = np.abs(out - ref) - (atol + rtol * np.abs(ref))
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert err[worst] <= 0, f"{name}: worst element {worst}: {out[worst]!r} vs {ref[worst]!r}"


@pytest.mark.parametrize("padding, tile", [("valid", 44), ("same", 16)])
def test_the_twin_gives_the_same_output_and_gradients(torch, torch_twin, padding, tile):
    model = mu.UNet(depth=3, base_channels=4, n_classes=3, padding=padding, dtype=np.float64, seed=2).eval()
    twin = torch_twin.twin_of(model).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, tile, tile))
    y = model(mu.Tensor(x))
    ty = twin(torch.from_numpy(x))
    assert_close(ty.detach().numpy(), y.numpy(), "forward")
    cotangent = rng.standard_normal(y.shape)  # d(loss)/d(output): the backward of every layer, through the walk
    y.backward(mu.Tensor(cotangent))
    ty.backward(torch.from_numpy(cotangent))
    grads = {name: p.grad for name, p in twin.named_parameters()}
    assert set(grads) == {torch_twin.torch_name(name) for name, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        assert_close(grads[torch_twin.torch_name(name)].numpy(), p.grad, f"gradient of {name}")


def test_the_twin_names_its_parts_like_minunet(torch, torch_twin):
    twin = torch_twin.TorchUNet(depth=2, base_channels=2)
    assert isinstance(twin.up_convs[0], torch.nn.ConvTranspose2d) and isinstance(twin.up[0], torch_twin.DoubleConv)
    with pytest.raises(ValueError, match="does not fit a depth-2 U-Net"):
        twin(torch.zeros(1, 1, 31, 31))  # the walk's size check, as minunet's
