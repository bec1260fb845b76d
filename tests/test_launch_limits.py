"""The pre-launch check of the cuda launcher: the rules on plain dicts (no GPU), then the CuPy glue (gpu).

Every gpu-marked operator test also runs through the check, so a check that refused a valid launch would
fail them too."""
import numpy as np
import pytest

from minunet.backends.launch_limits import LaunchLimitError, check_launch, check_opt_in

# An H100's limits (cudaDeviceGetAttribute), and a kernel compiled with 40 registers and 4 KB of __shared__.
H100 = dict(max_threads_per_block=1024, max_block_dim=(1024, 1024, 64), max_registers_per_block=65536,
            max_shared_per_block=48 * 1024, max_shared_per_block_optin=227 * 1024)
KERNEL = dict(max_threads_per_block=1024, num_regs=40, shared_size_bytes=4096)


def check(block=(256, 1, 1), shared_mem=0, max_dynamic_shared=None, **attributes):
    check_launch("k_v1", dict(KERNEL, **attributes), H100, block, shared_mem, max_dynamic_shared)


def test_launches_within_the_limits_pass():
    check()
    check(block=(32, 32, 1))                                   # 1024 threads, the device's maximum
    check(block=128)                                           # an int is (x, 1, 1)
    check(shared_mem=48 * 1024 - 4096)                         # 48 KB with the static 4 KB, no opt-in needed
    check(shared_mem=100_000, max_dynamic_shared=100_000)      # opted in
    check(block=(512, 1, 1), num_regs=128, max_threads_per_block=512)


@pytest.mark.parametrize("block, message", [
    ((64, 32, 1), r"block \(64, 32, 1\) has 2048 threads; the device allows 1024 per block"),
    ((2048, 1, 1), r"block \(2048, 1, 1\) is outside the device's block limits"),
    ((1, 1, 65), r"block \(1, 1, 65\) is outside the device's block limits 1..\(1024, 1024, 64\)"),
    ((0, 1, 1), r"outside the device's block limits"),
    ((1, 2, 3, 4), r"block must be an int or 1 to 3 ints"),
])
def test_a_block_the_device_cannot_take(block, message):
    with pytest.raises(LaunchLimitError, match=message):
        check(block=block)


def test_a_block_too_large_for_the_registers_names_them():
    # 128 registers x 1024 threads = 131072 > 65536: CUDA reports max_threads_per_block = 512 for this function.
    with pytest.raises(LaunchLimitError, match=r"kernel 'k_v1': block \(1024, 1, 1\) has 1024 threads, but as "
                                               r"compiled it can run at most 512 per block \(128 registers per thread "
                                               r"x 1024 threads = 131072 > the device's 65536 per block\): launch a "
                                               r"smaller block"):
        check(block=(1024, 1, 1), num_regs=128, max_threads_per_block=512)


def test_launch_bounds_limit_the_block_too():
    # __launch_bounds__(128): few registers, but CUDA caps the function at 128 threads.
    with pytest.raises(LaunchLimitError, match=r"at most 128 per block \(16 registers per thread; its "
                                               r"__launch_bounds__\?\)"):
        check(block=(256, 1, 1), num_regs=16, max_threads_per_block=128)


def test_shared_memory_past_48_kb_needs_the_opt_in():
    with pytest.raises(LaunchLimitError, match=r"kernel 'k_v1': 4096 B static \+ 45057 B dynamic shared memory = "
                                               r"49153 B per block, over the 49152 B a launch may use without "
                                               r"opting in: create the function with max_dynamic_shared=45057"):
        check(shared_mem=48 * 1024 - 4096 + 1)
    with pytest.raises(LaunchLimitError, match=r"over the max_dynamic_shared=60000 B this function opted in to"):
        check(shared_mem=60001, max_dynamic_shared=60000)


def test_shared_memory_past_the_device_limit_is_refused_even_opted_in():
    too_much = 227 * 1024 - 4096 + 1
    with pytest.raises(LaunchLimitError, match=r"= 232449 B per block; the device allows at most 232448 B"):
        check(shared_mem=too_much, max_dynamic_shared=too_much)


@pytest.mark.parametrize("shared_mem", [-1, 1.5, "4096", True])
def test_shared_mem_must_be_a_byte_count(shared_mem):
    with pytest.raises(LaunchLimitError, match="shared_mem must be an int >= 0"):
        check(shared_mem=shared_mem)


def test_the_opt_in_must_fit_the_device():
    check_opt_in("k_v1", KERNEL, H100, 227 * 1024 - 4096)
    check_opt_in("k_v1", KERNEL, H100, np.int64(1000))
    with pytest.raises(LaunchLimitError, match=r"max_dynamic_shared=228353 B plus its 4096 B of static shared memory "
                                               r"exceeds the 232448 B per block this device allows "
                                               r"\(at most max_dynamic_shared=228352\)"):
        check_opt_in("k_v1", KERNEL, H100, 227 * 1024 - 4096 + 1)
    with pytest.raises(LaunchLimitError, match="max_dynamic_shared must be an int >= 0"):
        check_opt_in("k_v1", KERNEL, H100, -5)


class FakeRawKernel:
    """What CudaLauncher reads from and sets on a cupy.RawKernel, and the launches it makes."""
    max_threads_per_block, num_regs, shared_size_bytes, max_dynamic_shared_size_bytes = 512, 64, 4096, 45056

    def __init__(self):
        self.launches = []

    def __call__(self, grid, block, args, shared_mem=0):
        self.launches.append((block, shared_mem))


def test_the_cuda_launcher_checks_before_the_first_launch_and_sets_the_opt_in(monkeypatch):
    # The glue without a GPU: CuPy's module, device and attribute calls replaced; the gpu tests below run it for real.
    import cupy

    from minunet.backends import cuda_launcher
    raw = FakeRawKernel()
    monkeypatch.setattr(cupy, "RawModule", lambda code, options: type("M", (), {"get_function": lambda self, n: raw})())
    monkeypatch.setattr(cupy.cuda, "Device", lambda: type("D", (), {"id": 0})())
    monkeypatch.setattr(cuda_launcher, "device_limits", lambda device_id: H100)
    launcher = cuda_launcher.CudaLauncher()
    f = launcher.function("elementwise", "relu_forward_v1", np.float32)
    with pytest.raises(LaunchLimitError, match=r"kernel 'relu_forward_v1': block \(1024, 1, 1\) .* at most 512"):
        f((1, 1, 1), (1024, 1, 1), ())
    with pytest.raises(LaunchLimitError, match="max_dynamic_shared=61440"):
        f((1, 1, 1), (256, 1, 1), (), shared_mem=61440)
    f((1, 1, 1), (512, 1, 1), ())
    assert raw.launches == [((512, 1, 1), 0)] and raw.max_dynamic_shared_size_bytes == 45056
    g = launcher.function("elementwise", "relu_forward_v1", np.float32, max_dynamic_shared=61440)
    assert raw.max_dynamic_shared_size_bytes == 61440  # the opt-in, set on the function before any launch
    g((1, 1, 1), (256, 1, 1), (), shared_mem=61440)
    assert raw.launches[-1] == ((256, 1, 1), 61440)


# ---- the CuPy glue, on a GPU: kernels written for the test, loaded by the real launcher -----------------------

TEST_KERNELS = r"""
extern "C" __global__ void __launch_bounds__(128) bounded_fill_v1(MINUNET_REAL* y) {
    y[threadIdx.x] = (MINUNET_REAL)threadIdx.x;
}

// 32 KB of static shared memory (8192 floats) plus the launch's dynamic part: past 48 KB with any of it.
extern "C" __global__ void static_and_dynamic_shared_v1(const MINUNET_REAL* x, MINUNET_REAL* y) {
    __shared__ MINUNET_REAL fixed[8192];
    extern __shared__ MINUNET_REAL dynamic_part[];
    const unsigned int i = threadIdx.x;
    fixed[8191 - i] = x[i];
    dynamic_part[i] = 2 * x[i];
    __syncthreads();
    y[i] = fixed[8191 - i] + dynamic_part[i];
}
"""


def test_the_test_kernels_compile_with_the_resources_the_gpu_tests_assume(tmp_path):
    from minunet.nvrtc import compile_file  # NVRTC without a GPU, as CuPy compiles them on one
    (tmp_path / "limits_test.cu").write_text(TEST_KERNELS)
    kernels = compile_file(tmp_path / "limits_test.cu", "sm_90", np.float32).kernels
    assert kernels["static_and_dynamic_shared_v1"].shared_bytes == 32768
    assert kernels["bounded_fill_v1"].shared_bytes == 0


@pytest.fixture
def launcher(tmp_path, monkeypatch):
    from minunet.backends import cuda_launcher
    (tmp_path / "limits_test.cu").write_text(TEST_KERNELS)
    monkeypatch.setattr(cuda_launcher, "kernel_path", lambda stem: tmp_path / f"{stem}.cu")
    return cuda_launcher.CudaLauncher()


@pytest.mark.gpu
def test_cuda_reads_the_device_limits():
    import cupy

    from minunet.backends.cuda_launcher import device_limits
    limits = device_limits(cupy.cuda.Device().id)
    assert limits["max_threads_per_block"] == 1024 and limits["max_block_dim"] == (1024, 1024, 64)
    assert limits["max_shared_per_block"] == 48 * 1024 <= limits["max_shared_per_block_optin"]
    assert limits["max_registers_per_block"] >= 32768


@pytest.mark.gpu
def test_cuda_refuses_a_block_past_launch_bounds_and_runs_one_within(launcher):
    import cupy
    y = cupy.full(256, np.nan, np.float32)
    fill = launcher.function("limits_test", "bounded_fill_v1", np.float32)
    with pytest.raises(LaunchLimitError, match=r"kernel 'bounded_fill_v1': block \(256, 1, 1\) has 256 threads, "
                                               r"but as compiled it can run at most 128 per block"):
        fill((1, 1, 1), (256, 1, 1), (y,))
    fill((1, 1, 1), (128, 1, 1), (y,))
    np.testing.assert_array_equal(cupy.asnumpy(y[:128]), np.arange(128, dtype=np.float32))
    assert np.isnan(cupy.asnumpy(y[128:])).all()


@pytest.mark.gpu
def test_cuda_shared_memory_past_48_kb_runs_once_opted_in(launcher):
    import cupy
    x = cupy.arange(256, dtype=np.float32)
    y = cupy.full(256, np.nan, np.float32)
    dynamic = 20 * 1024  # + 32 KB static = 52 KB
    plain = launcher.function("limits_test", "static_and_dynamic_shared_v1", np.float32)
    with pytest.raises(LaunchLimitError, match=r"32768 B static \+ 20480 B dynamic shared memory = 53248 B per "
                                               r"block, over the 49152 B .* max_dynamic_shared=20480"):
        plain((1, 1, 1), (256, 1, 1), (x, y), shared_mem=dynamic)
    opted_in = launcher.function("limits_test", "static_and_dynamic_shared_v1", np.float32,
                                 max_dynamic_shared=dynamic)
    opted_in((1, 1, 1), (256, 1, 1), (x, y), shared_mem=dynamic)
    np.testing.assert_array_equal(cupy.asnumpy(y), 3 * np.arange(256, dtype=np.float32))
    with pytest.raises(LaunchLimitError, match="exceeds the .* B per block this device allows"):
        launcher.function("limits_test", "static_and_dynamic_shared_v1", np.float32, max_dynamic_shared=1 << 20)
