"""Train a U-Net with the paper's recipe: `python -m minunet.train`.

Recipe (Ronneberger et al. 2015, Sec. 3): random tiles with mirrored context, elastic deformations (plus
flips, rotations, gray values), the pixel-wise weighted softmax cross-entropy whose weight map separates
touching cells (w0 = 10, sigma = 5), SGD with momentum 0.99. On a GPU it trains the paper's network on
572x572 tiles, batch 1; without one, a smaller network on the numpy device that finishes in minutes.

The run folder holds config.json, metrics.jsonl (one JSON object per step / validation), checkpoint.npz
(written atomically), loss.png and panel.png; under the tests' CuPy stand-in, each says so first (a "note":
the first key of config.json and of the checkpoint's metadata, metrics.jsonl's first record, the plots' title).
`--resume RUN_DIR` continues exactly where it stopped: the same losses as an uninterrupted run. Ctrl-C saves a
checkpoint and exits; a non-finite loss stops with a message and leaves the last good checkpoint untouched.
Data parallel: `mpiexec -n K python -m minunet.train --batch-size B` trains on a global batch of K*B tiles,
the same run as one process with batch K*B (minunet/distributed.py); only process 0 writes the run folder.
What the run folder guarantees (no run replaced, one writer, whole files): minunet/run_folder.py.
"""
import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import checkpoint, cli, distributed, run_folder, threads
from . import functional as F
from .backends import resolve_device, standin_note
from .memory import keep_freed_memory
from .data.tiles import random_augmented_tile, random_tile
from .data.training import DATA_DIR_LAYOUT, prepare_training_data
from .metrics import challenge_pixel_error, challenge_rand_error, foreground_iou
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
    p.add_argument("--out", help="run folder (default: runs/<data>-<time>); one that holds a run is refused")
    p.add_argument("--overwrite", action="store_true", help="let a new run replace the run in --out")
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
    standin = standin_note() if device == "cuda" else None  # the tests' CuPy stand-in: said first
    why = (SIM_NOTE if device == "sim" else f"{standin}; " if standin else "") + defaults["why"]
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
        self.step, self.last_prediction, self.predicted_classes, self.val_challenge = 0, None, set(), {}
        self.saved_step = None  # the step of the checkpoint in the run folder (what a stop keeps)
        # The tests' CuPy stand-in: said first in every file of the run folder (a GPU's run says nothing).
        self.note = standin_note() if c["device"] == "cuda" else None
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
        with np.errstate(over="ignore", invalid="ignore"):  # weights that overflow: save() refuses them, once
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
        """Mean foreground IoU of the held-out images, predicted whole with overlap-tile. For two classes also
        the ISBI 2012 challenge's Rand and pixel error of them as one stack, in self.val_challenge (IoU is a
        poor guide to the Rand error: it can stop improving long before). Their cost: about 0.1 s a 512 x 512
        image, a small part of predicting it."""
        self.model.eval()
        scores, cells, self.predicted_classes = [], [], set()
        for image, label in zip(self.data.val_images, self.data.val_labels):
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging network: reported when saved
                probs = predict_probabilities(self.model, image)
            prediction = probs.argmax(0)
            scores.append(foreground_iou(prediction, label))
            cells.append(probs[-1])
            self.predicted_classes.update(np.unique(prediction).tolist())
            if len(scores) == 1:  # the first validation image goes into panel.png
                self.last_prediction = (image, label, prediction)
        self.val_challenge = {}
        if self.data.n_classes == 2 and all(np.isfinite(c).all() for c in cells):
            truth = [label == 1 for label in self.data.val_labels]
            self.val_challenge = {"val_rand_error": challenge_rand_error(cells, truth).error,
                                  "val_pixel_error": challenge_pixel_error(cells, truth).error}
        return float(np.mean(scores))

    def save(self, name="checkpoint.npz"):
        """Write a checkpoint (best.npz: the best validation so far); None, or why it could not be (weights no
        longer finite, a full disk)."""
        note = {"note": self.note} if self.note else {}  # first in the metadata
        try:
            checkpoint.save(self.run_dir / name, self.model, self.optimizer, **note, step=self.step,
                            rng=self.rng.bit_generator.state,
                            dropout_rng=self.model.dropout_rng.bit_generator.state, train_config=self.config)
        except checkpoint.NonFiniteError as e:
            return f"the weights became non-finite by step {self.step} (learning rate {self.config['lr']} too high?): {e}"
        except OSError as e:
            return cli.describe_os_error(e)
        if name == "checkpoint.npz":
            self.saved_step = self.step
        return None

    def log(self, metrics, **record):
        """One record of metrics.jsonl; under the stand-in, a new file's first record is its note."""
        if self.note and not metrics.exists():
            run_folder.append_record(metrics, note=self.note)
        run_folder.append_record(metrics, **record)

    def kept(self):
        """What a stopped run leaves: the words for its last checkpoint."""
        if self.saved_step is None:
            return "no checkpoint had been saved yet"
        return (f"the last good checkpoint, {self.run_dir / 'checkpoint.npz'} (step {self.saved_step}), is kept: "
                f"continue with --resume {self.run_dir}")

    def plot(self):
        """Write loss.png and panel.png; the names written (a failure is said, and loses nothing else)."""
        written = []
        try:
            if (self.run_dir / "metrics.jsonl").is_file():  # none: interrupted before its first step
                with np.errstate(over="ignore"):  # a diverged run's losses on the log scale
                    plot_metrics(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png", self.note)
                written.append("loss.png")
            if self.last_prediction is not None:
                image, label, prediction = self.last_prediction
                plot_panel(self.run_dir / "panel.png", image, label, prediction, self.data.val_weights[0],
                           note=self.note)
                written.append("panel.png")
            return written
        except OSError as e:
            print(f"warning: the plots were not all written ({cli.describe_os_error(e)}); the checkpoint and "
                  f"metrics.jsonl are", file=sys.stderr)
            return []


def run(config, run_dir, resumed=None, quiet=False, cpu_threads=None, overwrite=False):
    """Train; returns (trainer, exit code). 0 done, 1 stopped (non-finite loss or weights, a write that failed:
    the last good checkpoint kept), 130 interrupted (checkpoint saved).
    resumed: what checkpoint.load returned for --resume, or None. overwrite: a new run may replace the run in
    run_dir (else a UsageError: run_folder.py).
    cpu_threads: the numpy device's threads for the whole run, data and validation included (default
    threads.default_threads)."""
    with threads.cpu_threads(threads.resolve_threads(cpu_threads)):
        return _run(config, run_dir, resumed, quiet, overwrite)


def _run(config, run_dir, resumed, quiet, overwrite):
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
    interrupted = trainer.interrupted

    def on_ctrl_c(*_):  # from the first write to the last, plots included: a Ctrl-C never cuts a write short
        interrupted.append(True)
        if len(interrupted) == 2 and writes:
            print("\n(stopping after this step: the checkpoint and plots are being written)", file=sys.stderr)

    previous_handler = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        with run_folder.locked(run_dir) if writes else contextlib.nullcontext():
            if writes:
                _prepare_folder(trainer, resumed is not None, overwrite)
            _say_what_runs(trainer)
            return trainer, _train(trainer, quiet, writes)
    finally:
        signal.signal(signal.SIGINT, previous_handler)


def _say_what_runs(trainer):
    config, comm, run_dir = trainer.config, trainer.comm, trainer.run_dir
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


def _prepare_folder(trainer, resuming, overwrite):
    """Under the folder's lock: checked again (another run may have written it since main looked), cleaned of
    killed writes' temporary files, its metrics checked against the checkpoint; then config.json."""
    run_dir = trainer.run_dir
    run_folder.check_folder(run_dir, "--out", overwrite, resuming)
    run_folder.remove_temporaries(run_dir)
    if overwrite:
        run_folder.clear(run_dir)
    if resuming:
        run_folder.resume_metrics(run_dir / "metrics.jsonl", trainer.step)
        if (run_dir / "checkpoint.npz").is_file():  # resumed in its own folder: the checkpoint it came from
            trainer.saved_step = trainer.step
    run_folder.write_config(run_dir, trainer.config, trainer.note)


def _train(trainer, quiet, writes):
    """The training loop, its validations, checkpoints and plots; the exit code."""
    config, run_dir, comm = trainer.config, trainer.run_dir, trainer.comm
    metrics = run_dir / "metrics.jsonl"

    def stopping():  # DATA PARALLEL: all processes stop after the step whose all-reduce carried a Ctrl-C
        return trainer.stop if comm.size > 1 else bool(trainer.interrupted)

    def stop(why):
        if writes:
            print(f"\nstopped: {why}; {trainer.kept()}.", file=sys.stderr)
        return 1

    def write_failed(why):  # in process 0 alone
        stop(why)
        distributed.stop_all(1)  # DATA PARALLEL: the other processes would wait for it in the next all-reduce
        return 1

    code, val_iou, start = 0, None, time.time()
    best = _best_logged(metrics) if writes else np.inf  # the challenge Rand error of best.npz so far
    with tqdm(total=config["steps"], initial=trainer.step, disable=quiet, unit="step") as bar:
        while trainer.step < config["steps"] and not stopping():
            loss = trainer.train_step()
            if not np.isfinite(loss):  # DATA PARALLEL: the loss is global, so every process stops here
                code = stop(f"the loss became {loss} at step {trainer.step + 1} (learning rate {config['lr']} "
                            f"too high?)")
                break
            if not writes:  # DATA PARALLEL: process 0 validates, saves and logs
                continue
            validates = trainer.step % config["val_every"] == 0 or trainer.step == config["steps"]
            try:
                trainer.log(metrics, step=trainer.step, loss=loss, lr=trainer.optimizer.lr,
                            time=round(time.time() - start, 3))
                if validates:
                    val_iou = trainer.validate()
                    trainer.log(metrics, step=trainer.step, val_iou=val_iou, **trainer.val_challenge)
            except OSError as e:
                code = write_failed(cli.describe_os_error(e))
                break
            saves = []  # the checkpoint first: it is what a stop keeps
            if trainer.step % config["checkpoint_every"] == 0 or trainer.step == config["steps"]:
                saves.append("checkpoint.npz")
            if validates and trainer.val_challenge.get("val_rand_error", np.inf) < best:
                best = trainer.val_challenge["val_rand_error"]
                saves.append("best.npz")
            failed = None
            for name in saves:
                failed = failed or trainer.save(name)
            if failed:
                code = write_failed(failed)
                break
            bar.set_postfix(loss=f"{loss:.4f}", val_iou="-" if val_iou is None else f"{val_iou:.3f}")
            bar.update(1)
    if stopping() and code == 0 and trainer.step >= config["steps"]:  # after the last step's work: nothing lost
        if writes:
            print("\nCtrl-C came after the last step; the run is complete", file=sys.stderr)
    elif stopping() and code == 0:
        failed = trainer.save() if writes else None
        if failed:
            code = stop(failed)
        else:
            if writes:
                print(f"\ninterrupted: checkpoint saved at step {trainer.step}; continue with "
                      f"--resume {run_dir}", file=sys.stderr)
            code = 130
    plots = trainer.plot() if writes else []
    if code == 0 and writes:
        print(f"done: {trainer.step} steps in {time.time() - start:.0f} s; validation foreground IoU "
              f"{val_iou:.3f}{_one_class_hint(trainer)}; wrote "
              f"{', '.join([f'{run_dir}/checkpoint.npz', 'metrics.jsonl'] + plots)}")
    return code


def _best_logged(path):
    """The lowest validation challenge Rand error in metrics.jsonl (inf when none); its records were checked by
    run_folder.resume_metrics before."""
    if not path.is_file():
        return np.inf
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return min((r["val_rand_error"] for r in records if "val_rand_error" in r), default=np.inf)


def _one_class_hint(trainer):
    """Why an IoU of 0 (or of the background alone) is what it is: the network has not yet learnt a second class."""
    if len(trainer.predicted_classes) != 1:
        return ""
    (only,) = trainer.predicted_classes
    what = "background" if only == 0 else f"class {only}"
    return (f" (the network still predicts {what} everywhere: too few steps to learn the cells, the default CPU "
            f"run takes {CPU_DEFAULTS['steps']}; or a learning rate too high)")


def main(argv=None):
    cli.restore_ctrl_c()
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    writes = distributed.launched_rank() == 0
    if not writes:  # DATA PARALLEL: process 0 speaks for all; errors still reach stderr
        sys.stdout, args.quiet = open(os.devnull, "w"), True
    try:
        cpu_threads = threads.resolve_threads(args.threads)
        run_dir = _check_paths(args)
        with run_folder.locked(run_dir) if writes else contextlib.nullcontext():
            if args.resume:  # read under the lock: no other run can write a newer checkpoint meanwhile
                config, resumed = _resumed(parser, args)
            else:
                config, why = resolve_config(args)
                print(f"device {config['device']}: {why}")
                resumed = None
            print(threads.describe(cpu_threads, given=args.threads is not None))
            restart = args.resume is not None and resumed is None  # its own folder's files are replaced
            _, code = run(config, run_dir, resumed, quiet=args.quiet, cpu_threads=cpu_threads,
                          overwrite=args.overwrite or restart)
        return code
    except KeyboardInterrupt:  # while the data loaded: nothing was written yet
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut this short
        try:
            print("\ninterrupted before the first step: the run folder was left as it was", file=sys.stderr)
            distributed.stop_all(130)
        finally:
            signal.signal(signal.SIGINT, previous)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        distributed.stop_all(2)  # DATA PARALLEL: the other processes would wait for this one
        return 2
    except OSError as e:  # a folder that cannot be read or written, found once the work began
        print(f"error: {cli.describe_os_error(e)}", file=sys.stderr)
        distributed.stop_all(2)
        return 2


def _check_paths(args):
    """Every path option checked before any work: the input folders, --resume, and the run folder (returned)."""
    for key in ("data_dir", "val_data_dir", "image_dir", "mask_dir"):
        if getattr(args, key) is not None:
            cli.check_input_folder(getattr(args, key), option(key))
    if args.resume:
        resume = Path(args.resume)
        if not resume.exists():
            raise cli.UsageError(f"--resume {resume} does not exist: give a run folder (or its checkpoint.npz)")
        folder = resume if resume.is_dir() else resume.parent
        run_dir = Path(args.out) if args.out else folder
        same = os.path.realpath(run_dir) == os.path.realpath(folder)
        if same and args.overwrite:
            raise cli.UsageError(f"--overwrite replaces the run in a folder with a new one, --resume continues "
                                 f"the run in {folder}: give one of them")
        run_folder.check_folder(run_dir, "--out" if args.out else "--resume", args.overwrite, resuming=same)
        return run_dir
    run_dir = Path(args.out or f"runs/{args.data}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_folder.check_folder(run_dir, "--out", args.overwrite)
    return run_dir


RESUME_KEYS = ("train_config", "step", "rng", "dropout_rng")  # what a checkpoint needs to be resumed


def _resumed(parser, args):
    """(config, the loaded checkpoint) of --resume, checked before anything is written. A run that stopped before
    its first checkpoint (killed: a Ctrl-C saves one) has none: it starts again from step 0 with its config.json."""
    resume = Path(args.resume)
    if resume.is_dir() and not (resume / "checkpoint.npz").exists() and (resume / "config.json").is_file():
        source, resumed, step = resume / "config.json", None, 0
        try:
            saved = run_folder.read_config(source)
        except ValueError as e:
            raise cli.UsageError(f"{source} is not the JSON python -m minunet.train writes ({e}); start a new run "
                                 f"with --overwrite") from None
    else:
        source = resume / "checkpoint.npz" if resume.is_dir() else resume
        resumed = checkpoint.load(source)  # once: the run starts from these very arrays
        meta = resumed[0]
        missing = [key for key in RESUME_KEYS if key not in meta]
        if missing:
            raise cli.UsageError(f"checkpoint {source} lacks {', '.join(missing)} in its metadata, so it cannot be "
                                 f"resumed (only python -m minunet.train's checkpoints can); predict with it, or "
                                 f"start a new run")
        saved, step = meta["train_config"], meta["step"]
    defaults = vars(parser.parse_args([]))
    saved = {k: v for k, v in defaults.items() if k not in NOT_CONFIG} | saved  # keys added since
    given = {k: v for k, v in vars(args).items() if v != defaults[k]}
    config, changes = resume_config(saved, given, step, source.parent)
    check_config(config)
    print(f"resuming {source} at step {step} of {config['steps']} on device {config['device']}"
          + (" (it stopped before its first checkpoint: it starts again)" if resumed is None else "")
          + (f"; changed: {', '.join(changes)}" if changes else ""))
    return config, resumed


if __name__ == "__main__":
    exit_code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # all is written and said: a late Ctrl-C changes nothing
    sys.exit(exit_code)
