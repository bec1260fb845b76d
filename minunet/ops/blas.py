"""BLAS's matrix product with accumulation, c = a @ b + beta * c, on strided 2-D views: what numpy.matmul lacks.

numpy's `c += a @ b` writes the product to a temporary and adds it to c in a second pass over memory; BLAS's
gemm adds into c as it goes, and reads operands whose rows are any distance apart (its "leading dimension"),
so a window of an image is multiplied in place. conv3x3's nine products per tap (ops/conv3x3.py) accumulate
this way. The function is called through ctypes, which releases the GIL for the call, as numba does.

Which BLAS: the OpenBLAS that NumPy's wheel ships (the one numpy.matmul runs; threadpoolctl says where it is),
through its CBLAS gemm. SciPy's wheel ships another OpenBLAS, which SciPy documents for Cython
(scipy.linalg.cython_blas): it is the fallback where NumPy's has no CBLAS gemm to find (a NumPy built on MKL or
Accelerate). They are not the same speed: on the U-Net's layers (a 2-core AVX-512 Xeon, 1 thread) NumPy's
OpenBLAS 0.3.31 ran the nine products of a 16-channel layer in 2.2 ms where SciPy's 0.3.30 took 2.9 ms.
"""
import ctypes
from pathlib import Path

import numpy as np

_P = ctypes.POINTER
_REALS = {np.dtype(np.float32): ("s", ctypes.c_float), np.dtype(np.float64): ("d", ctypes.c_double)}
ROW_MAJOR, NO_TRANSPOSE = 101, 111  # CBLAS's enums


def _numpys_cblas():
    """(description, {dtype: (gemm, real)}) from the OpenBLAS inside NumPy's package (its CBLAS gemm: row-major,
    arguments by value, 64-bit integers in scipy-openblas64's "…64_" names), or None where there is none."""
    from threadpoolctl import threadpool_info
    numpy_dir = Path(np.__file__).resolve().parent
    homes = (numpy_dir, numpy_dir.parent / "numpy.libs")  # macOS wheels: numpy/.dylibs; Linux, Windows: numpy.libs
    for pool in threadpool_info():
        path = Path(pool["filepath"]).resolve()
        if pool["internal_api"] != "openblas" or not any(home in path.parents for home in homes):
            continue
        lib = ctypes.CDLL(str(path))
        found = {}
        for dtype, (letter, real) in _REALS.items():
            for name, integer in ((f"scipy_cblas_{letter}gemm64_", ctypes.c_int64), (f"cblas_{letter}gemm64_", ctypes.c_int64),
                                  (f"scipy_cblas_{letter}gemm", ctypes.c_int), (f"cblas_{letter}gemm", ctypes.c_int)):
                fn = getattr(lib, name, None)
                if fn is not None:
                    fn.restype = None
                    fn.argtypes = [ctypes.c_int] * 3 + [integer] * 3 + [real, ctypes.c_void_p, integer,
                                                                       ctypes.c_void_p, integer, real,
                                                                       ctypes.c_void_p, integer]
                    found[dtype] = (fn, real)
                    break
        if len(found) == len(_REALS):
            return f"NumPy's OpenBLAS {pool['version']} ({pool['architecture']})", found
    return None


def _scipys_fortran():
    """(description, {dtype: (gemm, real)}) from scipy.linalg.cython_blas: the Fortran gemm (transa, transb, m, n,
    k, alpha, a, lda, b, ldb, beta, c, ldc), every argument by reference, matrices column-major."""
    import scipy.linalg.cython_blas as cython_blas
    name_of = ctypes.pythonapi.PyCapsule_GetName
    name_of.restype, name_of.argtypes = ctypes.c_char_p, [ctypes.py_object]
    pointer = ctypes.pythonapi.PyCapsule_GetPointer
    pointer.restype, pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    found = {}
    for dtype, (letter, real) in _REALS.items():
        capsule = cython_blas.__pyx_capi__[f"{letter}gemm"]
        integer = _P(ctypes.c_int)
        fortran = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, integer, integer, integer, _P(real),
                                   ctypes.c_void_p, integer, ctypes.c_void_p, integer, _P(real), ctypes.c_void_p,
                                   integer)(pointer(capsule, name_of(capsule)))

        def row_major(order, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc, fortran=fortran, real=real):
            # row-major c = a @ b is column-major c^T = b^T a^T: what Fortran's gemm is asked for
            i, ref = ctypes.c_int, ctypes.byref
            fortran(b"N", b"N", ref(i(N)), ref(i(M)), ref(i(K)), ref(real(alpha)), b, ref(i(ldb)), a, ref(i(lda)),
                    ref(real(beta)), c, ref(i(ldc)))
        found[dtype] = (row_major, real)
    return "SciPy's BLAS (scipy.linalg.cython_blas)", found


_GEMM = None


def describe():
    """Which BLAS shifted_products calls, e.g. "NumPy's OpenBLAS 0.3.31 (SkylakeX)" (the bench's report says)."""
    _load()
    return _GEMM[0]


def _load():
    global _GEMM
    if _GEMM is None:
        _GEMM = _numpys_cblas() or _scipys_fortran()


def shifted_products(a, b, shifts, c):
    """c = sum over t of a[t] @ b[:, shifts[t]:shifts[t] + N], in place: a (T, M, K) C-contiguous, b (K, S) and
    c (M, N) views of one dtype, each row contiguous, rows any distance apart. conv3x3's products per tap: b is
    the flat image, a tap's window the slice starting at its shift. The first product is written (c's old
    values are not read), the others added. One call into BLAS per t with the pointers worked out here: each
    pointer numpy hands out costs about 2 us, as much as a small product's own overhead."""
    (T, M, K), (M_c, N) = a.shape, c.shape
    if not (a.flags.c_contiguous and b.shape[0] == K and M_c == M and a.dtype == b.dtype == c.dtype
            and all(m.shape[1] <= 1 or m.strides[1] == m.itemsize for m in (b, c))
            and len(shifts) == T and all(0 <= shift and shift + N <= b.shape[1] for shift in shifts)):
        raise ValueError(f"shifted_products: a {a.shape}, b {b.shape}, c {c.shape} {a.dtype, b.dtype, c.dtype}, "
                         f"shifts {shifts} do not fit")
    _load()
    fn, real = _GEMM[1][c.dtype]
    size = c.itemsize
    # the distance between rows (BLAS's leading dimension), for one row its length
    ldb, ldc = (m.strides[0] // size if m.shape[0] > 1 else max(1, m.shape[1]) for m in (b, c))
    pa, pb, pc = a.ctypes.data, b.ctypes.data, c.ctypes.data
    for t, shift in enumerate(shifts):
        fn(ROW_MAJOR, NO_TRANSPOSE, NO_TRANSPOSE, M, N, K, 1.0, pa + t * M * K * size, K, pb + shift * size, ldb,
           0.0 if t == 0 else 1.0, pc, ldc)
