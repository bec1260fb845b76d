"""The numpy device: vectorised NumPy, the fast CPU path. Its backend ops are the `@numpy_op` functions of
minunet/ops/<op>.py (registry.py); this class finds them and holds the array helpers every device has."""
import numpy as np

from .registry import NUMPY_OPS, backend_op


class NumpyBackend:
    name = "numpy"
    xp = np

    def __getattr__(self, op):  # a backend op, looked up once, then an attribute
        fn = backend_op(NUMPY_OPS, self.name, op)
        setattr(self, op, fn)
        return fn

    def asarray(self, a):
        return np.asarray(a, order="C")  # not ascontiguousarray: it turns a 0-d array into shape (1,)

    def to_numpy(self, a):
        return np.asarray(a)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)
