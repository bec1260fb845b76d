"""Overlap-tile segmentation of images of any size, and `python -m minunet.predict`.

The paper's strategy (its Fig. 2): the network sees an input tile larger than the output tile it predicts;
output tiles are laid edge to edge, and the missing context at the image border is filled by mirroring the
image. With valid convolutions every output pixel depends only on its own input window, so the tiled result
equals running the whole image at once (up to float summation order), and memory is bounded by one batch of
tiles, whatever the image size.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from . import threads
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


@no_grad()
def predict_probabilities(model, image, tile=None, batch_size=4, tta=False, progress=None):
    """Class probabilities (K, H, W) float32 for a 2D image (H, W) or (C, H, W) of any size."""
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
    if not tta:
        return _predict(model, image, tile, batch_size, progress)
    # Test-time augmentation: the 8 rotations/flips, each undone on the output, averaged.
    total = 0
    for k in range(4):
        for flip in (False, True):
            x = np.rot90(image, k, axes=(1, 2))
            x = x[:, :, ::-1] if flip else x
            p = _predict(model, np.ascontiguousarray(x), tile, batch_size, progress)
            p = p[:, :, ::-1] if flip else p
            total = total + np.rot90(p, -k, axes=(1, 2))
    return (total / 8).astype(np.float32)


def _predict(model, image, tile, batch_size, progress):
    in_tile, out_tile, margin = tile_plan(model, tile, image.shape[1:])
    c, h, w = image.shape
    ny, nx = -(-h // out_tile), -(-w // out_tile)
    # Mirror the image: margin on top/left, margin plus the rest of the last tile on bottom/right.
    rows = mirror_index(np.arange(-margin, ny * out_tile + margin), h)
    cols = mirror_index(np.arange(-margin, nx * out_tile + margin), w)
    padded = image[:, rows[:, None], cols[None, :]]
    dtype = model.parameters()[0].dtype
    device = model.parameters()[0].device
    probs = np.empty((model.config["n_classes"], ny * out_tile, nx * out_tile), np.float32)
    corners = [(ty * out_tile, tx * out_tile) for ty in range(ny) for tx in range(nx)]
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        batch = np.stack([padded[:, y:y + in_tile, x:x + in_tile] for y, x in chunk]).astype(dtype)
        logits = model(Tensor(batch, device=device)).numpy().astype(np.float64)
        if model.padding == "same":
            logits = logits[:, :, margin:margin + out_tile, margin:margin + out_tile]
        for (y, x), p in zip(chunk, _softmax(logits)):
            probs[:, y:y + out_tile, x:x + out_tile] = p
        if progress is not None:
            progress(len(chunk))
    return probs[:, :h, :w]


def _softmax(z):
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


# -- command line ------------------------------------------------------------------------------------------
def _check_tile(model, tile):
    try:
        tile_plan(model, tile)
    except ValueError as e:
        raise ValueError(f"--tile {tile}: {e}") from None


def _predict_files(model, files, out_dir, args, written):
    """Predict and save each file; `written` collects the stems saved (for the message after Ctrl-C)."""
    from tqdm import tqdm

    from .data.loaders import read_image
    for path in files:
        image = read_image(path)
        in_tile, out_tile, _ = tile_plan(model, args.tile, image.shape[-2:])
        tiles = -(-image.shape[-2] // out_tile) * -(-image.shape[-1] // out_tile) * (8 if args.tta else 1)
        with tqdm(total=tiles, desc=f"{path.name}: tiles {in_tile} -> {out_tile} px", unit="tile") as bar:
            probs = predict_probabilities(model, image, in_tile, args.batch_size, args.tta, bar.update)
        out_dir.mkdir(parents=True, exist_ok=True)  # only now: a failure before the first result leaves no folder
        _save_outputs(out_dir, path.stem, image, probs)
        written.append(path.stem)


def _image_files(path):
    from .data.loaders import IMAGE_SUFFIXES
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return files
    if not path.is_file():
        raise ValueError(f"input {path} does not exist")
    return [path]


def _save_outputs(out_dir, stem, image, probs):
    from PIL import Image
    labels = probs.argmax(0)
    foreground = 1.0 - probs[0]  # for two classes: the probability of class 1 (cell)
    Image.fromarray((np.clip(foreground, 0, 1) * 65535).astype(np.uint16)).save(out_dir / f"{stem}_prob.png")
    scale = 255 // max(probs.shape[0] - 1, 1)
    Image.fromarray((labels * scale).astype(np.uint8)).save(out_dir / f"{stem}_labels.png")
    np.save(out_dir / f"{stem}_prob.npy", probs)
    gray = np.clip(image[0] if image.ndim == 3 else image, 0, 1)
    overlay = np.stack([gray] * 3, -1)
    overlay[labels == 0] = 0.6 * overlay[labels == 0] + 0.4 * np.array([1.0, 0.2, 0.2])
    Image.fromarray((overlay * 255).astype(np.uint8)).save(out_dir / f"{stem}_overlay.png")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minunet.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint.npz written by minunet.train")
    parser.add_argument("--input", required=True, help="an image file (PNG/TIFF) or a folder of them")
    parser.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    parser.add_argument("--device", default="auto", choices=["auto", "numpy", "sim", "cuda"])
    parser.add_argument("--tile", type=int, help="input tile size (default: the smallest valid one that covers "
                                                 "the image in one pass, at most 572)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    parser.add_argument("--tta", action="store_true", help="average over the 8 rotations/flips")
    threads.add_threads_option(parser)
    args = parser.parse_args(argv)
    from .memory import keep_freed_memory
    from .checkpoint import load_model
    keep_freed_memory()
    written, files = [], []
    try:
        cpu_threads = threads.resolve_threads(args.threads)
        model, _ = load_model(args.checkpoint, args.device)
        files = _image_files(args.input)
        if args.tile is not None:  # checked before any image is read or any folder made
            _check_tile(model, args.tile)
        print(f"model: {model.n_parameters():,} parameters on {model.parameters()[0].device}; "
              f"{threads.describe(cpu_threads, given=args.threads is not None)}")
        with threads.cpu_threads(cpu_threads):
            _predict_files(model, files, Path(args.out), args, written)
        print(f"wrote {len(files)} prediction(s) to {args.out}/ (*_prob.png, *_labels.png, *_overlay.png, *_prob.npy)")
    except KeyboardInterrupt:
        print(f"\ninterrupted: wrote {len(written)} of {len(files)} prediction(s) to {args.out}/"
              + (f" (the last: {written[-1]})" if written else ""), file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:  # CuPy's OutOfMemoryError is one too
        print(f"error: out of memory ({e}); pass a smaller --tile or --batch-size", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
