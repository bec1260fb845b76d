"""BLAS's matrix product with accumulation, c = a @ b + beta * c, on strided 2-D views: what numpy.matmul lacks.

numpy's `c += a @ b` writes the product to a temporary and adds it to c in a second pass over memory; BLAS's
gemm adds into c as it goes, and reads operands whose rows are any distance apart (its "leading dimension"),
so a window of an image is multiplied in place. conv3x3's nine products per tap (ops/conv3x3.py) accumulate
this way. The function is SciPy's BLAS (scipy.linalg.cython_blas, the Cython interface SciPy documents),
called through ctypes, which releases the GIL for the call, as numba reaches the same functions.
"""
import ctypes

import numpy as np
import scipy.linalg.cython_blas

_P = ctypes.POINTER
_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.restype, _capsule_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype, _capsule_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]


def _gemm(name, real):
    """The Fortran gemm of scipy.linalg.cython_blas: (transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c,
    ldc), every argument by reference, matrices column-major."""
    capsule = scipy.linalg.cython_blas.__pyx_capi__[name]
    address = _capsule_pointer(capsule, _capsule_name(capsule))
    integer = _P(ctypes.c_int)
    return ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, integer, integer, integer, _P(real),
                            ctypes.c_void_p, integer, ctypes.c_void_p, integer, _P(real), ctypes.c_void_p,
                            integer)(address)


_GEMM = {np.dtype(np.float32): (_gemm("sgemm", ctypes.c_float), ctypes.c_float),
         np.dtype(np.float64): (_gemm("dgemm", ctypes.c_double), ctypes.c_double)}


def gemm(a, b, c, beta):
    """c = a @ b + beta * c in place (beta 0: c's old values are not read). a (M, K), b (K, N), c (M, N): views
    of one dtype, each row contiguous, rows any distance apart. Row-major c = a @ b is column-major
    c^T = b^T a^T, which is what Fortran's gemm is asked for."""
    (M, K), N = a.shape, b.shape[1]
    assert b.shape[0] == K and c.shape == (M, N) and a.dtype == b.dtype == c.dtype
    assert all(m.shape[1] == 1 or m.strides[1] == m.itemsize for m in (a, b, c)), "each row must be contiguous"
    fn, real = _GEMM[c.dtype]
    ref = ctypes.byref
    # the distance between rows (the leading dimension of the column-major view), for one row its length
    ld = [ctypes.c_int(m.strides[0] // m.itemsize if m.shape[0] > 1 else max(1, m.shape[1])) for m in (b, a, c)]
    fn(b"N", b"N", ref(ctypes.c_int(N)), ref(ctypes.c_int(M)), ref(ctypes.c_int(K)), ref(real(1.0)),
       b.ctypes.data, ref(ld[0]), a.ctypes.data, ref(ld[1]), ref(real(beta)), c.ctypes.data, ref(ld[2]))
