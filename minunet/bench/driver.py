"""The driver of python -m minunet.bench: the command line, and which measurements run on which device, in
which order, into which report sections."""
import argparse
import sys
from pathlib import Path

from . import blas_threads, cpu, gpu, one_kernel, report, roofline, roofline_chart, sim_speed, tables
from .check_then_time import mismatches
from .layers import CONV_OPS, DIRECTIONS, unet_layers


def run(device="auto", out="benchmarks/results", quick=False, plot=False, log=print, n_threads=None,
        default_runs=False, unet=None):
    """Benchmark device with n_threads BLAS and PyTorch threads (default: minunet.threads' default); unet: on
    cuda, the network measured (tile, batch, depth, base; default the paper's, gpu.PAPER_UNET).
    Returns (Markdown report, JSON report, the rows of the implementations that failed their check)."""
    from .. import threads
    n = threads.resolve_threads(n_threads)
    log(f"{threads.describe(n, given=n_threads is not None)}, PyTorch's threads the same; "
        f"load averages {blas_threads.load_averages()}")
    with blas_threads.limited(n):
        return _run(device, out, quick, plot, log, n, default_runs, unet)


def _run(device, out, quick, plot, log, n_threads, default_runs, unet):
    from ..backends import resolve_device
    device = resolve_device(device)
    if unet is not None and device != "cuda":
        raise ValueError(f"--unet chooses the network measured on cuda; the {device} device measures "
                         f"{cpu.SMALL_UNET}")
    env = report.environment(device)
    log(f"minunet.bench on {env['device_name']} ({device})")
    sections = {"markdown": []}
    if device == "cuda":
        chart = _run_cuda(env, sections, out, quick, plot, log, dict(gpu.PAPER_UNET, **(unet or {})))
    else:
        chart = _run_cpu(device, env, sections, quick, plot, log, n_threads, default_runs)
    failed = _mismatches_first(sections)
    md, js = report.write_report(out, env, sections)
    log(f"wrote {md} and {js}")
    if chart:  # last: a failing plot must not lose the numbers
        rows, peaks, title = chart
        path = roofline_chart.plot_roofline(rows, peaks, Path(out) / f"roofline-{device}-{env['date'][:10]}.png", title)
        log(f"roofline chart: {path}")
    return md, js, failed


def _mismatches_first(sections):
    """The rows whose check failed, and a section naming them put first in the report: they were not timed."""
    title = "CHECKS THAT FAILED (not timed)"
    failed = mismatches(sections.get("kernels", []) + sections.get("sim", []))
    sections["markdown"] = [(t, text) for t, text in sections["markdown"] if t != title]
    if failed:
        sections["markdown"].insert(0, (title, tables.mismatch_table(failed)))
    return failed


def _run_cuda(env, sections, out, quick, plot, log, network):
    rows = gpu.bench_kernels_cuda(unet_layers(**network), quick, log)
    peak_name, peaks = roofline.peaks_for(env["device_name"])
    roofline.add_roofline(rows, peaks)
    sections["peaks"] = dict(matched=peak_name, **(peaks or {}),
                             note="datasheet numbers (dense), assumptions; None: GPU not in the table, no roofline")
    sections["kernels"] = rows
    assumption = (f"Roofline peaks assumed for {peak_name}: FP32 {peaks['fp32'] / 1e12:.1f} TFLOP/s, TF32 "
                  f"{peaks['tf32'] / 1e12:.1f} TFLOP/s, {peaks['bandwidth'] / 1e12:.2f} TB/s (datasheet)."
                  if peaks else "This GPU is not in minunet.bench.PEAKS: no roofline.")
    sections["markdown"] += [
        ("Totals over the U-Net's conv layers", tables.totals_table(rows)),
        ("Per op and version, summed over the U-Net's layers", tables.op_totals_table(rows)),
        ("Per kernel (each checked against the float64 reference first; median of CUDA-event timings after "
         "warm-up, L2 flushed before each)", assumption + "\n\n" + tables.kernel_table(rows))]
    # Written now and again at the end: if the training step dies or runs out of time, the kernels' are kept.
    _mismatches_first(sections)
    log("kernel results (training step to follow): " + ", ".join(map(str, report.write_report(out, env, sections))))
    log(f"fastest exact version per op (for DEFAULT_VERSIONS): {tables.fastest_exact_versions(rows)}")
    sections["training"] = gpu.bench_training_cuda(quick, log, network)
    what = ("paper's U-Net" if network == gpu.PAPER_UNET else
            f"U-Net depth {network['depth']}, {network['base']} channels")
    sections["markdown"].insert(0, (f"Training step ({what}, {network['tile']}x{network['tile']}, batch "
                                    f"{network['batch']}, float32, SGD)",
                                    tables.training_table(sections["training"])))
    return (rows, peaks, f"minunet vs PyTorch on {env['device_name']}") if plot and peaks else None


def _run_cpu(device, env, sections, quick, plot, log, n_threads, default_runs):
    chart = None
    if device == "numpy":
        from ..memory import keep_freed_memory
        keep_freed_memory()  # as python -m minunet.train does: PyTorch's step runs under it too
        sections["training"] = cpu.bench_training_cpu(quick, log)
        sections["training"]["threads"] = n_threads
        sections["markdown"].append((f"Training step on the CPU (small U-Net {cpu.SMALL_UNET}, float32, SGD), "
                                     f"{n_threads} BLAS / PyTorch threads", tables.training_table(sections["training"])))
        sections["against_torch"] = cpu.bench_against_torch(quick, log)
        sections["markdown"] += [
            (f"Against PyTorch CPU at 1 thread and at every core ({env['device_name']})",
             "Training steps: median of 9 steps, numpy and PyTorch taking turns 3 steps at a time; conv3x3: each "
             "layer's median of 15 calls (the same turns), checked against the float64 reference first, times the "
             "layers of its shape. Wall-clock time, and the process's CPU time "
             "(all its threads), which does not count the time spent waiting for a core that other processes "
             "hold: with a load above the core count, compare the CPU times at 1 thread.\n\n"
             + tables.against_torch_table(sections["against_torch"])),
            ("The numpy device's conv3x3 algorithm per layer and direction (chosen by measurement on first use)",
             tables.choices_table(sections["against_torch"]["choices"]))]
        sections["markdown"] += _cpu_thread_sections(sections, quick, default_runs, log)
        peaks = roofline.measure_cpu_peaks(quick)
        log(f"CPU roofline, measured: {peaks['fp32'] / 1e9:.1f} GFLOP/s (sgemm), "
            f"{peaks['bandwidth'] / 1e9:.1f} GB/s (copy)")
        rows = roofline.add_roofline(cpu.bench_kernels_cpu(unet_layers(**cpu.SMALL_UNET), quick, log), peaks)
        sections["peaks"] = dict(peaks, note="measured in this run: a large float32 matrix product and a "
                                             "large array copy (bytes read + written)")
        sections["kernels"] = rows
        floor = (f"Roofline measured in this run: {peaks['fp32'] / 1e9:.1f} GFLOP/s (a large float32 matrix "
                 f"product), {peaks['bandwidth'] / 1e9:.1f} GB/s (a large array copy, read + write).")
        sections["markdown"] += [
            ("The numpy device per op, summed over the small U-Net's layers", floor + "\n\n" + tables.cpu_totals_table(rows)),
            ("Per kernel on the CPU (each checked against the float64 reference first; median wall-clock time "
             "after warm-up)", tables.kernel_table(rows))]
        if plot:
            chart = (rows, peaks, f"minunet numpy vs PyTorch CPU on {env['device_name']}")
    elif plot:
        log("--plot: no roofline chart for the simulator (its speed says nothing about a GPU's)")
    sections["sim"] = sim_speed.bench_sim(quick, log)
    sections["markdown"].append((f"The sim device on a tiny layer {sim_speed.SIM_LAYER} (float32)",
                                 "No roofline for the simulator.\n\n" + tables.kernel_table(sections["sim"])))
    return chart


def _cpu_thread_sections(sections, quick, default_runs, log):
    """The training step at each thread count, idle and busy; with default_runs, the whole default run too."""
    sections["step_by_threads"] = blas_threads.step_by_threads(cpu.SMALL_UNET, quick, log)
    markdown = [("Training step by thread count, on the machine as it is and with one CPU-bound process added",
                 "Median of alternating rounds. The load averages count every process on the machine: with "
                 "none added and a load near 0 the machine was idle; above the core count it was not.\n\n"
                 + blas_threads.step_table(sections["step_by_threads"]))]
    if default_runs:
        sections["default_runs"] = blas_threads.default_runs(blas_threads.thread_counts(), log)
        markdown.append(("The default `python -m minunet.train --device numpy`, end to end (load averages as above)",
                         blas_threads.default_runs_table(sections["default_runs"])))
    return markdown


def _unet_option(text):
    """'tile=44,depth=2' -> {'tile': 44, 'depth': 2}; argparse names a bad value."""
    try:
        pairs = dict(item.split("=") for item in text.split(","))
        unet = {k: int(v) for k, v in pairs.items()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected tile=T,batch=B,depth=D,base=C (any of them), "
                                         f"got {text!r}") from None
    unknown = set(unet) - set(gpu.PAPER_UNET)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {sorted(unknown)}; the numbers are {', '.join(gpu.PAPER_UNET)}")
    return unet


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m minunet.bench",
        description="Benchmarks: every convolution kernel version on the U-Net's own layers, and one training step "
                    "end to end (minunet/bench/__init__.py says how).",
        epilog="With OP DIRECTION, one kernel, as llm.c's dev/cuda programs: the chosen --version (default: every "
               "version) and PyTorch where installed, checked against the float64 reference on every layer of OP, "
               "then timed (ms, GFLOP/s, % of the roofline floor); a failed check is never timed (exit 1). Layers: "
               f"the paper's U-Net on cuda and numpy; on sim {one_kernel.LAYER_SETS['sim'][0]}, as the paper's "
               "layers would take the simulator hours. E.g. python -m minunet.bench conv3x3 forward "
               "--version 3 --device sim --layer down1.conv1")
    parser.add_argument("op", nargs="?", help=f"one kernel: {', '.join(CONV_OPS)}")
    parser.add_argument("direction", nargs="?", help=f"with OP: {', '.join(DIRECTIONS)}")
    parser.add_argument("--version", help="with OP: this version only (default: every version)")
    parser.add_argument("--layer", help="with OP: this layer only (down0.conv1, up3.upconv, head, ...)")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "numpy", "sim"])
    parser.add_argument("--out", help="folder for results-<device>-<date>.md/.json (default: benchmarks/results)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (the CPU run takes well under a minute)")
    parser.add_argument("--plot", action="store_true", help="also write a roofline chart")
    parser.add_argument("--default-runs", action="store_true",
                        help="numpy: also time the whole default python -m minunet.train at each thread count, idle "
                             "and beside a competing process (minutes)")
    parser.add_argument("--unet", type=_unet_option, metavar="tile=T,batch=B,depth=D,base=C",
                        help="cuda: the network whose layers and training step are measured, any of its four "
                             "numbers (default: the paper's, tile=572,batch=1,depth=5,base=64)")
    from ..threads import add_threads_option
    add_threads_option(parser)
    args = parser.parse_args(argv)
    from .. import cli
    cli.restore_ctrl_c()
    try:
        if args.op is not None:
            return _one_kernel(args)
        if args.version is not None or args.layer is not None:
            raise ValueError("--version and --layer go with OP DIRECTION (python -m minunet.bench conv3x3 forward "
                             "--version 3)")
        out = args.out or "benchmarks/results"
        cli.check_output_folder(out, "--out")  # before the minutes of measuring, not after
        md, _, failed = run(cli.check_device(args.device), out, args.quick, args.plot, n_threads=args.threads,
                            default_runs=args.default_runs, unet=args.unet)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {cli.describe_os_error(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: the results in {args.out} are those written before, if any", file=sys.stderr)
        return 130
    if failed:
        print(f"FAILED: {len(failed)} implementation(s) failed their check against the float64 reference and "
              f"were not timed: {', '.join(sorted({r['op'] + '_' + r['direction'] + ' ' + r['impl'] for r in failed}))} "
              f"(the first section of {md} names the worst element of each)", file=sys.stderr)
        return 1
    return 0


def _one_kernel(args):
    """python -m minunet.bench OP DIRECTION ...: the options checked, then one_kernel.run_one."""
    from .. import cli
    unused = [name for name, given in (("--out", args.out), ("--plot", args.plot),
                                       ("--default-runs", args.default_runs), ("--unet", args.unet)) if given]
    if unused:
        raise ValueError(f"{', '.join(unused)}: for the whole bench; one kernel (OP DIRECTION) prints its results")
    if args.direction is None:
        raise ValueError(f"{args.op}: give a direction after the op: one of {', '.join(DIRECTIONS)}")
    device = cli.check_device(args.device)  # cuda without a GPU: one line, as for the whole bench
    return one_kernel.run_one(args.op, args.direction, args.version, args.layer, device, args.quick, args.threads)
