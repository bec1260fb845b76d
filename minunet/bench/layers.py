"""The layers the bench runs and what each op costs: the U-Net's convolutions (from minunet/unet_shapes.py),
their FLOPs and minimum bytes, random operands, and the call of each op and direction on a minunet device."""
import numpy as np

from .. import unet_shapes
from ..ops.launching import TF32_VERSIONS, all_versions

DIRECTIONS = ("forward", "grad_input", "grad_weight")
CONV_OPS = ("conv3x3", "up_conv2x2", "conv1x1")
SHAPE_KEYS = ("op", "N", "Ci", "H", "W", "Co")


def unet_layers(tile=572, batch=1, depth=5, base=64, in_channels=1, n_classes=2):
    """The convolution layers of a valid-padding U-Net, in order: dicts with name, op, N, Ci, H, W, Co.

    H, W is the layer's INPUT size (for up_conv2x2 the size before upsampling). A tile that does not fit the
    network: ValueError.
    """
    return [{k: layer[k] for k in ("name",) + SHAPE_KEYS}
            for layer in unet_shapes.layers(tile, batch, depth, base, in_channels, n_classes)
            if layer["op"] in CONV_OPS]


def output_hw(layer, pad=0):
    H, W = layer["H"], layer["W"]
    if layer["op"] == "conv3x3":
        return H - 2 + 2 * pad, W - 2 + 2 * pad
    if layer["op"] == "up_conv2x2":
        return 2 * H, 2 * W
    return H, W


def cost(layer, direction, itemsize=4, pad=0):
    """(FLOPs, bytes) of one op and direction: 2 FLOPs per multiply-add of the convolution's sum (bias and
    ReLU not counted); bytes = every operand read once + the result written once, the least any kernel moves."""
    N, Ci, H, W, Co = (layer[k] for k in ("N", "Ci", "H", "W", "Co"))
    Ho, Wo = output_hw(layer, pad)
    taps = {"conv3x3": 9, "up_conv2x2": 4, "conv1x1": 1}[layer["op"]]
    x, y, w = N * Ci * H * W, N * Co * Ho * Wo, Co * Ci * taps
    if layer["op"] == "up_conv2x2":
        flops = 2 * N * Ci * H * W * Co * 4  # each input pixel feeds 4 outputs per output channel
    else:
        flops = 2 * N * Co * Ho * Wo * Ci * taps
    elements = {"forward": x + w + Co + y, "grad_input": y + w + x, "grad_weight": x + y + w}[direction]
    return flops, elements * itemsize


def arrays(layer, rng, dtype=np.float32):
    """Random x, w, b and gy (the output's gradient) of the layer's shapes, weights scaled by 1/sqrt(fan_in)."""
    N, Ci, H, W, Co = (layer[k] for k in ("N", "Ci", "H", "W", "Co"))
    Ho, Wo = output_hw(layer)
    wshape = {"conv3x3": (Co, Ci, 3, 3), "up_conv2x2": (Ci, Co, 2, 2), "conv1x1": (Co, Ci, 1, 1)}[layer["op"]]
    scale = 1.0 / np.sqrt(np.prod(wshape[1:]) if layer["op"] != "up_conv2x2" else Ci)
    return dict(x=rng.standard_normal((N, Ci, H, W)).astype(dtype),
                w=(rng.standard_normal(wshape) * scale).astype(dtype),
                b=rng.standard_normal(Co).astype(dtype),
                gy=rng.standard_normal((N, Co, Ho, Wo)).astype(dtype))


def minunet_call(backend, layer, direction, a, version=None):
    """A no-argument function launching one op of minunet's backend (a: arrays on the device); version None
    for the numpy device, which has one implementation of each op."""
    op, x, w, b, gy = layer["op"], a["x"], a["w"], a["b"], a["gy"]
    v = {} if version is None else dict(version=version)
    if op == "conv3x3":
        return {"forward": lambda: backend.conv3x3(x, w, b, 0, **v),
                "grad_input": lambda: backend.conv3x3_grad_input(gy, w, 0, x.shape, **v),
                "grad_weight": lambda: backend.conv3x3_grad_weight(x, gy, 0, **v)}[direction]
    method = {"forward": op, "grad_input": f"{op}_grad_input", "grad_weight": f"{op}_grad_weight"}[direction]
    args = {"forward": (x, w, b), "grad_input": (gy, w), "grad_weight": (x, gy)}[direction]
    return lambda: getattr(backend, method)(*args, **v)


def kernel_versions(layer, direction):
    """[(version, is_tf32)] of every selectable kernel version of the layer's op in that direction."""
    op = f"{layer['op']}_{direction}"
    return [(v, TF32_VERSIONS.get(op) == v) for v in all_versions(op)]


def unique_shapes(layers):
    seen, unique = set(), []
    for layer in layers:
        key = tuple(layer[k] for k in SHAPE_KEYS)
        if key not in seen:
            seen.add(key)
            unique.append(layer)
    return unique


def spread_to_layers(rows, layers):
    """Rows were measured once per distinct shape; give them the names of all layers of that shape."""
    names = {}
    for layer in layers:
        names.setdefault(tuple(layer[k] for k in SHAPE_KEYS), []).append(layer["name"])
    for row in rows:
        row["layers"] = names.get(tuple(row[k] for k in SHAPE_KEYS), [row["layer"]])
    return rows


def row(layer, direction, impl, flops, nbytes, seconds, runs, **extra):
    """One line of the results: an implementation of one op and direction on one layer shape."""
    result = dict(layer=layer["name"], op=layer["op"], direction=direction, impl=impl,
                  **{k: layer[k] for k in ("N", "Ci", "H", "W", "Co")}, flops=flops, bytes=nbytes,
                  seconds=seconds, runs=runs)
    if seconds:
        result.update(gflops=flops / seconds / 1e9, gbps=nbytes / seconds / 1e9)
    result.update(extra)
    return result
