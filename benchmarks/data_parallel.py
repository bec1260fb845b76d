"""Data parallelism on this machine: the training step of 2 processes x batch 1 against 1 process x batch 2
on the numpy device (the default CPU network: depth 3, 16 base channels, 124 px tiles), and the all-reduce's
share of the step. tutorials/11-data-parallel.md quotes its output.

    python benchmarks/data_parallel.py [--rounds 3] [--steps 20]

Three configurations run in turn, `rounds` times each, so a change in the machine's load hits all; the load
(uptime) is printed before and after. Each run is its own processes: 1 process x batch 2 with 1 BLAS thread
(one core) and with 2 (both cores), and 2 processes x batch 1 with 1 BLAS thread each (both cores). Per run:
the median step time after 2 warm-up steps; for the 2 processes, the median time inside the all-reduce call
(waiting for the slower process included) and the all-reduce alone (the same buffer after a barrier, 20
times: the cost of moving it).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

WARMUP = 2
CONFIG = ["--device", "numpy", "--quiet"]  # the CPU defaults of python -m minunet.train


def worker(batch_size, steps):
    """Run inside each process: time `steps` training steps; process 0 prints one JSON line."""
    from minunet import distributed
    from minunet.train import Trainer, build_parser, resolve_config
    config, _ = resolve_config(build_parser().parse_args(CONFIG + ["--batch-size", str(batch_size),
                                                                   "--steps", str(steps)]))
    comm = distributed.world("numpy")
    trainer = Trainer(config, "unused", comm=comm)
    in_allreduce = []
    if comm.size > 1:
        allreduce = comm._allreduce

        def timed(arrays):
            start = time.perf_counter()
            allreduce(arrays)
            in_allreduce.append(time.perf_counter() - start)
        comm._allreduce = timed
    step_times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.train_step()
        step_times.append(time.perf_counter() - start)
    result = dict(processes=comm.size, batch_size=batch_size, step_s=float(np.median(step_times[WARMUP:])),
                  parameters=trainer.model.n_parameters())
    if comm.size > 1:
        buckets = [comm.flat.buffer[b] for b in comm.flat.buckets]
        alone = []
        for _ in range(20):
            comm.comm.Barrier()
            start = time.perf_counter()
            allreduce(buckets)
            alone.append(time.perf_counter() - start)
        result.update(in_allreduce_s=float(np.median(in_allreduce[WARMUP:])), allreduce_alone_s=float(np.median(alone)),
                      buffer_bytes=int(comm.flat.buffer.nbytes))
    if comm.rank == 0:
        print(json.dumps(result), flush=True)


RUNS = [(1, 1), (2, 1), (1, 2)]  # (processes, BLAS threads per process); the global batch is always 2


def launch(processes, threads, steps):
    threads = str(threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    command = [sys.executable, __file__, "--worker", "--batch-size", str(2 // processes), "--steps", str(steps)]
    if processes > 1:
        from minunet.distributed import mpiexec
        command = [mpiexec(), "-n", str(processes)] + command
    out = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env)
    if out.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.batch_size, args.steps)
    print(f"load before: {uptime()}")
    runs = {run: [] for run in RUNS}
    for _ in range(args.rounds):
        for processes, threads in RUNS:
            runs[processes, threads].append(launch(processes, threads, args.steps))
    print(f"load after:  {uptime()}")
    print(f"step time, median over {args.steps - WARMUP} steps, per run ({args.rounds} runs each, in turn):")
    for (processes, threads), results in runs.items():
        print(f"  {processes} process(es) x batch {2 // processes}, {threads} BLAS thread(s) each: "
              + ", ".join(f"{r['step_s'] * 1e3:.0f}" for r in results) + " ms")
    two = runs[2, 1]
    print("  2 processes: inside the all-reduce " + ", ".join(
        f"{r['in_allreduce_s'] * 1e3:.1f} ms ({r['in_allreduce_s'] / r['step_s']:.0%})" for r in two))
    print(f"  the all-reduce alone ({two[0]['buffer_bytes'] / 1e6:.2f} MB, {two[0]['parameters']:,} parameters): "
          + ", ".join(f"{r['allreduce_alone_s'] * 1e6:.0f} us" for r in two))

if __name__ == "__main__":
    main()
