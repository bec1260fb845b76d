"""The sim device with the learner's kernel file swapped in, and every array fenced.

A write one element past the end of an output lands in memory NumPy does not check, so the result alone
would not show an off-by-one bound. Here every array is a view into a larger buffer whose zone before it
holds a canary: a NaN with a payload of its own for float arrays (a read before the start spreads it into the
results, and nan_origins() names the array), fixed bytes for integer arrays. An output has a canary zone
after it too: after a launch a changed canary names the array and the element, and a changed input names
the input that was written to. An input ends where inaccessible pages begin, so a read past its end stops
the kernel at the faulting line, and read_past() names the input and the element (a tiled kernel may load
past an input and never use what it read: its results would be right, on a GPU the load may fault).
"""
import ctypes
import hashlib
import mmap
import re
from pathlib import Path

import numpy as np

from .. import paths
from ..compare import index
from ..nvrtc_options import real_name
from ..sim import SimLauncher, SimModule
from .counts import counted_launch

GUARD_ELEMENTS = 4096  # more than a block's threads past the end (MINUNET_THREADS = 256) and a few rows of a conv
GUARD_PAGES = 16       # inaccessible pages after each input: a read up to 64 KB past its end faults
POISON_BITS = {np.dtype(np.float32): (0x7FFFFFFF,), np.dtype(np.float64): (0x7FFFFFFF7FFFFFFF, 0x7FFFFFFFE0000000)}
# the simulator's word in shared memory nobody wrote (minunet/sim/shared_memory.h), read as float or double
# (a float's converted to double is the second); the sign may flip (a negation), so compared without it
_LIBC = ctypes.CDLL(None, use_errno=True)


def _canary(dtype, tag):
    """GUARD_ELEMENTS elements of a pattern specific to one array (tag), as bytes."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        value = np.array([0x7FC0A500 | tag], np.uint32).view(np.float32)  # a quiet NaN, payload = tag
    elif dtype == np.float64:
        value = np.array([0x7FF8A5A500000000 | tag], np.uint64).view(np.float64)
    else:
        value = np.frombuffer(bytes([(0xA5 ^ tag) & 0xFF]) * dtype.itemsize, dtype)
    return np.full(GUARD_ELEMENTS, value[0], dtype)


def _ending_at_guard_pages(count, dtype):
    """A writable array of count elements whose last byte is followed by GUARD_PAGES inaccessible pages."""
    nbytes = count * dtype.itemsize
    pages = -(-nbytes // mmap.PAGESIZE)
    region = mmap.mmap(-1, (pages + GUARD_PAGES) * mmap.PAGESIZE)  # lives as long as the array (its buffer)
    holder = ctypes.c_char.from_buffer(region)
    guard = ctypes.addressof(holder) + pages * mmap.PAGESIZE
    del holder  # the buffer export would otherwise outlive the array
    if _LIBC.mprotect(ctypes.c_void_p(guard), GUARD_PAGES * mmap.PAGESIZE, 0) != 0:  # PROT_NONE
        raise OSError(ctypes.get_errno(), "mprotect of the guard pages after an input failed")
    return np.frombuffer(region, dtype, count, pages * mmap.PAGESIZE - nbytes)


def _nan_bits(values):
    """The bits of float values as unsigned integers of their width, the sign cleared."""
    bits = values.view(np.uint32 if values.dtype == np.float32 else np.uint64)
    return bits & (np.uint32(0x7FFFFFFF) if values.dtype == np.float32 else np.uint64(0x7FFFFFFFFFFFFFFF))


class GuardedArrays:
    """Allocates guarded arrays and checks them afterwards; names them for the messages."""

    def __init__(self):
        self._records = []  # [name, buffer, view, canary, copy of an input or None]

    def new(self, shape, dtype, fill_bytes=None, name=None, input_copy=None):
        dtype = np.dtype(dtype)
        size = int(np.prod(shape, dtype=np.int64))
        canary = _canary(dtype, len(self._records) + 1)
        if input_copy is None:  # an output: canaries before and after it
            buffer = np.empty(2 * GUARD_ELEMENTS + size, dtype)
            buffer[GUARD_ELEMENTS + size:] = canary
        else:  # an input: a canary before it, inaccessible pages after it
            buffer = _ending_at_guard_pages(GUARD_ELEMENTS + size, dtype)
        buffer[:GUARD_ELEMENTS] = canary
        view = buffer[GUARD_ELEMENTS:GUARD_ELEMENTS + size].reshape(shape)
        if fill_bytes is not None:
            view.view(np.uint8).fill(fill_bytes)
        self._records.append([name, buffer, view, canary, input_copy])
        return view

    def input(self, name, array):
        """A guarded copy of an input array."""
        view = self.new(array.shape, array.dtype, name=name, input_copy=array.copy())
        view[...] = array
        return view

    def close(self):
        """Forget every array: an input's pages are unmapped as soon as nothing else holds it (the trial's
        backend and launcher form a reference cycle, which Python frees only in its occasional full
        collection: trials' inputs would pile up to the system's limit of memory mappings)."""
        self._records.clear()

    def name(self, array, name):
        """Name an output the backend allocated (messages then say 'y' instead of 'output #3')."""
        for record in self._records:
            if record[2] is array:
                record[0] = name

    def _label(self, i):
        name, _, view, _, _ = self._records[i]
        return name or f"output #{i + 1} {view.dtype} {view.shape}"

    def problems(self):
        """What the kernels did outside their outputs: the first overwritten guard zone, or changed input."""
        for i, (name, buffer, view, canary, input_copy) in enumerate(self._records):
            label = self._label(i)
            size = view.size
            zones = [(buffer[:GUARD_ELEMENTS], -GUARD_ELEMENTS, "before the start")]
            if input_copy is None:
                zones.append((buffer[GUARD_ELEMENTS + size:], size, "past the end"))
            for zone, offset, where in zones:
                changed = np.flatnonzero((zone.view(np.uint8) != canary.view(np.uint8))
                                         .reshape(GUARD_ELEMENTS, -1).any(axis=1))
                if changed.size:
                    k = int(changed[0] if offset > 0 else changed[-1]) + offset
                    distance = k - size + 1 if offset > 0 else -k
                    return (f"a kernel wrote {where} of {label} (shape {view.shape}): flat index {k}, "
                            f"{distance} element(s) {where}; {changed.size} element(s) written there "
                            f"(a bounds check off by one, or missing?)")
            if input_copy is not None and not np.array_equal(view, input_copy, equal_nan=view.dtype.kind == "f"):
                k = int(np.flatnonzero(view.ravel() != input_copy.ravel())[0])
                return (f"a kernel wrote into its input {label} at {index(k, view.shape)} "
                        f"(inputs are const)")
        return None

    def read_past(self, message):
        """For a simulator error that is a fault on the pages after an input: which input, which element."""
        found = re.search(r"SIGSEGV .*?at address (0x[0-9a-fA-F]+)", message)
        if not found:
            return None
        address = int(found.group(1), 16)
        for i, (_, _, view, _, input_copy) in enumerate(self._records):
            end = view.ctypes.data + view.nbytes
            if input_copy is not None and end <= address < end + GUARD_PAGES * mmap.PAGESIZE:
                k = (address - view.ctypes.data) // view.itemsize
                return (f"a kernel read past the end of its input {self._label(i)} (shape {view.shape}, "
                        f"{view.size} elements): flat index {k}, {k - view.size + 1} element(s) past the end "
                        f"(a load without its bounds check? On a GPU it reads another array's memory, or "
                        f"faults, even where the value is never used)")
        return None

    def nan_origins(self, values):
        """Where NaNs in an output came from, one label per value (all NaN): 'never written' (the output's
        own fill), 'shared' (the simulator's poison in shared memory nobody wrote), 'before <input>' (a
        canary: a read before the start of that array), or 'computed' (any other NaN)."""
        values = np.asarray(values)
        if values.dtype not in POISON_BITS:
            return ["computed"] * values.size
        bits = _nan_bits(values.ravel())
        raw = values.ravel().view(bits.dtype)
        origins = []
        canaries = {}
        for i, (_, _, _, canary, _) in enumerate(self._records):
            if canary.dtype.kind == "f":
                for dtype in POISON_BITS:  # a canary read as float and converted to double keeps its payload
                    canaries[int(_nan_bits(canary[:1].astype(dtype))[0])] = i
        for b, r in zip(bits.tolist(), raw.tolist()):
            if r == int(np.iinfo(bits.dtype).max):
                origins.append("never written")
            elif b in POISON_BITS[values.dtype]:
                origins.append("shared")
            elif b in canaries:
                origins.append(f"before {self._label(canaries[b])}")
            else:
                origins.append("computed")
        return origins


def kernels_with_header(learner_path, header):
    """A folder of kernels/'s files in which `header` (common.cuh, gemm_tile.cuh) is the learner's file, after a
    #line naming it: the kernels then compile with the learner's header, the headers it includes are the
    folder's (one copy of each, wherever the learner's file lies), and messages name the learner's lines.
    One folder per learner file, in minunet's cache, so unchanged kernels keep their compiled libraries."""
    learner_path = Path(learner_path).resolve()
    folder = paths.cache_dir() / "exercises" / hashlib.sha256(str(learner_path).encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    for source in paths.kernels_dir().glob("*.cu*"):
        if source.name == header:
            text = f'#line 1 "{learner_path}"\n' + learner_path.read_text()
        else:
            text = source.read_text()
        if not (folder / source.name).is_file() or (folder / source.name).read_text() != text:
            (folder / source.name).write_text(text)
    return folder


class ExerciseLauncher(SimLauncher):
    """SimLauncher that compiles the learner's file in place of kernels/<file> and hands out guarded
    output arrays (NaN inside, as the sim's `empty`). racecheck: SimModule's (the race checker).
    reblock = (kernels, threads): those kernels (one thread per element, any block size) are launched with
    blocks of `threads` instead of their launcher's MINUNET_THREADS, on as many threads or a few more, so a
    kernel that assumes 256 threads per block, or that every thread has an element, is caught.
    launched: the kernels launched, in order. counting: the learner's file compiled with the simulator's
    memory-access counter; counted: what each of its launches did (counts.py)."""

    def __init__(self, learner_path, file, guards, shuffle_seed=None, racecheck=None, reblock=None, counting=False):
        super().__init__(shuffle_seed=shuffle_seed, racecheck=racecheck)
        self.learner_path, self.file, self.guards = Path(learner_path), file, guards
        self.reblock = reblock
        self.counting = counting
        self.launched = []
        self.counted = []

    def function(self, stem, kernel_name, dtype, max_dynamic_shared=None):
        fn = super().function(stem, kernel_name, dtype, max_dynamic_shared)

        def launch(grid, block, args, shared_mem=0):
            self.launched.append(kernel_name)
            if self.reblock and kernel_name in self.reblock[0] and grid[1:] == block[1:] == (1, 1):
                threads = self.reblock[1]
                grid, block = (-(-grid[0] * block[0] // threads), 1, 1), (threads, 1, 1)
            if fn.module.counting:
                self.counted.append(counted_launch(fn, grid, block, args, shared_mem))
            else:
                fn(grid, block, args, shared_mem)
        return launch

    def release(self):
        """After a trial: the fiber stacks of every library it used go back (runtime.cpp)."""
        for module in self._modules.values():
            getattr(module.library, "minunet_sim_release_stacks", lambda: None)()

    def empty(self, shape, dtype):
        return self.guards.new(shape, dtype, fill_bytes=0xFF)  # NaN for floats; 0xFF for integers

    def module(self, stem, dtype):
        header = self.file.endswith(".cuh")  # then every kernel file compiles with the learner's header
        if not header and self.file != f"{stem}.cu":
            return super().module(stem, dtype)
        key = ("learner", stem, np.dtype(dtype))
        if key not in self._modules:  # the folder of kernels is written once per module, not per call
            path = kernels_with_header(self.learner_path, self.file) / f"{stem}.cu" if header else self.learner_path
            self._modules[key] = SimModule(path, defines={"MINUNET_REAL": real_name(dtype)},
                                           include_dirs=[paths.kernels_dir()], shuffle_seed=self.shuffle_seed,
                                           racecheck=self.racecheck, counting=self.counting)
        return self._modules[key]
