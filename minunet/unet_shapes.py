"""Every op of the U-Net with its shapes, worked out from the sizes alone: no arrays, no weights.

The bench's cost model, tutorial chapters 7 and 10 count FLOPs, bytes and parameters on this list, so the
paper's network is traced in a millisecond. It follows UNet.forward (minunet/unet.py) op by op;
tests/test_unet.py checks it against the network that runs: its output shape and its weights.
"""
from .unet import check_input_size


def layers(tile=572, batch=1, depth=5, base_channels=64, in_channels=1, n_classes=2, padding="valid"):
    """Every op of the U-Net on a batch of tile x tile inputs, in the order its forward runs them: dicts with
    name ("down0.conv1", "down0.pool", "up3.upconv", "up3.crop", "up3.concat", "head", ...), op
    (minunet.functional's name), N, Ci, H, W (the op's input; Ci of a concat: both inputs' channels), Co, Ho,
    Wo (its output). Every conv3x3 has its ReLU fused. A tile that does not fit the network: ValueError."""
    check_input_size(tile, depth, padding)
    shrink = 2 if padding == "valid" else 0
    ops = []

    def op(name, kind, x, cout, ho, wo, cin=None):
        """Append one op with input shape x; return its output's shape."""
        n, c, h, w = x
        ops.append(dict(name=name, op=kind, N=n, Ci=cin or c, H=h, W=w, Co=cout, Ho=ho, Wo=wo))
        return n, cout, ho, wo

    def double_conv(level, x, cout):
        x = op(f"{level}.conv1", "conv3x3", x, cout, x[2] - shrink, x[3] - shrink)
        return op(f"{level}.conv2", "conv3x3", x, cout, x[2] - shrink, x[3] - shrink)

    ch = [base_channels * 2**i for i in range(depth)]
    x, skips = (batch, in_channels, tile, tile), []
    for i in range(depth):
        x = double_conv(f"down{i}", x, ch[i])
        if i < depth - 1:
            skips.append(x)
            x = op(f"down{i}.pool", "max_pool2x2", x, ch[i], x[2] // 2, x[3] // 2)
    x = op(f"down{depth - 1}.dropout", "dropout", x, *x[1:])
    for i in reversed(range(depth - 1)):
        x = op(f"up{i}.upconv", "up_conv2x2", x, ch[i], 2 * x[2], 2 * x[3])
        skip = op(f"up{i}.crop", "center_crop", skips[i], ch[i], x[2], x[3])
        x = double_conv(f"up{i}", op(f"up{i}.concat", "concat", skip, 2 * ch[i], *x[2:], cin=2 * ch[i]), ch[i])
    op("head", "conv1x1", x, n_classes, *x[2:])
    return ops
