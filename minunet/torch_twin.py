"""The U-Net in PyTorch: the same network as mu.UNet, for the bench to time against and the tests to check with.

TorchUNet is mu.UNet (minunet/unet.py) written with PyTorch's parts (nn.Conv2d, nn.ConvTranspose2d) and ops;
its parameters have the same names (`down.0.conv1.weight` for minunet's `down.0.conv1.w`), and twin_of(model)
copies a minunet model's weights. tests/test_torch_twin.py checks that the two give the same output and
gradients. op_call gives the PyTorch call (cuDNN on a GPU) of each op and direction the bench times.

PyTorch is not a dependency of minunet: import this module only where `import torch` works.
"""
import torch
import torch.nn.functional as TF
from torch import nn

from .unet import check_input_size


class DoubleConv(nn.Module):
    """conv3x3 -> ReLU -> conv3x3 -> ReLU, as minunet.unet._DoubleConv."""

    def __init__(self, cin, cout, padding):
        super().__init__()
        pad = 0 if padding == "valid" else 1
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=pad), nn.Conv2d(cout, cout, 3, padding=pad)

    def forward(self, x):
        return TF.relu(self.conv2(TF.relu(self.conv1(x))))


class TorchUNet(nn.Module):
    """mu.UNet's network in PyTorch (PyTorch's default initialisation; twin_of copies minunet's weights)."""

    def __init__(self, in_channels=1, n_classes=2, depth=5, base_channels=64, padding="valid", dropout=0.5):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        ch = [base_channels * 2**i for i in range(depth)]
        self.depth, self.padding = depth, padding
        self.down = nn.ModuleList([DoubleConv(cin, c, padding) for cin, c in zip([in_channels] + ch[:-1], ch)])
        self.up_convs = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2)
                                       for i in reversed(range(depth - 1))])
        self.up = nn.ModuleList([DoubleConv(2 * ch[i], ch[i], padding) for i in reversed(range(depth - 1))])
        self.head = nn.Conv2d(ch[0], n_classes, 1)

    def forward(self, x):
        for s in set(x.shape[2:]):
            check_input_size(s, self.depth, self.padding)
        skips = []
        for i, level in enumerate(self.down):
            x = level(x)
            if i < self.depth - 1:
                skips.append(x)
                x = TF.max_pool2d(x, 2)
        x = self.drop(x)
        for up_conv, level, skip in zip(self.up_convs, self.up, reversed(skips)):
            x = up_conv(x)
            top, left = (skip.shape[2] - x.shape[2]) // 2, (skip.shape[3] - x.shape[3]) // 2
            x = level(torch.cat([skip[:, :, top:top + x.shape[2], left:left + x.shape[3]], x], dim=1))
        return self.head(x)


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
