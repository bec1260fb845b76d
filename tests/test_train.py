"""The training command: exact resume, Ctrl-C, non-finite loss, numpy and sim agreeing, bad input."""
import json
import os
import signal

import numpy as np
import pytest

from minunet import checkpoint
from minunet.train import Trainer, build_parser, main, resolve_config, run

TINY = ["--depth", "2", "--base-channels", "4", "--tile", "44", "--batch-size", "1", "--n-synthetic", "5",
        "--val-every", "3", "--checkpoint-every", "3", "--dtype", "float64", "--quiet"]


def config_for(*extra):
    config, _ = resolve_config(build_parser().parse_args(TINY + list(extra)))
    return config


def losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path):
    # A constant learning rate: with --lr-decay poly the rate depends on the planned number of steps,
    # which this test changes on resume (the Ctrl-C test below resumes a decaying run).
    _, code = run(config_for("--steps", "6", "--device", "numpy", "--lr-decay", "none"), tmp_path / "whole", quiet=True)
    assert code == 0
    _, code = run(config_for("--steps", "3", "--device", "numpy", "--lr-decay", "none"), tmp_path / "split", quiet=True)
    assert main(["--resume", str(tmp_path / "split"), "--steps", "6"]) == 0
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    assert len(losses(tmp_path / "whole")) == 6
    for name in ("checkpoint.npz", "metrics.jsonl", "loss.png", "panel.png", "config.json"):
        assert (tmp_path / "whole" / name).is_file()


def test_validation_logs_the_challenge_scores_and_keeps_the_best_checkpoint(tmp_path):
    from minunet import metrics
    from minunet.predict import predict_probabilities
    trainer, code = run(config_for("--steps", "3", "--device", "numpy", "--val-every", "1", "--lr", "0.05"),
                        tmp_path, quiet=True)
    assert code == 0
    records = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if "val_iou" in r]
    assert [r["step"] for r in records] == [1, 2, 3]
    # the last validation's scores are the challenge's, of the validation images as one stack
    cells = [predict_probabilities(trainer.model, image)[1] for image in trainer.data.val_images]
    truth = [label == 1 for label in trainer.data.val_labels]
    assert records[-1]["val_rand_error"] == metrics.challenge_rand_error(cells, truth).error
    assert records[-1]["val_pixel_error"] == metrics.challenge_pixel_error(cells, truth).error
    errors = [r["val_rand_error"] for r in records]
    best = checkpoint.load(tmp_path / "best.npz")[0]["step"]
    assert best == records[int(np.argmin(errors))]["step"]
    # resumed, the best so far is remembered: a worse validation does not replace best.npz
    assert main(["--resume", str(tmp_path), "--steps", "4"]) == 0
    records = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if "val_iou" in r]
    errors = [r["val_rand_error"] for r in records]
    assert checkpoint.load(tmp_path / "best.npz")[0]["step"] == records[int(np.argmin(errors))]["step"]


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_exactly(tmp_path, monkeypatch):
    _, code = run(config_for("--steps", "4", "--device", "numpy"), tmp_path / "whole", quiet=True)
    original = Trainer.train_step

    def step_then_interrupt(self):
        loss = original(self)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends
        return loss

    monkeypatch.setattr(Trainer, "train_step", step_then_interrupt)
    _, code = run(config_for("--steps", "4", "--device", "numpy"), tmp_path / "cut", quiet=True)
    assert code == 130
    assert checkpoint.load(tmp_path / "cut" / "checkpoint.npz")[0]["step"] == 2
    monkeypatch.setattr(Trainer, "train_step", original)
    assert main(["--resume", str(tmp_path / "cut")]) == 0
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    config = config_for("--steps", "30", "--device", "numpy", "--lr", "1e12", "--checkpoint-every", "1")
    trainer, code = run(config, tmp_path / "boom", quiet=True)
    assert code == 1
    assert "the loss became" in capsys.readouterr().err
    meta, state, _ = checkpoint.load(tmp_path / "boom" / "checkpoint.npz")
    assert meta["step"] == trainer.step  # saved after the last finite step, not after the bad one
    assert all(np.isfinite(v).all() for v in state.values())


def test_numpy_and_sim_train_the_same_tiny_network(tmp_path):
    a, _ = run(config_for("--steps", "2", "--device", "numpy", "--val-every", "100"), tmp_path / "np", quiet=True)
    b, _ = run(config_for("--steps", "2", "--device", "sim", "--val-every", "100"), tmp_path / "sim", quiet=True)
    la, lb = losses(tmp_path / "np"), losses(tmp_path / "sim")
    np.testing.assert_allclose([v for _, v in lb], [v for _, v in la], rtol=1e-9)
    for (name, pa), (_, pb) in zip(a.model.named_parameters(), b.model.named_parameters()):
        np.testing.assert_allclose(pb.numpy(), pa.numpy(), rtol=1e-8, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("argv, message", [
    (["--tile", "45"], "nearest valid sizes"),
    (["--tile", "100004"], "choose a smaller --tile"),  # not 40 synthetic images of 99964^2 pixels
    (["--val-fraction", "1.5"], "--val-fraction must be in"),
    (["--data", "isbi2012", "--data-dir", "/nonexistent"], "/nonexistent is not a folder"),
    (["--data", "folder"], "--data folder needs --data-dir"),  # not load_dataset's Python parameter data_dir
    (["--data", "isbi2012"], "train-volume.tif"),  # what --data-dir must hold
    (["--val-data-dir", "/tmp"], "--data synthetic is generated; it takes no --data-dir, --val-data-dir"),
    (["--n-classes", "3"], "--data synthetic is generated; it takes no --data-dir, --val-data-dir"),
    (["--tile", "0"], "input size 0 is too small for a depth-2 U-Net"),
    (["--threads", "0"], "--threads must be an int >= 1"),
    (["--threads", "100000"], "--threads 100000: this process may use"),
    (["--resume", "/nonexistent/run"], "does not exist"),
    (["--epochs", "1"], "give --steps or --epochs, not both"),
])
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    assert main(TINY + ["--steps", "1", "--device", "numpy"] + argv) == 2
    assert message in capsys.readouterr().err


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 truncated")
    assert main(["--resume", str(tmp_path)]) == 2
    assert "not a readable minunet checkpoint" in capsys.readouterr().err


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    """A failure while writing leaves the previous checkpoint intact and no temporary file behind."""
    trainer, _ = run(config_for("--steps", "1", "--device", "numpy"), tmp_path, quiet=True)
    before = (tmp_path / "checkpoint.npz").read_bytes()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(KeyboardInterrupt):
        trainer.save()
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []


def test_epochs_count_passes_over_the_training_images(tmp_path):
    config, _ = resolve_config(build_parser().parse_args(TINY + ["--epochs", "1.5", "--device", "numpy"]))
    assert config["steps"] is None
    trainer, code = run(config, tmp_path, quiet=True)
    assert code == 0
    assert trainer.step == trainer.config["steps"] == round(1.5 * len(trainer.data.train_images) / 1)  # batch 1
    assert config["steps"] is None  # the caller's config is left as it was; the trainer resolves its own copy
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == trainer.step


def test_help_names_every_default():
    text = " ".join(build_parser().format_help().split())  # argparse wraps lines
    assert "default: None" not in text
    assert "(default: 4000 on a GPU, 400 without)" in text and "(default: 0.99 on a GPU, 0.9 without)" in text
    assert "(default: 0)" in text and "(default: synthetic)" in text  # zero and strings are shown too
    assert "train-volume.tif and train-labels.tif, or folders image/ and label/" in text  # what --data-dir holds
    assert "where to get it: README.md, 'ISBI 2012'" in text  # where to get it


def test_the_printed_choice_names_what_the_user_overrode():
    _, why = resolve_config(build_parser().parse_args(["--device", "numpy", "--steps", "7", "--lr", "0.1"]))
    assert why.startswith("the CPU defaults") and why.endswith("; yours instead: --steps 7, --lr 0.1")
    assert "yours" not in resolve_config(build_parser().parse_args(["--device", "numpy"]))[1]


def test_the_sim_device_line_says_simulator_not_numpy():
    _, why = resolve_config(build_parser().parse_args(["--device", "sim"]))
    assert "simulator" in why and "far slower than the numpy device" in why
    assert "on the numpy device" not in why and "no GPU" not in why


def run_tiny(run_dir, *extra):
    return run(config_for("--device", "numpy", *extra), run_dir, quiet=True)


def test_resume_of_a_complete_run_says_so_and_rewrites_nothing(tmp_path, capsys):
    assert run_tiny(tmp_path, "--steps", "3")[1] == 0
    def files():  # the run's files; the lock file records who holds the lock, for as long as they hold it
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir() if p.name != ".lock"}
    before = files()
    for steps in ([], ["--steps", "3"], ["--steps", "2"]):  # was: TypeError ... NoneType.__format__
        assert main(["--resume", str(tmp_path), *steps]) == 2
        err = capsys.readouterr().err
        assert f"the run in {tmp_path} is complete: it reached step 3 of " in err
        assert f"--resume {tmp_path} --steps 6" in err and err.count("\n") == 1
    assert files() == before and (tmp_path / ".lock").read_bytes() == b""


def test_ctrl_c_during_the_last_validation_completes_the_run(tmp_path, monkeypatch, capsys):
    original = Trainer.validate

    def validate_then_interrupt(self):
        if self.step == self.config["steps"]:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the last step's validation runs
        return original(self)

    monkeypatch.setattr(Trainer, "validate", validate_then_interrupt)
    trainer, code = run_tiny(tmp_path, "--steps", "3")
    assert code == 0 and trainer.step == 3
    out, err = capsys.readouterr()
    assert "done: 3 steps" in out and "--resume" not in err and "the run is complete" in err
    assert checkpoint.load(tmp_path / "checkpoint.npz")[0]["step"] == 3


def test_resume_refuses_a_different_network_and_honours_a_new_learning_rate(tmp_path, capsys):
    assert run_tiny(tmp_path, "--steps", "2", "--lr-decay", "none")[1] == 0
    config_json = (tmp_path / "config.json").read_text()
    for argv, says in ((["--depth", "4"], "--depth 4: the run in"), (["--base-channels", "32"], "has 4;"),
                       (["--epochs", "2"], "--resume takes --steps")):
        assert main(["--resume", str(tmp_path), "--steps", "4", *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and "start a new run" in err or "--epochs" in argv
    assert (tmp_path / "config.json").read_text() == config_json
    assert main(["--resume", str(tmp_path), "--steps", "4", "--lr", "0.5", "--depth", "2"]) == 0  # same depth: fine
    out = capsys.readouterr().out
    assert "resuming" in out and "changed: --steps 4 (was 2), --lr 0.5 (was 0.01)" in out
    assert "training: 4 steps, lr 0.5 (decay none)" in out  # the values in force
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if "lr" in r]
    assert lrs == [0.01, 0.01, 0.5, 0.5]
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 0.5


def test_the_threads_option_holds_for_training_and_validation(tmp_path, monkeypatch, capsys):
    from minunet import threads
    seen = {}
    for method in ("train_step", "validate"):
        original = getattr(Trainer, method)

        def record(self, original=original, method=method):
            # the device's thread count, and BLAS's inside it: one per thread (minunet.threads.cpu_threads)
            seen.setdefault(method, set()).update((threads.cpu_threads_now(), n) for n in threads.blas_threads_now())
            return original(self)
        monkeypatch.setattr(Trainer, method, record)
    assert main(TINY + ["--device", "numpy", "--steps", "3", "--threads", "1", "--out", str(tmp_path)]) == 0
    assert seen == {"train_step": {(1, 1)}, "validate": {(1, 1)}}
    assert "threads 1 (--threads)" in capsys.readouterr().out
    assert main(["--resume", str(tmp_path), "--steps", "4", "--quiet"]) == 0  # a resume takes it too, unsaved
    assert f"threads {threads.default_threads()} (default: " in capsys.readouterr().out
    assert seen["train_step"] == {(1, 1), (threads.default_threads(), 1)}


def test_an_iou_of_zero_says_the_network_still_predicts_one_class(tmp_path, monkeypatch, capsys):
    import minunet.train

    def background_everywhere(model, image, **kwargs):
        return np.stack([np.ones(image.shape), np.zeros(image.shape)]).astype(np.float32)

    monkeypatch.setattr(minunet.train, "predict_probabilities", background_everywhere)
    assert run_tiny(tmp_path, "--steps", "3")[1] == 0
    out = capsys.readouterr().out
    assert "validation foreground IoU 0.000 (the network still predicts background everywhere: too few steps" in out


def write_folder(root, n, seed):
    from PIL import Image
    rng = np.random.default_rng(seed)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(((rng.random((64, 64)) > 0.5) * 255).astype(np.uint8)).save(root / "masks" / f"{i}.png")


def test_val_data_dir_is_a_hold_out_set_of_the_users_own(tmp_path):
    write_folder(tmp_path / "train", 3, seed=0)
    write_folder(tmp_path / "held", 2, seed=1)
    trainer, code = run_tiny(tmp_path / "run", "--steps", "1", "--data", "folder", "--data-dir",
                             str(tmp_path / "train"), "--val-data-dir", str(tmp_path / "held"))
    assert code == 0
    assert len(trainer.data.train_images) == 3 and len(trainer.data.val_images) == 2  # no random split
    from minunet.data import load_dataset
    held = load_dataset("folder", tmp_path / "held")
    np.testing.assert_array_equal(trainer.data.val_images[1], held.images[1])


def test_folder_options_of_the_command_line(tmp_path, capsys):
    from PIL import Image
    write_folder(tmp_path / "d", 3, seed=0)
    base = TINY + ["--device", "numpy", "--steps", "1", "--data", "folder"]
    assert main(base + ["--image-dir", str(tmp_path / "d" / "images"), "--mask-dir", str(tmp_path / "d" / "masks"),
                        "--out", str(tmp_path / "run")]) == 0
    assert main(base + ["--data-dir", str(tmp_path)]) == 2
    assert "train: --image-dir and --mask-dir" in capsys.readouterr().err
    for mask in (tmp_path / "d" / "masks").iterdir():  # background only: the number of classes cannot be read
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(mask)
    assert main(base + ["--data-dir", str(tmp_path / "d")]) == 2
    assert "pass n_classes (--n-classes on the command line)" in capsys.readouterr().err
    assert main(base + ["--data-dir", str(tmp_path / "d"), "--n-classes", "3", "--out", str(tmp_path / "r3")]) == 0
    assert checkpoint.load(tmp_path / "r3" / "checkpoint.npz")[0]["model_config"]["n_classes"] == 3


def test_checkpoints_get_the_mode_of_new_files(tmp_path):
    old = os.umask(0o022)
    try:
        run_tiny(tmp_path, "--steps", "1")
        assert (tmp_path / "checkpoint.npz").stat().st_mode & 0o777 == 0o644  # was 0600, the temporary file's
        os.umask(0o077)
        run_tiny(tmp_path / "private", "--steps", "1")
        assert (tmp_path / "private" / "checkpoint.npz").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_resume_reads_the_checkpoint_once(tmp_path, monkeypatch):
    """--resume checks the checkpoint and trains from the very arrays it checked: one read, not two."""
    assert run_tiny(tmp_path, "--steps", "2")[1] == 0
    loads, load = [], checkpoint.load
    monkeypatch.setattr(checkpoint, "load", lambda path: loads.append(path) or load(path))
    assert main(["--resume", str(tmp_path), "--steps", "3", "--quiet"]) == 0
    assert loads == [tmp_path / "checkpoint.npz"]
