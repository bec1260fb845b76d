"""SGD with momentum, the paper's optimizer (momentum 0.99: each update averages ~100 past gradients,
which steadies training with batch size 1). The update runs as the sgd kernel on cuda and sim."""
import numpy as np

from .tensor import Tensor


class SGD:
    """PyTorch's SGD: g = grad + weight_decay*p; v = momentum*v + g; p -= lr*v.

    Parameters whose `.grad` is None are left untouched. `zero_grad()` clears the gradients (they
    accumulate across backward calls otherwise).
    """

    def __init__(self, params, lr, momentum=0.99, weight_decay=0.0):
        self.params = list(params)
        if not self.params or not all(isinstance(p, Tensor) and p.requires_grad for p in self.params):
            raise ValueError("SGD: params must be a non-empty list of Tensors with requires_grad=True")
        for name, value, low in (("lr", lr, 0.0), ("momentum", momentum, 0.0), ("weight_decay", weight_decay, 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"SGD: {name} must be a number, got {type(value).__name__} {value!r}")
            if not np.isfinite(value) or value < low:
                raise ValueError(f"SGD: {name} must be a finite number >= {low}, got {value!r}")
        if momentum >= 1:
            raise ValueError(f"SGD: momentum must be < 1, got {momentum!r}")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.velocity = [p.backend.zeros(p.shape, p.dtype) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        for p, v in zip(self.params, self.velocity):
            if p.grad is not None:
                p.backend.sgd_step(p.data, p.grad, v, self.lr, self.momentum, self.weight_decay)

    def state_dict(self):
        """Velocities as NumPy arrays (for .npz checkpoints) plus the hyper-parameters."""
        state = {f"velocity.{i}": p.backend.to_numpy(v) for i, (p, v) in enumerate(zip(self.params, self.velocity))}
        state.update(lr=np.float64(self.lr), momentum=np.float64(self.momentum),
                     weight_decay=np.float64(self.weight_decay))
        return state

    def load_state_dict(self, state):
        for i, p in enumerate(self.params):
            v = np.asarray(state[f"velocity.{i}"])
            if v.shape != p.shape or v.dtype != p.dtype:
                raise ValueError(f"SGD.load_state_dict: velocity.{i} is {v.shape} {v.dtype}, "
                                 f"parameter is {p.shape} {p.dtype}")
            self.velocity[i] = p.backend.asarray(v)
        self.lr, self.momentum = float(state["lr"]), float(state["momentum"])
        self.weight_decay = float(state["weight_decay"])
