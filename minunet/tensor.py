"""The autograd: Tensor, Function, Context and no_grad (tinygrad-2020 / Chainer style).

A Function turns input arrays into one output array (forward) and the output's gradient into the inputs'
gradients (backward). `Function.apply` records, on the output Tensor, which Function made it and from
which Tensors; `Tensor.backward` walks that graph in reverse topological order.

Contract, made explicit because it is the most common confusion (micrograd's issue tracker):
- gradients ACCUMULATE into a leaf's `.grad` with `+=`, across calls of `backward`;
- the optimizer's `zero_grad()` (or `t.grad = None`) clears them;
- the graph is freed by `backward`: intermediate arrays saved for backward are dropped, so memory stays flat
  over many steps and a second `backward` through the same graph is an error.
"""
import numpy as np

from .backends import get_backend, resolve_device

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_grad_enabled = True


class no_grad:
    """Context manager (and decorator) under which no graph is recorded: inference, optimizer updates."""

    def __enter__(self):
        global _grad_enabled
        self._previous, _grad_enabled = _grad_enabled, False

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper


def is_grad_enabled():
    return _grad_enabled


def _device_of(array):
    if isinstance(array, np.ndarray):
        return "numpy"
    if type(array).__module__.startswith("cupy"):
        return "cuda"
    return None


class Tensor:
    """An array on a device, plus what autograd needs: `requires_grad`, `.grad` and the Function that made it.

    `Tensor(array, requires_grad=False, device=None)`: device None keeps a NumPy array on "numpy" and a CuPy
    array on "cuda"; naming a device copies the data there. `.data` is the raw array (numpy.ndarray on
    "numpy" and "sim", cupy.ndarray on "cuda"); `.grad` is a raw array of the same kind, or None.
    """

    __array_priority__ = 1000  # so that numpy_array * tensor calls Tensor.__rmul__

    def __init__(self, data, requires_grad=False, device=None):
        if isinstance(data, Tensor):
            data = data.data
        own = _device_of(data)
        if own is None:
            data, own = np.asarray(data), "numpy"
        if device is None:
            device = own
        else:
            device = resolve_device(device)
            if device != own:
                data = get_backend(device).asarray(get_backend(own).to_numpy(data))
        if data.dtype.kind not in "biuf":  # bool, integers, floats: nothing else reaches a kernel
            raise TypeError(f"Tensor needs a numeric array (bool, integer or float), got dtype {data.dtype}")
        if requires_grad and data.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"requires_grad needs a float32 or float64 array, got {data.dtype}")
        self.data = data
        self.device = device
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._ctx = None  # the Context of the Function that made this Tensor (None for a leaf)
        self._graph_freed = False

    @classmethod
    def _on(cls, data, device):
        """A Tensor around an array that already lives on `device` (a Function's result): never a copy, where
        Tensor(data, device=...) would copy a sim array (sim keeps its arrays in NumPy, like "numpy")."""
        t = cls(data)
        t.device = device
        return t

    # -- information ---------------------------------------------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: int(self.data.size))
    backend = property(lambda self: get_backend(self.device))

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device={self.device!r}{grad})"

    def __len__(self):
        return self.shape[0]

    def numpy(self):
        """A NumPy copy of the data on the host (a view on the numpy device)."""
        return self.backend.to_numpy(self.data)

    def item(self):
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def to(self, device):
        """A copy on another device. It is a new leaf: gradients do not flow back through `to`."""
        device = resolve_device(device)
        if device == self.device:
            return self
        return Tensor(self.data, requires_grad=self.requires_grad, device=device)

    def detach(self):
        return Tensor._on(self.data, self.device)

    # -- backward ------------------------------------------------------------------------------------------
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into every leaf that requires grad, then free the graph.

        `grad` is the gradient of some scalar with respect to self; it may be omitted for a one-element tensor.
        """
        if self._graph_freed:
            raise RuntimeError("backward() through a graph that was already freed by an earlier backward(); "
                               "run the forward again")
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input had requires_grad=True, or it was computed under no_grad)")
        xp = self.backend.xp
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a one-element output, got shape "
                                   f"{self.shape}; pass grad= of the same shape")
            grad = xp.ones(self.data.shape, self.data.dtype)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad)
            if tuple(grad.shape) != self.shape or grad.dtype != self.dtype:
                raise ValueError(f"grad must have shape {self.shape} and dtype {self.dtype}, "
                                 f"got {tuple(grad.shape)} {grad.dtype}")

        grads = {id(self): grad}
        for node in reversed(_topological_order(self)):
            g = grads.pop(id(node), None)
            if node._ctx is None:  # a leaf
                if g is not None:
                    node.grad = g.copy() if node.grad is None else node.grad + g
                continue
            ctx = node._ctx
            fn, parents = ctx.function, ctx.parents
            node._ctx, node._graph_freed = None, True  # free the graph as we go
            if g is None:
                continue
            parent_grads = fn.backward(ctx, g)
            if not isinstance(parent_grads, tuple):
                parent_grads = (parent_grads,)
            if len(parent_grads) != len(parents):
                raise RuntimeError(f"{fn.__name__}.backward returned {len(parent_grads)} gradients "
                                   f"for {len(parents)} inputs")
            for parent, pg in zip(parents, parent_grads):
                if pg is None or not parent.requires_grad:
                    continue
                if tuple(pg.shape) != parent.shape:
                    raise RuntimeError(f"{fn.__name__}.backward gave a gradient of shape {tuple(pg.shape)} "
                                       f"for an input of shape {parent.shape}")
                grads[id(parent)] = pg if id(parent) not in grads else grads[id(parent)] + pg
            ctx.saved_tensors = ()

    # -- a few differentiable conveniences, enough for losses and the autograd tutorial -------------------
    def __add__(self, other):
        return Add.apply(self, _as_tensor(other, self))

    def __mul__(self, other):
        return Mul.apply(self, _as_tensor(other, self))

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-_as_tensor(other, self))

    __radd__ = __add__
    __rmul__ = __mul__

    def __rsub__(self, other):
        return _as_tensor(other, self) - self

    def sum(self):
        return Sum.apply(self)

    def mean(self):
        return self.sum() * (1.0 / self.size)


def _as_tensor(value, like):
    if isinstance(value, Tensor):
        return value
    return Tensor(like.backend.xp.asarray(value, dtype=like.dtype), device=like.device)


def _topological_order(root):
    """Tensors reachable from root, each after all of its parents (iterative: no recursion limit)."""
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            stack.extend((p, False) for p in node._ctx.parents if id(p) not in visited)
    return order


class Context:
    """One node of the graph: the Function that made a Tensor, its parent Tensors, and what its forward leaves
    for its backward (saved arrays, the backend, any attributes)."""

    def __init__(self, function, parents, backend, needs_input_grad):
        self.function, self.parents = function, parents
        self.backend = backend
        self.needs_input_grad = needs_input_grad
        self.saved_tensors = ()

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays


class Function:
    """Subclass with static `forward(ctx, *args)` -> array and `backward(ctx, grad)` -> one gradient
    (or None) per Tensor argument of forward, in order. Call it with `MyFunction.apply(*args)`.

    Tensor arguments reach forward as raw arrays of their device; all Tensors of one call must be on one device.
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        tensors = [a for a in args if isinstance(a, Tensor)]
        devices = sorted({t.device for t in tensors})
        if len(devices) != 1:
            raise ValueError(f"{cls.__name__}: all tensors must be on one device, got {devices}; use .to(device)")
        backend = get_backend(devices[0])
        needs = tuple(t.requires_grad for t in tensors)
        ctx = Context(cls, tensors, backend, needs)
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        out = Tensor._on(cls.forward(ctx, *raw, **kwargs), devices[0])
        if _grad_enabled and any(needs):
            out.requires_grad = True
            out._ctx = ctx
        return out


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        if a.shape != b.shape and b.size != 1:
            raise ValueError(f"add: shapes {a.shape} and {b.shape} differ (only a one-element b broadcasts)")
        ctx.b_shape = b.shape
        return a + b

    @staticmethod
    def backward(ctx, grad):
        gb = grad if tuple(grad.shape) == tuple(ctx.b_shape) else grad.sum().reshape(ctx.b_shape)
        return grad, gb


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        if a.shape != b.shape and b.size != 1:
            raise ValueError(f"mul: shapes {a.shape} and {b.shape} differ (only a one-element b broadcasts)")
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        gb = grad * a
        if gb.shape != b.shape:
            gb = gb.sum().reshape(b.shape)
        return grad * b, gb


class Sum(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.shape = a.shape
        return a.sum().reshape(())

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.backend.xp
        return xp.broadcast_to(grad, ctx.shape).copy()
