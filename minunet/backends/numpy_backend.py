"""The numpy device: vectorised NumPy reference math. Each op family lives in its own module."""
import numpy as np

from .numpy_conv import ConvNumpyOps
from .numpy_misc import MiscNumpyOps


class NumpyBackend(ConvNumpyOps, MiscNumpyOps):
    name = "numpy"
    xp = np

    def asarray(self, a):
        return np.asarray(a, order="C")  # not ascontiguousarray: it turns a 0-d array into shape (1,)

    def to_numpy(self, a):
        return np.asarray(a)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)
