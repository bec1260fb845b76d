"""CuPy stand-in on the CPU simulator, not a GPU: cupy.cuda.runtime with an H100's attributes.

CUPY_STANDIN_DEVICES=K (default 1) makes K such devices, e.g. one per process of a data-parallel run (NCCL,
like a GPU, refuses two processes on one device).
"""
import os as _os

# cudaDeviceAttr values (CUDA's driver_types.h); tests/test_cupy_standin.py checks them against CuPy's.
cudaDevAttrMaxThreadsPerBlock = 1
cudaDevAttrMaxBlockDimX = 2
cudaDevAttrMaxBlockDimY = 3
cudaDevAttrMaxBlockDimZ = 4
cudaDevAttrMaxSharedMemoryPerBlock = 8
cudaDevAttrMaxRegistersPerBlock = 12
cudaDevAttrL2CacheSize = 38
cudaDevAttrMaxSharedMemoryPerBlockOptin = 97

# An H100 SXM5 80 GB, as cudaDeviceGetAttribute reports it.
_H100 = {cudaDevAttrMaxThreadsPerBlock: 1024, cudaDevAttrMaxBlockDimX: 1024, cudaDevAttrMaxBlockDimY: 1024,
         cudaDevAttrMaxBlockDimZ: 64, cudaDevAttrMaxSharedMemoryPerBlock: 48 * 1024,
         cudaDevAttrMaxRegistersPerBlock: 64 * 1024, cudaDevAttrL2CacheSize: 50 * 2**20,
         cudaDevAttrMaxSharedMemoryPerBlockOptin: 227 * 1024}
_NAME = b"CuPy stand-in on the CPU simulator, not a GPU (reports an NVIDIA H100 80GB HBM3's attributes)"
_current = 0


class CUDARuntimeError(RuntimeError):
    pass


def _check(device):
    if not 0 <= device < getDeviceCount():
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")


def getDeviceCount():
    value = _os.environ.get("CUPY_STANDIN_DEVICES", "1")
    if not value.isdigit():
        raise ValueError(f"CUPY_STANDIN_DEVICES must be a number of devices, got {value!r}")
    return int(value)


def getDevice():
    return _current


def setDevice(device):
    global _current
    _check(device)
    _current = device


def deviceGetAttribute(attrib, device):
    _check(device)
    if attrib not in _H100:
        raise NotImplementedError(f"cupy stand-in: device attribute {attrib} is not emulated")
    return _H100[attrib]


def getDeviceProperties(device):
    _check(device)
    return {"name": _NAME, "major": 9, "minor": 0, "totalGlobalMem": 80 * 2**30, "multiProcessorCount": 132,
            "l2CacheSize": _H100[cudaDevAttrL2CacheSize], "maxThreadsPerBlock": 1024,
            "sharedMemPerBlock": _H100[cudaDevAttrMaxSharedMemoryPerBlock],
            "sharedMemPerBlockOptin": _H100[cudaDevAttrMaxSharedMemoryPerBlockOptin],
            "regsPerBlock": _H100[cudaDevAttrMaxRegistersPerBlock]}


def runtimeGetVersion():
    return 13000
