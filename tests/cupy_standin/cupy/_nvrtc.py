"""CuPy stand-in on the CPU simulator, not a GPU: NVRTC's resource report of a RawModule's code.

The real CuPy cannot be imported where this package is `cupy`, so a helper process without the stand-in on its
path compiles the code with CuPy's NVRTC, with the options CuPy's RawModule would use (minunet.nvrtc's way of
compiling without a GPU), for sm_90, and answers {kernel: (registers, static shared bytes)} from ptxas's report.
One helper per process, started on the first compilation; answers are cached on disk by code, options and arch.
"""
import atexit
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from minunet import paths

ARCH = "90"  # the stand-in's device: an H100
_HERE = Path(__file__).resolve().parents[1]  # tests/cupy_standin, the folder that makes `cupy` this package

_HELPER = r"""
import io, json, sys
from minunet import nvrtc
compiler, core = nvrtc.cupy_compiler()  # the real CuPy: this process's path has no stand-in
for line in sys.stdin:
    request = json.loads(line)
    options = core.assemble_cupy_compiler_options(tuple(request["options"]) + ("-Xptxas=-v",)) + ("-ftz=true",)
    log = io.StringIO()
    try:
        with nvrtc._arch_from_argument(compiler):
            compiler.compile_using_nvrtc(request["code"], options, arch=request["arch"], filename="standin.cu",
                                         log_stream=log)
        report = nvrtc.parse_ptxas_report(log.getvalue().replace("\x00", ""))
        answer = {name: [r.registers, r.shared_bytes] for name, r in report.items()}
    except Exception as e:
        answer = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(answer), flush=True)
"""

_helper = None


def _without_standin(path_list):
    return [p for p in path_list if p and Path(p).resolve() != _HERE]


def _ask(request):
    global _helper
    if _helper is None or _helper.poll() is not None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(_without_standin(os.environ.get("PYTHONPATH", "")
                                                                           .split(os.pathsep))))
        _helper = subprocess.Popen([sys.executable, "-c", _HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True, env=env, cwd=str(_HERE.parents[1]))
        atexit.register(_helper.kill)
    _helper.stdin.write(json.dumps(request) + "\n")
    _helper.stdin.flush()
    line = _helper.stdout.readline()
    if not line:
        raise RuntimeError("cupy stand-in: the NVRTC helper died (is the real CuPy installed? "
                           "pip install -e \".[dev]\" brings it; no GPU is needed to compile)")
    return json.loads(line)


def resources(code, options):
    """{kernel: (registers, static shared bytes)} of the code compiled by NVRTC for sm_90."""
    request = dict(code=code, options=list(options), arch=ARCH)
    key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:24]
    cache = paths.cache_dir() / "cupy-standin" / f"nvrtc-{key}.json"
    if cache.is_file():
        answer = json.loads(cache.read_text())
    else:
        answer = _ask(request)
        if "error" in answer:
            raise RuntimeError(f"cupy stand-in: NVRTC could not compile the module: {answer['error']}")
        cache.parent.mkdir(parents=True, exist_ok=True)
        scratch = cache.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps(answer))
        os.replace(scratch, cache)
    return {name: tuple(v) for name, v in answer.items()}
