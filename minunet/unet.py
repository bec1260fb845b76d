"""The U-Net of Ronneberger, Fischer and Brox (MICCAI 2015).

Contracting path: at each of `depth` levels two 3x3 convolutions + ReLU, then 2x2 max pooling (not after the
last level); channels double per level (64, 128, ..., 1024). Dropout at the end of the contracting path.
Expanding path: per level a 2x2 up-convolution halving the channels, the matching contracting feature map
center-cropped and concatenated, two 3x3 convolutions + ReLU. A 1x1 convolution maps to the class scores.
With the defaults that is 23 convolutional layers and a 572x572 tile maps to a 388x388 output.

Here: the network in minunet, and which tile sizes it takes. The same network in PyTorch is
minunet/torch_twin.py; every op's shapes without running it, minunet/unet_shapes.py; reading checkpoints
(also those written before the parameters were renamed), minunet/checkpoint.py.
"""
import numpy as np

from . import functional as F
from .nn import Conv1x1, Conv3x3, Module, UpConv2x2


def output_size(input_size, depth=5, padding="valid"):
    """Output side for an input side, or None when some pooling would see an odd size."""
    shrink = 4 if padding == "valid" else 0
    s = int(input_size)
    for _ in range(depth - 1):
        s -= shrink
        if s <= 0 or s % 2:
            return None
        s //= 2
    s -= shrink
    for _ in range(depth - 1):
        s = 2 * s - shrink
    return s if s > 0 else None


def valid_input_sizes(depth=5, padding="valid", low=1, high=1024):
    """Every input side in [low, high] that the network accepts (for depth 5, valid: 12 mod 16, >= 188)."""
    return [s for s in range(max(1, low), high + 1) if output_size(s, depth, padding)]


def check_input_size(size, depth=5, padding="valid"):
    """The output side for `size`, or a ValueError that names the nearest sizes that work."""
    out = output_size(size, depth, padding)
    if out is None:
        sizes = valid_input_sizes(depth, padding, 1, max(2 * int(size), 64) + 2 ** (depth + 3))
        if size < sizes[0]:  # no smaller size to name: the contracting path shrinks it to nothing
            raise ValueError(f"input size {size} is too small for a depth-{depth} U-Net with {padding!r} padding: "
                             f"the smallest valid size is {sizes[0]}")
        below = [s for s in sizes if s < size][-1:]
        above = [s for s in sizes if s > size][:1]
        raise ValueError(f"input size {size} does not fit a depth-{depth} U-Net with {padding!r} padding "
                         f"(every 2x2 pooling needs an even size); nearest valid sizes: {below + above}")
    return out


class UNet(Module):
    """The paper's network: minunet's parts (minunet/nn.py) joined by its ops (minunet/functional.py)."""

    def __init__(self, in_channels=1, n_classes=2, depth=5, base_channels=64, padding="valid", dropout=0.5,
                 dtype=np.float32, device="numpy", seed=0):
        for name, value in (("in_channels", in_channels), ("n_classes", n_classes), ("depth", depth),
                            ("base_channels", base_channels)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"UNet: {name} must be an int, got {type(value).__name__} {value!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.integer, np.floating)):
            raise TypeError(f"UNet: dropout must be a number, got {type(dropout).__name__} {dropout!r}")
        if depth < 1 or base_channels < 1 or in_channels < 1 or n_classes < 2:
            raise ValueError("UNet: depth, base_channels, in_channels must be >= 1 and n_classes >= 2")
        if padding not in ("valid", "same"):
            raise ValueError(f"UNet: padding must be 'valid' or 'same', got {padding!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"UNet: dropout must be in [0, 1), got {dropout!r}")
        self.config = dict(in_channels=in_channels, n_classes=n_classes, depth=depth,
                           base_channels=base_channels, padding=padding, dropout=dropout)
        self.p_drop = dropout
        # This process's first sample in the global batch (data-parallel training sets it), so that dropout
        # drops what one process holding the whole batch would: the same model whatever the process count.
        self.first_sample = 0
        rng = np.random.default_rng(seed)
        self.dropout_rng = np.random.default_rng(rng.integers(2**63))
        args = dict(rng=rng, dtype=dtype, device=device)
        # Made in this order (the paper's, down then up): a seeded initialisation draws the weights in it.
        ch = [base_channels * 2**i for i in range(depth)]
        self.in_channels, self.depth, self.padding = in_channels, depth, padding
        self.down = [_DoubleConv(cin, c, padding, **args) for cin, c in zip([in_channels] + ch[:-1], ch)]
        self.up_convs = [UpConv2x2(ch[i + 1], ch[i], **args) for i in reversed(range(depth - 1))]
        self.up = [_DoubleConv(2 * ch[i], ch[i], padding, **args) for i in reversed(range(depth - 1))]
        self.head = Conv1x1(ch[0], n_classes, **args)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet: x must be (N, {self.in_channels}, H, W) for this network "
                             f"(in_channels={self.in_channels}), got shape {tuple(x.shape)}")
        for s in set(x.shape[2:]):
            check_input_size(s, self.depth, self.padding)
        skips = []
        for i, level in enumerate(self.down):
            x = level(x)
            if i < self.depth - 1:
                skips.append(x)
                x = F.max_pool2x2(x)
        x = F.dropout(x, self.p_drop, self.training, generator=self.dropout_rng,
                      offset=self.first_sample * int(np.prod(x.shape[1:])))
        for up_conv, level, skip in zip(self.up_convs, self.up, reversed(skips)):
            x = up_conv(x)
            x = level(F.concat(F.center_crop(skip, x.shape[2], x.shape[3]), x))
        return self.head(x)

    def output_size(self, input_size):
        return check_input_size(input_size, self.depth, self.padding)


class _DoubleConv(Module):
    """conv3x3 -> ReLU -> conv3x3 -> ReLU: one level of either path (each ReLU fused into its conv)."""

    def __init__(self, cin, cout, padding, rng, dtype, device):
        self.conv1 = Conv3x3(cin, cout, padding, rng, dtype, device)
        self.conv2 = Conv3x3(cout, cout, padding, rng, dtype, device)

    def forward(self, x):
        return self.conv2(self.conv1(x, relu=True), relu=True)
