"""CuPy stand-in on the CPU simulator, not a GPU: cupy.cuda.nccl as in CuPy 14, backed by MPI.

get_unique_id() returns 128 bytes (CuPy 14; a tuple of ints before). NcclCommunicator(ndev, commId, rank) is
made collectively by the processes that share commId: MPI.COMM_WORLD split by the id, ranked by `rank`; as NCCL
it refuses a wrong count, a rank given twice and two ranks on one device. allReduce reads and writes the
device buffers behind the raw pointers (the stand-in's memory registry); between groupStart() and groupEnd()
the calls are queued and run at groupEnd(), as NCCL fuses them.
"""
import hashlib as _hashlib
import os as _os

import numpy as _np

available = True
NCCL_SUM = 0
NCCL_FLOAT32 = 7
NCCL_FLOAT64 = 8

_TYPES = {NCCL_FLOAT32: _np.float32, NCCL_FLOAT64: _np.float64}
_UNIQUE_ID_BYTES = 128
_group = None  # the queued calls between groupStart() and groupEnd()


class NcclError(RuntimeError):
    pass


def get_unique_id():
    return _os.urandom(_UNIQUE_ID_BYTES)


def groupStart():
    global _group
    _group = [] if _group is None else _group


def groupEnd():
    global _group
    if _group is None:
        raise NcclError("NCCL_ERROR_INVALID_USAGE: groupEnd without groupStart")
    calls, _group = _group, None
    for call in calls:
        call()


class NcclCommunicator:
    def __init__(self, ndev, commId, rank):
        from mpi4py import MPI

        from . import runtime
        if not isinstance(commId, bytes):
            raise TypeError(f"Argument 'commId' has incorrect type (expected bytes, got {type(commId).__name__})")
        if len(commId) != _UNIQUE_ID_BYTES:
            raise ValueError(f"commId length {len(commId)} != {_UNIQUE_ID_BYTES}.")
        color = int.from_bytes(_hashlib.sha256(commId).digest()[:4], "little") & 0x7FFFFFFF
        self._mpi = MPI.COMM_WORLD.Split(color, int(rank))
        members = self._mpi.allgather((int(rank), runtime.getDevice()))
        ranks, devices = sorted(r for r, _ in members), [d for _, d in members]
        if ranks != list(range(ndev)):
            raise NcclError(f"NCCL_ERROR_INVALID_USAGE: {ndev} ranks expected, these processes gave {ranks}")
        if len(set(devices)) != len(devices):
            raise NcclError(f"NCCL_ERROR_INVALID_USAGE: Duplicate GPU detected: ranks on devices {devices}")
        self._rank, self._size, self._device = int(rank), ndev, runtime.getDevice()

    def rank_id(self):
        return self._rank

    def size(self):
        return self._size

    def device_id(self):
        return self._device

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        if self._mpi is None:
            raise NcclError("NCCL_ERROR_INVALID_USAGE: the communicator was destroyed or aborted")
        if op != NCCL_SUM or datatype not in _TYPES:
            raise NotImplementedError(f"cupy stand-in: allReduce with op {op}, datatype {datatype} is not emulated")

        def run():
            from mpi4py import MPI

            from .. import _pool
            dtype = _np.dtype(_TYPES[datatype])
            target, source = (_pool._host_view(ptr, count * dtype.itemsize).view(dtype) for ptr in (recvbuf, sendbuf))
            source = MPI.IN_PLACE if sendbuf == recvbuf else source
            self._mpi.Allreduce(source, target, op=MPI.SUM)
        if _group is None:
            run()
        else:
            _group.append(run)

    def destroy(self):
        if self._mpi is not None:
            self._mpi.Free()
            self._mpi = None

    def abort(self):
        self._mpi = None  # NCCL's abort frees without waiting for the others; MPI_Abort follows in minunet
