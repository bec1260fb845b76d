"""CuPy stand-in on the CPU simulator, not a GPU: cupy.cuda (devices, streams and events, synchronous)."""
import time as _time

from . import driver, nccl, runtime  # noqa: F401 (cupy.cuda.runtime, .driver and .nccl, as in CuPy)


def is_available():
    return runtime.getDeviceCount() > 0


class Device:
    """A device of the stand-in (an H100 by its attributes; runtime.getDeviceCount() of them)."""

    def __init__(self, device=None):
        self.id = runtime.getDevice() if device is None else int(device)
        if not 0 <= self.id < runtime.getDeviceCount():
            raise runtime.CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        self._previous = []

    @property
    def compute_capability(self):
        return "90"

    def use(self):
        runtime.setDevice(self.id)

    def synchronize(self):
        pass  # every launch and copy of the stand-in is finished when its call returns

    def __enter__(self):
        self._previous.append(runtime.getDevice())
        runtime.setDevice(self.id)
        return self

    def __exit__(self, *exc_info):
        runtime.setDevice(self._previous.pop())

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class MemoryPointer:
    """A device address (ndarray.data): only .ptr is read (NCCL's buffers)."""

    def __init__(self, ptr):
        self.ptr = ptr
        self.device_id = runtime.getDevice()


class Event:
    """A CUDA event: record() stamps the host's clock; the work before it is already done."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.disable_timing = disable_timing
        self._time = None

    @property
    def done(self):
        return True

    def record(self, stream=None):
        self._time = _time.perf_counter()

    def synchronize(self):
        pass


def get_elapsed_time(start_event, end_event):
    """Milliseconds between two recorded events (CUDA refuses events never recorded or without timing)."""
    for event in (start_event, end_event):
        if event._time is None:
            raise runtime.CUDARuntimeError("cudaErrorInvalidResourceHandle: invalid resource handle")
        if event.disable_timing:
            raise runtime.CUDARuntimeError("cudaErrorInvalidResourceHandle: invalid resource handle")
    return (end_event._time - start_event._time) * 1e3


class Stream:
    """A stream; the stand-in has one order of work, the host's."""
    null = None

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        self.ptr = 0 if null else id(self)

    @property
    def done(self):
        return True

    def synchronize(self):
        pass

    def record(self, event=None):
        event = Event() if event is None else event
        event.record(self)
        return event


Stream.null = Stream(null=True)


def get_current_stream(device_id=-1):
    return Stream.null
