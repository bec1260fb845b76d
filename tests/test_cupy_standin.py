"""The CuPy stand-in (tests/cupy_standin/cupy) on its own: as strict as CuPy where minunet relies on it.

Loaded here under another name (`standin_cupy`), so that this process keeps the real CuPy for NVRTC; the
multi-process NCCL check runs under mpiexec with the stand-in as `cupy`.
"""
import importlib.util
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from minunet import distributed
from minunet.nvrtc import compile_file, compile_options

STANDIN = Path(__file__).resolve().parent / "cupy_standin"
NOTE = "CuPy stand-in on the CPU simulator, not a GPU"


def load_standin(name="standin_cupy"):
    spec = importlib.util.spec_from_file_location(name, STANDIN / "cupy" / "__init__.py",
                                                  submodule_search_locations=[str(STANDIN / "cupy")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cp():
    return load_standin()


def test_every_file_of_the_standin_says_what_it_is_in_its_first_line():
    files = sorted(STANDIN.rglob("*.py"))
    assert len(files) >= 6
    for path in files:
        assert NOTE in path.read_text().splitlines()[0], path


def test_minunet_never_imports_the_standin():
    package = Path(__file__).resolve().parents[1] / "minunet"
    loads = re.compile(r"^\s*(from|import)\s.*cupy_standin|(sys\.path|PYTHONPATH).*cupy_standin", re.M)
    assert not [p for p in package.rglob("*.py") if loads.search(p.read_text())]


def test_arrays_refuse_implicit_copies_to_the_host_and_host_operands(cp):
    x = cp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(TypeError, match=r"Implicit conversion to a NumPy array is not allowed. Please use `.get\(\)`"):
        np.asarray(x)
    for op in (lambda: x + np.ones(3, np.float32), lambda: np.ones(3, np.float32) * x, lambda: cp.sum(np.ones(2))):
        with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
            op()
    y = (x * 2 + np.float32(1)) - 1.0  # device arrays, Python and NumPy scalars mix
    assert isinstance(y, cp.ndarray) and y.dtype == np.float32
    np.testing.assert_array_equal(y.get(), np.arange(6).reshape(2, 3) * 2)
    total = x.sum()
    assert isinstance(total, cp.ndarray) and total.shape == () and float(total) == 15.0  # reductions stay on device
    x[0] = np.array([7, 8, 9], np.float32)  # CuPy copies a host value in
    assert cp.asnumpy(x[0]).tolist() == [7, 8, 9] and isinstance(x[x > 8], cp.ndarray)

    class Priority:  # a Tensor has __array_priority__ 1000 and its own __radd__: CuPy defers to it
        __array_priority__ = 1000

        def __radd__(self, other):
            return "deferred"
    assert x + Priority() == "deferred"


def test_the_pool_keeps_freed_blocks_until_freed_and_finds_live_buffers(cp):
    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    before = pool.used_bytes()
    a = cp.zeros(1000, np.float32)  # 4000 bytes -> a 4096-byte block
    assert pool.used_bytes() == before + 4096
    view = pool._host_view(a[10:].data.ptr, 8)
    view[:] = 255
    assert np.isnan(a[10:12].get()).all()
    ptr = a.data.ptr
    del a, view
    assert pool.used_bytes() == before and pool.total_bytes() == before + 4096  # cached, as CuPy's pool
    pool.free_all_blocks()
    assert pool.total_bytes() == before
    with pytest.raises(ValueError, match="not inside one live device allocation"):
        pool._host_view(ptr, 8)


def test_the_device_is_an_h100_by_its_attributes(cp, monkeypatch):
    runtime = cp.cuda.runtime
    assert cp.cuda.is_available() and cp.cuda.Device().compute_capability == "90"
    assert runtime.deviceGetAttribute(runtime.cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) == 232448
    assert runtime.getDeviceProperties(0)["name"].decode().startswith(NOTE)
    with pytest.raises(runtime.CUDARuntimeError, match="invalid device ordinal"):
        cp.cuda.Device(1)
    monkeypatch.setenv("CUPY_STANDIN_DEVICES", "2")
    with cp.cuda.Device(1) as device:
        assert runtime.getDevice() == device.id == 1
    assert runtime.getDevice() == 0


def test_events_time_on_the_host_and_refuse_what_cuda_refuses(cp):
    start, end = cp.cuda.Event(), cp.cuda.Event()
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError):
        cp.cuda.get_elapsed_time(start, end)
    start.record()
    finished = cp.cuda.get_current_stream().record(end)
    assert finished is end and end.done and cp.cuda.get_elapsed_time(start, end) >= 0


KERNELS = r"""
extern "C" __global__ void scalars_v1(int n, float f, double d, int* out_n, float* out_f, double* out_d) {
    *out_n = n; *out_f = f; *out_d = d;
}

// 32 KB of static shared memory plus the launch's dynamic part; at most 128 threads.
extern "C" __global__ void __launch_bounds__(128) shared_v1(const float* x, float* y) {
    __shared__ float fixed[8192];
    extern __shared__ float dynamic_part[];
    const unsigned int i = threadIdx.x;
    fixed[i] = x[i];
    dynamic_part[i] = 2 * x[i];
    __syncthreads();
    y[i] = fixed[i] + dynamic_part[i];
}
"""


@pytest.fixture(scope="module")
def kernels(cp, tmp_path_factory):
    path = tmp_path_factory.mktemp("standin") / "standin_test.cu"
    path.write_text(KERNELS)
    module = cp.RawModule(code=KERNELS, options=compile_options(path, np.float32))
    return path, module


def test_kernel_attributes_are_nvrtcs_report_for_sm_90(cp, kernels):
    path, module = kernels
    report = compile_file(path, "sm_90", np.float32).kernels
    for name in ("scalars_v1", "shared_v1"):
        kernel = module.get_function(name)
        assert (kernel.num_regs, kernel.shared_size_bytes) == (report[name].registers, report[name].shared_bytes)
    assert module.get_function("shared_v1").max_threads_per_block == 128  # __launch_bounds__
    with pytest.raises(TypeError, match="expected tuple, got list"):
        cp.RawModule(code=KERNELS, options=list(compile_options(path, np.float32)))


@pytest.mark.parametrize("registers, threads", [(32, 1024), (64, 1024), (72, 896), (128, 512), (255, 256)])
def test_max_threads_per_block_follows_the_registers_as_cuda_allocates_them(cp, registers, threads):
    assert sys.modules[cp.__name__ + "._kernels"]._max_threads(registers, 1024) == threads


def test_arguments_are_the_bytes_cupy_passes(cp, kernels):
    scalars = kernels[1].get_function("scalars_v1")
    n, f, d = cp.zeros(1, np.int32), cp.zeros(1, np.float32), cp.zeros(1, np.float64)
    scalars((1,), (1,), (np.int32(-3), np.float32(1.5), np.float64(2.5), n, f, d))
    assert (n.get()[0], f.get()[0], d.get()[0]) == (-3, 1.5, 2.5)
    # A Python int is 8 bytes, of which an int reads the low 4: right. A Python float is a double, of which a
    # float reads the low 4 bytes: 1.5 becomes 0.0, as on a GPU.
    scalars((1,), (1,), (7, 1.5, 2.5, n, f, d))
    assert (n.get()[0], f.get()[0], d.get()[0]) == (7, np.frombuffer(np.float64(1.5).tobytes()[:4], np.float32)[0], 2.5)
    with pytest.raises(TypeError, match=r"parameter 'd' \(double\): 4 bytes given"):
        scalars((1,), (1,), (7, np.float32(1), np.float32(2), n, f, d))
    with pytest.raises(TypeError, match="needs a device array, got ndarray"):
        scalars((1,), (1,), (7, np.float32(1), 2.0, np.zeros(1, np.int32), f, d))
    with pytest.raises(TypeError, match="Only numpy.ndarrays of size one can be passed by value"):
        scalars((1,), (1,), (np.zeros(2, np.int32), np.float32(1), 2.0, n, f, d))
    with pytest.raises(TypeError, match="expected tuple, got list"):
        scalars([1], (1,), (7, np.float32(1), 2.0, n, f, d))


def test_launches_past_the_limits_fail_as_cuda_fails_them(cp, kernels):
    shared = kernels[1].get_function("shared_v1")
    x, y = cp.arange(128, dtype=np.float32), cp.full(128, np.nan, np.float32)
    with pytest.raises(cp.cuda.driver.CUDADriverError, match="too many resources requested for launch"):
        shared((1,), (256,), (x, y))
    with pytest.raises(cp.cuda.driver.CUDADriverError, match="invalid argument"):
        shared((1,), (128,), (x, y), shared_mem=20 * 1024)  # 32 KB static + 20 KB: past 48 KB
    shared.max_dynamic_shared_size_bytes = 20 * 1024
    shared((1,), (128,), (x, y), shared_mem=20 * 1024)
    np.testing.assert_array_equal(y.get(), 3 * np.arange(128, dtype=np.float32))
    with pytest.raises(cp.cuda.driver.CUDADriverError):
        shared.max_dynamic_shared_size_bytes = 227 * 1024


NCCL_SCRIPT = r"""
import sys
import types
import numpy as np
import cupy
from cupy.cuda import nccl
from mpi4py import MPI
rank = MPI.COMM_WORLD.Get_rank()
cupy.cuda.Device(rank).use()
uid = MPI.COMM_WORLD.bcast(nccl.get_unique_id() if rank == 0 else None)
assert isinstance(uid, bytes) and len(uid) == 128
comm = nccl.NcclCommunicator(2, uid, rank)
a, b = cupy.full(5, rank + 1.0, np.float32), cupy.full(3, 10.0 * (rank + 1), np.float64)
nccl.groupStart()
comm.allReduce(a.data.ptr, a.data.ptr, a.size, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 0)
comm.allReduce(b.data.ptr, b.data.ptr, b.size, nccl.NCCL_FLOAT64, nccl.NCCL_SUM, 0)
assert float(a.sum()) == 5 * (rank + 1)  # queued until groupEnd, as NCCL runs a group
nccl.groupEnd()
assert a.get().tolist() == [3.0] * 5 and b.get().tolist() == [30.0] * 3, (a, b)
cupy.cuda.Device(0).use()
try:
    nccl.NcclCommunicator(2, MPI.COMM_WORLD.bcast(nccl.get_unique_id() if rank == 0 else None), rank)
except nccl.NcclError as e:
    assert "Duplicate GPU" in str(e), e
else:
    sys.exit("two processes on one device were not refused")
"""


@pytest.mark.skipif(distributed.mpiexec() is None, reason="MPI is not installed (pip install -e \".[mpi]\")")
def test_nccl_all_reduces_across_processes_over_mpi(tmp_path):
    script = tmp_path / "nccl_check.py"
    script.write_text(NCCL_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(STANDIN), os.environ.get("PYTHONPATH", "")]),
               CUPY_STANDIN_DEVICES="2", OMP_NUM_THREADS="1")
    result = subprocess.run([distributed.mpiexec(), "-n", "2", sys.executable, str(script)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_auto_never_picks_the_standin_but_cuda_may_be_asked_for(cp, monkeypatch):
    from minunet.backends import resolve_device, standin_note
    monkeypatch.setitem(sys.modules, "cupy", cp)
    assert standin_note() == NOTE
    assert resolve_device("auto") == "numpy" and resolve_device("cuda") == "cuda"


def kind(value):
    if isinstance(value, types.ModuleType):
        return "module"
    if isinstance(value, type) and not issubclass(value, np.generic):
        return "class"
    if callable(value) and not isinstance(value, type):
        return "function"
    return "constant"


def drift(cp, paths):
    """(names checked, differences) between the stand-in's modules at `paths` and the real CuPy's."""
    import cupy
    checked, differences = 0, []
    for path in paths:
        mine, theirs = cp, cupy
        for part in filter(None, path.split(".")):
            mine, theirs = getattr(mine, part), getattr(theirs, part)
        for name, value in vars(mine).items():
            if name.startswith("_") or kind(value) == "module":  # submodules: compared as paths
                continue
            where = f"cupy.{path + '.' if path else ''}{name}"
            checked += 1
            if not hasattr(theirs, name):
                differences.append(f"{where}: not in CuPy {cupy.__version__}")
            elif kind(value) != kind(getattr(theirs, name)):
                differences.append(f"{where}: a {kind(value)} here, a {kind(getattr(theirs, name))} in CuPy")
            elif kind(value) == "constant" and not (value is getattr(theirs, name) or value == getattr(theirs, name)):
                differences.append(f"{where} = {value!r} here, {getattr(theirs, name)!r} in CuPy")
            elif kind(value) == "class":
                differences += [f"{where}.{m}: not in CuPy" for m in vars(value)
                                if not m.startswith("_") and not hasattr(getattr(theirs, name), m)]
    return checked, differences


def test_every_name_of_the_standin_exists_in_cupy_with_the_same_kind_and_value(cp):
    """The drift guard: where the real CuPy imports (here, it does: the dev extra installs it for NVRTC), every
    public name of the stand-in's modules, and every public member of its classes, is CuPy's."""
    import cupy
    assert cp.__version__ == cupy.__version__ and cp.ndarray.__array_priority__ == cupy.ndarray.__array_priority__
    checked, differences = drift(cp, ("", "cuda", "cuda.runtime", "cuda.driver"))
    pool = [m for m in vars(type(cp.get_default_memory_pool())) if not m.startswith("_")]
    differences += [f"memory pool .{m}: not in CuPy" for m in pool if not hasattr(cupy.cuda.MemoryPool, m)]
    assert checked >= 40 and not differences, "\n".join(differences)


def test_the_standins_nccl_is_cupys(cp):
    from cupy.cuda import nccl  # a submodule CuPy imports on demand
    if not nccl.available:
        pytest.skip("CuPy's NCCL module needs NCCL's library: pip install \"nvidia-nccl-cu13>=2.27.7,<3\"")
    checked, differences = drift(cp, ("cuda.nccl",))
    assert checked >= 8 and not differences, "\n".join(differences)


# -- its companion for PyTorch: tests/cupy_standin/torch_cuda_standin.py -------------------------------------
def load_torch_standin():
    spec = importlib.util.spec_from_file_location("torch_cuda_standin", STANDIN / "torch_cuda_standin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines, installs nothing
    return module


def test_every_name_the_torch_standin_replaces_is_torch_cudas_with_the_same_parameters():
    """The drift guard of the PyTorch part, against the torch installed (2.13.0, CPU: torch.cuda's names exist
    there as on a GPU machine): each function and Event method has the same parameters, each device property
    is a field of _CudaDeviceProperties in torch's own stubs. (That torch loads it: the test below.)"""
    import ast
    import inspect
    torch = pytest.importorskip("torch")
    mine = load_torch_standin()

    def parameters(f, drop=()):
        return [p for p in inspect.signature(f).parameters if p not in drop]
    differences = []
    for name in mine.REPLACED:
        real = getattr(torch.cuda, name, None)
        if real is None or isinstance(real, type) != isinstance(getattr(mine, name), type):
            differences.append(f"torch.cuda.{name}: {'not in torch' if real is None else 'another kind'}")
        elif name != "Event" and parameters(getattr(mine, name)) != parameters(real):
            differences.append(f"torch.cuda.{name}{inspect.signature(getattr(mine, name))}: torch's is "
                               f"{inspect.signature(real)}")
    if parameters(mine.Event.__init__, ["self"]) != parameters(torch.cuda.Event.__new__, ["cls"]):
        differences.append(f"torch.cuda.Event{inspect.signature(mine.Event.__init__)}: torch's "
                           f"{inspect.signature(torch.cuda.Event.__new__)}")
    for method in (m for m in vars(mine.Event) if not m.startswith("_")):
        if parameters(getattr(mine.Event, method)) != parameters(getattr(torch.cuda.Event, method)):
            differences.append(f"torch.cuda.Event.{method}: other parameters than torch's")
    stubs = ast.parse((Path(torch.__file__).parent / "_C" / "__init__.pyi").read_text())
    [fields] = [{n.target.id for n in c.body if isinstance(n, ast.AnnAssign)} for c in stubs.body
                if isinstance(c, ast.ClassDef) and c.name == "_CudaDeviceProperties"]
    differences += [f"device property {f}: not a field of torch._C._CudaDeviceProperties"
                    for f in vars(mine._Properties) if not f.startswith("_") and f not in fields]
    assert len(mine.REPLACED) == 8 and not differences, "\n".join(differences)


TORCH_UNDER_THE_STANDIN = r"""
import numpy as np, torch
assert torch.cuda.is_available() and torch.cuda.__minunet_standin__ in torch.cuda.get_device_properties(0).name
host = np.ones(3, np.float32)
x = torch.from_numpy(host).cuda()
x += 1  # a copy, as a real transfer: the host array keeps its values
assert host.tolist() == [1, 1, 1] and x.tolist() == [2, 2, 2]
y = torch.zeros(2, device="cuda")
assert y.to("cuda:0") is not y and y.to(torch.device("cuda")) is not y and y.to(torch.float64).dtype == torch.float64
model = torch.nn.Linear(2, 1).to("cuda")
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
for events in ((start, end), (torch.cuda.Event(), torch.cuda.Event())):
    try:
        events[0].elapsed_time(events[1])
    except RuntimeError as e:
        print(e)
start.record(); model(y[None]).sum().backward(); end.record(); end.synchronize()
assert start.elapsed_time(end) >= 0 and torch.cuda.max_memory_allocated() == 0
print("ok")
"""


def test_torch_under_the_standin_runs_cuda_code_on_its_cpu_and_refuses_what_cuda_refuses():
    pytest.importorskip("torch")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(STANDIN), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", TORCH_UNDER_THE_STANDIN], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Both events must be recorded before calculating elapsed time.",
                                        "CUDA error: invalid resource handle (an Event made without "
                                        "enable_timing=True)", "ok"]
