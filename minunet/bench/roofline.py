"""The roofline: the least time an op can take, max(FLOPs / peak FLOP/s, bytes / peak bandwidth), with the
peaks of a GPU (datasheet numbers) or of this CPU (measured)."""
import numpy as np

from .timing import best_time

# Datasheet peaks (dense, no sparsity): FP32 on CUDA cores, TF32 on tensor cores, DRAM bandwidth.
# Matched against the device name in this order (first match wins). Assumptions, not measurements.
PEAKS = [
    ("H200", dict(fp32=67e12, tf32=494.7e12, bandwidth=4.8e12)),
    ("H100 PCIe", dict(fp32=51.2e12, tf32=378e12, bandwidth=2.0e12)),
    ("H100 NVL", dict(fp32=60e12, tf32=417.5e12, bandwidth=3.9e12)),
    ("H100", dict(fp32=67e12, tf32=494.7e12, bandwidth=3.35e12)),  # SXM5
    ("A100-SXM4-80GB", dict(fp32=19.5e12, tf32=156e12, bandwidth=2.039e12)),
    ("A100-PCIE-80GB", dict(fp32=19.5e12, tf32=156e12, bandwidth=1.935e12)),
    ("A100", dict(fp32=19.5e12, tf32=156e12, bandwidth=1.555e12)),  # 40 GB
]


def peaks_for(device_name):
    for key, peaks in PEAKS:
        if key.lower() in device_name.lower():
            return key, peaks
    return None, None


def roofline_floor(flops, nbytes, peak_flops, bandwidth):
    """The least time the op can take on the machine: bound by arithmetic or by memory traffic."""
    return max(flops / peak_flops, nbytes / bandwidth)


def add_roofline(rows, peaks):
    for row in rows:
        if peaks is None or not row.get("seconds"):
            continue
        peak = peaks["tf32"] if row.get("tf32") else peaks["fp32"]
        row["floor_s"] = roofline_floor(row["flops"], row["bytes"], peak, peaks["bandwidth"])
        row["of_roofline"] = row["floor_s"] / row["seconds"]
    return rows


def measure_cpu_peaks(quick=False):
    """This CPU's roofline, measured now rather than assumed: the FP32 rate of a large square float32
    matrix product (BLAS on as many threads as the numpy device has now) and the bandwidth of a large array
    copy (bytes read + written, one thread), each the best of a few runs."""
    from ..threads import blas_threads, cpu_threads_now
    n, elements, repeats = (512, 2**22, 2) if quick else (2048, 2**25, 5)  # 2**25 floats: 128 MiB, past any cache
    a, b = np.ones((n, n), np.float32), np.ones((n, n), np.float32)
    src = np.ones(elements, np.float32)
    dst = np.empty_like(src)
    with blas_threads(cpu_threads_now()):
        gemm = best_time(lambda: a @ b, repeats)
    copy = best_time(lambda: np.copyto(dst, src), repeats)
    return dict(fp32=2 * n**3 / gemm, tf32=None, bandwidth=2 * src.nbytes / copy)
