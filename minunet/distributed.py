"""Data parallelism: every process holds the whole U-Net and trains on its slice of the global batch; before
each optimizer step the gradients are summed over the processes (an all-reduce) and divided by their number,
so every process applies the same update to the same weights (tutorials/11-data-parallel.md).

    pip install -e ".[mpi]"                       # mpi4py and the MPICH wheel: no system packages
    mpiexec -n 2 python -m minunet.train ...

world(device) is this process's communicator: SingleProcess when no MPI launcher started it, or started one
process (then nothing changes); MPIComm on numpy and sim (MPI's all-reduce of host arrays); NCCLComm on cuda
(NCCL's all-reduce of GPU arrays, the NCCL id broadcast over MPI). A step moves one flat buffer
(FlatGradients): the gradients, the loss and a stop flag, so the same call tells every process the global
loss and whether any process was interrupted (Ctrl-C), and all stop at the same step.
MPI has no timeout of its own: the all-reduce is non-blocking and polled against a deadline
(MINUNET_COLLECTIVE_TIMEOUT seconds, default 600: it must outlast rank 0's validation and checkpoint, during
which the others wait); a process that stalled (or died unseen by the launcher, which otherwise ends the job
itself) makes the others print an error and abort the job.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np

# Set by the MPI launchers (MPICH's and Intel MPI's Hydra, Open MPI): read before importing mpi4py, whose
# import would start MPI in every single-process run.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK")
TIMEOUT_VARIABLE = "MINUNET_COLLECTIVE_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
BUCKET_BYTES = 25 * 2**20  # PyTorch DDP's default bucket: a few large calls, not one per parameter


def _launcher_number(names, default):
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return default


def launched_processes():
    """How many processes the MPI launcher started (1 without one)."""
    return _launcher_number(SIZE_VARIABLES, 1)


def launched_rank():
    """This process's number among them (0 without a launcher)."""
    return _launcher_number(RANK_VARIABLES, 0)


def mpiexec():
    """The MPI launcher: the one beside this Python (the mpich wheel installs it into the virtual environment),
    else one on the PATH; None without one or without mpi4py."""
    import importlib.util
    import shutil
    beside = Path(sys.executable).parent / "mpiexec"
    launcher = str(beside) if beside.exists() else shutil.which("mpiexec")
    return launcher if launcher and importlib.util.find_spec("mpi4py") else None


def collective_timeout():
    value = os.environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"{TIMEOUT_VARIABLE} must be a number of seconds > 0, got {value!r}")
    return seconds


def world(device):
    """This process's communicator for training on `device` (numpy, sim or cuda)."""
    n = launched_processes()
    if n <= 1:
        return SingleProcess()
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError(f"started by an MPI launcher as one of {n} processes, but mpi4py is not installed: "
                           f"pip install -e \".[mpi]\"") from None
    comm_class = NCCLComm if device == "cuda" else MPIComm
    return comm_class(MPI.COMM_WORLD, collective_timeout())


def stop_all(code):
    """After an error in this process, end every process of the job now (MPI_Abort) rather than leave the
    others waiting in the next all-reduce; nothing to do in a single process."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and launched_processes() > 1:
        abort_job(mpi.COMM_WORLD, code)


FORWARD_SECONDS = 1.0  # what mpiexec gets to pass on this process's last words before the job is torn down


def abort_job(comm, code):
    """MPI_Abort, after giving mpiexec time to forward what this process printed: the abort tears every process
    down at once, and a message still in the launcher's pipe can be lost with them (the likely cause of an
    empty stderr in tests/test_distributed.py's stalled-process test, once in a full run on a busy machine)."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(FORWARD_SECONDS)
    comm.Abort(code)


class FlatGradients:
    """All gradients in one contiguous buffer, and two more slots: the step's loss and a stop flag (in the
    gradients' dtype: in float32 the logged loss of a data-parallel run is rounded to 7 digits).

    One all-reduce of the buffer replaces one per parameter (46 in the paper's U-Net), each of which would pay
    the call's fixed latency. Parameters are laid out last first, the order in which backward finishes them,
    and cut at parameter borders into buckets of at most bucket_bytes (or one parameter, if larger): the
    pieces an all-reduce overlapped with backward would send as soon as each is complete.
    """

    def __init__(self, shapes, dtype, xp=np, bucket_bytes=BUCKET_BYTES):
        self.shapes = [tuple(s) for s in shapes]
        itemsize = np.dtype(dtype).itemsize
        self.slices, self.buckets = [None] * len(shapes), []
        offset = bucket_start = 0
        for i in reversed(range(len(shapes))):
            size = int(np.prod(self.shapes[i]))
            if offset > bucket_start and (offset + size - bucket_start) * itemsize > bucket_bytes:
                self.buckets.append(slice(bucket_start, offset))
                bucket_start = offset
            self.slices[i] = slice(offset, offset + size)
            offset += size
        self.buffer = xp.zeros(offset + 2, dtype)
        self.buckets.append(slice(bucket_start, offset + 2))  # the last bucket carries loss and stop flag

    def pack(self, grads, loss, stop):
        """Copy the gradients in (None counts as zeros), then the loss and the stop flag (1.0 or 0.0)."""
        for g, s in zip(grads, self.slices):
            self.buffer[s] = 0 if g is None else g.ravel()
        self.buffer[-2] = loss
        self.buffer[-1] = 1.0 if stop else 0.0

    def unpack(self, scale):
        """(gradients as views of the buffer, loss) times scale, and whether any process asked to stop."""
        self.buffer[:-1] *= scale
        grads = [self.buffer[s].reshape(shape) for s, shape in zip(self.slices, self.shapes)]
        return grads, float(self.buffer[-2]), float(self.buffer[-1]) > 0


class SingleProcess:
    """One process: no communication, the gradients stay as backward left them."""
    rank, size = 0, 1

    def average_gradients(self, params, loss, stop):
        return loss, stop


class MPIComm:
    """numpy and sim: MPI's all-reduce (sum) of the host buffer, one non-blocking call per bucket."""

    def __init__(self, comm, timeout):
        self.comm, self.rank, self.size, self.timeout = comm, comm.Get_rank(), comm.Get_size(), timeout
        self.flat = None
        previous_hook = sys.excepthook

        def abort_on_uncaught(*exc_info):  # else the other processes would wait for this one until the timeout
            previous_hook(*exc_info)
            stop_all(1)
        sys.excepthook = abort_on_uncaught

    def average_gradients(self, params, loss, stop):
        """Replace each p.grad by its mean over the processes; return (mean loss, whether any process stops)."""
        if self.flat is None:
            self.flat = FlatGradients([p.shape for p in params], params[0].dtype, params[0].backend.xp)
        self.flat.pack([p.grad for p in params], loss, stop)
        self._allreduce([self.flat.buffer[b] for b in self.flat.buckets])
        grads, loss, stop = self.flat.unpack(1.0 / self.size)
        for p, g in zip(params, grads):
            p.grad = g
        return loss, stop

    def _allreduce(self, arrays):
        from mpi4py import MPI
        requests = [self.comm.Iallreduce(MPI.IN_PLACE, a, op=MPI.SUM) for a in arrays]
        self._wait(lambda: MPI.Request.Testall(requests))

    def _wait(self, done):
        deadline = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() > deadline:
                self.abort(f"the other processes did not join the all-reduce within {self.timeout:g} s "
                           f"({TIMEOUT_VARIABLE}): one of them died or stalled; stopping all")
            time.sleep(1e-4)  # a sleeping poll leaves the CPU to the processes still computing

    def abort(self, message):
        print(f"error: process {self.rank} of {self.size}: {message}", file=sys.stderr)
        abort_job(self.comm, 3)


class NCCLComm(MPIComm):
    """cuda: the same flat buffer in GPU memory, all-reduced by NCCL (NVLink, PCIe or the network; one
    grouped launch for all buckets). MPI starts the processes and broadcasts NCCL's unique id."""

    def __init__(self, comm, timeout):
        import cupy
        from cupy.cuda import nccl
        from mpi4py import MPI
        if not nccl.available:
            raise RuntimeError("data parallelism on cuda needs NCCL, which CuPy could not load: "
                               "pip install \"nvidia-nccl-cu13>=2.27.7,<3\"")
        super().__init__(comm, timeout)
        local_rank = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()  # one GPU per process on each machine
        cupy.cuda.Device(local_rank % cupy.cuda.runtime.getDeviceCount()).use()
        unique_id = np.zeros(128, np.uint8)  # NCCL_UNIQUE_ID_BYTES
        if self.rank == 0:
            unique_id[:] = np.frombuffer(nccl.get_unique_id(), np.uint8)
        comm.Bcast(unique_id, root=0)
        self.nccl = nccl.NcclCommunicator(self.size, unique_id.tobytes(), self.rank)
        self.types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}

    def _allreduce(self, arrays):
        import cupy
        from cupy.cuda import nccl
        stream = cupy.cuda.get_current_stream()
        nccl.groupStart()
        for a in arrays:
            self.nccl.allReduce(a.data.ptr, a.data.ptr, a.size, self.types[a.dtype], nccl.NCCL_SUM, stream.ptr)
        nccl.groupEnd()
        finished = stream.record()
        self._wait(lambda: finished.done)

    def abort(self, message):
        self.nccl.abort()  # frees the GPU side, which MPI_Abort alone would leave spinning
        super().abort(message)
