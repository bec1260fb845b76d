"""Checkpoints written before issue #15 renamed the expanding path's parameters still load, and training resumes
from them exactly (checkpoint.load gives today's names: checkpoint.current_name)."""
import json
import shutil
from pathlib import Path

import numpy as np

import minunet as mu
from minunet import checkpoint, train
from minunet.checkpoint import current_name
from minunet.compare import assert_close

BEFORE_15 = Path(__file__).parent / "data" / "before-issue-15"


def test_a_checkpoint_with_the_names_before_the_rename_still_loads():
    # up.N held the up-convolutions and up_convs.N the double convolutions before issue #15.
    with np.load(BEFORE_15 / "checkpoint.npz") as f:  # the arrays as stored, under the names of then
        old_state = {k[len("model/"):]: f[k] for k in f.files if k.startswith("model/")}
    assert "up.0.w" in old_state and "up_convs.0.conv1.w" in old_state  # really written the old way
    model, _ = checkpoint.load_model(BEFORE_15 / "checkpoint.npz", device="numpy")
    assert np.array_equal(model.up_convs[0].w.numpy(), old_state["up.0.w"])
    assert np.array_equal(model.up[0].conv1.w.numpy(), old_state["up_convs.0.conv1.w"])
    x = mu.Tensor(np.random.default_rng(0).standard_normal((1, 1, 44, 44)))
    # the old code's output, to float64 rounding: since #25 the numpy device adds a convolution's terms in another
    # order (measured: at most 9e-15 off on outputs up to 9), where a misplaced weight would be off by O(1)
    assert_close(model(x).numpy(), np.load(BEFORE_15 / "output.npy"), atol=1e-12, rtol=1e-12, name="output")
    assert current_name("up.3.b") == "up_convs.3.b" and current_name("up_convs.3.conv2.w") == "up.3.conv2.w"
    assert all(current_name(name) == name for name, _ in mu.UNet(depth=3, base_channels=1).named_parameters())


def test_training_resumes_from_a_checkpoint_with_the_old_names(tmp_path):
    # The fixture's run, resumed to step 6, logs the losses of a run that went to step 6 at once.
    shutil.copy(BEFORE_15 / "checkpoint.npz", tmp_path / "checkpoint.npz")
    tiny = ["--depth", "2", "--base-channels", "4", "--tile", "44", "--batch-size", "1", "--n-synthetic", "5",
            "--val-every", "3", "--checkpoint-every", "3", "--dtype", "float64", "--quiet"]
    assert train.main(tiny + ["--steps", "6", "--device", "numpy", "--lr-decay", "none",
                              "--out", str(tmp_path / "whole")]) == 0
    assert train.main(["--resume", str(tmp_path), "--steps", "6", "--quiet"]) == 0
    losses = [[(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
               if "loss" in r] for run in (tmp_path, tmp_path / "whole")]
    assert [step for step, _ in losses[0]] == [4, 5, 6] == [step for step, _ in losses[1][3:]]
    # float64 to rounding: the checkpoint's first 3 steps were taken by the old code, whose numpy device added a
    # convolution's terms in another order than today's algorithms may (#25)
    assert_close(np.array(losses[0])[:, 1], np.array(losses[1][3:])[:, 1], atol=1e-12, rtol=1e-12, name="losses")
