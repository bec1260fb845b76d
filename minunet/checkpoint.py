"""Checkpoints: one .npz file (no pickle), written atomically.

Layout: "model/<parameter name>" and "optim/<key>" arrays, plus "meta", a JSON string holding the model
configuration, the step, the random generators' states and anything else the trainer wants back.
Writing goes to a temporary file in the same folder, is flushed to disk, then renamed over the old file
(atomic_file.py): an interrupt at any moment leaves either the previous checkpoint or the new one, never half
of one. Every array is finite: save refuses weights or optimizer state holding NaN or infinity (a diverged run
keeps its last good checkpoint), and load refuses a file that holds them. Reading gives today's parameter
names, also for a checkpoint written before they changed (current_name).
"""
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from .atomic_file import atomic_file

FORMAT = "minunet-checkpoint-1"


def save(path, model, optimizer=None, **meta):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    if optimizer is not None:
        arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    meta = dict(meta, format=FORMAT, model_config=model.config, dtype=str(model.parameters()[0].dtype))
    bad = non_finite(arrays)
    if bad:
        raise NonFiniteError(f"{path} not saved: {bad}")
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_file(path) as f:
        np.savez(f, **arrays)


class NonFiniteError(ValueError):
    """Weights or optimizer state holding NaN or infinity: never written to, nor read from, a checkpoint."""


def non_finite(arrays):
    """'' when every array is finite, else which arrays are not: 'NaN or infinity in model/x (3 of 9 values), ...'."""
    bad = [f"{name} ({np.count_nonzero(~np.isfinite(a))} of {a.size} values)" for name, a in arrays.items()
           if np.issubdtype(np.asarray(a).dtype, np.inexact) and not np.isfinite(a).all()]
    if not bad:
        return ""
    return "NaN or infinity in " + ", ".join(bad[:3]) + (f" and {len(bad) - 3} more arrays" if len(bad) > 3 else "")


def load(path):
    """(meta dict, model state under today's names, optimizer state); a clear ValueError for a missing or
    corrupt file. path: a checkpoint.npz, or the run folder holding one."""
    path = Path(path)
    path = path / "checkpoint.npz" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # else np.load guesses a pickle and says so, which misleads
        raise ValueError(f"checkpoint {path} is not a readable minunet checkpoint: not a .npz archive (a run "
                         f"folder's checkpoint.npz, written by python -m minunet.train)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as e:
        raise ValueError(f"checkpoint {path} is not a readable minunet checkpoint ({type(e).__name__}: {e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    missing = [key for key in ("model_config", "dtype") if key not in meta]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {', '.join(missing)} in its metadata: not written by "
                         f"python -m minunet.train (checkpoint.save writes them); use a run folder's checkpoint.npz")
    bad = non_finite(arrays)
    if bad:
        raise NonFiniteError(f"checkpoint {path} holds {bad}: it was saved after its run diverged; use an "
                             f"earlier checkpoint, or train again with a smaller --lr")
    model = {current_name(k[len("model/"):]): v for k, v in arrays.items() if k.startswith("model/")}
    optim = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
    return meta, model, optim


def current_name(name):
    """A parameter's name today, for a name in a checkpoint written before issue #15, when `up.N` held the
    up-convolutions and `up_convs.N` the expanding path's double convolutions (the reverse of the paper's
    words). Today's names pass unchanged: the two patterns below match none of them."""
    old_up_conv = re.fullmatch(r"up\.(\d+)\.([wb])", name)
    if old_up_conv:
        return f"up_convs.{old_up_conv[1]}.{old_up_conv[2]}"
    old_level = re.fullmatch(r"up_convs\.(\d+)\.(conv[12]\.[wb])", name)
    return f"up.{old_level[1]}.{old_level[2]}" if old_level else name


def load_model(path, device="auto"):
    """The U-Net stored in a checkpoint, on device, in eval mode; and the checkpoint's meta."""
    from .unet import UNet
    meta, state, _ = load(path)
    model = UNet(**meta["model_config"], dtype=np.dtype(meta["dtype"]), device=device)
    model.load_state_dict(state)
    return model.eval(), meta
