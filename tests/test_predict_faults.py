"""predict under faults (issue #23): outputs written whole, counted truthfully, a corrupt input skipped or stopped
on with a summary, a checkpoint or an output that is not finite refused, a multi-page TIFF predicted as a stack."""
import errno
import os
import signal

import numpy as np
import pytest
from PIL import Image

import minunet as mu
from minunet import checkpoint
from minunet.backends import cuda_available
from minunet.data.loaders import read_image
from minunet.predict import main, predict_probabilities

OUTPUTS = ("_prob.npy", "_prob.png", "_labels.png", "_overlay.png")


@pytest.fixture(scope="module")
def net():
    return mu.UNet(depth=2, base_channels=3, dropout=0.0, dtype=np.float64, seed=4).eval()


@pytest.fixture
def ckpt(tmp_path, net):
    checkpoint.save(tmp_path / "run" / "checkpoint.npz", net, step=0)
    return tmp_path / "run"


def images(folder, names, size=(30, 41)):
    folder.mkdir(exist_ok=True)
    for k, name in enumerate(names):
        array = (np.random.default_rng(k).random(size) * 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"{name}.png")
    return folder


def predict(ckpt, inputs, out, *extra):
    return main(["--checkpoint", str(ckpt), "--input", str(inputs), "--out", str(out), "--device", "numpy",
                 "--quiet", *extra])


def test_the_streamed_probabilities_are_the_whole_images(ckpt, net, tmp_path):
    """Written row of tiles by row of tiles (--tile 28: 12 px output tiles, rows ending inside a batch of 4)."""
    images(tmp_path / "in", ["a"])
    assert predict(ckpt, tmp_path / "in", tmp_path / "out", "--tile", "28") == 0  # a run folder: no "does not exist"
    expected = predict_probabilities(net, read_image(tmp_path / "in" / "a.png"), tile=28)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "a_prob.npy"), expected)
    labels = np.asarray(Image.open(tmp_path / "out" / "a_labels.png"))
    np.testing.assert_array_equal(labels, expected.argmax(0) * 255)


def test_ctrl_c_while_an_image_is_written_completes_it_and_counts_truthfully(ckpt, tmp_path, monkeypatch, capsys):
    """Ctrl-C (a real SIGINT) while b's overlay is encoded: b's four files are finished, then predict stops."""
    images(tmp_path / "in", ["a", "b", "c"])
    save = Image.Image.save

    def interrupted_save(self, fp, *args, **kwargs):
        if "b_overlay" in str(getattr(fp, "name", "")):
            os.kill(os.getpid(), signal.SIGINT)
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", interrupted_save)
    assert predict(ckpt, tmp_path / "in", tmp_path / "out") == 130
    assert f"interrupted: wrote 2 of 3 prediction(s) to {tmp_path / 'out'}/ (the last: b)" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(s + o for s in "ab" for o in OUTPUTS)
    for stem in "ab":
        Image.open(tmp_path / "out" / f"{stem}_overlay.png").load()  # whole: was a truncated PNG, "wrote 0 of 3"


def test_a_corrupt_input_is_skipped_and_summed_up_or_stopped_on(ckpt, tmp_path, capsys):  # case 4
    folder = images(tmp_path / "in", ["a", "b", "c", "d"])
    (folder / "b.png").write_bytes((folder / "b.png").read_bytes()[:200])  # truncated
    assert predict(ckpt, folder, tmp_path / "out") == 1
    out, err = capsys.readouterr()
    assert f"wrote 3 of 4 prediction(s) to {tmp_path / 'out'}/ (the last: d)" in out
    assert "skipped 1 input(s) that could not be predicted: b.png (" in err and "truncated" in err
    assert sorted({p.name.split("_")[0] for p in (tmp_path / "out").iterdir()}) == ["a", "c", "d"]
    assert predict(ckpt, folder, tmp_path / "stop", "--on-error", "stop") == 2
    err = capsys.readouterr().err
    assert "b.png: not a readable image" in err and "stopped there (--on-error stop); wrote 1 of 4" in err
    assert err.count("\n") == 1


def test_a_full_disk_while_writing_leaves_no_partial_output(ckpt, tmp_path, monkeypatch, capsys):
    images(tmp_path / "in", ["a", "b"])
    save = Image.Image.save

    def full_disk(self, fp, *args, **kwargs):
        if "b_labels" in str(getattr(fp, "name", "")):
            fp.write(b"\x89PNG half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fp.name))
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full_disk)
    assert predict(ckpt, tmp_path / "in", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "No space left on device (free some space); wrote 1 of 2 prediction(s)" in err and err.count("\n") == 1
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(["a" + o for o in OUTPUTS] + ["b_prob.png"])  # whole files, no temporary file


def test_non_finite_weights_are_refused_and_non_finite_outputs_never_written(ckpt, net, tmp_path, capsys):  # case 6
    images(tmp_path / "in", ["a"])
    meta, model, _ = checkpoint.load(ckpt)
    import json
    bad = dict(model, **{name: np.full_like(v, np.inf) for name, v in list(model.items())[:1]})
    np.savez(tmp_path / "inf.npz", meta=np.array(json.dumps(meta)), **{f"model/{k}": v for k, v in bad.items()})
    assert predict(tmp_path / "inf.npz", tmp_path / "in", tmp_path / "out") == 2
    assert "holds NaN or infinity in model/" in capsys.readouterr().err
    huge = mu.UNet(depth=2, base_channels=3, dropout=0.0, seed=4).eval()  # float32: finite weights that overflow
    for p in huge.parameters():
        p.data[...] = 3e37
    checkpoint.save(tmp_path / "huge.npz", huge, step=0)
    assert predict(tmp_path / "huge.npz", tmp_path / "in", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "a.png: the network's output is not finite" in err and "RuntimeWarning" not in err
    assert not (tmp_path / "out").exists()  # was: all-NaN probabilities, all-zero labels, exit 0


def test_a_multi_page_tiff_is_predicted_as_a_stack(ckpt, net, tmp_path):
    pages = [(np.random.default_rng(k).random((20, 27)) * 255).astype(np.uint8) for k in range(3)]
    Image.fromarray(pages[0]).save(tmp_path / "volume.tif", save_all=True,
                                   append_images=[Image.fromarray(p) for p in pages[1:]])
    assert predict(ckpt, tmp_path / "volume.tif", tmp_path / "out") == 0  # was: "use load_isbi2012"
    with Image.open(tmp_path / "out" / "volume_prob.tif") as prob, Image.open(tmp_path / "out" / "volume_labels.tif") as lab:
        assert prob.n_frames == lab.n_frames == 3
        for k, page in enumerate(pages):
            prob.seek(k)
            lab.seek(k)
            expected = predict_probabilities(net, page / np.float32(255))
            assert prob.mode == "F"  # 32-bit float, 1 = cell, 0 = membrane: the ISBI challenge's format
            np.testing.assert_allclose(np.asarray(prob), 1 - expected[0], atol=1e-6)
            np.testing.assert_array_equal(np.asarray(lab), expected.argmax(0) * 255)


@pytest.mark.parametrize("argv, says", [
    (["--out", "FILE"], "--out {tmp}/file.txt is a file, not a folder"),  # case 7: was a traceback
    (["--out", "FILE/sub"], "{tmp}/file.txt is a file, so no folder can be made under it"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--checkpoint", "{tmp}/nothing"], "--checkpoint {tmp}/nothing does not exist"),
    (["--input", "{tmp}/nothing"], "--input {tmp}/nothing does not exist"),
    pytest.param(["--device", "cuda"], "--device cuda: device 'cuda' asked for, but no usable GPU was found",
                 marks=pytest.mark.skipif(cuda_available(), reason="a GPU is here")),  # case 8
])
def test_bad_options_are_one_line_errors_before_any_work(ckpt, tmp_path, capsys, argv, says):
    images(tmp_path / "in", ["a"])
    (tmp_path / "file.txt").write_text("x")
    argv = [a.replace("FILE", str(tmp_path / "file.txt")).replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "o"),
                 "--device", "numpy", *argv]) == 2
    err = capsys.readouterr().err
    assert says.format(tmp=tmp_path) in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_a_checkpoint_without_model_config_is_a_clear_error(ckpt, tmp_path, capsys):  # case 12
    import json
    meta, model, _ = checkpoint.load(ckpt)
    del meta["model_config"]
    np.savez(tmp_path / "old.npz", meta=np.array(json.dumps(meta)), **{f"model/{k}": v for k, v in model.items()})
    images(tmp_path / "in", ["a"])
    assert predict(tmp_path / "old.npz", tmp_path / "in", tmp_path / "out") == 2
    assert "lacks model_config in its metadata" in capsys.readouterr().err
