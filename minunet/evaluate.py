"""python -m minunet.evaluate: score predicted masks against ground truth, per image and on average.

    python -m minunet.evaluate --pred runs/pred --truth data/isbi2012/label --json scores.json

With --n-classes 2 (the default) the report leads with the ISBI 2012 challenge's scores of all the images as
one stack (minunet.metrics.isbi2012_challenge: warping, Rand and pixel error as Fiji's Trainable Segmentation
computes them, the U-Net paper's Table 1 beside them). Then, per image: pixel error, per-class IoU and Dice,
foreground IoU (at the decision probability > 0.5, or the label image as given) and scikit-image's adapted
Rand error, VI and pixel error, each at the image's own best threshold (minunet.metrics.per_image_sweep).
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from . import cli, metrics
from .data.loaders import files_by_stem, files_grouped_by_stem, normalize_masks

SUFFIXES = (".png", ".tif", ".tiff", ".npy")
FULL_SCALE = {"L": 255, "I;16": 65535, "I;16B": 65535, "I;16L": 65535}  # integer modes read as probabilities


class InputError(Exception):
    """Bad input from the user: main prints the message on one line and exits with status 2."""


# ---------------------------------------------------------------------------------------------------
# reading


def describe_values(a):
    """'values [0, 128, 255]' or '3721 distinct values in [0.0, 1.7]': what was found, for error messages."""
    if np.issubdtype(a.dtype, np.floating) and np.isnan(a).any():
        return f"NaN at {np.count_nonzero(np.isnan(a))} of {a.size} pixels"
    values = np.unique(a)
    if values.size <= 8:
        return f"values {values.tolist()}"
    return f"{values.size} distinct values in [{values[0]}, {values[-1]}]"


def _pil_frame(frame, path):
    """(array, full_scale) of one PIL frame; full_scale is 255/65535 for 8/16-bit gray, else None."""
    mode = frame.mode
    if mode in ("RGB", "RGBA", "LA"):
        channels = np.asarray(frame.convert("RGB" if mode != "LA" else "LA"))
        gray = channels[..., 0]
        if mode != "LA" and not (np.array_equal(gray, channels[..., 1]) and np.array_equal(gray, channels[..., 2])):
            raise InputError(f"{path}: a colour image; expected a grayscale mask or probability map")
        return np.array(gray), 255
    return np.array(frame), FULL_SCALE.get(mode)


def read_frames(path):
    """[(name, array, full_scale)]: one entry per image; a multi-page TIFF gives 'stem[k]' entries."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"{path}: unsupported file type (expected one of {', '.join(SUFFIXES)})")
    try:
        if path.suffix.lower() == ".npy":
            return [(path.stem, _numeric_npy(path), None)]
        with Image.open(path) as image:
            frames = [_pil_frame(frame, path) for frame in ImageSequence.Iterator(image)]
    except InputError:
        raise
    except Exception as error:  # a corrupt or truncated file: say which one, without a traceback
        raise InputError(f"{path}: cannot read ({type(error).__name__}: {error})") from None
    if len(frames) == 1:
        return [(path.stem, *frames[0])]
    return [(f"{path.stem}[{k}]", array, scale) for k, (array, scale) in enumerate(frames)]


def _numeric_npy(path):
    """The array of a .npy file of numbers (never unpickled); an InputError naming the file for anything else."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        if "allow_pickle" not in str(error):
            raise
        raise InputError(f"{path}: holds Python objects, not an array of numbers; save the prediction as a numeric "
                         "array (np.save(path, probabilities.astype(np.float32)))") from None
    if not isinstance(array, np.ndarray) or array.dtype.fields is not None or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"{path}: an array of {array.dtype}, not of numbers; expected probabilities or labels")
    if array.size == 0:
        raise InputError(f"{path}: an empty array (shape {array.shape}); expected an image-sized prediction")
    return array


def _files_by_stem(folder):
    try:
        return files_by_stem(folder, "folder", SUFFIXES)
    except (ValueError, FileNotFoundError) as e:
        raise InputError(str(e)) from None


def collect_pairs(pred, truth):
    """[(prediction file, truth file)]: two files, or two folders paired by file stem."""
    pred, truth = Path(pred), Path(truth)
    for path, flag in ((pred, "--pred"), (truth, "--truth")):
        if not path.exists():
            raise InputError(f"{flag} {path}: no such file or folder")
    if pred.is_dir() != truth.is_dir():
        raise InputError(f"--pred {pred} and --truth {truth}: give two files or two folders")
    if not pred.is_dir():
        return [(pred, truth)]
    try:
        truths = _files_by_stem(truth)
    except InputError:
        _check_not_predictions(truth)  # the likelier cause, said first
        raise
    in_pred = files_grouped_by_stem(pred, SUFFIXES)  # one listing of the folder, not one per truth image
    preds = {stem: _prediction_for(in_pred, pred, stem) for stem in truths}
    missing = sorted((stem for stem, path in preds.items() if path is None), key=_natural)
    if missing:
        _check_not_predictions(truth)  # the likelier cause, said first
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise InputError(f"{pred}: no prediction for {len(missing)} of {len(truths)} truth images ({shown})")
    return [(preds[stem], truths[stem]) for stem in sorted(truths, key=_natural)]


def _check_not_predictions(truth):
    """A truth folder with predict's a_prob.npy files was given in place of the --pred folder."""
    found = sorted(p.name for p in Path(truth).glob("*_prob.npy"))
    if found:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise InputError(f"--truth {truth} holds predictions ({shown}, as python -m minunet.predict writes them): "
                         f"were --pred and --truth swapped? --truth takes the ground-truth masks")


def _prediction_for(in_pred, folder, stem):
    """The prediction of truth image `stem`: the file stem.png/.tif/.tiff/.npy in folder or, failing that, the
    stem_prob.npy (class probabilities, full precision) that python -m minunet.predict writes; None if neither.
    in_pred: {stem: [paths]} of the folder's files with one of SUFFIXES."""
    for name, suffixes in ((stem, SUFFIXES), (f"{stem}_prob", (".npy",))):
        found = [p for p in in_pred.get(name, []) if p.suffix.lower() in suffixes]
        if len(found) > 1:
            raise InputError(f"two predictions for {stem!r} in {folder}: {found[0].name} and {found[1].name}")
        if found:
            return found[0]
    return None


def _natural(stem):
    """Sort '2' before '10'."""
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


# ---------------------------------------------------------------------------------------------------
# value rules


def _integral(a):
    return np.issubdtype(a.dtype, np.integer) or a.dtype == bool or (
        np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == np.round(a)))


def truth_to_classes(array, n_classes, name):
    """Class indices from a truth mask, by the data loaders' rules: 0/255 (two classes: 255 -> 1) or indices."""
    if array.ndim != 2:
        raise InputError(f"truth {name}: expected a 2D mask, got shape {array.shape}")
    if not _integral(array):
        raise InputError(f"truth {name}: {describe_values(array)}; expected an integer mask (0/255 or class indices)")
    try:
        (mask,), _ = normalize_masks([array], [f"truth {name}"], n_classes)
    except ValueError as e:
        raise InputError(f"{e} (--n-classes {n_classes})") from None
    return mask.astype(np.int64)


def prediction_to_maps(array, full_scale, n_classes, name):
    """(class map, probability of class 1 or None) from a prediction, by these rules, in order:

    1. float (H, W) in [0, 1], two classes: the probability of class 1;
    2. float (K, H, W) in [0, 1] with K = n_classes: per-class probabilities (argmax decides);
    3. integers all below n_classes: class indices (a label image);
    4. an 8/16-bit gray image, two classes: the probability of class 1 is value / 255 (or 65535).
    """
    is_float = np.issubdtype(array.dtype, np.floating)
    if is_float and not (np.all(np.isfinite(array)) and array.min() >= 0 and array.max() <= 1):
        raise InputError(f"prediction {name}: {describe_values(array)}; float predictions must be "
                         "probabilities in [0, 1]")
    if is_float and array.ndim == 2:
        if n_classes != 2:
            raise InputError(f"prediction {name}: a 2D probability map needs --n-classes 2; for "
                             f"{n_classes} classes give (K, H, W) probabilities or a label image")
        return (array > 0.5).astype(np.int64), array.astype(np.float64)
    if is_float and array.ndim == 3:
        if array.shape[0] != n_classes:
            raise InputError(f"prediction {name}: shape {array.shape} is not (n_classes={n_classes}, H, W)")
        foreground = array[1].astype(np.float64) if n_classes == 2 else None
        return np.argmax(array, axis=0).astype(np.int64), foreground
    if array.ndim != 2:
        raise InputError(f"prediction {name}: expected a 2D image, got shape {array.shape}")
    labels = array.astype(np.int64)
    if labels.min() >= 0 and labels.max() < n_classes:
        foreground = (labels == 1).astype(np.float64) if n_classes == 2 else None
        return labels, foreground
    if n_classes == 2 and full_scale is not None:
        probability = labels / full_scale
        return (probability > 0.5).astype(np.int64), probability
    raise InputError(f"prediction {name}: {describe_values(array)}; expected class indices "
                     f"0..{n_classes - 1}" + (" or an 8/16-bit probability image" if n_classes == 2 else ""))


# ---------------------------------------------------------------------------------------------------
# scoring


def score_image(pred_classes, foreground_probability, truth_classes, n_classes, thresholds):
    iou = metrics.iou(pred_classes, truth_classes, n_classes)
    scores = {
        "pixel_error": float(np.count_nonzero(pred_classes != truth_classes)) / truth_classes.size,
        "mean_iou": _nanmean(iou),
        "foreground_iou": metrics.foreground_iou(pred_classes, truth_classes),
        "iou": iou.tolist(),
        "dice": metrics.dice(pred_classes, truth_classes, n_classes).tolist(),
    }
    if n_classes == 2:
        # class 0 (membrane, background) separates the objects; the sweep runs on its probability
        isbi = metrics.per_image_sweep(1.0 - foreground_probability, truth_classes == 0, thresholds)
        scores["isbi"] = isbi.to_dict()
    return scores


def _nanmean(values):
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")


def evaluate(pairs, n_classes, thresholds, rand_form="n2", warping=True):
    """{'images': [{'name', 'pred', 'truth', scores...}], 'mean': {...}} and, for 2 classes,
    'isbi2012_challenge': the challenge's scores of all images as one stack (challenge_summary)."""
    images, stack = [], ([], [])
    for pred_path, truth_path in pairs:
        pred_frames, truth_frames = read_frames(pred_path), read_frames(truth_path)
        if len(pred_frames) != len(truth_frames):
            raise InputError(f"{pred_path} has {len(pred_frames)} images but {truth_path} has {len(truth_frames)}")
        for k, ((_, pred, scale), (name, truth, _)) in enumerate(zip(pred_frames, truth_frames)):  # truth names
            page = f" page {k}" if len(pred_frames) > 1 else ""
            truth_classes = truth_to_classes(truth, n_classes, f"{truth_path}{page}")
            pred_classes, foreground = prediction_to_maps(pred, scale, n_classes, f"{pred_path}{page}")
            if pred_classes.shape != truth_classes.shape:
                raise InputError(f"size mismatch for '{name}': prediction {pred_path} is "
                                 f"{pred_classes.shape[0]}x{pred_classes.shape[1]} (HxW), truth {truth_path} is "
                                 f"{truth_classes.shape[0]}x{truth_classes.shape[1]}; predict the whole image "
                                 "(a valid-convolution U-Net needs tiling with mirrored borders)")
            scores = score_image(pred_classes, foreground, truth_classes, n_classes, thresholds)
            images.append({"name": name, "pred": str(pred_path), "truth": str(truth_path), **scores})
            if n_classes == 2:
                stack[0].append(foreground)
                stack[1].append(truth_classes == 1)
    summary = {"n_classes": n_classes, "images": images, "mean": _means(images, n_classes)}
    if n_classes == 2:
        summary["thresholds"] = [float(t) for t in thresholds]
        summary = {"isbi2012_challenge": challenge_summary(*stack, rand_form, warping), **summary}
    return summary


def challenge_summary(cell_probabilities, truth_cells, rand_form="n2", warping=True):
    """The challenge's scores of a stack as plain JSON-ready values: each score, its threshold, the curves."""
    scores = metrics.isbi2012_challenge(cell_probabilities, truth_cells, rand_form, warping)
    out = {"images": len(truth_cells), "rand_form": rand_form}
    for name, score in scores.items():
        out[name], out[f"{name}_threshold"] = score.error, score.threshold
    out["curves"] = {name: {"thresholds": list(score.thresholds), "errors": score.errors.tolist()}
                     for name, score in scores.items()}
    out["unet_paper_table1"] = dict(metrics.UNET_PAPER_TABLE1)
    return out


def _means(images, n_classes):
    mean = {key: _nanmean([image[key] for image in images]) for key in ("pixel_error", "mean_iou", "foreground_iou")}
    for key in ("iou", "dice"):
        mean[key] = [_nanmean([image[key][c] for image in images]) for c in range(n_classes)]
    if n_classes == 2:
        for key in ("rand_error", "vi_total", "pixel_error"):
            mean[f"best_{key}"] = _nanmean([image["isbi"][key] for image in images])
    return mean


# ---------------------------------------------------------------------------------------------------
# output


def _fmt(value, width=8, digits=4):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan".rjust(width)
    return f"{value:{width}.{digits}f}"


CHALLENGE_ROWS = (("warping_error", "warping error"), ("rand_error", "Rand error"), ("pixel_error", "pixel error"),
                  ("variation_of_information", "VI (nats)"))


def format_challenge(challenge):
    """The challenge's scores, the U-Net paper's beside them."""
    n = challenge["images"]
    form = "" if challenge["rand_form"] == "n2" else " (Rand: the 2012-2014 pair form)"
    lines = [f"ISBI 2012 challenge scores of these {n} image{'s' if n > 1 else ''} as one stack (Fiji's Trainable "
             f"Segmentation: one threshold for the stack, counts pooled){form}:"]
    for key, title in CHALLENGE_ROWS:
        if key not in challenge:
            continue
        paper = challenge["unet_paper_table1"].get(key)
        beside = f"U-Net paper, Table 1: {paper}" if paper is not None else "not ranked by the challenge"
        lines.append(f"  {title:14s} {_fmt(challenge[key], 9, 6)}  at t = {challenge[f'{key}_threshold']:.1f}"
                     f"   ({beside})")
    lines.append("  (t: cell where the cell probability > t, t = 0.0, 0.1, ..., 1.0, for the warping error to 0.9; "
                 "the paper's scores are on the challenge's hidden test slices)")
    return "\n".join(lines)


def format_table(summary):
    n_classes = summary["n_classes"]
    per_class = n_classes <= 6  # wider tables stop being readable; the JSON has every class
    columns = [("pix_err", lambda s: s["pixel_error"]), ("mIoU", lambda s: s["mean_iou"]),
               ("fg_IoU", lambda s: s["foreground_iou"])]
    if per_class:
        columns += [(f"IoU_{c}", lambda s, c=c: s["iou"][c]) for c in range(n_classes)]
        columns += [(f"Dice_{c}", lambda s, c=c: s["dice"][c]) for c in range(n_classes)]
    if n_classes == 2:
        columns += [("rand_err", lambda s: s["isbi"]["rand_error"]), ("@t", lambda s: s["isbi"]["rand_threshold"]),
                    ("VI", lambda s: s["isbi"]["vi_total"]), ("@t", lambda s: s["isbi"]["vi_threshold"]),
                    ("best_pix", lambda s: s["isbi"]["pixel_error"]), ("@t", lambda s: s["isbi"]["pixel_threshold"])]
    name_width = max([len("image")] + [len(image["name"]) for image in summary["images"]])
    widths = [max(8, len(title)) if title != "@t" else 5 for title, _ in columns]
    lines = []
    if "isbi2012_challenge" in summary:
        lines += [format_challenge(summary["isbi2012_challenge"]), "",
                  "per image (rand_err, VI, best_pix: scikit-image's adapted Rand error, VI in bits and the fraction "
                  "of wrong pixels, each at the image's own best threshold t on the membrane probability):"]
    lines.append("image".ljust(name_width) + "".join(" " + title.rjust(w) for (title, _), w in zip(columns, widths)))
    for image in summary["images"]:
        cells = [_fmt(get(image), w, 2 if title == "@t" else 4) for (title, get), w in zip(columns, widths)]
        lines.append(image["name"].ljust(name_width) + "".join(" " + cell for cell in cells))
    mean = summary["mean"]
    mean_cells = [mean["pixel_error"], mean["mean_iou"], mean["foreground_iou"]]
    if per_class:
        mean_cells += mean["iou"] + mean["dice"]
    if n_classes == 2:
        mean_cells += [mean["best_rand_error"], None, mean["best_vi_total"], None, mean["best_pixel_error"], None]
    cells = [" " * w if value is None else _fmt(value, w) for value, w in zip(mean_cells, widths)]
    lines.append("mean".ljust(name_width) + "".join(" " + cell for cell in cells))
    return "\n".join(lines)


def _json_ready(value):
    """NaN -> null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------
# command line


MAX_THRESHOLDS = 1000  # each threshold labels the connected components of every image: 1000 take minutes already


def parse_thresholds(text):
    """'0.1:0.9:0.1' (start:stop:step, stop included), '0.3,0.5,0.7', or '0.5' -> a tuple of floats."""
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if not step > 0 or stop < start:
                raise ValueError
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            if count > MAX_THRESHOLDS:
                raise argparse.ArgumentTypeError(
                    f"{text!r} makes {count:,} thresholds; at most {MAX_THRESHOLDS} (each one labels every image's "
                    f"cells anew): use a larger step, e.g. {start:g}:{stop:g}:{max((stop - start) / 100, 1e-3):g}")
            values = [round(start + k * step, 10) for k in range(count)]
        else:
            values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected start:stop:step (e.g. 0.1:0.9:0.1) or a comma list (e.g. 0.3,0.5)") from None
    if len(values) > MAX_THRESHOLDS:
        raise argparse.ArgumentTypeError(f"{len(values):,} thresholds; at most {MAX_THRESHOLDS}")
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: thresholds must lie in [0, 1]")
    return tuple(values)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m minunet.evaluate",
        description="Score predicted segmentations against ground-truth masks. For two classes the report leads "
                    "with the ISBI 2012 challenge's scores of all images as one stack (warping, Rand and pixel "
                    "error as Fiji's Trainable Segmentation computes them, as in the U-Net paper's Table 1); then "
                    "per image: pixel error, per-class IoU and Dice, foreground IoU, and scikit-image's adapted "
                    "Rand error, VI and pixel error at each image's best threshold.",
        epilog="Files: PNG, TIFF (a multi-page TIFF is a stack, paired page by page) or .npy. Truth masks: 0/255 "
               "(255 -> class 1, two classes only) or class indices 0..n-1; in ISBI 2012, 0 = membrane, "
               "255 = cell. Predictions, by these rules in order: floats in [0, 1] of shape (H, W) = the "
               "probability of class 1; floats (K, H, W) = per-class probabilities; integers all below "
               "--n-classes = class indices; an 8/16-bit gray image = probability of class 1 x 255 (x 65535). "
               "Exit status 2 with a one-line message on bad input.",
    )
    parser.add_argument("--pred", required=True, metavar="PATH",
                        help="prediction file, or a folder of them paired with --truth by file stem: truth a.png "
                             "with a.png/.tif/.npy, else the a_prob.npy that python -m minunet.predict writes")
    parser.add_argument("--truth", required=True, metavar="PATH", help="ground-truth mask file, or a folder of them")
    parser.add_argument("--n-classes", type=int, default=2, metavar="N", help="number of classes (default: 2)")
    parser.add_argument("--thresholds", type=parse_thresholds, default=None, metavar="T",
                        help="the per-image sweep on the class-0 (membrane) probability: start:stop:step, stop "
                             "included, or a comma list (two classes only; default: 0.1:0.9:0.1; the challenge's "
                             "scores keep the challenge's thresholds)")
    parser.add_argument("--rand-form", choices=["n2", "pairs"], default="n2",
                        help="the challenge's Rand error: Fiji's N^2 form (January 2015 on) or the 2012-2014 "
                             "pair-count form")
    parser.add_argument("--no-warping", action="store_true",
                        help="skip the warping error (the slowest score: about 0.1-0.4 s a 512x512 image)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write every score, with the per-threshold curves, to this file (the "
                             "challenge's under \"isbi2012_challenge\")")
    return parser


def main(argv=None):
    cli.restore_ctrl_c()
    args = build_parser().parse_args(argv)
    try:
        if args.n_classes < 2:
            raise InputError(f"--n-classes {args.n_classes}: need at least 2 classes")
        if args.thresholds is not None and args.n_classes != 2:
            raise InputError("--thresholds: the threshold sweep applies to two classes (--n-classes 2) only")
        if args.json is not None:
            cli.check_output_file(args.json, "--json")
        thresholds = args.thresholds or metrics.DEFAULT_THRESHOLDS
        summary = evaluate(collect_pairs(args.pred, args.truth), args.n_classes, thresholds, args.rand_form,
                           not args.no_warping)
        print(format_table(summary))
        if args.json is not None:
            try:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(_json_ready(summary), indent=1) + "\n")
            except OSError as error:
                raise InputError(f"--json {args.json}: cannot write ({error.strerror or error})") from None
    except (InputError, ValueError, TypeError) as error:  # metrics' own checks raise ValueError/TypeError
        print(f"minunet.evaluate: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nminunet.evaluate: interrupted; nothing written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
