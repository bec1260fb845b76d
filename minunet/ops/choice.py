"""The numpy device's choice among the algorithms of an op, by measurement, as `torch.backends.cudnn.benchmark`:
the first call of each shape times every algorithm that applies and keeps the fastest for the shapes' later
calls. conv3x3 (ops/conv3x3.py) is the op that has several.

- Forced: MINUNET_CONV_ALGO=<name> runs that algorithm wherever it applies (tests, teaching); where it does
  not (`direct` needs one input channel), the layer's choice is measured as usual. An unknown name is an error.
- Remembered in memory for the process, and on disk (cache_dir()/conv-algorithms.json, keyed by the CPU model,
  thread count, dtype and shapes), so that a second run (a resumed one) makes the same choices: every algorithm
  is right to rounding, but only the same algorithm gives the same bits. Delete the file to measure again.
- Each measurement is the least of REPEATS timed calls, the candidates in turn; every call computes the real result, and the winner's
  result is returned, so a first call costs the sum of the candidates' times, REPEATS times.
"""
import json
import os
import platform
import time

import numpy as np

from .. import paths, threads

ENV = "MINUNET_CONV_ALGO"
REPEATS = 3
_chosen = {}  # key -> {"algorithm": name, "seconds": {name: least seconds}} (seconds None: forced or from disk)
_on_disk = None


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
    names = ALL_NAMES.get(op, ())
    forced = os.environ.get(ENV)
    if forced:
        if forced not in names:
            raise ValueError(f"{ENV}={forced!r}: {op} has the algorithms {', '.join(names)}")
        if forced in algorithms:
            return run(algorithms[forced])
    key = choice_key(op, shapes, dtype, threads.cpu_threads_now())
    if key not in _chosen:
        name = _disk().get(f"{cpu_model()} | {key}")
        if name in algorithms:
            _chosen[key] = dict(algorithm=name, seconds=None)
        else:
            return _measure(key, algorithms, run)
    return run(algorithms[_chosen[key]["algorithm"]])


def choice_key(op, shapes, dtype, n_threads):
    """The key of a choice: 'conv3x3_forward float32 2x16x122x122x16x0 threads=1' (shapes: the op's own)."""
    return f"{op} {np.dtype(dtype).name} {'x'.join(map(str, shapes))} threads={n_threads}"


def _measure(key, algorithms, run):
    seconds = dict.fromkeys(algorithms, float("inf"))
    for _ in range(REPEATS):  # round after round, so that a change in the machine's load hits every candidate
        for name, fn in algorithms.items():
            start = time.perf_counter()
            run(fn)
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    best = min(seconds, key=seconds.get)
    _chosen[key] = dict(algorithm=best, seconds=seconds)
    _remember(key, best)
    return run(algorithms[best])  # once more: the first call's bits are the chosen algorithm's, as every later call's


def chosen():
    """{key: {"algorithm", "seconds"}} of the choices made in this process (what the bench prints)."""
    return dict(_chosen)


def forget():
    """Forget the choices made in this process (not the file): the next call of each shape measures again."""
    _chosen.clear()


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


def _remember(key, name):
    """Add the choice to the file, with what other processes added meanwhile, written atomically (a new file
    renamed over the old); a cache that cannot be written only costs the next process a measurement."""
    _disk()[f"{cpu_model()} | {key}"] = name
    _on_disk.update({k: v for k, v in _read().items() if k not in _on_disk})
    try:
        tmp = _path().with_name(f"conv-algorithms.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_on_disk, indent=1, sort_keys=True))
        os.replace(tmp, _path())
    except OSError:
        pass


ALL_NAMES = {}  # op -> every algorithm name it has, for the message of a forced name (filled by the ops)
