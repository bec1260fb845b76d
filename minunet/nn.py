"""Module: a container of parameters, and the three layers a U-Net is made of."""
import numpy as np

from . import functional as F
from .tensor import Tensor


class Module:
    """Parameters are the attributes that are Tensors with requires_grad; submodules are attributes that
    are Modules or lists of Modules. Names follow the attribute path ("down.0.conv1.w")."""

    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def named_parameters(self, prefix=""):
        for name, value in vars(self).items():
            if isinstance(value, Tensor) and value.requires_grad:
                yield prefix + name, value
            elif isinstance(value, Module):
                yield from value.named_parameters(f"{prefix}{name}.")
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield from item.named_parameters(f"{prefix}{name}.{i}.")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def modules(self):
        yield self
        for value in vars(self).values():
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                if isinstance(item, Module):
                    yield from item.modules()

    def train(self, mode=True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        """Move every parameter to device, in place (gradients are dropped)."""
        for p in self.parameters():
            moved = p.to(device)
            p.data, p.device, p.grad = moved.data, moved.device, None
        return self

    def state_dict(self):
        return {name: p.numpy().copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state):
        params = dict(self.named_parameters())
        missing, unexpected = set(params) - set(state), set(state) - set(params)
        if missing or unexpected:
            raise ValueError(f"load_state_dict: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        for name, p in params.items():
            value = np.asarray(state[name])
            if value.shape != p.shape or value.dtype != p.dtype:
                raise ValueError(f"load_state_dict: {name} is {value.shape} {value.dtype} in the state, "
                                 f"{p.shape} {p.dtype} in the model")
            p.data = p.backend.asarray(value)
            p.grad = None

    def n_parameters(self):
        return sum(p.size for p in self.parameters())


def he_normal(rng, shape, fan_in, dtype, device):
    """He initialisation, as in the paper: std sqrt(2 / fan_in), fan_in = inputs of one output unit."""
    w = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    return Tensor(w.astype(dtype), requires_grad=True, device=device)


def zeros_param(n, dtype, device):
    return Tensor(np.zeros(n, dtype), requires_grad=True, device=device)


class Conv3x3(Module):
    def __init__(self, cin, cout, padding, rng, dtype, device):
        self.w = he_normal(rng, (cout, cin, 3, 3), cin * 9, dtype, device)
        self.b = zeros_param(cout, dtype, device)
        self.padding = padding

    def forward(self, x, relu=False):
        return F.conv3x3(x, self.w, self.b, self.padding, relu=relu)


class Conv1x1(Module):
    def __init__(self, cin, cout, rng, dtype, device):
        self.w = he_normal(rng, (cout, cin, 1, 1), cin, dtype, device)
        self.b = zeros_param(cout, dtype, device)

    def forward(self, x):
        return F.conv1x1(x, self.w, self.b)


class UpConv2x2(Module):
    def __init__(self, cin, cout, rng, dtype, device):
        # Each output pixel of a stride-2 transposed conv sees one input pixel per input channel: fan_in = cin.
        self.w = he_normal(rng, (cin, cout, 2, 2), cin, dtype, device)
        self.b = zeros_param(cout, dtype, device)

    def forward(self, x):
        return F.up_conv2x2(x, self.w, self.b)
