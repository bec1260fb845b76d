"""The U-Net in PyTorch: the same network as mu.UNet, for the bench to time against and the tests to check with.

TorchUNet makes its parts in PyTorch (nn.Conv2d, nn.ConvTranspose2d) and runs the walk of minunet/unet.py
(UNetWalk.forward), so the two networks cannot differ in their structure; parameters have the same names
(`down.0.conv1.weight` for minunet's `down.0.conv1.w`), and twin_of(model) copies a minunet model's weights.
op_call gives the PyTorch call (cuDNN on a GPU) of each op and direction the bench times.

PyTorch is not a dependency of minunet: import this module only where `import torch` works.
"""
import torch
import torch.nn.functional as TF
from torch import nn

from .unet import UNetWalk


class DoubleConv(nn.Module):
    """conv3x3 -> ReLU -> conv3x3 -> ReLU, as minunet.unet._DoubleConv."""

    def __init__(self, cin, cout, padding):
        super().__init__()
        pad = 0 if padding == "valid" else 1
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=pad), nn.Conv2d(cout, cout, 3, padding=pad)

    def forward(self, x):
        return TF.relu(self.conv2(TF.relu(self.conv1(x))))


class TorchUNet(UNetWalk, nn.Module):
    """mu.UNet's network in PyTorch (PyTorch's default initialisation; twin_of copies minunet's weights)."""

    parts = nn.ModuleList

    def __init__(self, in_channels=1, n_classes=2, depth=5, base_channels=64, padding="valid", dropout=0.5):
        nn.Module.__init__(self)
        self.drop = nn.Dropout(dropout)
        self.build(in_channels, n_classes, depth, base_channels, padding,
                   double_conv=lambda cin, cout, name: DoubleConv(cin, cout, padding),
                   up_conv=lambda cin, cout, name: nn.ConvTranspose2d(cin, cout, 2, stride=2),
                   conv1x1=lambda cin, cout, name: nn.Conv2d(cin, cout, 1))

    # The walk's ops between the parts, in PyTorch.
    def max_pool2x2(self, x):
        return TF.max_pool2d(x, 2)

    def dropout(self, x):
        return self.drop(x)

    def center_crop(self, x, h, w):
        top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
        return x[:, :, top:top + h, left:left + w]

    def concat(self, a, b):
        return torch.cat([a, b], dim=1)


def torch_name(name):
    """The PyTorch name of a minunet parameter: 'up_convs.0.w' -> 'up_convs.0.weight'."""
    head, last = name.rsplit(".", 1)
    return f"{head}.{dict(w='weight', b='bias')[last]}"


def twin_of(model):
    """A TorchUNet with the configuration, dtype and weights of the minunet UNet `model` (on the CPU).
    minunet's weight layouts are PyTorch's, up-convolution included ((cin, cout, 2, 2))."""
    twin = TorchUNet(**model.config)
    state = {torch_name(name): torch.from_numpy(value) for name, value in model.state_dict().items()}
    twin.to(state["head.weight"].dtype).load_state_dict(state)
    return twin


def op_call(layer, direction, a):
    """A no-argument function running one op of a bench layer (minunet.bench.layers) in PyTorch and returning
    its result (for grad_input and grad_weight, that gradient alone); a: torch tensors x, w, b, gy."""
    op, x, w, b, gy = layer["op"], a["x"], a["w"], a["b"], a["gy"]
    transposed = op == "up_conv2x2"
    if direction == "forward":
        if transposed:
            return lambda: TF.conv_transpose2d(x, w, b, stride=2)
        return lambda: TF.conv2d(x, w, b)
    stride = [2, 2] if transposed else [1, 1]
    mask = [direction == "grad_input", direction == "grad_weight", False]
    which = 0 if direction == "grad_input" else 1
    return lambda: torch.ops.aten.convolution_backward(gy, x, w, None, stride, [0, 0], [1, 1], transposed, [0, 0],
                                                       1, mask)[which]
