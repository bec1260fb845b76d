"""Overlap-tile segmentation of images of any size, and `python -m minunet.predict`.

The paper's strategy (its Fig. 2): the network sees an input tile larger than the output tile it predicts;
output tiles are laid edge to edge, and the missing context at the image border is filled by mirroring the
image. With valid convolutions every output pixel depends only on its own input window, so the tiled result
equals running the whole image at once (up to float summation order).

Memory: the network holds one batch of tiles, whatever the image size. predict_probabilities returns the whole
(K, H, W) float32 array (4K bytes per pixel); probability_bands yields it one row of output tiles at a time. The
command line streams those rows: each goes straight into the .npy file at its place and into the small images
it writes, so that per pixel it holds only the image (4 bytes), the labels (1), the 16-bit probability (2) and
the overlay (3), and the encoder's copy of one of them (--tta: plus the 4K bytes per pixel of the averaged
views). `python benchmarks/predict_memory.py` measures it (2 cores, load 5-7, depth-2 network with 4 base
channels, default tile 572 and batch 4): 9.9 bytes per pixel, peak 363 MiB at 2000 x 2000 and 477 MiB at
4000 x 4000; before the streaming, 53.5 bytes per pixel, 329 MiB and 941 MiB (a 10000 x 10000 image: about
1.3 GiB against 5 GiB). Below about 2000 x 2000 the batch's own memory (here about 230 MiB) dominates.
"""
import argparse
import os
import signal
import sys
from pathlib import Path

import numpy as np

from . import cli, threads
from .backends import standin_note
from .atomic_file import AtomicFile, atomic_file, remove_stray_temporaries
from .data.tiles import mirror_index
from .tensor import Tensor, no_grad


def tile_plan(model, tile=None, image_shape=None):
    """(input tile, output tile, margin). Default tile: the smallest valid one whose output covers the whole
    image in one pass, capped at 572 (the paper's tile) so that memory stays bounded on any image."""
    from .unet import check_input_size, valid_input_sizes

    def output_of(size):
        # "same" convolutions see zero padding at tile edges: keep only the centre half, as valid ones do.
        return max(size // 2, 1) if model.padding == "same" else check_input_size(size, model.depth, "valid")

    if tile is None:
        sizes = valid_input_sizes(model.depth, model.padding, 1, 572)
        if not sizes:
            raise ValueError("this network accepts no tile up to 572 px; pass tile=")
        need = max(image_shape) if image_shape else float("inf")  # no image: the largest tile
        tile = next((s for s in sizes if output_of(s) >= need), sizes[-1])
    check_input_size(tile, model.depth, model.padding)
    out = output_of(tile)
    return tile, out, (tile - out) // 2


def _checked(model, image, batch_size):
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] != model.config["in_channels"]:
        raise ValueError(f"image must be (H, W) or (C, H, W) with C = {model.config['in_channels']}, "
                         f"got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating) or not np.isfinite(image).all():
        raise ValueError("image must be a finite float array (scale it to [0, 1] first)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1 (tiles per forward pass), got {batch_size!r}")
    return image


def predict_probabilities(model, image, tile=None, batch_size=4, tta=False, progress=None):
    """Class probabilities (K, H, W) float32 for a 2D image (H, W) or (C, H, W) of any size."""
    image = _checked(model, image, batch_size)
    if not tta:
        return _whole(model, image, tile, batch_size, progress)
    # Test-time augmentation: the 8 rotations/flips, each undone on the output, averaged.
    total = 0
    for k in range(4):
        for flip in (False, True):
            x = np.rot90(image, k, axes=(1, 2))
            x = x[:, :, ::-1] if flip else x
            p = _whole(model, np.ascontiguousarray(x), tile, batch_size, progress)
            p = p[:, :, ::-1] if flip else p
            total = total + np.rot90(p, -k, axes=(1, 2))
    return (total / 8).astype(np.float32)


def _whole(model, image, tile, batch_size, progress):
    probs = np.empty((model.config["n_classes"],) + image.shape[1:], np.float32)
    for top, band in _bands(model, image, tile, batch_size, progress):
        probs[:, top:top + band.shape[1]] = band
    return probs


def probability_bands(model, image, tile=None, batch_size=4, progress=None):
    """The probabilities of predict_probabilities (without tta), one row of output tiles at a time: yields
    (top row, float32 (K, rows, W)) from the top of the image down."""
    return _bands(model, _checked(model, image, batch_size), tile, batch_size, progress)


@no_grad()
def _bands(model, image, tile, batch_size, progress):
    in_tile, out_tile, margin = tile_plan(model, tile, image.shape[1:])
    _, h, w = image.shape
    ny, nx = -(-h // out_tile), -(-w // out_tile)
    # The mirrored image, as indices: margin on top/left, margin plus the rest of the last tile on bottom/right.
    rows = mirror_index(np.arange(-margin, ny * out_tile + margin), h)
    cols = mirror_index(np.arange(-margin, nx * out_tile + margin), w)
    dtype = model.parameters()[0].dtype
    device = model.parameters()[0].device
    corners = [(y, x) for y in range(0, ny * out_tile, out_tile) for x in range(0, nx * out_tile, out_tile)]
    band = np.empty((model.config["n_classes"], out_tile, nx * out_tile), np.float32)
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        batch = np.stack([image[:, rows[y:y + in_tile, None], cols[None, x:x + in_tile]] for y, x in chunk])
        logits = model(Tensor(batch.astype(dtype), device=device)).numpy().astype(np.float64)
        if model.padding == "same":
            logits = logits[:, :, margin:margin + out_tile, margin:margin + out_tile]
        probs = _softmax(logits)
        del batch, logits  # while the caller works on a band (below), hold no more than its probabilities
        for (y, x), p in zip(chunk, probs):
            band[:, :, x:x + out_tile] = p
            if x + out_tile == nx * out_tile:  # the row of tiles is complete
                yield y, band[:, :min(out_tile, h - y), :w]
        if progress is not None:
            progress(len(chunk))


def _softmax(z):
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


# -- command line ------------------------------------------------------------------------------------------
OUTPUTS = "*_prob.npy, *_prob.png, *_labels.png, *_overlay.png; a multi-page TIFF: *_prob.tif, *_labels.tif"


class InputFailed(Exception):
    """An input that cannot be predicted (unreadable, a network output that is not finite): skipped or stopped
    on, by --on-error; nothing is written for it."""


def _image_files(path):
    from .data.loaders import IMAGE_SUFFIXES, files_grouped_by_stem
    path = Path(path)
    if path.is_dir():
        files = [p for paths in files_grouped_by_stem(path).values() for p in paths]
        if not files:
            raise cli.UsageError(f"--input {path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return sorted(files)
    if not path.is_file():
        raise cli.UsageError(f"--input {path} does not exist: give an image file (PNG/TIFF) or a folder of them")
    return [path]


def _pages(path):
    """How many pages the image file has (a multi-page TIFF is a stack); an InputFailed if it cannot be read."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            return getattr(img, "n_frames", 1)
    except (OSError, ValueError) as e:
        raise InputFailed(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def _read(read, path):
    try:
        return read(path)
    except (OSError, ValueError) as e:  # loaders' one-line errors; a file gone or unreadable meanwhile
        why = str(e) if isinstance(e, ValueError) else e.strerror or str(e)
        raise InputFailed(why if str(path) in why else f"{path}: {why}") from None


def _progress(model, path, shape, args, pages=1):
    """A progress bar of the tiles of `pages` images of `shape`."""
    from tqdm import tqdm
    in_tile, out_tile, _ = tile_plan(model, args.tile, shape)
    tiles = -(-shape[0] // out_tile) * -(-shape[1] // out_tile) * (8 if args.tta else 1) * pages
    return tqdm(total=tiles, desc=f"{path.name}: tiles {in_tile} -> {out_tile} px", unit="tile", disable=args.quiet)


def _finite(band, name):
    if not np.isfinite(band).all():
        raise InputFailed(f"{name}: the network's output is not finite (its activations overflow on this image); "
                          f"nothing written for it")
    return band


def predict_image(model, path, out_dir, args, written):
    """Predict one image file into out_dir: STEM_prob.npy, _prob.png, _labels.png, _overlay.png, all written
    whole (atomic_file), and together: a Ctrl-C while they are written comes after the last of them, and after
    its stem is added to `written`."""
    from PIL import Image

    from .data.loaders import read_image
    image = _read(read_image, path)
    h, w = image.shape
    bar = _progress(model, path, image.shape, args)
    labels, foreground, overlay = (np.empty((h, w), np.uint8), np.empty((h, w), np.uint16),
                                   np.empty((h, w, 3), np.uint8))
    k = model.config["n_classes"]
    scale = 255 // max(k - 1, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    npy = AtomicFile(out_dir / f"{path.stem}_prob.npy")
    try:
        # The .npy header, then each row of tiles' probabilities written at its place in the (K, H, W) array.
        np.lib.format.write_array_header_1_0(npy.file, {"descr": "<f4", "fortran_order": False, "shape": (k, h, w)})
        npy.file.flush()
        start = npy.file.tell()
        bands = ([(0, predict_probabilities(model, image, args.tile, args.batch_size, True, bar.update))] if args.tta
                 else probability_bands(model, image, args.tile, args.batch_size, bar.update))
        for top, band in bands:
            band, rows = _finite(band, path), slice(top, top + band.shape[1])
            for c in range(k):
                os.pwrite(npy.file.fileno(), band[c].astype("<f4").tobytes(), start + (c * h + top) * w * 4)
            labels[rows] = band.argmax(0)
            foreground[rows] = (np.clip(1.0 - band[0], 0, 1) * 65535).astype(np.uint16)  # 2 classes: P(cell)
            overlay[rows] = _overlay(image[rows], labels[rows])
        del image, bands
        with cli.deferred_ctrl_c():
            _save_image(out_dir / f"{path.stem}_prob.png", Image.fromarray(foreground), args.note)
            del foreground
            _save_image(out_dir / f"{path.stem}_labels.png", Image.fromarray(labels * np.uint8(scale)), args.note)
            _save_image(out_dir / f"{path.stem}_overlay.png", Image.fromarray(overlay), args.note)
            npy.commit()
            written.append(path.stem)
    finally:
        npy.discard()
        bar.close()


def _overlay(gray, labels):
    """The image in gray with class 0 (membrane, background) tinted red, as 8-bit RGB."""
    rgb = np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=-1)
    rgb[labels == 0] = 0.6 * rgb[labels == 0] + 0.4 * np.array([1.0, 0.2, 0.2], np.float32)
    return (rgb * 255).astype(np.uint8)


def _save_image(path, image, note=None, **options):
    """Written whole or not at all; a note (the tests' CuPy stand-in's) goes into the file's own title field: a
    PNG's Title text, a TIFF's ImageDescription. (A .npy has no such field: predict's first line says it.)"""
    if note and path.suffix == ".png":
        from PIL.PngImagePlugin import PngInfo
        options["pnginfo"] = PngInfo()
        options["pnginfo"].add_text("Title", note)
    elif note:
        options["description"] = note
    with atomic_file(path) as f:
        image.save(f, format=path.suffix[1:].upper().replace("TIF", "TIFF"), **options)


def predict_stack(model, path, out_dir, args, written):
    """Predict every page of a multi-page TIFF (ISBI 2012's test-volume.tif) into two multi-page TIFFs: STEM_prob.tif,
    float32 probabilities of class 1 (1 = cell, 0 = membrane: the format the challenge takes), and STEM_labels.tif,
    8-bit labels (0/255 for two classes). Each written whole; then its stem is added to `written`."""
    from PIL import Image

    from .data.loaders import read_image_pages
    scale = 255 // max(model.config["n_classes"] - 1, 1)
    probabilities, labels = [], []
    pages = _read(lambda p: list(read_image_pages(p)), path)
    with _progress(model, path, pages[0].shape, args, len(pages)) as bar:
        for k, page in enumerate(pages):
            probs = _finite(predict_probabilities(model, page, args.tile, args.batch_size, args.tta, bar.update),
                            f"{path} page {k}")
            probabilities.append(Image.fromarray(1.0 - probs[0]))  # float32 mode "F"
            labels.append(Image.fromarray(probs.argmax(0).astype(np.uint8) * np.uint8(scale)))
    out_dir.mkdir(parents=True, exist_ok=True)
    with cli.deferred_ctrl_c():
        for name, pages in (("prob", probabilities), ("labels", labels)):
            _save_image(out_dir / f"{path.stem}_{name}.tif", pages[0], args.note, save_all=True,
                        append_images=pages[1:])
        written.append(path.stem)


def _predict_files(model, files, out_dir, args, written, failed):
    """Predict and save each file; `written` collects the stems saved, `failed` (name, why) of those skipped."""
    if out_dir.is_dir():
        removed = remove_stray_temporaries(out_dir)
        if removed:
            print(f"note: removed {len(removed)} temporary file(s) left in {out_dir} by interrupted predictions",
                  file=sys.stderr)
    for path in files:
        try:
            (predict_stack if _pages(path) > 1 else predict_image)(model, path, out_dir, args, written)
        except InputFailed as e:
            if args.on_error == "stop" or len(files) == 1:
                raise cli.UsageError(str(e) + ("" if len(files) == 1 else
                                               f"; stopped there (--on-error stop); {_so_far(written, files, out_dir)}"))
            failed.append((path.name, str(e)))


def _so_far(written, files, out_dir):
    return (f"wrote {len(written)} of {len(files)} prediction(s) to {out_dir}/"
            + (f" (the last: {written[-1]})" if written else ""))


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m minunet.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a run folder, or a checkpoint.npz written by "
                                                            "python -m minunet.train")
    parser.add_argument("--input", required=True, help="an image file (PNG/TIFF; a multi-page TIFF is a stack) or "
                                                       "a folder of them")
    parser.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    parser.add_argument("--device", default="auto", choices=["auto", "numpy", "sim", "cuda"])
    parser.add_argument("--tile", type=int, help="input tile size (default: the smallest valid one that covers "
                                                 "the image in one pass, at most 572)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    parser.add_argument("--tta", action="store_true", help="average over the 8 rotations/flips")
    parser.add_argument("--on-error", choices=["skip", "stop"], default="skip",
                        help="an input that cannot be predicted (unreadable, ...): skip it and say so at the end "
                             "(default), or stop there")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    threads.add_threads_option(parser)
    return parser


def main(argv=None):
    cli.restore_ctrl_c()
    args = build_parser().parse_args(argv)
    from .memory import keep_freed_memory
    keep_freed_memory()
    out = Path(args.out)
    made = not out.exists()
    try:
        return _main(args, out)
    finally:
        if made and out.is_dir() and not any(out.iterdir()):  # made, and nothing written: no empty folder left
            out.rmdir()


def _main(args, out):
    from .checkpoint import load_model
    written, failed, files = [], [], []
    try:
        cpu_threads = threads.resolve_threads(args.threads)
        if args.batch_size < 1:
            raise cli.UsageError(f"--batch-size must be >= 1 (tiles per forward pass), got {args.batch_size}")
        if not Path(args.checkpoint).exists():
            raise cli.UsageError(f"--checkpoint {args.checkpoint} does not exist: give a run folder or its "
                                 f"checkpoint.npz")
        model, _ = load_model(args.checkpoint, cli.check_device(args.device))
        files = _image_files(args.input)
        cli.check_output_folder(out, "--out")
        if args.tile is not None:  # checked before any image is read or any folder made
            try:
                tile_plan(model, args.tile)
            except ValueError as e:
                raise cli.UsageError(f"--tile {args.tile}: {e}") from None
        device = model.parameters()[0].device
        args.note = standin = standin_note() if device == "cuda" else None  # the tests' CuPy stand-in says so first
        print(f"model: {model.n_parameters():,} parameters on {device}{f' ({standin})' if standin else ''}; "
              f"{threads.describe(cpu_threads, given=args.threads is not None)}")
        with threads.cpu_threads(cpu_threads), np.errstate(over="ignore", invalid="ignore"):  # _finite says it
            _predict_files(model, files, out, args, written, failed)
    except KeyboardInterrupt:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the summary short
        try:
            print(f"\ninterrupted: {_so_far(written, files, out)}", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, previous)
        return 130
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a folder that became unwritable
        print(f"error: {cli.describe_os_error(e)}; {_so_far(written, files, out)}", file=sys.stderr)
        return 1
    except MemoryError as e:  # CuPy's OutOfMemoryError is one too
        print(f"error: out of memory ({e}); pass a smaller --tile or --batch-size", file=sys.stderr)
        return 1
    print(f"{_so_far(written, files, out)}: {OUTPUTS}")
    if failed:
        print(f"skipped {len(failed)} input(s) that could not be predicted: "
              + "; ".join(f"{name} ({why})" for name, why in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    exit_code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # all is written and said: a late Ctrl-C changes nothing
    sys.exit(exit_code)
