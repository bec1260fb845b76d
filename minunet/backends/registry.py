"""Each device's backend ops, registered where they are written: minunet/ops/<op>.py.

`@numpy_op` on `numpy_conv3x3` makes it the numpy device's `conv3x3`; `@kernel_op` on `kernel_conv3x3` makes
it the cuda and sim devices' `conv3x3`, called with the backend first. The devices look their ops up here on
first use, so no table is kept by hand, and this layer never imports the ops (they import the autograd, which
imports the devices): importing minunet imports minunet/ops/__init__.py, which imports every op file.
"""
NUMPY_OPS, KERNEL_OPS = {}, {}


def _registrar(table, prefix):
    def register(fn):
        if not fn.__name__.startswith(prefix):
            raise NameError(f"{fn.__name__}: a backend op registered this way is named {prefix}<op>")
        op = fn.__name__[len(prefix):]
        if op in table:
            raise ValueError(f"two definitions of the backend op {fn.__name__}")
        table[op] = fn
        return fn
    return register


numpy_op = _registrar(NUMPY_OPS, "numpy_")
kernel_op = _registrar(KERNEL_OPS, "kernel_")


def backend_op(table, device, op):
    """The registered op, or AttributeError (so hasattr() works) naming the ops the device has."""
    if op.startswith("__") or op not in table:
        raise AttributeError(f"device {device!r} has no backend op {op!r}; it has: {', '.join(sorted(table))}")
    return table[op]
