"""The sim device with the learner's kernel file swapped in, and the trial's arrays.

Since #26 the simulator itself fences every array a kernel gets: the kernel works on copies between
inaccessible pages, so an index past either end is a SimError naming the kernel, the argument, the element,
the thread and the line (the initcheck trial: at either end in every launch; outside it, the end a launch
guards); a write into the bytes beside an array is caught after the launch (minunet/sim/global_memory.h). The
caller's arrays are never reached, so this module keeps no guard zones of its own: it hands out outputs from
the sim's `empty` (every byte 0xFF, a NaN no arithmetic makes, remembered as unwritten for the initcheck mode),
names the trial's arrays for the messages, tells an input a kernel wrote into, and where a NaN came from.
"""
import hashlib
from pathlib import Path

import numpy as np

from .. import paths
from ..compare import index
from ..nvrtc_options import real_name
from ..sim import SimLauncher, SimModule, global_memory
from .counts import counted_launch

POISON_BITS = {np.dtype(np.float32): (0x7FFFFFFF,), np.dtype(np.float64): (0x7FFFFFFF7FFFFFFF, 0x7FFFFFFFE0000000)}
# the simulator's word in shared memory nobody wrote (minunet/sim/shared_memory.h), read as float or double
# (a float's converted to double is the second); the sign may flip (a negation), so compared without it
CANARY_BITS = {np.dtype(np.float32): (0x7FFFA5A5,), np.dtype(np.float64): (0x7FFFA5A57FFFA5A5, 0x7FFFF4B4A0000000)}
# the simulator's canary in the bytes beside each array (minunet/sim/global_memory.h), read the same ways


def _nan_bits(values):
    """The bits of float values as unsigned integers of their width, the sign cleared."""
    bits = values.view(np.uint32 if values.dtype == np.float32 else np.uint64)
    return bits & (np.uint32(0x7FFFFFFF) if values.dtype == np.float32 else np.uint64(0x7FFFFFFFFFFFFFFF))


class TrialArrays:
    """The arrays of one trial: outputs from the sim's `empty`, copies of the inputs; named for the messages."""

    def __init__(self):
        self._records = []  # [name, array, copy of an input or None]

    def new(self, shape, dtype):
        """An output: every byte 0xFF (the sim's `empty`, so the initcheck mode knows its elements unwritten)."""
        out = global_memory.empty(shape, dtype)
        self._records.append([None, out, None])
        return out

    def input(self, name, array):
        """A copy of an input array that ends on a 16-byte boundary, and another copy to tell whether a kernel
        wrote into it. The simulator keeps an array's address modulo 16 when it places it against the guard
        page after it, so this one ends right at the page and a read one element past its end faults, at its
        line, in every trial (an array that starts on the boundary would end up to 12 bytes before the page,
        where reads pass; global_memory.h)."""
        array = np.asarray(array)
        buffer = np.empty(array.nbytes + 16, np.uint8)
        start = -(buffer.ctypes.data + array.nbytes) % 16
        view = buffer[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
        view[...] = array
        self._records.append([name, view, view.copy()])
        return view

    def close(self):
        """Forget every array (the trial's backend and launcher form a reference cycle, which Python frees only
        in its occasional full collection)."""
        self._records.clear()

    def name(self, array, name):
        """Name an output the backend allocated (messages then say 'y' instead of 'output #3')."""
        for record in self._records:
            if record[1] is array:
                record[0] = name

    def problems(self):
        """An input a kernel wrote into (inputs are const; one declared without const is copied back), or None."""
        for i, (name, view, input_copy) in enumerate(self._records):
            if input_copy is not None and not np.array_equal(view, input_copy, equal_nan=view.dtype.kind == "f"):
                k = int(np.flatnonzero(view.ravel() != input_copy.ravel())[0])
                return f"a kernel wrote into its input {name} at {index(k, view.shape)} (inputs are const)"
        return None

    def nan_origins(self, values):
        """Where NaNs in an output came from, one label per value (all NaN): 'never written' (the output's
        own fill), 'shared' (the simulator's poison in shared memory nobody wrote), 'outside' (its canary beside
        an array: a read just past its end or before its start), or 'computed' (any other)."""
        values = np.asarray(values)
        if values.dtype not in POISON_BITS:
            return ["computed"] * values.size
        bits = _nan_bits(values.ravel())
        raw = values.ravel().view(bits.dtype)
        never = int(np.iinfo(bits.dtype).max)  # every byte 0xFF
        return ["never written" if r == never else "shared" if b in POISON_BITS[values.dtype] else
                "outside" if b in CANARY_BITS[values.dtype] else "computed" for b, r in zip(bits.tolist(), raw.tolist())]


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
    """SimLauncher that compiles the learner's file in place of kernels/<file> and hands out the trial's
    output arrays. racecheck, initcheck: SimModule's (the race checker, the initcheck mode).
    reblock = (kernels, threads): those kernels (one thread per element, any block size) are launched with
    blocks of `threads` instead of their launcher's MINUNET_THREADS, on as many threads or a few more, so a
    kernel that assumes 256 threads per block, or that every thread has an element, is caught.
    launched: the kernels launched, in order. counting: the learner's file compiled with the simulator's
    memory-access counter; counted: what each of its launches did (counts.py)."""

    def __init__(self, learner_path, file, arrays, shuffle_seed=None, racecheck=None, reblock=None, counting=False,
                 initcheck=False):
        super().__init__(shuffle_seed=shuffle_seed, racecheck=racecheck, initcheck=initcheck)
        self.learner_path, self.file, self.arrays = Path(learner_path), file, arrays
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
        return self.arrays.new(shape, dtype)

    def module(self, stem, dtype):
        header = self.file.endswith(".cuh")  # then every kernel file compiles with the learner's header
        if not header and self.file != f"{stem}.cu":
            return super().module(stem, dtype)
        key = ("learner", stem, np.dtype(dtype))
        if key not in self._modules:  # the folder of kernels is written once per module, not per call
            path = kernels_with_header(self.learner_path, self.file) / f"{stem}.cu" if header else self.learner_path
            self._modules[key] = SimModule(path, defines={"MINUNET_REAL": real_name(dtype)},
                                           include_dirs=[paths.kernels_dir()], shuffle_seed=self.shuffle_seed,
                                           racecheck=self.racecheck, initcheck=self.initcheck,
                                           counting=self.counting)
        return self._modules[key]
