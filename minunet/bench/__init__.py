"""Benchmarks: every convolution kernel version on the U-Net's own layers, and one training step end to end.

    python -m minunet.bench [--device auto|cuda|numpy|sim] [--out DIR] [--quick] [--plot] [--threads N]
                            [--default-runs]
    python -m minunet.bench OP DIRECTION [--version V] [--layer NAME] [--device ...] [--quick] [--threads N]

The second form times one kernel, as llm.c's `./layernorm_forward 4` does: see one_kernel.py.

On cuda, per layer of the paper's U-Net (572x572 tile, batch 1, float32) and per op and direction
(forward, grad_input, grad_weight), every selectable kernel version (launching.all_versions) and PyTorch
(cuDNN, when `import torch` works with CUDA; TF32 off, true float32, and on) is, as llm.c's dev/cuda does it,
1. checked against the reference, the numpy device in float64 on the same operands; an implementation that
   fails is reported (first section of the report, stderr, exit status 1) and never timed, on this layer or
   any later one (check_then_time.py, with minunet/compare.py);
2. timed with CUDA events: the median of many launches after warm-up (compilation happens in the warm-up),
   the L2 cache flushed before each launch, outside the timed interval (timing.py);
3. set against its roofline floor, max(FLOPs / peak FLOP/s, bytes / peak bandwidth), from the FLOPs and the
   minimum bytes (each operand read once, the result written once) of layers.py, and the peaks of the GPU in
   PEAKS (datasheet numbers: assumptions, stated in the output; roofline.py).
End to end: one SGD training step (forward, loss, backward, update) of mu.UNet against its PyTorch twin
(minunet/torch_twin.py) in PyTorch eager, with peak GPU memory of both (gpu.py, training.py).

On a CPU (--device numpy, or auto without a GPU) it times a training step of a small U-Net (depth 3, 16
channels, 124x124 tile, batch 2) on the numpy device and PyTorch CPU on the same network when torch is
installed; then, per layer of that network, the numpy device's convolutions and PyTorch's on the same arrays
(each checked first, as above), against a roofline whose peaks are measured in the same run (a large float32
matrix product, a large array copy); and the sim device's speed on a tiny layer for every conv3x3 version
(cpu.py, sim_speed.py). All of it with --threads BLAS threads (PyTorch's intra-op threads set to the same), the default of
python -m minunet.train; then the training step at each thread count on the machine as it is and with one
competing CPU-bound process added (blas_threads.py), and with --default-runs the whole default
`python -m minunet.train` timed the same ways. Every figure carries the machine's load averages.

Results: results-<device>-<date>.md (tables.py) and .json (all numbers, device name, versions, date) in --out
(report.py); --plot adds a roofline chart (PNG, roofline_chart.py). driver.py runs it all; one_kernel.py one
kernel.
"""
from .driver import main, run
from .layers import DIRECTIONS, cost, kernel_versions, minunet_call, output_hw, unet_layers
from .roofline import PEAKS, add_roofline, peaks_for, roofline_floor
from .tables import cpu_totals_table, fastest_exact_versions, kernel_table, op_totals, op_totals_table, totals_table

__all__ = ["DIRECTIONS", "PEAKS", "add_roofline", "cost", "cpu_totals_table", "fastest_exact_versions",
           "kernel_table", "kernel_versions", "main", "minunet_call", "op_totals", "op_totals_table", "output_hw",
           "peaks_for", "roofline_floor", "run", "totals_table", "unet_layers"]
