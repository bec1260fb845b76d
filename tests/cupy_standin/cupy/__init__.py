"""CuPy stand-in on the CPU simulator, not a GPU: exactly the CuPy 14.2 API minunet uses, for tests only.

With tests/cupy_standin first on sys.path, `import cupy` gets this package, and every line of minunet that only
runs on the cuda device runs on the CPU: arrays are NumPy arrays in host memory, RawModule compiles with
minunet's simulator (minunet.sim), the device is an H100 by its attributes. It is as strict as CuPy where that
matters to minunet, and stricter where CuPy would silently pass wrong bytes:
- an ndarray refuses implicit conversion to NumPy (`__array__` raises TypeError, CuPy's message) and host
  arrays as operands (TypeError "Unsupported type"); copies are `get()` / `asnumpy()` / `asarray()`.
- RawModule(code=..., options=tuple) compiles the code with the simulator in its GPU-arithmetic mode (fused
  multiply-adds, float denormals flushed: as NVRTC compiles for CuPy); RawKernel's num_regs,
  max_threads_per_block and shared_size_bytes are NVRTC's report for sm_90 of the same code and options
  (_nvrtc.py, the real CuPy's compiler in a subprocess); a launch over them fails as CUDA's does.
- kernel arguments are converted as CuPy converts them (cupy/cuda/function.pyx): grid and block must be tuples,
  a Python int is 8 bytes (int64), a float 8 (double), a bool 1; the kernel reads its parameter's size from
  those bytes, as on a GPU (a Python int for an `int` works, a Python float for a `float` is garbage). What a GPU
  would leave undefined is a TypeError: fewer bytes than the parameter, a host array of more than one element,
  an array for a scalar parameter.
- everything is synchronous: Stream and Event exist, record host times, and are always done.
- cupy.cuda.nccl as in CuPy 14 (get_unique_id() returns bytes), backed by MPI (mpi4py) for K processes.
What it cannot show is anything a GPU measures: speed, memory bandwidth, CUDA's math library's last bits, the
real driver's errors. minunet sees `__minunet_standin__` and never picks this for device="auto".
"""
import weakref as _weakref

import numpy as _np

__version__ = "14.2.0"
__minunet_standin__ = "CuPy stand-in on the CPU simulator, not a GPU"

# NumPy's scalar types, as CuPy re-exports them (cupy.float32 is numpy.float32).
bool_, uint8, int32, uint32, int64, float32, float64 = (_np.bool_, _np.uint8, _np.int32, _np.uint32, _np.int64,
                                                       _np.float32, _np.float64)


# -- device memory: host buffers, counted by a pool as CuPy's keeps them -----------------------------------
class _Pool:
    """CuPy's default memory pool in what minunet reads of it: blocks rounded to 512 bytes, a freed block kept
    for reuse by an allocation of its size until free_all_blocks(). Also the registry of live buffers that
    NCCL's raw pointers are looked up in."""

    def __init__(self):
        self._used = self._cached = 0
        self._free_blocks = {}  # size -> count
        self._live = {}         # address -> (bytes, weak reference to the NumPy buffer)

    def _allocated(self, buffer):
        size = -(-buffer.nbytes // 512) * 512
        if self._free_blocks.get(size):
            self._free_blocks[size] -= 1
            self._cached -= size
        self._used += size
        address = buffer.__array_interface__["data"][0]
        self._live[address] = (buffer.nbytes, _weakref.ref(buffer))
        _weakref.finalize(buffer, self._freed, address, size)

    def _freed(self, address, size):
        self._live.pop(address, None)
        self._used -= size
        self._cached += size
        self._free_blocks[size] = self._free_blocks.get(size, 0) + 1

    def used_bytes(self):
        return self._used

    def free_bytes(self):
        return self._cached

    def total_bytes(self):
        return self._used + self._cached

    def free_all_blocks(self, stream=None):
        self._cached, self._free_blocks = 0, {}

    def _host_view(self, ptr, nbytes):
        """The bytes [ptr, ptr + nbytes) of a live allocation, as a uint8 NumPy view (for NCCL's pointers)."""
        for address, (size, ref) in self._live.items():
            buffer = ref()
            if buffer is not None and address <= ptr and ptr + nbytes <= address + size:
                flat = buffer.reshape(-1).view(_np.uint8)
                return flat[ptr - address:ptr - address + nbytes]
        raise ValueError(f"cupy stand-in: {nbytes} bytes at {ptr:#x} are not inside one live device allocation "
                         f"(a GPU would fault: an illegal memory access)")


_pool = _Pool()


def get_default_memory_pool():
    return _pool


def _device_array(a):
    """Wrap a NumPy array as device memory: a new buffer is counted by the pool, a view shares its base's."""
    root = a
    while isinstance(root.base, _np.ndarray):
        root = root.base
    if root.base is None and root.__array_interface__["data"][0] not in _pool._live:
        _pool._allocated(root)
    out = ndarray.__new__(ndarray)
    out._a = a
    return out


# -- ndarray -----------------------------------------------------------------------------------------------
def _unsupported(x):
    return TypeError(f"Unsupported type {type(x)}")


def _operand(x):
    """The NumPy value behind an operand CuPy accepts (its arrays, Python and NumPy scalars); TypeError for a
    host array, as CuPy raises."""
    if isinstance(x, ndarray):
        return x._a
    if type(x) in (bool, int, float, complex) or isinstance(x, _np.generic):
        return x
    raise _unsupported(x)


def _result(value):
    """NumPy's result as CuPy's: arrays (also 0-d: reductions and ufuncs of scalars) stay on the device."""
    if isinstance(value, tuple):
        return tuple(_result(v) for v in value)
    if isinstance(value, (_np.ndarray, _np.generic)):
        return _device_array(_np.asarray(value) if isinstance(value, _np.generic) else value)
    return value


def _defer(other):
    """CuPy's _should_use_rop: leave the operation to `other` (e.g. a Tensor, __array_priority__ 1000)."""
    ufunc = getattr(other, "__array_ufunc__", False)
    if ufunc is not False:
        return ufunc is None
    return getattr(other, "__array_priority__", 0) > ndarray.__array_priority__


def _binary(ufunc, reflected=False):
    def op(self, other):
        if not isinstance(other, ndarray) and _defer(other):
            return NotImplemented
        a, b = self._a, _operand(other)
        return _result(ufunc(b, a) if reflected else ufunc(a, b))
    return op


def _inplace(ufunc):
    def op(self, other):
        ufunc(self._a, _operand(other), out=self._a)
        return self
    return op


class _Flags:
    def __init__(self, a):
        self.c_contiguous, self.f_contiguous, self.owndata = (a.flags.c_contiguous, a.flags.f_contiguous,
                                                              a.flags.owndata)


class ndarray:
    """A device array: a NumPy array in host memory that only explicit copies leave."""
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("cupy stand-in: ndarray(memptr=..., strides=...) is not emulated")
        self._a = _device_array(_np.empty(shape, dtype, order=order))._a

    # What CuPy refuses: silent copies to the host.
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for x in inputs:  # numpy_array * device_array: CuPy's ufunc refuses the host array
            if isinstance(x, _np.ndarray):
                raise _unsupported(x)
        func = globals().get(ufunc.__name__)
        if method != "__call__" or func is None or kwargs:
            return NotImplemented
        return func(*inputs)

    def __array_function__(self, func, types, args, kwargs):
        mine = globals().get(func.__name__)
        if mine is None or not all(issubclass(t, ndarray) for t in types):
            return NotImplemented
        return mine(*args, **kwargs)

    # Attributes.
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    size = property(lambda self: self._a.size)
    ndim = property(lambda self: self._a.ndim)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))

    @property
    def data(self):
        from .cuda import MemoryPointer
        return MemoryPointer(self._a.__array_interface__["data"][0])

    # Copies between host and device.
    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is not None:
            out[...] = self._a
            return out
        return _np.array(self._a, order=order, copy=True)

    def __int__(self):
        return int(self.get())

    def __float__(self):
        return float(self.get())

    def __bool__(self):
        if self.size != 1:
            raise ValueError("The truth value of an array with more than one element is ambiguous. "
                             "Use a.any() or a.all()")
        return bool(self.get())

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __repr__(self):
        return repr(self.get())

    def __str__(self):
        return str(self.get())

    def __format__(self, spec):
        return format(self.get(), spec)

    # Indexing: device arrays (and host arrays, which CuPy copies over) as indices; values likewise.
    def __getitem__(self, index):
        return _result(self._a[_index(index)])

    def __setitem__(self, index, value):
        self._a[_index(index)] = value._a if isinstance(value, ndarray) else value

    # Methods.
    def copy(self, order="C"):
        return _result(self._a.copy(order=order))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        return _result(self._a.astype(dtype, order=order, copy=copy))

    def reshape(self, *shape, order="C"):
        return _result(self._a.reshape(*shape, order=order))

    def ravel(self, order="C"):
        return _result(self._a.ravel(order))

    def fill(self, value):
        self._a.fill(value)

    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return _result(self._a.sum(axis=axis, dtype=dtype, keepdims=keepdims))

    def min(self, axis=None, out=None, keepdims=False):
        return _result(self._a.min(axis=axis, keepdims=keepdims))

    def max(self, axis=None, out=None, keepdims=False):
        return _result(self._a.max(axis=axis, keepdims=keepdims))

    def any(self, axis=None, out=None, keepdims=False):
        return _result(self._a.any(axis=axis, keepdims=keepdims))

    def all(self, axis=None, out=None, keepdims=False):
        return _result(self._a.all(axis=axis, keepdims=keepdims))

    # Arithmetic and comparisons (CuPy's ufuncs, with NumPy's type promotion, which CuPy 14 follows).
    __add__, __radd__ = _binary(_np.add), _binary(_np.add, True)
    __sub__, __rsub__ = _binary(_np.subtract), _binary(_np.subtract, True)
    __mul__, __rmul__ = _binary(_np.multiply), _binary(_np.multiply, True)
    __truediv__, __rtruediv__ = _binary(_np.true_divide), _binary(_np.true_divide, True)
    __floordiv__, __rfloordiv__ = _binary(_np.floor_divide), _binary(_np.floor_divide, True)
    __mod__, __rmod__ = _binary(_np.remainder), _binary(_np.remainder, True)
    __pow__, __rpow__ = _binary(_np.power), _binary(_np.power, True)
    __and__, __rand__ = _binary(_np.bitwise_and), _binary(_np.bitwise_and, True)
    __or__, __ror__ = _binary(_np.bitwise_or), _binary(_np.bitwise_or, True)
    __xor__, __rxor__ = _binary(_np.bitwise_xor), _binary(_np.bitwise_xor, True)
    __lt__, __le__ = _binary(_np.less), _binary(_np.less_equal)
    __gt__, __ge__ = _binary(_np.greater), _binary(_np.greater_equal)
    __eq__, __ne__ = _binary(_np.equal), _binary(_np.not_equal)
    __iadd__, __isub__, __imul__ = _inplace(_np.add), _inplace(_np.subtract), _inplace(_np.multiply)
    __itruediv__ = _inplace(_np.true_divide)

    def __neg__(self):
        return _result(-self._a)


def _index(index):
    if isinstance(index, tuple):
        return tuple(_index(i) for i in index)
    return index._a if isinstance(index, ndarray) else index


# -- creation and copies -----------------------------------------------------------------------------------
def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    """A host array is copied to the device (synchronously: `blocking` changes nothing here)."""
    if isinstance(a, ndarray):
        return _result(_np.asarray(a._a, dtype=dtype, order=order))
    return _device_array(_np.array(a, dtype=dtype, order=order or "K", copy=True))


def ascontiguousarray(a, dtype=None):
    return _result(_np.ascontiguousarray(_operand(a), dtype=dtype))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    temp = _np.asarray(a, order=order)
    if out is not None:
        out[...] = temp
        return out
    return temp


def empty(shape, dtype=float, order="C"):
    return _device_array(_np.empty(shape, dtype, order=order))


def zeros(shape, dtype=float, order="C"):
    return _device_array(_np.zeros(shape, dtype, order=order))


def ones(shape, dtype=float, order="C"):
    return _device_array(_np.ones(shape, dtype, order=order))


def full(shape, fill_value, dtype=None, order="C"):
    return _device_array(_np.full(shape, _operand(fill_value), dtype, order=order))


def arange(start, stop=None, step=1, dtype=None):
    return _device_array(_np.arange(start, stop, step, dtype=dtype) if stop is not None
                         else _np.arange(start, step=step, dtype=dtype))


# -- functions on device arrays (host arrays refused, as by CuPy) ------------------------------------------
def _device_function(numpy_function):
    def function(*args, **kwargs):
        return _result(numpy_function(*[_operand(a) for a in args],
                                      **{k: _operand(v) if k == "out" else v for k, v in kwargs.items()}))
    function.__name__ = numpy_function.__name__
    return function


sum = _device_function(_np.sum)
unique = _device_function(_np.unique)
isfinite = _device_function(_np.isfinite)


def broadcast_to(array, shape):
    return _result(_np.broadcast_to(_operand(array), shape))


# -- kernels: the simulator compiles, NVRTC reports ---------------------------------------------------------
from ._kernels import RawKernel, RawModule  # noqa: E402 (they need ndarray)
from . import cuda  # noqa: E402,F401 (cupy.cuda is imported with cupy, as in CuPy)
