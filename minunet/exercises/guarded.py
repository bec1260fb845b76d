"""The sim device with the learner's kernel file swapped in, and every array fenced by guard zones.

A write one element past the end of an output lands in memory NumPy does not check, so the result alone
would not show an off-by-one bound. Here every array is a view into a larger buffer whose zones before and
after hold a canary: a NaN with a payload of its own for float arrays (a read past the end spreads it into
the results), fixed bytes for integer arrays. After a launch a changed canary names the array and the
element, and a changed input names the input that was written to.
"""
import hashlib
from pathlib import Path

import numpy as np

from .. import paths
from ..compare import index
from ..nvrtc_options import real_name
from ..sim import SimLauncher, SimModule

GUARD_ELEMENTS = 4096  # more than a block's threads past the end (MINUNET_THREADS = 256) and a few rows of a conv


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


class GuardedArrays:
    """Allocates guarded arrays and checks them afterwards; names them for the messages."""

    def __init__(self):
        self._records = []  # (name, buffer, view, canary, copy of an input or None)

    def new(self, shape, dtype, fill_bytes=None, name=None, input_copy=None):
        dtype = np.dtype(dtype)
        size = int(np.prod(shape, dtype=np.int64))
        canary = _canary(dtype, len(self._records) + 1)
        buffer = np.empty(2 * GUARD_ELEMENTS + size, dtype)
        buffer[:GUARD_ELEMENTS] = canary
        buffer[GUARD_ELEMENTS + size:] = canary
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

    def name(self, array, name):
        """Name an output the backend allocated (messages then say 'y' instead of 'output #3')."""
        for record in self._records:
            if record[2] is array:
                record[0] = name

    def problems(self):
        """What the kernels did outside their outputs: the first overwritten guard zone, or changed input."""
        for i, (name, buffer, view, canary, input_copy) in enumerate(self._records):
            label = name or f"output #{i + 1} {view.dtype} {view.shape}"
            size = view.size
            for zone, offset, where in ((buffer[:GUARD_ELEMENTS], -GUARD_ELEMENTS, "before the start"),
                                        (buffer[GUARD_ELEMENTS + size:], size, "past the end")):
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


def kernels_with_header(learner_path, header):
    """A folder of kernels/'s files in which `header` (common.cuh) only includes the learner's file, by its
    absolute path: the kernels then compile with the learner's header, and messages name the learner's lines.
    One folder per learner file, in minunet's cache, so unchanged kernels keep their compiled libraries."""
    learner_path = Path(learner_path).resolve()
    folder = paths.cache_dir() / "exercises" / hashlib.sha256(str(learner_path).encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    for source in paths.kernels_dir().glob("*.cu*"):
        if source.name == header:
            text = f'#include "{learner_path}"  // the learner\'s {header}\n'
        else:
            text = source.read_text()
        if not (folder / source.name).is_file() or (folder / source.name).read_text() != text:
            (folder / source.name).write_text(text)
    return folder


class ExerciseLauncher(SimLauncher):
    """SimLauncher that compiles the learner's file in place of kernels/<file> and hands out guarded
    output arrays (NaN inside, as the sim's `empty`). racecheck: SimModule's (the race checker)."""

    def __init__(self, learner_path, file, guards, shuffle_seed=None, racecheck=None):
        super().__init__(shuffle_seed=shuffle_seed, racecheck=racecheck)
        self.learner_path, self.file, self.guards = Path(learner_path), file, guards

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
                                           racecheck=self.racecheck)
        return self._modules[key]
