"""Segmentation metrics (hand-computed cases, scikit-image cross-checks) and the evaluate CLI end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from minunet import evaluate, metrics

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------
# pixel error, IoU, Dice


def test_pixel_error_counts_disagreeing_pixels():
    truth = np.array([[0, 1, 1], [0, 0, 1]], dtype=bool)
    pred = np.array([[0, 1, 0], [1, 0, 1]], dtype=np.uint8)
    assert metrics.pixel_error(pred, truth) == pytest.approx(2 / 6)
    assert metrics.pixel_error(truth, truth) == 0.0


def test_iou_and_dice_hand_computed():
    truth = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    # class 0: pred {0,5}, truth {0,1}; class 1: pred {1,2,3}, truth {2,3}; class 2: pred {4}, truth {4,5}
    np.testing.assert_allclose(metrics.iou(pred, truth, 4), [1 / 3, 2 / 3, 1 / 2, np.nan])
    np.testing.assert_allclose(metrics.dice(pred, truth, 4), [2 / 4, 4 / 5, 2 / 3, np.nan])
    assert metrics.foreground_iou(pred, truth) == pytest.approx(3 / 5)  # fg pred {1,2,3,4}, truth {2,3,4,5}
    assert np.isnan(metrics.foreground_iou(np.zeros((2, 2), int), np.zeros((2, 2), int)))
    np.testing.assert_array_equal(metrics.iou(truth, truth, 3), [1, 1, 1])


def test_confusion_matrix_matches_a_loop(rng):
    truth = rng.integers(0, 5, size=(17, 13))
    pred = rng.integers(0, 5, size=(17, 13))
    expected = np.zeros((5, 5), np.int64)
    for t, p in zip(truth.ravel(), pred.ravel()):
        expected[t, p] += 1
    np.testing.assert_array_equal(metrics.confusion_matrix(pred, truth, 5), expected)


@pytest.mark.parametrize("call, error, words", [
    (lambda: metrics.pixel_error(np.zeros((2, 3), bool), np.zeros((3, 2), bool)), ValueError, "shape mismatch"),
    (lambda: metrics.pixel_error(np.full((2, 2), 0.5), np.zeros((2, 2), bool)), TypeError, "integer"),
    (lambda: metrics.pixel_error(np.full((2, 2), 2), np.zeros((2, 2), bool)), ValueError, "binary"),
    (lambda: metrics.iou(np.full((2, 2), 255), np.zeros((2, 2), int), 2), ValueError, "0/255"),
    (lambda: metrics.iou(np.zeros((2, 2), int), np.full((2, 2), -1), 2), ValueError, ">= 0"),
    (lambda: metrics.dice(np.zeros((2, 2), int), np.zeros((2, 2), int), 0), ValueError, "n_classes"),
    (lambda: metrics.adapted_rand_error(np.zeros((3, 3)), np.zeros((3, 3), int)), TypeError, "pred_segmentation"),
    (lambda: metrics.adapted_rand_error(np.zeros((3, 3), int), np.zeros((3, 4), int)), ValueError, "shape mismatch"),
])
def test_bad_inputs_raise_clear_errors(call, error, words):
    with pytest.raises(error, match=words):
        call()


# ---------------------------------------------------------------------------------------------------
# Rand error and variation of information: hand-computed cases


def test_perfect_segmentation_scores_zero_whatever_the_ids():
    truth = np.array([[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 2], [3, 3, 0, 2]])
    pred = np.where(truth == 0, 0, truth * 1000 + 7)  # other ids, same partition
    assert metrics.adapted_rand(pred, truth) == (0.0, 1.0, 1.0)
    assert metrics.variation_of_information(pred, truth) == (0.0, 0.0, 0.0)


def test_split_of_one_cell_into_two():
    truth = np.array([[1, 1, 1, 1, 0]])
    pred = np.array([[4, 4, 9, 9, 9]])  # the last pixel is truth background: not counted
    # counted pixels n = 4; ordered pairs sharing a segment: truth 16-4 = 12, pred 8-4 = 4, both 4
    scores = metrics.adapted_rand(pred, truth)
    assert scores.precision == 1.0          # no false merge
    assert scores.recall == pytest.approx(4 / 12)
    assert scores.error == pytest.approx(1 - 2 * 4 / (12 + 4))
    vi = metrics.variation_of_information(pred, truth)
    assert vi.split == pytest.approx(1.0) and vi.merge == 0.0 and vi.total == pytest.approx(1.0)


def test_merge_of_two_cells():
    truth = np.array([[1, 1, 0, 2, 2]])
    pred = np.array([[5, 5, 5, 5, 5]])  # one segment across the truth's membrane pixel
    scores = metrics.adapted_rand(pred, truth)
    assert scores.recall == 1.0             # no false split
    assert scores.precision == pytest.approx(4 / 12)
    assert scores.error == pytest.approx(0.5)
    vi = metrics.variation_of_information(pred, truth)
    assert vi.merge == pytest.approx(1.0) and vi.split == 0.0
    # scored on every pixel, the membrane pixel is a third truth segment merged in too
    assert metrics.variation_of_information(pred, truth, ignore_truth_background=False).merge > 1.0


def test_prediction_outside_truth_foreground_is_ignored_and_empty_truth_is_nan():
    truth = np.array([[1, 1, 0, 0], [1, 1, 0, 0]])
    pred = np.array([[3, 3, 1, 2], [3, 3, 4, 5]])
    assert metrics.adapted_rand_error(pred, truth) == 0.0
    assert np.isnan(metrics.adapted_rand_error(pred, np.zeros_like(truth)))
    assert np.isnan(metrics.variation_of_information(pred, np.zeros_like(truth)).total)


# ---------------------------------------------------------------------------------------------------
# cross-check with scikit-image on random segmentations


@pytest.mark.parametrize("shape, n_truth, n_pred, dtype", [
    ((37, 53), 6, 9, np.int64), ((64, 31), 40, 3, np.uint16), ((5, 7, 11), 4, 30, np.int32)])
def test_rand_and_vi_match_scikit_image(rng, shape, n_truth, n_pred, dtype):
    skm = pytest.importorskip("skimage.metrics")
    for _ in range(3):
        truth = rng.integers(0, n_truth, size=shape).astype(dtype)
        pred = rng.integers(0, n_pred, size=shape).astype(dtype)
        pred[: shape[0] // 2] = pred[0, 0]  # one big segment too, so pairs are not all random
        ref_error, ref_a, ref_b = skm.adapted_rand_error(truth, pred)
        ours = metrics.adapted_rand(pred, truth)
        assert ours.error == pytest.approx(ref_error, abs=1e-12)
        # skimage names them the other way round in some versions; the pair must agree either way
        assert sorted([ours.precision, ours.recall]) == pytest.approx(sorted([ref_a, ref_b]), abs=1e-12)
        split, merge, total = metrics.variation_of_information(pred, truth)
        ref_split, ref_merge = skm.variation_of_information(truth, pred, ignore_labels=(0,))
        assert (split, merge) == pytest.approx((ref_split, ref_merge), abs=1e-10)
        assert total == pytest.approx(split + merge)
        unrestricted = metrics.variation_of_information(pred, truth, ignore_truth_background=False)
        np.testing.assert_allclose(unrestricted[:2], skm.variation_of_information(truth, pred), atol=1e-10)


def test_huge_ids_are_compacted_not_tabulated(rng):
    truth = rng.integers(0, 5, size=(40, 40))
    pred = rng.integers(0, 7, size=(40, 40))
    huge = pred.astype(np.int64) * (2**40) + 3  # a dense table over these ids would not fit in memory
    assert metrics.adapted_rand_error(huge, truth) == pytest.approx(metrics.adapted_rand_error(pred, truth), abs=1e-15)


# ---------------------------------------------------------------------------------------------------
# the ISBI protocol


def _grid_example():
    """9x11 image, 4 cells of 20 pixels separated by a membrane cross (row 4, column 5)."""
    truth_membrane = np.zeros((9, 11), bool)
    truth_membrane[4, :] = True
    truth_membrane[:, 5] = True
    prob = np.where(truth_membrane, 0.8, 0.1)
    prob[4, 2] = 0.45                   # a weak membrane pixel: above 0.45 it joins the two left cells
    for y, x in ((1, 1), (1, 8), (7, 8)):
        prob[y, x] = 0.5                # noise inside three cells: membrane below 0.5
    return prob, truth_membrane


def test_segment_cells_uses_4_connectivity():
    membrane = np.array([[0, 1], [1, 0]], bool)
    labels = metrics.segment_cells(membrane)
    assert labels[0, 0] != labels[1, 1] and labels[0, 0] > 0 and labels[1, 1] > 0
    assert labels[0, 1] == 0 and labels[1, 0] == 0


def test_isbi_sweep_picks_the_best_threshold_per_score():
    prob, truth_membrane = _grid_example()
    scores = metrics.per_image_sweep(prob, truth_membrane, thresholds=(0.3, 0.47, 0.6, 0.9))
    # t=0.3: cross + gap + 3 noise pixels are membrane. No merge; the noise pixels form pred segment 0.
    # pairs: truth 4*20^2-80 = 1520; pred 3*19^2+20^2+3^2-80 = 1412; both 3*19^2+20^2+3*1-80 = 1406
    assert scores.rand_errors[0] == pytest.approx(1 - 2 * 1406 / (1520 + 1412))
    assert scores.rand_error == scores.rand_errors[0] and scores.rand_threshold == 0.3
    assert scores.rand_errors[1] > scores.rand_errors[0]   # t=0.47: the gap merges two cells
    # t=0.6: only the gap pixel is wrong -> the best pixel error, at another threshold than the Rand error
    np.testing.assert_allclose(scores.pixel_errors, [3 / 99, 4 / 99, 1 / 99, 19 / 99])
    assert scores.pixel_error == pytest.approx(1 / 99) and scores.pixel_threshold == 0.6
    assert np.argmin(scores.vi) == 0 and scores.vi_threshold == 0.3
    # t=0.9: no membrane at all -> one segment -> every cell merged: pairs pred 80^2-80, both = truth's
    assert scores.rand_errors[3] == pytest.approx(1 - 2 * 1520 / (1520 + 6320))


def test_isbi_sweep_boundary_and_ties():
    prob, truth_membrane = _grid_example()
    # membrane means probability > t: at t = 0.45 the gap pixel (0.45) is already cell, so the cells merge
    at_gap = metrics.per_image_sweep(prob, truth_membrane, thresholds=(0.45, 0.47))
    assert at_gap.rand_errors[0] == at_gap.rand_errors[1]
    assert at_gap.pixel_errors[0] == pytest.approx(4 / 99)
    # equal scores: the first threshold given wins
    tie = metrics.per_image_sweep(prob, truth_membrane, thresholds=(0.6, 0.25, 0.3))
    assert tie.rand_errors[1] == tie.rand_errors[2] and tie.rand_threshold == 0.25
    assert metrics.per_image_sweep(prob, truth_membrane, thresholds=(0.3, 0.25)).rand_threshold == 0.3


def test_isbi_sweep_agrees_with_scikit_image_per_threshold(rng):
    skm = pytest.importorskip("skimage.metrics")
    truth_membrane = ndimage.binary_dilation(rng.random((48, 57)) < 0.04, iterations=2)
    prob = np.clip(ndimage.gaussian_filter(truth_membrane.astype(float), 1.0) + rng.normal(0, 0.15, (48, 57)), 0, 1)
    thresholds = (0.2, 0.35, 0.5, 0.65)
    scores = metrics.per_image_sweep(prob, truth_membrane, thresholds)
    truth_cells = ndimage.label(~truth_membrane)[0]
    for k, t in enumerate(thresholds):
        pred_cells = ndimage.label(prob <= t)[0]  # scipy's default structure in 2D is 4-connectivity
        assert scores.rand_errors[k] == pytest.approx(skm.adapted_rand_error(truth_cells, pred_cells)[0], abs=1e-12)
        vi = skm.variation_of_information(truth_cells, pred_cells, ignore_labels=(0,))
        assert scores.vi[k] == pytest.approx(vi.sum(), abs=1e-10)
        assert scores.pixel_errors[k] == pytest.approx(np.mean((prob > t) != truth_membrane))
    assert scores.rand_error == pytest.approx(scores.rand_errors.min())
    assert scores.rand_threshold == thresholds[int(np.argmin(scores.rand_errors))]


@pytest.mark.parametrize("prob, mask, thresholds, error, words", [
    (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), (0.5,), TypeError, "255"),
    (np.full((4, 4), 1.5), np.zeros((4, 4), bool), (0.5,), ValueError, r"\[0, 1\]"),
    (np.full((4, 4), np.nan), np.zeros((4, 4), bool), (0.5,), ValueError, "NaN"),
    (np.zeros((2, 4, 4)), np.zeros((2, 4, 4), bool), (0.5,), ValueError, "2D"),
    (np.zeros((4, 4)), np.zeros((4, 5), bool), (0.5,), ValueError, "shape mismatch"),
    (np.zeros((4, 4)), np.full((4, 4), 255), (0.5,), ValueError, "binary"),
    (np.zeros((4, 4)), np.zeros((4, 4), bool), (0.5, 1.2), ValueError, "thresholds"),
    (np.zeros((4, 4)), np.zeros((4, 4), bool), (), ValueError, "thresholds"),
])
def test_per_image_sweep_validates_inputs(prob, mask, thresholds, error, words):
    with pytest.raises(error, match=words):
        metrics.per_image_sweep(prob, mask, thresholds)


# ---------------------------------------------------------------------------------------------------
# python -m minunet.evaluate


def _write_dataset(root):
    """truth/{a,b,c}.png as 0/255 masks; pred/a.png 8-bit probability, b.tif float, c.npy labels."""
    prob, truth_membrane = _grid_example()
    truth = np.where(truth_membrane, 0, 255).astype(np.uint8)
    (root / "truth").mkdir()
    (root / "pred").mkdir()
    for stem in "abc":
        Image.fromarray(truth).save(root / "truth" / f"{stem}.png")
    Image.fromarray(np.round((1 - prob) * 255).astype(np.uint8)).save(root / "pred" / "a.png")
    Image.fromarray((1 - prob[::-1]).astype(np.float32)).save(root / "pred" / "b.tif")  # flipped: a worse one
    np.save(root / "pred" / "c.npy", (truth // 255).astype(np.int32))
    return truth


def _run_cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "minunet.evaluate", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_end_to_end_on_a_png_folder(tmp_path):
    truth = _write_dataset(tmp_path)
    out = tmp_path / "scores" / "out.json"
    result = _run_cli("--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "--json", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ISBI 2012 challenge scores of these 3 images as one stack")
    assert [line.split()[0] for line in lines[1:4]] == ["warping", "Rand", "pixel"] and "0.0382" in lines[2]
    header = next(k for k, line in enumerate(lines) if line.startswith("image"))
    assert [line.split()[0] for line in lines[header + 1:header + 5]] == ["a", "b", "c", "mean"]
    summary = json.loads(out.read_text())
    # the challenge's scores: the three images as one stack, exactly as metrics.isbi2012_challenge scores it
    challenge = summary["isbi2012_challenge"]
    probs = [np.asarray(Image.open(tmp_path / "pred" / "a.png")) / 255, np.asarray(Image.open(tmp_path / "pred" / "b.tif")),
             (truth // 255).astype(np.float64)]
    direct = metrics.isbi2012_challenge(probs, [truth == 255] * 3)
    for name in ("rand_error", "pixel_error", "warping_error", "variation_of_information"):
        assert challenge[name] == direct[name].error and challenge[f"{name}_threshold"] == direct[name].threshold
        assert challenge["curves"][name]["errors"] == direct[name].errors.tolist()
    assert challenge["curves"]["rand_error"]["thresholds"] == list(metrics.CHALLENGE_THRESHOLDS)
    assert challenge["unet_paper_table1"] == {"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611}
    a, b, c = summary["images"]
    assert [a["name"], b["name"], c["name"]] == ["a", "b", "c"]
    # c is the truth itself as a label image
    assert c["pixel_error"] == 0 and c["iou"] == [1, 1] and c["isbi"]["rand_error"] == 0
    # a is the 8-bit probability map: the CLI must score exactly what per_image_sweep gives on value/255
    cell_probability = np.asarray(Image.open(tmp_path / "pred" / "a.png")) / 255
    direct = metrics.per_image_sweep(1 - cell_probability, truth == 0)
    assert a["isbi"]["rand_errors"] == pytest.approx(direct.rand_errors.tolist(), abs=1e-12)
    assert a["isbi"]["rand_threshold"] == direct.rand_threshold
    assert a["pixel_error"] == pytest.approx(np.mean((cell_probability > 0.5) != (truth == 255)))
    assert b["pixel_error"] > a["pixel_error"]  # the flipped float TIFF was read and scored as worse
    assert summary["mean"]["pixel_error"] == pytest.approx((a["pixel_error"] + b["pixel_error"]) / 3)
    assert summary["thresholds"] == pytest.approx([0.1 * k for k in range(1, 10)])


def test_cli_challenge_options(tmp_path, capsys):
    truth = _write_dataset(tmp_path)
    out = tmp_path / "o.json"
    assert evaluate.main(["--pred", str(tmp_path / "pred" / "a.png"), "--truth", str(tmp_path / "truth" / "a.png"),
                          "--rand-form", "pairs", "--no-warping", "--json", str(out)]) == 0
    report = capsys.readouterr().out
    assert "2012-2014 pair form" in report and "warping" not in report.splitlines()[1]
    challenge = json.loads(out.read_text())["isbi2012_challenge"]
    assert "warping_error" not in challenge and challenge["rand_form"] == "pairs"
    prob = np.asarray(Image.open(tmp_path / "pred" / "a.png")) / 255
    assert challenge["rand_error"] == metrics.challenge_rand_error(prob, truth == 255, form="pairs").error


def test_cli_error_is_one_line_without_traceback(tmp_path):
    _write_dataset(tmp_path)
    result = _run_cli("--pred", tmp_path / "pred" / "nope.png", "--truth", tmp_path / "truth" / "a.png", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr


def _main_error(capsys, *argv):
    code = evaluate.main([str(arg) for arg in argv])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.count("\n") == 0 and err.startswith("minunet.evaluate: error:"), err
    return err


def test_cli_size_mismatch(tmp_path, capsys):
    _write_dataset(tmp_path)
    Image.fromarray(np.zeros((9, 10), np.uint8)).save(tmp_path / "small.png")
    err = _main_error(capsys, "--pred", tmp_path / "small.png", "--truth", tmp_path / "truth" / "a.png")
    assert "size mismatch" in err and "9x10" in err and "9x11" in err


def test_cli_mask_with_unexpected_values_names_them(tmp_path, capsys):
    _write_dataset(tmp_path)
    Image.fromarray(np.array([[0, 128, 255]], np.uint8)).save(tmp_path / "odd_truth.png")
    Image.fromarray(np.array([[0, 1, 1]], np.uint8)).save(tmp_path / "odd_pred.png")
    err = _main_error(capsys, "--pred", tmp_path / "odd_pred.png", "--truth", tmp_path / "odd_truth.png")
    assert "[0, 128, 255]" in err and "0/255" in err


def test_cli_other_bad_inputs(tmp_path, capsys):
    _write_dataset(tmp_path)
    (tmp_path / "pred" / "c.npy").unlink()
    assert "no prediction for 1 of 3" in _main_error(capsys, "--pred", tmp_path / "pred", "--truth", tmp_path / "truth")
    np.save(tmp_path / "over.npy", np.full((9, 11), 1.5))
    assert "[0, 1]" in _main_error(capsys, "--pred", tmp_path / "over.npy", "--truth", tmp_path / "truth" / "a.png")
    assert "two files or two folders" in _main_error(capsys, "--pred", tmp_path / "pred",
                                                     "--truth", tmp_path / "truth" / "a.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert "cannot read" in _main_error(capsys, "--pred", tmp_path / "broken.png", "--truth", tmp_path / "truth" / "a.png")


def test_cli_multiclass_label_images(tmp_path, capsys):
    truth = np.array([[0, 0, 1], [1, 2, 2]], np.uint8)
    pred = np.array([[0, 1, 1], [1, 2, 0]], np.uint8)
    Image.fromarray(truth).save(tmp_path / "t.png")
    Image.fromarray(pred).save(tmp_path / "p.png")
    code = evaluate.main(["--pred", str(tmp_path / "p.png"), "--truth", str(tmp_path / "t.png"), "--n-classes", "3",
                          "--json", str(tmp_path / "o.json")])
    assert code == 0, capsys.readouterr().err
    image = json.loads((tmp_path / "o.json").read_text())["images"][0]
    assert image["iou"] == pytest.approx([1 / 3, 2 / 3, 1 / 2]) and "isbi" not in image
    assert "--thresholds" in _main_error(capsys, "--pred", tmp_path / "p.png", "--truth", tmp_path / "t.png",
                                         "--n-classes", "3", "--thresholds", "0.5")


def test_thresholds_argument_and_help(capsys):
    assert evaluate.parse_thresholds("0.1:0.9:0.1") == pytest.approx([0.1 * k for k in range(1, 10)])
    assert len(evaluate.parse_thresholds("0.1:0.9:0.1")) == 9
    assert evaluate.parse_thresholds("0.3,0.5") == (0.3, 0.5)
    for bad in ("0.9:0.1:0.1", "a,b", "0.5:1.5:0.5", "0:1:0"):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main(["--pred", "x", "--truth", "y", "--thresholds", bad])
        assert exit_info.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--help"])
    assert exit_info.value.code == 0
    assert "--thresholds" in capsys.readouterr().out
