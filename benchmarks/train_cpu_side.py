"""The CPU side of gpu_session.sh's training part, measured without a GPU, to size its step count.

    python benchmarks/train_cpu_side.py [--steps 50]

The GPU run's defaults (the paper's network, 572x572 tiles, batch 1) on the numpy device, without its
training: the setup (synthetic data, weight maps, the network's weights), the data path of one step
(Trainer.sample_batch: a random tile, elastically deformed; it runs on the CPU before every GPU step and the
step waits for it), and one checkpoint of the network and its momentum.
"""
import argparse
import statistics
import tempfile
import time

from minunet.memory import keep_freed_memory
from minunet.train import Trainer, build_parser, resolve_config


def measure(steps):
    keep_freed_memory()  # as python -m minunet.train does
    args = build_parser().parse_args(["--device", "numpy", "--depth", "5", "--base-channels", "64", "--tile", "572",
                                      "--batch-size", "1", "--lr", "0.002", "--momentum", "0.99"])
    config, _ = resolve_config(args)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        trainer = Trainer(config, run_dir)
        setup = time.perf_counter() - start
        times, cpu_times = [], []  # CPU time: what an unloaded core would take (this machine is shared)
        for _ in range(steps):
            start, cpu_start = time.perf_counter(), time.process_time()
            trainer.sample_batch()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        start = time.perf_counter()
        trainer.save()
        save = time.perf_counter() - start
    return dict(setup_s=setup, data_path_median_s=statistics.median(times), data_path_max_s=max(times),
                data_path_cpu_median_s=statistics.median(cpu_times), checkpoint_s=save, steps=steps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="data-path samples to time")
    r = measure(parser.parse_args(argv).steps)
    print(f"setup {r['setup_s']:.1f} s; data path per step: median {r['data_path_median_s'] * 1e3:.0f} ms "
          f"({r['data_path_cpu_median_s'] * 1e3:.0f} ms of CPU time), max {r['data_path_max_s'] * 1e3:.0f} ms "
          f"over {r['steps']}; one checkpoint {r['checkpoint_s']:.1f} s")


if __name__ == "__main__":
    main()
