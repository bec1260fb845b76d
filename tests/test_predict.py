"""Overlap-tile inference: seamless (equal to a single pass), any size, bounded memory; the CLI."""
import json
import tracemalloc

import numpy as np
import pytest
from PIL import Image, ImageSequence

import minunet as mu
from minunet import checkpoint, evaluate
from minunet.predict import main, predict_probabilities, probability_bands, tile_plan


@pytest.fixture(scope="module")
def small_net():
    return mu.UNet(depth=2, base_channels=3, dropout=0.0, dtype=np.float64, seed=4).eval()


def test_tiles_are_seamless(small_net):
    image = np.random.default_rng(0).random((37, 45))
    whole_tile, whole_out, _ = tile_plan(small_net, None, image.shape)
    assert whole_out >= 45  # one pass covers the image
    tiled = predict_probabilities(small_net, image, tile=28)  # 28 -> 12 px output tiles: 4 x 4 tiles
    whole = predict_probabilities(small_net, image)
    assert tiled.shape == whole.shape == (2, 37, 45)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-6)  # probabilities stored as float32
    np.testing.assert_allclose(tiled.sum(0), 1.0, atol=1e-6)


def test_test_time_augmentation_averages_eight_views(small_net):
    image = np.random.default_rng(1).random((20, 31))
    probs = predict_probabilities(small_net, image, tta=True)
    assert probs.shape == (2, 20, 31)
    # A symmetric image under a symmetric average: the result is symmetric too.
    sym = image[:20, :20] + image[:20, :20].T
    p = predict_probabilities(small_net, sym / 2, tta=True)
    np.testing.assert_allclose(p, p.transpose(0, 2, 1), atol=1e-6)


def test_a_4096_image_runs_in_bounded_memory():
    net = mu.UNet(depth=2, base_channels=2, dropout=0.0, seed=1).eval()
    image = np.random.default_rng(2).random((4096, 4096), dtype=np.float32)
    tracemalloc.start()
    probs = predict_probabilities(net, image, batch_size=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert probs.shape == (2, 4096, 4096) and np.isfinite(probs[:, ::97, ::89]).all()
    # Output (128 MiB) + mirrored input (64 MiB) + a couple of tiles; a single pass would need gigabytes.
    assert peak < 600 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_bad_images_are_clear_errors(small_net):
    with pytest.raises(ValueError, match=r"\(H, W\) or \(C, H, W\) with C = 1"):
        predict_probabilities(small_net, np.zeros((2, 10, 10)))
    with pytest.raises(ValueError, match="finite float array"):
        predict_probabilities(small_net, np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="nearest valid sizes"):
        predict_probabilities(small_net, np.zeros((10, 10)), tile=27)
    for bad in (0, -1, 2.0):  # -1 used to return the uninitialised output buffer
        with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
            predict_probabilities(small_net, np.zeros((10, 10)), batch_size=bad)


def test_cli_writes_probabilities_labels_and_overlays(tmp_path, small_net):
    checkpoint.save(tmp_path / "ckpt.npz", small_net, step=0)
    images = tmp_path / "in"
    images.mkdir()
    for name, size in (("a", (30, 41)), ("b", (17, 17))):
        Image.fromarray((np.random.default_rng(3).random(size) * 255).astype(np.uint8)).save(images / f"{name}.png")
    assert main(["--checkpoint", str(tmp_path / "ckpt.npz"), "--input", str(images), "--out",
                 str(tmp_path / "out"), "--device", "numpy"]) == 0
    for stem, size in (("a", (30, 41)), ("b", (17, 17))):
        assert np.asarray(Image.open(tmp_path / "out" / f"{stem}_labels.png")).shape == size
        assert np.load(tmp_path / "out" / f"{stem}_prob.npy").shape == (2,) + size
        assert (tmp_path / "out" / f"{stem}_overlay.png").is_file()


def test_evaluate_scores_the_folder_predict_wrote(tmp_path, small_net, capsys):
    # predict writes a_prob.npy, a_prob.png, a_labels.png, a_overlay.png; evaluate pairs truth a.png with
    # a_prob.npy (README: predict --out predictions, then evaluate --pred predictions/ --truth labels/)
    checkpoint.save(tmp_path / "ckpt.npz", small_net, step=0)
    rng = np.random.default_rng(5)
    for folder in ("in", "truth"):
        (tmp_path / folder).mkdir()
    for name, size in (("a", (21, 30)), ("b", (16, 16))):
        Image.fromarray((rng.random(size) * 255).astype(np.uint8)).save(tmp_path / "in" / f"{name}.png")
        Image.fromarray((rng.random(size) > 0.3).astype(np.uint8) * 255).save(tmp_path / "truth" / f"{name}.png")
    assert main(["--checkpoint", str(tmp_path / "ckpt.npz"), "--input", str(tmp_path / "in"),
                 "--out", str(tmp_path / "pred"), "--device", "numpy"]) == 0
    assert evaluate.main(["--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"),
                          "--json", str(tmp_path / "scores.json")]) == 0, capsys.readouterr().err
    scores = {image["name"]: image for image in json.loads((tmp_path / "scores.json").read_text())["images"]}
    for name in ("a", "b"):
        predicted = np.load(tmp_path / "pred" / f"{name}_prob.npy").argmax(0)
        truth = np.asarray(Image.open(tmp_path / "truth" / f"{name}.png")) // 255
        assert scores[name]["pixel_error"] == pytest.approx(np.mean(predicted != truth))
    # Swapped: the truth folder holds a_prob.png and a_prob.npy (was: "two files with the stem 'a_prob'").
    capsys.readouterr()
    assert evaluate.main(["--pred", str(tmp_path / "truth"), "--truth", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err
    assert f"--truth {tmp_path / 'pred'} holds predictions (a_prob.npy, b_prob.npy" in err
    assert "were --pred and --truth swapped?" in err and err.count("\n") == 1
    Image.fromarray(np.zeros((21, 30), np.uint8)).save(tmp_path / "pred" / "a.png")
    Image.fromarray(np.zeros((21, 30), np.uint8)).save(tmp_path / "pred" / "a.tif")
    assert evaluate.main(["--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth")]) == 2
    assert "two predictions for 'a'" in capsys.readouterr().err


def test_a_multi_page_tiff_gives_a_stack_the_challenge_reads(tmp_path, small_net, capsys):
    # ISBI 2012's test-volume.tif: predict writes every page's P(cell) as one float32 stack (white = cell)
    checkpoint.save(tmp_path / "ckpt.npz", small_net, step=0)
    rng = np.random.default_rng(6)
    pages = [(rng.random((19, 23)) * 255).astype(np.uint8) for _ in range(3)]
    truth = [(rng.random((19, 23)) > 0.3).astype(np.uint8) * 255 for _ in range(3)]
    for name, frames in (("volume.tif", pages), ("labels.tif", truth)):
        images = [Image.fromarray(frame) for frame in frames]
        images[0].save(tmp_path / name, save_all=True, append_images=images[1:])
    assert main(["--checkpoint", str(tmp_path / "ckpt.npz"), "--input", str(tmp_path / "volume.tif"),
                 "--out", str(tmp_path / "pred"), "--device", "numpy"]) == 0
    with Image.open(tmp_path / "pred" / "volume_prob.tif") as stack:
        written = [np.array(frame) for frame in ImageSequence.Iterator(stack)]
    assert len(written) == 3 and written[0].shape == (19, 23) and written[0].dtype == np.float32
    for page, cells in zip(pages, written):
        expected = predict_probabilities(small_net, page / np.float32(255))
        np.testing.assert_allclose(cells, 1 - expected[0], rtol=0, atol=1e-6)
    assert evaluate.main(["--pred", str(tmp_path / "pred" / "volume_prob.tif"), "--truth", str(tmp_path / "labels.tif"),
                          "--json", str(tmp_path / "scores.json")]) == 0, capsys.readouterr().err
    challenge = json.loads((tmp_path / "scores.json").read_text())["isbi2012_challenge"]
    assert challenge["images"] == 3
    assert challenge["rand_error"] == pytest.approx(
        mu.metrics.challenge_rand_error(written, [t == 255 for t in truth]).error, abs=1e-12)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "missing.npz"), "--input", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    assert main(["--checkpoint", str(tmp_path / "bad.npz"), "--input", str(tmp_path)]) == 2
    assert "not a .npz archive" in capsys.readouterr().err  # not numpy's guess that it holds a pickle


def test_cli_unreadable_images_are_one_line_errors(tmp_path, small_net, capsys):
    checkpoint.save(tmp_path / "ckpt.npz", small_net, step=0)
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(tmp_path / "whole.png")
    whole = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "text.png").write_text("not an image")
    for name, message in (("truncated.png", "truncated"), ("text.png", "cannot identify")):
        assert main(["--checkpoint", str(tmp_path / "ckpt.npz"), "--input", str(tmp_path / name),
                     "--out", str(tmp_path / "out"), "--device", "numpy"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / name}: not a readable image") and message in err, err


def test_default_tile_covers_the_image_in_one_pass_up_to_the_paper_tile():
    net = mu.UNet(depth=3, base_channels=2)
    assert tile_plan(net, None, (30, 50)) == (92, 52, 20)   # the smallest tile whose output covers 50 px
    assert tile_plan(net, None, (4096, 4096))[0] == 572       # capped at the paper's tile
    assert tile_plan(net, None, None)[0] == 572                # no image given: the largest tile


def write_images(folder, names, size=(30, 41)):
    folder.mkdir()
    for name in names:
        Image.fromarray((np.random.default_rng(3).random(size) * 255).astype(np.uint8)).save(folder / f"{name}.png")


def test_cli_ctrl_c_is_one_line_saying_what_was_written(tmp_path, small_net, monkeypatch, capsys):
    import minunet.predict
    checkpoint.save(tmp_path / "ckpt.npz", small_net, step=0)
    write_images(tmp_path / "in", ["a", "b", "c"])
    calls = []

    def interrupted_on_the_second_image(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of an image
        return probability_bands(*args, **kwargs)

    monkeypatch.setattr(minunet.predict, "probability_bands", interrupted_on_the_second_image)
    try:
        code = main(["--checkpoint", str(tmp_path / "ckpt.npz"), "--input", str(tmp_path / "in"),
                     "--out", str(tmp_path / "out"), "--device", "numpy"])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main: the user sees a traceback")
    assert code == 130
    err = capsys.readouterr().err
    assert f"interrupted: wrote 1 of 3 prediction(s) to {tmp_path / 'out'}/ (the last: a)" in err
    assert "Traceback" not in err and (tmp_path / "out" / "a_prob.npy").is_file()


def test_cli_invalid_tile_names_the_option_and_makes_no_folder(tmp_path, small_net, capsys):
    checkpoint.save(tmp_path / "ckpt.npz", small_net, step=0)
    write_images(tmp_path / "in", ["a"])
    for tile, says in (("27", "--tile 27: input size 27 does not fit"), ("0", "--tile 0: input size 0 is too small")):
        assert main(["--checkpoint", str(tmp_path / "ckpt.npz"), "--input", str(tmp_path / "in"),
                     "--out", str(tmp_path / "out"), "--device", "numpy", "--tile", tile]) == 2
        assert says in capsys.readouterr().err
        assert not (tmp_path / "out").exists()  # was: an empty output folder


def test_cli_threads_option(tmp_path, small_net, monkeypatch, capsys):
    import minunet.predict
    from minunet import threads
    checkpoint.save(tmp_path / "ckpt.npz", small_net, step=0)
    write_images(tmp_path / "in", ["a"])
    seen = []

    def record(*args, **kwargs):
        seen.extend(threads.blas_threads_now())
        return probability_bands(*args, **kwargs)

    monkeypatch.setattr(minunet.predict, "probability_bands", record)
    argv = ["--checkpoint", str(tmp_path / "ckpt.npz"), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "o"),
            "--device", "numpy"]
    assert main(argv + ["--threads", "1"]) == 0
    assert set(seen) == {1} and "threads 1 (--threads)" in capsys.readouterr().out
    assert main(argv + ["--threads", "-2"]) == 2
    assert "--threads must be an int >= 1, got -2" in capsys.readouterr().err
