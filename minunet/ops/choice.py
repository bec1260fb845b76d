"""The numpy device's choice among the algorithms of an op, by measurement, as `torch.backends.cudnn.benchmark`:
the first call of each shape times every algorithm that applies and keeps the fastest for the shapes' later
calls. conv3x3 (ops/conv3x3.py) is the op that has several.

- Forced: MINUNET_CONV_ALGO=<name> runs that algorithm wherever it applies (tests, teaching); where it does
  not (`direct` needs one input channel, `shifts` is grad_weight's own), the layer's choice is measured as
  usual. A name that no op has is an error.
- Remembered in memory for the process, and on disk (cache_dir()/conv-algorithms.json, keyed by the CPU model,
  NumPy's version, a hash of the algorithms' source, the thread count, dtype and shapes), so that a second run
  (a resumed one) makes the same choices: every algorithm is right to rounding, but only the same algorithm
  gives the same bits. Delete the file to measure again.
- Each measurement is the least of REPEATS timed calls, the candidates in turn (on one thread the process's
  CPU time, which other processes on the machine hardly change). Every call computes the real result and the
  winner runs once more for the result returned, so a first call costs REPEATS + 1 calls of each candidate.
"""
import hashlib
import inspect
import json
import os
import platform
import sys
import time

import numpy as np

from .. import paths, threads

ENV = "MINUNET_CONV_ALGO"
REPEATS = 3
_chosen = {}  # key -> {"algorithm": name, "seconds": {name: least seconds}} (seconds None: forced or from disk)
_on_disk = None  # the file's choices, read on first use
_read_file = True


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def choose(op, algorithms, shapes, dtype, run):
    """run(fn) with the fastest of `algorithms` ({name: fn} of those that apply to these shapes) for the key
    (op, shapes, dtype, thread count); returns what run returned."""
    found = known(op, algorithms, shapes, dtype)
    if found is not None:
        return run(found)
    return _measure(choice_key(op, shapes, dtype, threads.cpu_threads_now()), algorithms, run)


def known(op, algorithms, shapes, dtype):
    """The algorithm to run without measuring: the forced one where it applies, or the one chosen before (in
    this process, or in the file); None where a measurement is due."""
    forced = os.environ.get(ENV)
    if forced:
        if not any(forced in names for names in ALL_NAMES.values()):
            raise ValueError(f"{ENV}={forced!r}: " + "; ".join(f"{o} has the algorithms {', '.join(names)}"
                                                               for o, names in ALL_NAMES.items()))
        if forced in algorithms:
            return algorithms[forced]
    key = choice_key(op, shapes, dtype, threads.cpu_threads_now())
    if key not in _chosen:
        name = _disk().get(_disk_key(key, algorithms)) if _read_file else None
        if not isinstance(name, str) or name not in algorithms:  # none, or a file edited by hand
            return None
        _chosen[key] = dict(algorithm=name, seconds=None)
    return algorithms[_chosen[key]["algorithm"]]


def choice_key(op, shapes, dtype, n_threads):
    """The key of a choice: 'conv3x3_forward float32 2x16x122x122x16x0 threads=1' (shapes: the op's own)."""
    return f"{op} {np.dtype(dtype).name} {'x'.join(map(str, shapes))} threads={n_threads}"


def _measure(key, algorithms, run):
    # On one thread, the process's CPU time: what the algorithm costs, whatever else the machine runs. On
    # several, the wall clock: an algorithm that splits into fewer slices uses fewer of the threads.
    clock = time.process_time if threads.cpu_threads_now() == 1 else time.perf_counter
    seconds = dict.fromkeys(algorithms, float("inf"))
    for _ in range(REPEATS):  # round after round, so that a change in the machine's load hits every candidate
        for name, fn in algorithms.items():
            start = clock()
            run(fn)
            seconds[name] = min(seconds[name], clock() - start)
    best = min(seconds, key=seconds.get)
    _chosen[key] = dict(algorithm=best, seconds=seconds)
    _remember(_disk_key(key, algorithms), best)
    return run(algorithms[best])  # once more: the first call's bits are the chosen algorithm's, as every later call's


def chosen():
    """{key: {"algorithm", "seconds"}} of the choices made in this process (what the bench prints)."""
    return dict(_chosen)


def forget(read_file=True):
    """Forget the choices made in this process: the next call of each shape measures again, unless the file
    has it and read_file (the bench measures in its own run: read_file=False; the file is still written)."""
    global _read_file
    _chosen.clear()
    _read_file = read_file


def _path():
    return paths.cache_dir() / "conv-algorithms.json"


def _read():
    try:
        found = json.loads(_path().read_text())
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):  # none yet, or unreadable: measure
        return {}


def _disk():
    global _on_disk
    if _on_disk is None:
        _on_disk = _read()
    return _on_disk


def _disk_key(key, algorithms):
    """The key in the file: the CPU model, NumPy's version and a hash of the source of the algorithms' module
    (a changed algorithm is measured anew), then the key."""
    modules = sorted({inspect.getmodule(fn).__name__ for fn in _functions(algorithms)})
    if tuple(modules) not in _source_hashes:
        source = "".join(inspect.getsource(sys.modules[name]) for name in modules)
        _source_hashes[tuple(modules)] = hashlib.sha1(source.encode()).hexdigest()[:12]
    return f"{cpu_model()} | numpy {np.__version__} | code {_source_hashes[tuple(modules)]} | {key}"


def _functions(algorithms):
    """The functions among the algorithms' values (a function, or a tuple that holds one)."""
    for a in algorithms.values():
        yield from (x for x in (a if isinstance(a, tuple) else (a,)) if inspect.isfunction(x))


_source_hashes = {}


def _remember(disk_key, name):
    """Add the choice to the file, with what other processes added meanwhile, written atomically (a new file
    renamed over the old); a cache that cannot be written only costs the next process a measurement."""
    _disk()[disk_key] = name
    _on_disk.update({k: v for k, v in _read().items() if k not in _on_disk})
    try:
        tmp = _path().with_name(f"conv-algorithms.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_on_disk, indent=1, sort_keys=True))
        os.replace(tmp, _path())
    except OSError:
        pass


ALL_NAMES = {}  # op -> every algorithm name it has, for the message of a forced name (filled by the ops)
