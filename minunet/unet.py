"""The U-Net of Ronneberger, Fischer and Brox (MICCAI 2015).

Contracting path: at each of `depth` levels two 3x3 convolutions + ReLU, then 2x2 max pooling (not after the
last level); channels double per level (64, 128, ..., 1024). Dropout at the end of the contracting path.
Expanding path: per level a 2x2 up-convolution halving the channels, the matching contracting feature map
center-cropped and concatenated, two 3x3 convolutions + ReLU. A 1x1 convolution maps to the class scores.
With the defaults that is 23 convolutional layers and a 572x572 tile maps to a 388x388 output.

The parts and the walk through them are written once, in UNetWalk, for every framework that runs the
network: UNet below (minunet Tensors), TorchUNet in minunet/torch_twin.py (PyTorch, to compare with), and
layers() (shapes alone: every op's name and shapes, for the bench's cost model and chapter 10).
"""
import re

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


class UNetWalk:
    """The U-Net's parts and its forward pass, for any framework.

    A subclass calls build() with its framework's constructors of the parts, double_conv, up_conv and conv1x1
    ((cin, cout, name) -> a callable; name is the part's place, "down0", "up3.upconv", "head", for layers()),
    keeps them in `parts` (a list, or its framework's list of modules), and supplies the ops between the parts:
    max_pool2x2(x), dropout(x), center_crop(x, h, w) and concat(a, b) (along channels).
    """

    parts = list

    def build(self, in_channels, n_classes, depth, base_channels, padding, double_conv, up_conv, conv1x1):
        # Made in this order (the paper's, down then up): a seeded initialisation draws the weights in it.
        ch = [base_channels * 2**i for i in range(depth)]
        self.in_channels, self.depth, self.padding = in_channels, depth, padding
        self.down = self.parts([double_conv(cin, c, f"down{i}")
                                for i, (cin, c) in enumerate(zip([in_channels] + ch[:-1], ch))])
        self.up_convs = self.parts([up_conv(ch[i + 1], ch[i], f"up{i}.upconv") for i in reversed(range(depth - 1))])
        self.up = self.parts([double_conv(2 * ch[i], ch[i], f"up{i}") for i in reversed(range(depth - 1))])
        self.head = conv1x1(ch[0], n_classes, "head")

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
                x = self.max_pool2x2(x)
        x = self.dropout(x)
        for up_conv, level, skip in zip(self.up_convs, self.up, reversed(skips)):
            x = up_conv(x)
            x = level(self.concat(self.center_crop(skip, x.shape[2], x.shape[3]), x))
        return self.head(x)


class UNet(UNetWalk, Module):
    """The paper's network in minunet: UNetWalk with minunet's parts (minunet/nn.py) and ops (functional.py)."""

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
        self.build(in_channels, n_classes, depth, base_channels, padding,
                   double_conv=lambda cin, cout, name: _DoubleConv(cin, cout, padding, **args),
                   up_conv=lambda cin, cout, name: UpConv2x2(cin, cout, **args),
                   conv1x1=lambda cin, cout, name: Conv1x1(cin, cout, **args))

    # The walk's ops between the parts, in minunet.
    max_pool2x2 = staticmethod(F.max_pool2x2)
    center_crop = staticmethod(F.center_crop)
    concat = staticmethod(F.concat)

    def dropout(self, x):
        return F.dropout(x, self.p_drop, self.training, generator=self.dropout_rng,
                         offset=self.first_sample * int(np.prod(x.shape[1:])))

    def output_size(self, input_size):
        return check_input_size(input_size, self.depth, self.padding)

    def load_state_dict(self, state):
        """Also a state saved before the up-convolutions were named up_convs (see current_name)."""
        super().load_state_dict({current_name(name): value for name, value in state.items()})


def current_name(name):
    """A parameter's name today, for a name in a checkpoint written before issue #15, when `up.N` held the
    up-convolutions and `up_convs.N` the expanding path's double convolutions (the reverse of the paper's
    words). Today's names pass unchanged: the two patterns below match none of them."""
    old_up_conv = re.fullmatch(r"up\.(\d+)\.([wb])", name)
    if old_up_conv:
        return f"up_convs.{old_up_conv[1]}.{old_up_conv[2]}"
    old_level = re.fullmatch(r"up_convs\.(\d+)\.(conv[12]\.[wb])", name)
    return f"up.{old_level[1]}.{old_level[2]}" if old_level else name


class _DoubleConv(Module):
    """conv3x3 -> ReLU -> conv3x3 -> ReLU: one level of either path (each ReLU fused into its conv)."""

    def __init__(self, cin, cout, padding, rng, dtype, device):
        self.conv1 = Conv3x3(cin, cout, padding, rng, dtype, device)
        self.conv2 = Conv3x3(cout, cout, padding, rng, dtype, device)

    def forward(self, x):
        return self.conv2(self.conv1(x, relu=True), relu=True)


def layers(tile=572, batch=1, depth=5, base_channels=64, in_channels=1, n_classes=2, padding="valid"):
    """Every op of the U-Net on a batch of tile x tile inputs, in the order its forward runs them, from the
    shapes alone (no arrays): dicts with name ("down0.conv1", "down0.pool", "up3.upconv", "up3.crop",
    "up3.concat", "head", ...), op (minunet.functional's name), N, Ci, H, W (the op's input; Ci of a concat:
    both inputs' channels), Co, Ho, Wo (its output). Every conv3x3 has its ReLU fused. A tile that does not fit
    the network: ValueError."""
    trace = _LayerTrace(in_channels, n_classes, depth, base_channels, padding)
    trace(_Shape((batch, in_channels, tile, tile)))
    return trace.layers


class _Shape:
    """All the walk asks of a tensor to trace it."""

    def __init__(self, shape):
        self.shape, self.ndim = tuple(shape), len(shape)


class _LayerTrace(UNetWalk):
    """The walk on shapes: every part and op appends itself to self.layers and returns its output's shape."""

    def __init__(self, in_channels, n_classes, depth, base_channels, padding):
        self.layers, self.shrink = [], 2 if padding == "valid" else 0
        self.build(in_channels, n_classes, depth, base_channels, padding,
                   double_conv=self.double_conv, up_conv=self.up_conv, conv1x1=self.conv1x1)

    def __call__(self, x):
        return self.forward(x)

    def record(self, name, op, x, cout, h, w, cin=None):
        N, C, H, W = x.shape
        self.layers.append(dict(name=name, op=op, N=N, Ci=cin or C, H=H, W=W, Co=cout, Ho=h, Wo=w))
        return _Shape((N, cout, h, w))

    # The parts: (cin, cout, name) -> a function of the input's shape.
    def double_conv(self, cin, cout, name):
        return lambda x: self.conv3x3(f"{name}.conv2", self.conv3x3(f"{name}.conv1", x, cout), cout)

    def conv3x3(self, name, x, cout):
        return self.record(name, "conv3x3", x, cout, x.shape[2] - self.shrink, x.shape[3] - self.shrink)

    def up_conv(self, cin, cout, name):
        return lambda x: self.record(name, "up_conv2x2", x, cout, 2 * x.shape[2], 2 * x.shape[3])

    def conv1x1(self, cin, cout, name):
        return lambda x: self.record(name, "conv1x1", x, cout, *x.shape[2:])

    # The ops between the parts, each named for the level of the part before it ("down0.pool").
    def level(self, op):
        return self.layers[-1]["name"].split(".")[0] + "." + op

    def max_pool2x2(self, x):
        return self.record(self.level("pool"), "max_pool2x2", x, x.shape[1], x.shape[2] // 2, x.shape[3] // 2)

    def dropout(self, x):
        return self.record(self.level("dropout"), "dropout", x, x.shape[1], *x.shape[2:])

    def center_crop(self, x, h, w):
        return self.record(self.level("crop"), "center_crop", x, x.shape[1], h, w)

    def concat(self, a, b):
        channels = a.shape[1] + b.shape[1]
        return self.record(self.level("concat"), "concat", a, channels, *a.shape[2:], cin=channels)
