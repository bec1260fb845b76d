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
    (["--data", "folder"], "data_dir"),
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
    assert trainer.step == config["steps"] == round(1.5 * len(trainer.data.train_images) / 1)  # batch size 1
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == trainer.step


def test_help_names_every_default():
    text = " ".join(build_parser().format_help().split())  # argparse wraps lines
    assert "default: None" not in text
    assert "(default: 4000 on a GPU, 400 without)" in text and "(default: 0.99 on a GPU, 0.9 without)" in text
    assert "(default: 0)" in text and "(default: synthetic)" in text  # zero and strings are shown too


def test_the_printed_choice_names_what_the_user_overrode():
    _, why = resolve_config(build_parser().parse_args(["--device", "numpy", "--steps", "7", "--lr", "0.1"]))
    assert why.startswith("no GPU") and why.endswith("; yours instead: --steps 7, --lr 0.1")
    assert "yours" not in resolve_config(build_parser().parse_args(["--device", "numpy"]))[1]
