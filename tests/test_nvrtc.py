"""NVRTC checks that need no GPU.

Every kernels/*.cu compiles for sm_75, sm_80, sm_86 and sm_90, in float and double, with no error, no
warning and no register spill (the resource table prints with `pytest -s`). The cubin minunet.nvrtc builds
is byte-identical to the one CuPy's RawModule path caches, and the cuda launcher uses the same options.
"""
import functools
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import launch_census
from minunet import nvrtc, nvrtc_options, paths
from minunet.sim.build import build_library, included_files


def _nvrtc_unusable():
    try:
        from cupy.cuda import compiler
        compiler._get_nvrtc_version()  # loads libnvrtc
    except Exception as e:  # ImportError, OSError, CuPy's own errors: all mean "cannot compile here"
        return f"CuPy/NVRTC not usable here: {type(e).__name__}: {e}"
    return None


pytestmark = pytest.mark.skipif(_nvrtc_unusable() is not None, reason=str(_nvrtc_unusable()))

ARCHS = ("sm_75", "sm_80", "sm_86", "sm_90")
DTYPE_NAMES = ("float", "double")
KERNEL_STEMS = sorted(p.stem for p in paths.kernels_dir().glob("*.cu"))

# A small kernel of our own: a shared tile of 256 reals and one barrier.
SCALE_KERNEL = r"""
#include "common.cuh"
extern "C" __global__ void scale_v1(const real* x, real* y, real a, int n) {
    __shared__ real tile[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = i < n ? x[i] : real(0);
    __syncthreads();
    if (i < n) y[i] = a * tile[(threadIdx.x + 1) % blockDim.x];
}
"""

# 64 accumulators live at once, but __launch_bounds__(1024, 2) leaves 32 registers per thread on sm_80.
SPILL_KERNEL = r"""
#include "common.cuh"
extern "C" __global__ void __launch_bounds__(1024, 2) spill_v1(const real* x, real* y, int n) {
    real acc[64];
    #pragma unroll
    for (int k = 0; k < 64; ++k) acc[k] = x[(threadIdx.x * 64 + k) % n];
    for (int step = 0; step < n; ++step) {
        #pragma unroll
        for (int k = 0; k < 64; ++k) acc[k] = acc[k] * acc[(k + 1) & 63] + x[(step + k) % n];
    }
    real total = 0;
    #pragma unroll
    for (int k = 0; k < 64; ++k) total += acc[k];
    y[threadIdx.x] = total;
}
"""

_ENTRY = re.compile(r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\([^)]*\)\s+)?void\s+'
                    r'(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(')


def kernel_dir_with(tmp_path, **files):
    """A kernels folder: the real common.cuh plus the given files (name without dots: use __ for '.')."""
    folder = tmp_path / "kernels"
    folder.mkdir(exist_ok=True)
    (folder / "common.cuh").write_text((paths.kernels_dir() / "common.cuh").read_text())
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text)
    return folder


def problems(results):
    """Every compile error, warning and spill in compile_matrix's results, one line each (empty: clean)."""
    found = []
    for path, arch, dtype, result in results:
        where = f"{path.name} {dtype} sm_{arch}"
        if isinstance(result, Exception):
            found.append(f"{where}: {result}")
            continue
        found += [f"{where}: {line}" for line in nvrtc.warnings_in(result.log)]
        found += [f"{where}: {name} spills {r.spill_stores} bytes stored / {r.spill_loads} loaded"
                  for name, r in result.kernels.items() if r.spill_stores or r.spill_loads]
    return found


@functools.lru_cache(maxsize=None)
def compiled(stem):
    """compile_matrix of a kernel file for every arch and dtype, once per test process."""
    return nvrtc.compile_matrix([stem], ARCHS, DTYPE_NAMES, workers=2)


@pytest.mark.parametrize("stem", KERNEL_STEMS)
def test_kernel_file_compiles_cleanly(stem, tmp_path, census):
    results = compiled(stem)
    table = nvrtc.format_table(results)
    print(f"\n{table}")
    (tmp_path / f"nvrtc_{stem}.txt").write_text(table + "\n")
    found = problems(results)
    assert not found, "\n".join(found)
    path = paths.kernel_path(stem)  # its kernels, and those of the headers it includes (gemm_tile.cuh)
    declared = set(_ENTRY.findall("".join(f.read_text() for f in [path, *included_files(path, [])])))
    for path, arch, dtype, result in results:
        assert set(result.kernels) == declared, (f"{stem} {dtype} sm_{arch}: ptxas reported {sorted(result.kernels)}, "
                                                 f"the file declares {sorted(declared)}")
    check_launch_limits(stem, results, census)


# gemm_tile.cuh emulates the mma instruction with shared scratch declared only under MINUNET_SIM: the mangled
# name of the function that declares it.
SIM_ONLY_SHARED = "minunet_mma_tf32"


def check_launch_limits(stem, results, census):
    """Registers x threads over 64 K fail a launch; the simulator cannot see registers, so they are checked
    here, for every arch, at the block size each kernel is launched with. The simulator's own count of a
    kernel's static __shared__ bytes (its launch checks use it) must be ptxas's (the largest over the
    archs: the TF32 kernels are empty below sm_80), apart from the simulator's own tensor-core scratch."""
    ptxas_shared, launched = {}, 0
    for path, arch, dtype, result in results:
        for name, r in result.kernels.items():
            ptxas_shared[name, dtype] = max(ptxas_shared.get((name, dtype), 0), r.shared_bytes)
            threads = census.get((stem, name, dtype))
            if threads:
                launched += 1
                assert nvrtc.registers_per_block(r, threads) <= nvrtc.REGISTERS_PER_BLOCK, (
                    f"{stem} {name} {dtype} sm_{arch}: {r.registers} registers x {threads} threads exceed 64 K")
    assert launched, f"no kernel of {stem} was launched by the census"
    for dtype in DTYPE_NAMES:
        sim = build_library(paths.kernel_path(stem), {"MINUNET_REAL": dtype}, [paths.kernels_dir()])[1]
        for name, info in sim.items():
            gpu_arrays = [size for array, _, size in info.shared.static if SIM_ONLY_SHARED not in array]
            assert sum(gpu_arrays) == ptxas_shared[name, dtype], (
                f"{stem} {name} {dtype}: the sim counts {sum(gpu_arrays)} bytes of static shared memory, "
                f"ptxas {ptxas_shared[name, dtype]} ({info.shared.static})")


# ---- what the simulator checks at launch, against what ptxas reports -------------------------------------
@pytest.fixture(scope="module")
def census():
    return launch_census()  # records the block size of every launch the backends make


def test_register_pressure_over_the_block_limit_is_found(tmp_path):
    folder = kernel_dir_with(tmp_path, register_pressure__cu=(
        Path(__file__).parent / "sim_kernels" / "limits" / "register_pressure.cu").read_text())
    r = nvrtc.compile_matrix([folder / "register_pressure.cu"], ["sm_80"], ["float"])[0][3].kernels["many_registers"]
    assert r.registers > 64, r
    assert nvrtc.registers_per_block(r, 1024) > nvrtc.REGISTERS_PER_BLOCK  # the launch the census would refuse
    assert nvrtc.registers_per_block(r, 128) <= nvrtc.REGISTERS_PER_BLOCK


def test_own_kernel_compiles_cleanly_with_its_shared_tile(tmp_path):
    folder = kernel_dir_with(tmp_path, scale__cu=SCALE_KERNEL)
    results = nvrtc.compile_matrix([folder / "scale.cu"], ARCHS, DTYPE_NAMES, workers=2)
    print(f"\n{nvrtc.format_table(results)}")
    assert not problems(results)
    assert len(results) == len(ARCHS) * len(DTYPE_NAMES)
    for path, arch, dtype, result in results:
        r = result.kernels["scale_v1"]
        assert r.shared_bytes == 256 * (4 if dtype == "float" else 8), (dtype, arch, r)
        assert 0 < r.registers <= 255 and r.stack_bytes == 0
        assert result.cubin[:4] == b"\x7fELF"


def test_spills_are_reported(tmp_path):
    folder = kernel_dir_with(tmp_path, spill__cu=SPILL_KERNEL)
    results = nvrtc.compile_matrix([folder / "spill.cu"], ["sm_80"], ["float"])
    r = results[0][3].kernels["spill_v1"]
    assert r.registers <= 32 and r.spill_stores > 0 and r.spill_loads > 0
    assert any("spill_v1 spills" in line for line in problems(results))


def test_warnings_are_reported(tmp_path):
    folder = kernel_dir_with(tmp_path, warn__cu='#include "common.cuh"\n'
                             'extern "C" __global__ void warn_v1(real* y) { int unused = 3; y[0] = 1; }\n')
    results = nvrtc.compile_matrix([folder / "warn.cu"], ["sm_80"], ["float"])
    found = problems(results)
    assert found and "unused" in found[0] and "warn.cu" in found[0]


def test_broken_kernel_raises_with_the_nvrtc_log(tmp_path):
    folder = kernel_dir_with(tmp_path, broken__cu='#include "common.cuh"\n'
                             'extern "C" __global__ void broken_v1(real* y) { y[0] = undefined_name; }\n')
    with pytest.raises(nvrtc.NvrtcError) as error:
        nvrtc.compile_file(folder / "broken.cu", "sm_80", np.float64)
    message = str(error.value)
    assert "broken.cu (double, sm_80) failed to compile" in message
    assert 'broken.cu(2): error: identifier "undefined_name" is undefined' in message
    # ... and the table shows it, without stopping the other compilations
    results = nvrtc.compile_matrix([folder / "broken.cu"], ["sm_80", "sm_90"], ["float"])
    assert all(isinstance(r[3], nvrtc.NvrtcError) for r in results)
    assert nvrtc.format_table(results).count("COMPILE ERROR") == 2


def test_cubin_is_byte_identical_to_what_cupy_caches(tmp_path, monkeypatch):
    """Compile through CuPy's own RawModule path (compile_with_cache, as RawModule calls it) and catch
    the cubin it writes to its cache; without a driver, loading it afterwards fails, which is expected."""
    import cupy
    from cupy._core import core
    from cupy.cuda import compiler
    from cupy.cuda._compiler_cache import KernelCacheBackend

    class RecordingCache(KernelCacheBackend):
        saved = []

        def load(self, name):
            return None

        def save(self, name, cubin, source):
            self.saved.append(cubin)

    monkeypatch.setattr(compiler, "_kernel_cache_backend", RecordingCache())
    folder = kernel_dir_with(tmp_path, scale__cu=SCALE_KERNEL)
    for arch, dtype in [("sm_75", np.float32), ("sm_90", np.float64)]:
        ours = nvrtc.compile_file(folder / "scale.cu", arch, dtype, report=False)
        RecordingCache.saved.clear()
        with nvrtc._arch_from_argument(compiler):
            try:
                core.compile_with_cache(SCALE_KERNEL, ours.options, arch=nvrtc.arch_number(arch),
                                        prepend_cupy_headers=False, backend="nvrtc")
            except (cupy.cuda.runtime.CUDARuntimeError, cupy.cuda.driver.CUDADriverError):
                pass  # no driver (or another GPU generation): the cubin was cached before the load
        assert RecordingCache.saved == [ours.cubin], f"{arch} {dtype}: CuPy cached a different cubin"
        assert ours.kernels == {} and ours.log == ""


def test_the_private_cupy_function_is_restored(tmp_path):
    from cupy.cuda import compiler
    original = compiler._get_arch_for_options_for_nvrtc
    folder = kernel_dir_with(tmp_path, scale__cu=SCALE_KERNEL, broken__cu="this is not CUDA")
    nvrtc.compile_file(folder / "scale.cu", "sm_86", "float")
    assert compiler._get_arch_for_options_for_nvrtc is original
    with pytest.raises(nvrtc.NvrtcError):
        nvrtc.compile_file(folder / "broken.cu", "sm_86", "float")
    assert compiler._get_arch_for_options_for_nvrtc is original


def test_a_different_cupy_version_is_refused_naming_the_pin(tmp_path, monkeypatch):
    import cupy
    monkeypatch.setattr(cupy, "__version__", "13.6.0")
    folder = kernel_dir_with(tmp_path, scale__cu=SCALE_KERNEL)
    with pytest.raises(RuntimeError, match=r"CuPy 14\.2\.0 \(pinned in pyproject.toml.*found CuPy 13\.6\.0"):
        nvrtc.compile_file(folder / "scale.cu", "sm_80", "float")
    assert nvrtc.CUPY_PIN in (Path(__file__).parents[1] / "pyproject.toml").read_text()


def test_source_hash_follows_the_included_headers(tmp_path):
    including_extra = SCALE_KERNEL.replace('"common.cuh"', '"common.cuh"\n#include "extra.cuh"')
    folder = kernel_dir_with(tmp_path, scale__cu=including_extra,
                             extra__cuh='#include "nested.cuh"\n', nested__cuh="// v1\n", other__cu="// unrelated\n")
    path = folder / "scale.cu"
    first = nvrtc_options.compile_options(path, np.float32)
    assert first[:2] == ("-DMINUNET_REAL=float", f"-I{folder}")
    assert re.fullmatch(r"-DMINUNET_SOURCE_HASH=[0-9a-f]{16}", first[2])
    (folder / "other.cu").write_text("// changed, but scale.cu does not include it\n")
    assert nvrtc_options.compile_options(path, np.float32) == first
    seen = {first[2]}
    for name, text in [("common.cuh", "// edited\n"), ("nested.cuh", "// v2\n"), ("scale.cu", SCALE_KERNEL + "\n")]:
        (folder / name).write_text((folder / name).read_text() + text)
        changed = nvrtc_options.compile_options(path, np.float32)[2]
        assert changed not in seen, f"editing {name} did not change the source hash"
        seen.add(changed)
    assert nvrtc_options.compile_options(path, np.float64)[0] == "-DMINUNET_REAL=double"


def test_cuda_launcher_compiles_with_the_same_options(tmp_path, monkeypatch):
    import cupy
    from test_launch_limits import H100
    from minunet.backends import cuda_launcher

    created, launched = [], []

    class FakeRawModule:  # records what CuPy would compile; the real one needs a GPU to load
        def __init__(self, code, options):
            created.append((code, options))

        def get_function(self, name):
            def raw_kernel(grid, block, args, shared_mem=0):
                launched.append((name, grid, block, args, shared_mem))
            # what the launcher's pre-launch check reads (tests/test_launch_limits.py tests the check)
            raw_kernel.max_threads_per_block, raw_kernel.num_regs, raw_kernel.shared_size_bytes = 1024, 32, 0
            return raw_kernel

    folder = kernel_dir_with(tmp_path, scale__cu=SCALE_KERNEL)
    monkeypatch.setattr(paths, "kernels_dir", lambda: folder)
    monkeypatch.setattr(cupy, "RawModule", FakeRawModule)
    monkeypatch.setattr(cupy.cuda, "Device", lambda: type("FakeDevice", (), {"id": 0})())
    monkeypatch.setattr(cuda_launcher, "device_limits", lambda device_id: H100)
    launcher = cuda_launcher.CudaLauncher()
    assert launcher.name == "cuda" and launcher.xp is cupy
    f = launcher.function("scale", "scale_v1", np.float32)
    f((3, 1, 1), (256, 1, 1), ("x", "y"), 128)
    assert launched == [("scale_v1", (3, 1, 1), (256, 1, 1), ("x", "y"), 128)]
    assert created == [(SCALE_KERNEL, nvrtc.compile_file("scale", "sm_80", np.float32).options)]
    launcher.function("scale", "scale_v1", np.float32)   # cached: no second module
    launcher.function("scale", "other_v1", "float32")    # same module, another kernel
    assert len(created) == 1
    launcher.function("scale", "scale_v1", np.float64)
    assert len(created) == 2 and created[1][1][0] == "-DMINUNET_REAL=double"
    with pytest.raises(ValueError, match="dtype"):
        launcher.function("scale", "scale_v1", np.int32)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="arch"):
        nvrtc.arch_number("compute_80")
    assert nvrtc.arch_number(80) == nvrtc.arch_number("sm_80") == "80"
    with pytest.raises(ValueError, match="dtype"):
        nvrtc_options.real_name(np.float16)
    assert nvrtc_options.real_name("float") == "float" and nvrtc_options.real_name(np.float32) == "float"
    with pytest.raises(TypeError, match="source"):
        nvrtc.compile_file(3, "sm_80", "float")
    with pytest.raises(FileNotFoundError, match="no_such_kernel"):
        nvrtc.compile_file("no_such_kernel", "sm_80", "float")


def test_occupancy_matches_the_occupancy_calculator():
    def regs(n, smem=0):
        return nvrtc.Resources(registers=n, shared_bytes=smem, spill_stores=0, spill_loads=0, stack_bytes=0)
    assert nvrtc.occupancy(regs(32), "sm_80", 256) == 1.0
    assert nvrtc.occupancy(regs(40), "sm_80", 256) == 0.75       # 48 of 64 warps
    assert nvrtc.occupancy(regs(64), "sm_80", 256) == 0.5
    assert nvrtc.occupancy(regs(32, 48 * 1024), "sm_80", 256) == 3 * 8 / 64   # 3 blocks fit in 164 KB
    assert nvrtc.occupancy(regs(64), "sm_75", 1024) == 1.0       # 32 warps, the sm_75 maximum
    assert nvrtc.occupancy(regs(255), "sm_90", 1024) == 0.0      # cannot launch at all
    with pytest.raises(ValueError, match="threads_per_block"):
        nvrtc.occupancy(regs(32), "sm_80", 2048)


def test_command_line_prints_the_table(tmp_path, monkeypatch, capsys):
    folder = kernel_dir_with(tmp_path, scale__cu=SCALE_KERNEL, broken__cu="not CUDA")
    monkeypatch.setattr(paths, "kernels_dir", lambda: folder)
    assert nvrtc.main(["scale", "--arch", "sm_80", "--dtype", "double"]) == 0
    out, err = capsys.readouterr()
    assert "NVRTC: 1 kernel files x 1 archs x 1 dtypes" in err and "1/1" in err  # progress while it compiles
    assert re.search(r"scale\.cu\s+scale_v1\s+double\s+sm_80\s+\d+\s+2048\s+0/0", out), out
    assert nvrtc.main(["--arch", "sm_90", "--dtype", "float"]) == 1   # every file: broken.cu fails
    captured = capsys.readouterr()
    assert "COMPILE ERROR" in captured.out and "broken.cu (float, sm_90) failed" in captured.err


@pytest.mark.parametrize("block", ["0", "2000"])
def test_a_block_size_out_of_range_is_one_line_before_anything_compiles(block, monkeypatch, capsys):
    monkeypatch.setattr(nvrtc, "compile_matrix", lambda *args: pytest.fail("compiled before checking --block"))
    assert nvrtc.main(["--block", block]) == 2
    assert capsys.readouterr().err == f"error: --block must be 1..1024 threads per block, got {block}\n"
