"""One SGD training step (forward, weighted cross-entropy, backward, update) of minunet's U-Net and of its
PyTorch twin (minunet/torch_twin.py), on random images, labels and weights."""
import numpy as np


def training_step_minunet(device, tile, batch, depth, base, rng, dtype=np.float32):
    """(step function, model) for one SGD step of mu.UNet on device, with random image, labels, weights."""
    from .. import functional as F
    from ..optim import SGD
    from ..tensor import Tensor
    from ..unet import UNet, check_input_size
    model = UNet(depth=depth, base_channels=base, device=device, dtype=dtype, seed=0)
    out = check_input_size(tile, depth)
    x = Tensor(rng.standard_normal((batch, 1, tile, tile)).astype(dtype), device=device)
    labels = Tensor(rng.integers(0, 2, (batch, out, out)).astype(np.int32), device=device)
    weights = Tensor(rng.uniform(0.5, 2.0, (batch, out, out)).astype(dtype), device=device)
    opt = SGD(model.parameters(), lr=1e-3, momentum=0.99)
    model.train()

    def step():
        opt.zero_grad()
        loss = F.weighted_softmax_cross_entropy(model(x), labels, weights)
        loss.backward()
        opt.step()
    return step, model


def training_step_torch(device, tile, batch, depth, base, rng):
    """The same step of the PyTorch twin (PyTorch eager) on device ("cpu" or "cuda")."""
    import torch

    from ..torch_twin import TorchUNet
    from ..unet import check_input_size
    model = TorchUNet(depth=depth, base_channels=base).to(device)
    model.train()
    out = check_input_size(tile, depth)
    x = torch.from_numpy(rng.standard_normal((batch, 1, tile, tile)).astype(np.float32)).to(device)
    labels = torch.from_numpy(rng.integers(0, 2, (batch, out, out)).astype(np.int64)).to(device)
    weights = torch.from_numpy(rng.uniform(0.5, 2.0, (batch, out, out)).astype(np.float32)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = (torch.nn.functional.cross_entropy(logits, labels, reduction="none") * weights).mean()
        loss.backward()
        opt.step()
    return step
