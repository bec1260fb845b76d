"""python -m minunet.experiments isbi: the U-Net paper's ISBI 2012 experiment, at a scale a machine can run.

    python -m minunet.experiments isbi --data-dir D [--preset cpu|paper] [--twin] [--seeds 1 2]
    python -m minunet.experiments combine A.json B.json    # runs made apart (one core each), one report

Trains on slices 0-24 of the ISBI 2012 training volume, scores slices 25-29 with the challenge's own scores
(minunet.metrics.isbi2012_challenge: warping, Rand and pixel error, as the paper's Table 1), with and without
test-time augmentation, and writes <out-dir>/isbi-<device>-<date>.md, .json (every number, the curves) and
.png (loss and validation curves). With --twin the same recipe runs in PyTorch (minunet/torch_twin.py) beside
it: the same initial weights, tiles, augmentation and learning rates, scored the same way; only the dropout
masks differ (each framework draws its own).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import threads

PRESETS = {
    # 2 CPU cores, within 60 minutes a run (measured on issue #21: 0.45 s a step on one thread)
    "cpu": dict(depth=4, base_channels=16, tile=252, batch_size=2, steps=6000, lr=0.01, momentum=0.9,
                lr_decay="poly", val_every=500),
    # the paper's network, tiles, momentum and weight map (w0 10, sigma 5: train's defaults); for a GPU
    "paper": dict(depth=5, base_channels=64, tile=572, batch_size=1, steps=4000, lr=0.002, momentum=0.99,
                  lr_decay="none", val_every=500),
}
TRAIN_SLICES, TEST_SLICES = range(0, 25), range(25, 30)


# ---------------------------------------------------------------------------------------------------
# data and configuration


def split_isbi(data_dir, work_dir):
    """Write slices 0-24 and 25-29 of the ISBI 2012 training data as two folders of the isbi2012 layout
    (image/ and label/ PNGs, 8-bit as the challenge's) and return them."""
    from PIL import Image

    from .data.loaders import load_isbi2012
    data = load_isbi2012(data_dir, instances=False)
    if len(data.images) < 30:
        raise ValueError(f"{data_dir}: {len(data.images)} slices; the ISBI 2012 training volume has 30 (the "
                         f"experiment trains on 0-24 and scores 25-29)")
    folders = []
    for name, indices in (("train", TRAIN_SLICES), ("test", TEST_SLICES)):
        folder = Path(work_dir) / "slices" / name
        for sub in ("image", "label"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in indices:
            image = np.round(data.images[i] * 255).astype(np.uint8)
            Image.fromarray(image).save(folder / "image" / f"{i}.png")
            Image.fromarray((data.class_labels(i) * 255).astype(np.uint8)).save(folder / "label" / f"{i}.png")
        folders.append(folder)
    return folders


def make_config(args, seed, train_dir, test_dir):
    """A minunet.train configuration: the preset, the overrides given, slices 25-29 as the validation set."""
    from .train import build_parser, resolve_config
    preset = dict(PRESETS[args.preset])
    for key in ("steps", "depth", "base_channels", "tile", "batch_size", "lr", "dropout", "val_every"):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    argv = ["--data", "isbi2012", "--data-dir", str(train_dir), "--val-data-dir", str(test_dir),
            "--device", args.device, "--seed", str(seed), "--val-every", str(preset.pop("val_every"))]
    for key, value in preset.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    config, _ = resolve_config(build_parser().parse_args(argv))
    return config


# ---------------------------------------------------------------------------------------------------
# training: minunet's Trainer step, or the same step in PyTorch


def challenge_scores(model, images, labels, tta=False, warping=True):
    """The challenge's scores of the model's predictions of images (a stack), with the seconds they took."""
    from .evaluate import challenge_summary
    from .predict import predict_probabilities
    model.eval()
    start = time.perf_counter()
    cells = [predict_probabilities(model, image, tta=tta)[1] for image in images]
    predicted = time.perf_counter() - start
    scores = challenge_summary(cells, [label == 1 for label in labels], warping=warping)
    return dict(scores, predict_seconds=round(predicted, 2), score_seconds=round(time.perf_counter() - start
                                                                                 - predicted, 2))


def _validation(model, data):
    scores = challenge_scores(model, data.val_images, data.val_labels, warping=False)
    return {"val_rand_error": scores["rand_error"], "val_pixel_error": scores["pixel_error"]}


def train_minunet(config, run_dir, progress):
    """Train with minunet.train's Trainer; returns (trainer, log records, seconds of training steps)."""
    from .train import Trainer
    trainer = Trainer(config, run_dir)
    return trainer, *_loop(trainer, trainer.train_step, lambda: trainer.model, progress)


def train_twin(config, run_dir, progress):
    """The same run in PyTorch: a second Trainer gives the same initial weights and the same stream of tiles;
    TorchUNet (the same network), PyTorch's SGD (minunet's SGD is its formula) and the same loss and learning
    rates. Validation copies the weights back into the minunet model and scores it as minunet's."""
    import torch

    from .torch_twin import torch_name, twin_of
    from .train import Trainer
    trainer = Trainer(config, run_dir)
    twin = twin_of(trainer.model).train()
    optimizer = torch.optim.SGD(twin.parameters(), lr=config["lr"], momentum=config["momentum"],
                                weight_decay=config["weight_decay"])

    def step():
        x, labels, weights = (torch.from_numpy(a) for a in trainer.sample_batch())
        for group in optimizer.param_groups:
            group["lr"] = trainer.learning_rate()
        log_p = torch.log_softmax(twin(x), dim=1)
        loss = (weights * -log_p.gather(1, labels.long()[:, None])[:, 0]).mean()  # as F.weighted_softmax_cross_entropy
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        trainer.step += 1
        return loss.item()

    def weights_back():
        state = twin.state_dict()
        trainer.model.load_state_dict({name: state[torch_name(name)].numpy().copy()
                                       for name in trainer.model.state_dict()})
        return trainer.model
    return trainer, *_loop(trainer, step, weights_back, progress)


def _loop(trainer, step, current_model, progress):
    config, log, seconds = trainer.config, [], 0.0
    while trainer.step < config["steps"]:
        start = time.perf_counter()
        try:
            loss = step()
        except KeyboardInterrupt:  # keep what was trained: it is scored and written like a finished run
            progress(f"interrupted at step {trainer.step}: scoring the network as it is (Ctrl-C again to quit)")
            break
        seconds += time.perf_counter() - start
        if not np.isfinite(loss):
            raise RuntimeError(f"the loss became {loss} at step {trainer.step + 1}; lower the learning rate")
        log.append({"step": trainer.step, "loss": loss})
        if trainer.step % config["val_every"] == 0 or trainer.step == config["steps"]:
            log.append({"step": trainer.step, **_validation(current_model(), trainer.data)})
            trainer.model.train()
            progress(f"step {trainer.step}: loss {loss:.4f}, validation (slices 25-29) challenge Rand error "
                     f"{log[-1]['val_rand_error']:.4f}, pixel error {log[-1]['val_pixel_error']:.4f}, "
                     f"{seconds / trainer.step:.2f} s a step")
    current_model()  # after a Ctrl-C, the twin's weights too are those scored and saved
    return log, seconds


# ---------------------------------------------------------------------------------------------------
# the report


SCORES = (("warping_error", "warping", 6), ("rand_error", "Rand", 4), ("pixel_error", "pixel", 4),
          ("variation_of_information", "VI", 3))


def _score_cells(scores):
    return [f"{scores[key]:.{digits}f} ({scores[key + '_threshold']:.1f})" for key, _, digits in SCORES]


def write_results(out_dir, record):
    """isbi-<device>-<date>[-k].md, .json and .png in out_dir (never over an earlier run's); returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"isbi-{record['environment']['device']}-{record['environment']['date'][:10]}"
    k = 1
    while any((out_dir / f"{stem}{s}").exists() for s in (".md", ".json", ".png")):
        k += 1
        stem = f"isbi-{record['environment']['device']}-{record['environment']['date'][:10]}-{k}"
    paths = [out_dir / f"{stem}{s}" for s in (".md", ".json", ".png")]
    paths[0].write_text(format_markdown(record, paths[2].name))
    paths[1].write_text(json.dumps(record, indent=1) + "\n")
    plot_curves(record, paths[2])
    return paths


def format_markdown(record, png_name):
    env, c = record["environment"], record["config"]
    commands = _commands(record)
    lines = [f"# ISBI 2012: trained on slices 0-24, scored on 25-29 ({env['device_name']}, {env['date']})", "",
             ("Command: " if len(commands) == 1 else "Commands, run at the same time and combined by "
              "`python -m minunet.experiments combine`: ") + ", ".join(f"`{c}`" for c in commands), "",
             f"Preset `{record['preset']}`: U-Net depth {c['depth']}, {c['base_channels']} base channels, "
             f"{c['padding']} convolutions, tiles {c['tile']} px, batch {c['batch_size']}, {c['steps']} steps, SGD "
             f"lr {c['lr']} (decay {c['lr_decay']}), momentum {c['momentum']}, weight decay {c['weight_decay']}, "
             f"dropout {c['dropout']}, weight map w0 {c['w0']} sigma {c['sigma']}, augmentation "
             f"{'off' if c['no_augment'] else 'on'}, {c['dtype']}, device {c['device']}, "
             f"{record['threads']} BLAS/torch thread(s).", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v), "",
             "Scores: the ISBI 2012 challenge's (minunet.metrics.isbi2012_challenge, as Fiji's Trainable "
             "Segmentation computes them: one threshold for the 5 slices, counts pooled), each with the threshold "
             "on the cell probability it was reached at. The paper's are on the challenge's 30 hidden test "
             "slices, after training on all 30 training slices.", "",
             "| run | seed | steps | training | s a step | load at start, end | " +
             " | ".join(title for _, title, _ in SCORES) + " | with TTA: " +
             " | ".join(title for _, title, _ in SCORES[:3]) + " |",
             "|" + "---|" * (6 + len(SCORES) + 3)]
    for run in record["runs"]:
        plain, tta = run["scores"], run.get("scores_tta")
        steps = f"{run['steps']} (interrupted)" if run.get("interrupted") else run["steps"]
        lines.append(f"| {run['name']} | {run['seed']} | {steps} | {run['train_seconds']:.0f} s | "
                     f"{run['train_seconds'] / max(run['steps'], 1):.3f} | {run['load_start']}; {run['load_end']} | "
                     + " | ".join(_score_cells(plain)) + " | "
                     + (" | ".join(_score_cells(tta)[:3]) if tta else "- | - | -") + " |")
    paper = record["unet_paper_table1"]
    lines += [f"| U-Net paper, Table 1 (challenge test set) | | | | | | {paper['warping_error']} | "
              f"{paper['rand_error']} | {paper['pixel_error']} | | | | |", "",
              f"Load averages (1, 5, 15 min) at each run's start and end: on {os.cpu_count()} cores, above "
              f"{os.cpu_count()} means other processes competed. Curves: [{png_name}]({png_name}); every number and "
              "the per-threshold curves: the .json beside this file.", ""]
    return "\n".join(lines + seed_summary(record))


def seed_summary(record):
    """Lines of mean and range over the seeds of each framework's scores: the run-to-run noise the issue asks
    minunet to be within of its PyTorch twin. Empty unless some framework ran with two seeds or more."""
    by_name = {}
    for run in record["runs"]:
        by_name.setdefault(run["name"], []).append(run)
    if max(len(runs) for runs in by_name.values()) < 2:
        return []
    lines = ["Over the seeds: mean (lowest - highest).", "",
             "| run | seeds | " + " | ".join(title for _, title, _ in SCORES[:3]) + " | with TTA: " +
             " | ".join(title for _, title, _ in SCORES[:3]) + " |", "|" + "---|" * 8]
    for name, runs in by_name.items():
        cells = []
        for which in ("scores", "scores_tta"):
            for key, _, digits in SCORES[:3]:
                values = [run[which][key] for run in runs if run.get(which)]
                cells.append(f"{np.mean(values):.{digits}f} ({min(values):.{digits}f} - {max(values):.{digits}f})"
                             if values else "-")
        lines.append(f"| {name} | {', '.join(str(run['seed']) for run in runs)} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot_curves(record, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    for run in record["runs"]:
        label = f"{run['name']}, seed {run['seed']}"
        steps = [r["step"] for r in run["log"] if "loss" in r]
        losses = [r["loss"] for r in run["log"] if "loss" in r]
        k = max(1, min(50, len(losses) // 10))
        ax[0].plot(steps[k - 1:], np.convolve(losses, np.ones(k) / k, mode="valid"), label=f"{label} (mean of {k})")
        val = [r for r in run["log"] if "val_rand_error" in r]
        line, = ax[1].plot([r["step"] for r in val], [r["val_rand_error"] for r in val], "o-", label=f"{label}: Rand")
        ax[1].plot([r["step"] for r in val], [r["val_pixel_error"] for r in val], "s--", color=line.get_color(),
                   label=f"{label}: pixel")
    ax[0].set(xlabel="step", ylabel="weighted cross-entropy", yscale="log", title="training loss")
    ax[1].set(xlabel="step", ylabel="error", yscale="log", title="slices 25-29: the challenge's Rand and pixel error")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------
# command line


def run_isbi(args, progress=print):
    """The experiment; returns the record written and the paths of the files. Ctrl-C while a network trains
    scores it as it is; Ctrl-C while one is scored writes the runs scored before it."""
    if args.twin:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ValueError("--twin needs PyTorch (pip install torch); the minunet run alone needs nothing more") \
                from None
    cpu_threads = threads.resolve_threads(args.threads)
    work = Path(args.work_dir)
    train_dir, test_dir = split_isbi(args.data_dir, work)
    runs, kinds = [], [("minunet", train_minunet)] + ([("PyTorch twin", train_twin)] if args.twin else [])
    try:
        for seed in args.seeds:
            config = make_config(args, seed, train_dir, test_dir)
            for name, train in kinds:
                runs.append(_one_run(name, train, config, work, cpu_threads, not args.no_tta, progress))
    except KeyboardInterrupt:
        if not runs:
            raise
        progress(f"interrupted: writing the {len(runs)} run(s) scored before")
    from .metrics import UNET_PAPER_TABLE1
    record = dict(command="python -m minunet.experiments " + " ".join(args.argv), preset=args.preset,
                  config=config, threads=cpu_threads, environment=machine(config["device"]),
                  unet_paper_table1=UNET_PAPER_TABLE1, runs=runs)
    return record, write_results(args.out_dir, record)


def _one_run(name, train, config, work, cpu_threads, tta, progress):
    seed = config["seed"]
    progress(f"{name}, seed {seed}: {config['steps']} steps, device {config['device']}, {cpu_threads} thread(s)")
    load_start = _load()
    with threads.cpu_threads(cpu_threads):  # the numpy device's threads (BLAS one inside each)
        if name != "minunet":
            import torch
            torch.set_num_threads(cpu_threads)
        trainer, log, seconds = train(config, work / f"{name.split()[-1]}-seed{seed}", progress)
        trainer.run_dir.mkdir(parents=True, exist_ok=True)
        trainer.save()  # the trained weights, for python -m minunet.predict
        data = trainer.data
        run = dict(name=name, seed=seed, steps=trainer.step, interrupted=trainer.step < config["steps"],
                   train_seconds=round(seconds, 1), load_start=load_start, load_end=_load(), log=log,
                   scores=challenge_scores(trainer.model, data.val_images, data.val_labels))
        if tta:
            run["scores_tta"] = challenge_scores(trainer.model, data.val_images, data.val_labels, tta=True)
    progress(f"{name}, seed {seed}: " + ", ".join(f"{title} {value}" for title, value in
                                                 zip((t for _, t, _ in SCORES), _score_cells(run["scores"]))))
    return run


def machine(device):
    """The device, its name, the date and the versions, as the bench reports them (package versions read
    from their metadata: importing torch and CuPy only to ask would cost seconds)."""
    import datetime
    import platform
    from importlib import metadata

    from .bench.report import _cpu_name, environment
    if device == "cuda":
        return environment(device)
    versions = {"python": platform.python_version()}
    for name in ("minunet", "numpy", "scipy", "torch"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return dict(device=device, device_name=_cpu_name(), date=datetime.datetime.now().isoformat(timespec="seconds"),
                versions=versions, platform=platform.platform())


def _load():
    return " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


def _commands(record):
    """The command of one run, or the commands of runs combined (a list)."""
    return record["command"] if isinstance(record["command"], list) else [record["command"]]


def combine(paths):
    """One record of the runs in several records of one experiment (e.g. seeds run at the same time, one core
    each): the same preset and configuration but for the seed, the same device and versions."""
    records = [json.loads(Path(p).read_text()) for p in paths]
    for path, record in zip(paths, records):
        if not (isinstance(record, dict) and {"preset", "config", "threads", "environment", "runs"} <= set(record)):
            raise ValueError(f"{path}: not a results file of python -m minunet.experiments isbi")
    if len(records) < 2:
        raise ValueError("combine needs two or more results files (.json)")
    first = records[0]

    def recipe(record):
        return {k: v for k, v in record["config"].items() if k not in ("seed", "data_dir", "val_data_dir")}
    for path, record in zip(paths[1:], records[1:]):
        for what, value in (("preset", record["preset"] == first["preset"]),
                            ("configuration", recipe(record) == recipe(first)),
                            ("threads", record["threads"] == first["threads"]),
                            ("device and versions", all(record["environment"][k] == first["environment"][k]
                                                        for k in ("device", "device_name", "versions")))):
            if not value:
                raise ValueError(f"{path} and {paths[0]} differ in their {what}: not runs of one experiment")
    runs = [run for record in records for run in record["runs"]]
    seen = [(run["name"], run["seed"]) for run in runs]
    if len(set(seen)) < len(seen):
        raise ValueError(f"the same run twice: {sorted({s for s in seen if seen.count(s) > 1})}")
    commands = [c for record in records for c in _commands(record)]
    return dict(first, command=commands, runs=sorted(runs, key=lambda run: (run["name"] != "minunet", run["seed"])))


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m minunet.experiments", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="experiment", required=True)
    c = sub.add_parser("combine", help="one report of runs made apart (their .json files)")
    c.add_argument("records", nargs="+", help="the .json files the isbi experiment wrote")
    c.add_argument("--out-dir", default="benchmarks/results", help="where the .md, .json and .png go")
    p = sub.add_parser("isbi", help="train on ISBI 2012 slices 0-24, score 25-29 with the challenge's scores",
                       description=__doc__.split("\n\n", 2)[2])
    p.add_argument("--data-dir", required=True, help="the ISBI 2012 training data: train-volume.tif and "
                                                     "train-labels.tif, or image/ and label/ with 0.png ... 29.png")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                   help="cpu: depth 4, 16 channels, 252 px tiles, batch 2, 6000 steps (within 60 minutes a run on 2 "
                        "cores); paper: depth 5, 64 channels, 572 px tiles, momentum 0.99 (for a GPU)")
    p.add_argument("--twin", action="store_true", help="also run the same recipe in PyTorch (needs torch)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1], help="one run (and twin) per seed")
    p.add_argument("--device", default="auto", choices=["auto", "numpy", "cuda"])
    p.add_argument("--no-tta", action="store_true", help="skip the scores with test-time augmentation (8x predict)")
    for key, kind in (("steps", int), ("depth", int), ("base_channels", int), ("tile", int), ("batch_size", int),
                      ("lr", float), ("dropout", float), ("val_every", int)):
        p.add_argument(f"--{key.replace('_', '-')}", type=kind, help="instead of the preset's")
    p.add_argument("--out-dir", default="benchmarks/results", help="where the .md, .json and .png go")
    p.add_argument("--work-dir", default="runs/isbi-experiment", help="the split slices and the runs' folders")
    threads.add_threads_option(p)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        if args.experiment == "combine":
            record = combine(args.records)
            paths = write_results(args.out_dir, record)
        else:
            record, paths = run_isbi(args, progress=lambda line: print(line, flush=True))
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"minunet.experiments: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted before any run was scored; the checkpoints are in {args.work_dir}", file=sys.stderr)
        return 130
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
