"""Train a U-Net with the paper's recipe: `python -m minunet.train`.

Recipe (Ronneberger et al. 2015, Sec. 3): random tiles with mirrored context, elastic deformations (plus
flips, rotations, gray values), the pixel-wise weighted softmax cross-entropy whose weight map separates
touching cells (w0 = 10, sigma = 5), SGD with momentum 0.99. On a GPU it trains the paper's network on
572x572 tiles, batch 1; without one, a smaller network on the numpy device that finishes in minutes.

The run folder holds config.json, metrics.jsonl (one JSON object per step / validation), checkpoint.npz
(written atomically), loss.png and panel.png. `--resume RUN_DIR` continues exactly where it stopped: the
same losses as an uninterrupted run. Ctrl-C saves a checkpoint and exits; a non-finite loss stops with a
message and leaves the last good checkpoint untouched.
Data parallel: `mpiexec -n K python -m minunet.train --batch-size B` trains on a global batch of K*B tiles,
the same run as one process with batch K*B (minunet/distributed.py); only process 0 writes the run folder.
"""
import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import checkpoint, distributed, threads
from . import functional as F
from .backends import resolve_device
from .memory import keep_freed_memory
from .data.tiles import random_augmented_tile, random_tile
from .data.training import DATA_DIR_LAYOUT, prepare_training_data
from .metrics import foreground_iou
from .optim import SGD
from .plots import plot_metrics, plot_panel
from .predict import predict_probabilities
from .resume import NOT_CONFIG, option, resume_config
from .tensor import Tensor
from .unet import UNet, check_input_size

# (what, why): printed at start so the user knows what was chosen for them.
GPU_DEFAULTS = dict(depth=5, base_channels=64, tile=572, batch_size=1, steps=4000, lr=0.002, momentum=0.99,
                    lr_decay="none", why="a GPU: the paper's network, 572x572 tiles, batch 1, momentum 0.99")
# Momentum 0.99 averages the gradient over ~100 steps: right for the paper's long runs with batch 1, too slow
# to react in a run of a few hundred steps (measured: IoU 0.886 after 500 steps, against 0.96 after 300 with
# momentum 0.9, lr 0.01; tutorials/09 shows both). At a constant learning rate the short run ends wherever
# the noise of its last steps left it (validation IoU between 0.80 and 0.88 from step 300 to 1000); the
# "poly" decay of the learning rate to 0 at the last step settles it.
CPU_DEFAULTS = dict(depth=3, base_channels=16, tile=124, batch_size=2, steps=400, lr=0.01, momentum=0.9,
                    lr_decay="poly",
                    why="the CPU defaults: a smaller network (depth 3, 16 base channels), small tiles, momentum "
                        "0.9 and a decaying learning rate for a short run: minutes on a laptop")
# Said before the defaults on the sim device, which runs them too, but far more slowly than numpy.
SIM_NOTE = ("the CUDA kernels run by minunet's CPU simulator, exact but far slower than the numpy device "
            "(for checking kernels; --device numpy to train on the CPU); ")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where it is None or False (chosen by device, or a flag)."""

    def _get_help_string(self, action):
        return action.help if action.default is None or action.default is False else super()._get_help_string(action)


def _by_device(key):
    return f"(default: {GPU_DEFAULTS[key]} on a GPU, {CPU_DEFAULTS[key]} without)"


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minunet.train", description=__doc__.split("\n\n")[0],
                                formatter_class=_HelpFormatter)
    p.add_argument("--data", default="synthetic", choices=["synthetic", "isbi2012", "folder"],
                   help="synthetic touching cells (built in), ISBI 2012, or a folder of images and masks")
    p.add_argument("--data-dir", help=f"folder of the data; isbi2012: {DATA_DIR_LAYOUT['isbi2012']} (where to get "
                                      f"it: README.md, 'ISBI 2012'); folder: {DATA_DIR_LAYOUT['folder']}")
    p.add_argument("--image-dir", help="--data folder: the folder of the images (with --mask-dir, instead of "
                                       "--data-dir)")
    p.add_argument("--mask-dir", help="--data folder: the folder of the masks, paired with the images by file name")
    p.add_argument("--n-classes", type=int, help="--data folder: number of classes (default: from the masks' values)")
    p.add_argument("--val-data-dir", help="a second folder of the --data-dir layout whose images are used for "
                                          "validation only (your own hold-out set; then --val-fraction is unused)")
    p.add_argument("--n-synthetic", type=int, default=40, help="images generated for --data synthetic")
    p.add_argument("--device", default="auto", choices=["auto", "numpy", "sim", "cuda"],
                   help="auto: cuda if CuPy finds a GPU, else numpy")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="element type")
    p.add_argument("--steps", type=int, help=f"optimizer steps {_by_device('steps')}")
    p.add_argument("--epochs", type=float, help="instead of --steps: passes over the training images")
    p.add_argument("--tile", type=int, help=f"input tile side {_by_device('tile')}")
    p.add_argument("--batch-size", type=int, help=f"tiles per step {_by_device('batch_size')}")
    p.add_argument("--depth", type=int, help=f"levels of the U-Net {_by_device('depth')}")
    p.add_argument("--base-channels", type=int, help=f"channels of the first level {_by_device('base_channels')}")
    p.add_argument("--padding", default="valid", choices=["valid", "same"],
                   help="3x3 convolutions without padding (the paper's) or zero-padded")
    p.add_argument("--dropout", type=float, default=0.5, help="dropout probability at the bottom of the U-Net")
    p.add_argument("--lr", type=float, help=f"learning rate {_by_device('lr')}")
    p.add_argument("--momentum", type=float, help=f"SGD momentum {_by_device('momentum')}")
    p.add_argument("--lr-decay", choices=["none", "poly"],
                   help=f"'poly': lr * (1 - step/steps)^0.9; 'none': constant, as the paper {_by_device('lr_decay')}")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay, added to the gradient")
    p.add_argument("--w0", type=float, default=10.0, help="border weight of the weight map")
    p.add_argument("--sigma", type=float, default=5.0, help="border width of the weight map, px")
    p.add_argument("--no-augment", action="store_true", help="no elastic deformation / flips / gray values")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the data, the tiles and augmentation")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of the images held out for validation")
    p.add_argument("--val-every", type=int, default=100, help="steps between validations")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--out", help="run folder (default: runs/<data>-<time>)")
    p.add_argument("--resume", help="a run folder (or its checkpoint.npz) to continue")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    threads.add_threads_option(p)
    return p


def resolve_config(args):
    """Fill the device-dependent defaults; say what was chosen and why."""
    device = resolve_device(args.device)
    defaults = GPU_DEFAULTS if device == "cuda" else CPU_DEFAULTS
    config = {k: v for k, v in vars(args).items() if k not in NOT_CONFIG}
    config["device"] = device
    if config["epochs"] is not None:
        if config["steps"] is not None:
            raise ValueError("give --steps or --epochs, not both")
        if not config["epochs"] > 0:
            raise ValueError(f"--epochs must be > 0, got {config['epochs']}")
    yours = []
    for key in ("depth", "base_channels", "tile", "batch_size", "steps", "lr", "momentum", "lr_decay"):
        if config[key] is not None:
            yours.append(f"--{key.replace('_', '-')} {config[key]}")
        elif not (key == "steps" and config["epochs"] is not None):
            config[key] = defaults[key]  # steps from --epochs are counted once the data is loaded (Trainer)
    check_config(config)
    why = (SIM_NOTE if device == "sim" else "") + defaults["why"]
    return config, why + (f"; yours instead: {', '.join(yours)}" if yours else "")


def check_config(config):
    """One-line errors for values out of range (a new run's and a resumed run's)."""
    try:
        check_input_size(config["tile"], config["depth"], config["padding"])
    except ValueError as e:
        raise ValueError(f"--tile {config['tile']}: {e}") from None
    for key, low in (("steps", 1), ("batch_size", 1), ("val_every", 1), ("checkpoint_every", 1)):
        if config[key] is not None and config[key] < low:
            raise ValueError(f"{option(key)} must be >= {low}, got {config[key]}")
    if not 0 < config["val_fraction"] < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {config['val_fraction']}")


class Trainer:
    def __init__(self, config, run_dir, resumed=None, comm=None):
        """resumed: (meta, model_state, optim_state) as checkpoint.load returns them, or None for a new run.
        self.config is the run's configuration with the step count resolved (config itself is not changed)."""
        self.config = c = dict(config)
        self.run_dir = Path(run_dir)
        self.comm = comm or distributed.SingleProcess()  # DATA PARALLEL: this process's share of the batch
        self.out_size = check_input_size(c["tile"], c["depth"], c["padding"])
        self.data = prepare_training_data(c["data"], c["data_dir"], n_synthetic=c["n_synthetic"],
                                          val_fraction=c["val_fraction"], seed=c["seed"],
                                          w0=c["w0"], sigma=c["sigma"], min_size=self.out_size,
                                          val_data_dir=c["val_data_dir"], image_dir=c["image_dir"],
                                          mask_dir=c["mask_dir"], n_classes=c["n_classes"])
        self.model = UNet(in_channels=self.data.in_channels, n_classes=self.data.n_classes, depth=c["depth"],
                          base_channels=c["base_channels"], padding=c["padding"], dropout=c["dropout"],
                          dtype=np.dtype(c["dtype"]), device=c["device"], seed=c["seed"])
        self.model.first_sample = self.comm.rank * c["batch_size"]  # DATA PARALLEL: dropout's place in the batch
        if c["steps"] is None:  # --epochs: passes over the training images (DATA PARALLEL: global batch)
            c["steps"] = max(1, round(c["epochs"] * len(self.data.train_images) / (c["batch_size"] * self.comm.size)))
        self.optimizer = SGD(self.model.parameters(), c["lr"], c["momentum"], c["weight_decay"])
        self.rng = np.random.default_rng([c["seed"], 1])  # tiles and augmentation, and nothing else
        self.step, self.last_prediction, self.predicted_classes = 0, None, set()
        self.interrupted, self.stop = [], False  # Ctrl-C here (run() appends), Ctrl-C in any process
        if resumed is not None:
            meta, model_state, optim_state = resumed
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optim_state)
            self.step = meta["step"]
            self.rng.bit_generator.state = meta["rng"]
            self.model.dropout_rng.bit_generator.state = meta["dropout_rng"]

    # -- one step ------------------------------------------------------------------------------------------
    def sample_batch(self):
        c, d = self.config, self.data
        images, labels, weights = [], [], []
        # DATA PARALLEL: every process draws the global batch from the same stream and keeps its slice, so K
        # processes train on exactly the tiles of one process with batch K*B (and their streams stay equal).
        for _ in range(c["batch_size"] * self.comm.size):
            i = int(self.rng.integers(len(d.train_images)))
            sample = (d.train_images[i], d.train_labels[i], d.train_weights[i], c["tile"], self.out_size, self.rng)
            # Augmenting only a window around the tile costs per tile, not per image.
            image, label, weight = random_tile(*sample) if c["no_augment"] else random_augmented_tile(*sample)
            images.append(image[None] if image.ndim == 2 else image)
            labels.append(label)
            weights.append(weight)
        dtype = np.dtype(c["dtype"])
        mine = slice(self.model.first_sample, self.model.first_sample + c["batch_size"])
        return (np.stack(images[mine]).astype(dtype), np.stack(labels[mine]).astype(np.int32),
                np.stack(weights[mine]).astype(dtype))

    def train_step(self):
        """One step; returns the loss (the mean over all processes). Afterwards self.stop says whether any
        process had been interrupted (its self.interrupted), so that all stop after the same step."""
        x, labels, weights = self.sample_batch()
        device = self.config["device"]
        self.model.train()
        self.optimizer.zero_grad()
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported below, once
            logits = self.model(Tensor(x, device=device))
            loss = F.weighted_softmax_cross_entropy(logits, Tensor(labels, device=device),
                                                    Tensor(weights, device=device))
            value = loss.item()
            if np.isfinite(value) or self.comm.size > 1:  # DATA PARALLEL: every process joins the all-reduce
                loss.backward()
        value, self.stop = self.comm.average_gradients(self.model.parameters(), value,  # DATA PARALLEL
                                                       bool(self.interrupted))
        if not np.isfinite(value):
            return value
        self.optimizer.lr = self.learning_rate()
        self.optimizer.step()
        self.step += 1
        return value

    def learning_rate(self):
        """The rate of the current step: a function of the step alone, so a resumed run gets the same."""
        c = self.config
        if c["lr_decay"] == "poly":
            return c["lr"] * (1 - self.step / c["steps"]) ** 0.9
        return c["lr"]

    # -- validation, checkpoints, plots --------------------------------------------------------------------
    def validate(self):
        """Mean foreground IoU of the held-out images, predicted whole with overlap-tile."""
        self.model.eval()
        scores, self.predicted_classes = [], set()
        for image, label in zip(self.data.val_images, self.data.val_labels):
            probs = predict_probabilities(self.model, image)
            prediction = probs.argmax(0)
            scores.append(foreground_iou(prediction, label))
            self.predicted_classes.update(np.unique(prediction).tolist())
            if len(scores) == 1:  # the first validation image goes into panel.png
                self.last_prediction = (image, label, prediction)
        return float(np.mean(scores))

    def save(self):
        checkpoint.save(self.run_dir / "checkpoint.npz", self.model, self.optimizer, step=self.step,
                        rng=self.rng.bit_generator.state, dropout_rng=self.model.dropout_rng.bit_generator.state,
                        train_config=self.config)

    def plot(self):
        plot_metrics(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png")
        if self.last_prediction is not None:
            image, label, prediction = self.last_prediction
            d = self.data
            plot_panel(self.run_dir / "panel.png", image, label, prediction, d.val_weights[0])


def _log(path, **record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _trim_log(path, step):
    """On resume, drop records after the checkpoint's step (they will be recomputed identically)."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))


def run(config, run_dir, resumed=None, quiet=False, cpu_threads=None):
    """Train; returns (trainer, exit code). 0 done, 1 non-finite loss, 130 interrupted (checkpoint saved).
    resumed: what checkpoint.load returned for --resume, or None.
    cpu_threads: the numpy device's threads for the whole run, data and validation included (default
    threads.default_threads)."""
    with threads.cpu_threads(threads.resolve_threads(cpu_threads)):
        return _run(config, run_dir, resumed, quiet)


def _run(config, run_dir, resumed, quiet):
    run_dir = Path(run_dir)
    comm = distributed.world(config["device"])  # DATA PARALLEL: the processes, and the global batch they make
    processes = config.get("processes", 1 if resumed else comm.size)  # runs saved before this key: 1
    if processes != comm.size:
        how = "without mpiexec" if processes == 1 else f"with mpiexec -n {processes}"
        raise ValueError(f"the run resumed into {run_dir} was trained by {processes} process(es) (global batch "
                         f"{processes} x {config['batch_size']}); resume it {how}")
    trainer = Trainer(dict(config, processes=processes), run_dir, resumed, comm)
    config = trainer.config  # with the step count of --epochs resolved: what config.json and checkpoints keep
    writes = comm.rank == 0  # DATA PARALLEL: only process 0 writes the run folder and prints
    metrics = run_dir / "metrics.jsonl"
    if writes:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        _trim_log(metrics, trainer.step)
    print(f"model: U-Net depth {config['depth']}, {config['base_channels']} base channels, "
          f"{trainer.model.n_parameters():,} parameters; tiles {config['tile']} -> {trainer.out_size} px, "
          f"batch {config['batch_size']}; {len(trainer.data.train_images)} training / "
          f"{len(trainer.data.val_images)} validation images; run folder {run_dir}")
    print(f"training: {config['steps']} steps, lr {config['lr']} (decay {config['lr_decay']}), momentum "
          f"{config['momentum']}, weight decay {config['weight_decay']}; validation every {config['val_every']}, "
          f"checkpoint every {config['checkpoint_every']} steps")
    if comm.size > 1:  # DATA PARALLEL
        print(f"data parallel: {comm.size} processes x batch {config['batch_size']} = global batch "
              f"{comm.size * config['batch_size']}")

    interrupted = trainer.interrupted
    previous_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))

    def stopping():  # DATA PARALLEL: all processes stop after the step whose all-reduce carried a Ctrl-C
        return trainer.stop if comm.size > 1 else bool(interrupted)

    code, val_iou, start = 0, None, time.time()
    try:
        with tqdm(total=config["steps"], initial=trainer.step, disable=quiet, unit="step") as bar:
            while trainer.step < config["steps"] and not stopping():
                loss = trainer.train_step()
                if not np.isfinite(loss):  # DATA PARALLEL: the loss is global, so every process stops here
                    saved = run_dir / "checkpoint.npz"
                    kept = (f"the last good checkpoint, {saved}, is kept" if saved.exists()
                            else "no checkpoint had been saved yet")
                    if writes:
                        print(f"\nstopped: the loss became {loss} at step {trainer.step + 1} (learning rate "
                              f"{config['lr']} too high?); {kept}.", file=sys.stderr)
                    code = 1
                    break
                if not writes:  # DATA PARALLEL: process 0 validates, saves and logs
                    continue
                _log(metrics, step=trainer.step, loss=loss, lr=trainer.optimizer.lr, time=round(time.time() - start, 3))
                if trainer.step % config["val_every"] == 0 or trainer.step == config["steps"]:
                    val_iou = trainer.validate()
                    _log(metrics, step=trainer.step, val_iou=val_iou)
                if trainer.step % config["checkpoint_every"] == 0 or trainer.step == config["steps"]:
                    trainer.save()
                bar.set_postfix(loss=f"{loss:.4f}", val_iou="-" if val_iou is None else f"{val_iou:.3f}")
                bar.update(1)
        if stopping() and code == 0 and trainer.step >= config["steps"]:  # after the last step's work: nothing lost
            if writes:
                print("\nCtrl-C came after the last step; the run is complete", file=sys.stderr)
        elif stopping() and code == 0:
            if writes:
                trainer.save()
                print(f"\ninterrupted: checkpoint saved at step {trainer.step}; continue with "
                      f"--resume {run_dir}", file=sys.stderr)
            code = 130
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    if writes:
        trainer.plot()
    if code == 0 and writes:
        print(f"done: {trainer.step} steps in {time.time() - start:.0f} s; validation foreground IoU "
              f"{val_iou:.3f}{_one_class_hint(trainer)}; wrote {run_dir}/checkpoint.npz, metrics.jsonl, loss.png, "
              f"panel.png")
    return trainer, code


def _one_class_hint(trainer):
    """Why an IoU of 0 (or of the background alone) is what it is: the network has not yet learnt a second class."""
    if len(trainer.predicted_classes) != 1:
        return ""
    (only,) = trainer.predicted_classes
    what = "background" if only == 0 else f"class {only}"
    return (f" (the network still predicts {what} everywhere: too few steps to learn the cells, the default CPU "
            f"run takes {CPU_DEFAULTS['steps']}; or a learning rate too high)")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    if distributed.launched_rank() > 0:  # DATA PARALLEL: process 0 speaks for all; errors still reach stderr
        sys.stdout, args.quiet = open(os.devnull, "w"), True
    try:
        cpu_threads = threads.resolve_threads(args.threads)
        if args.resume:
            config, run_dir, resumed = _resumed(parser, args)
        else:
            config, why = resolve_config(args)
            run_dir = Path(args.out or f"runs/{config['data']}-{time.strftime('%Y%m%d-%H%M%S')}")
            print(f"device {config['device']}: {why}")
            resumed = None
        print(threads.describe(cpu_threads, given=args.threads is not None))
        _, code = run(config, run_dir, resumed, quiet=args.quiet, cpu_threads=cpu_threads)
        return code
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        distributed.stop_all(2)  # DATA PARALLEL: the other processes would wait for this one
        return 2


def _resumed(parser, args):
    """(config, run folder, the loaded checkpoint) of --resume, checked before anything is written."""
    resume = Path(args.resume)
    resume = resume / "checkpoint.npz" if resume.is_dir() else resume
    resumed = checkpoint.load(resume)  # once: the run starts from these very arrays
    meta = resumed[0]
    defaults = vars(parser.parse_args([]))
    saved = {k: v for k, v in defaults.items() if k not in NOT_CONFIG} | meta["train_config"]  # keys added since
    given = {k: v for k, v in vars(args).items() if v != defaults[k]}
    config, changes = resume_config(saved, given, meta["step"], resume.parent)
    check_config(config)
    print(f"resuming {resume} at step {meta['step']} of {config['steps']} on device {config['device']}"
          + (f"; changed: {', '.join(changes)}" if changes else ""))
    return config, Path(args.out) if args.out else resume.parent, resumed


if __name__ == "__main__":
    sys.exit(main())
