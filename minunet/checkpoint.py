"""Checkpoints: one .npz file (no pickle), written atomically.

Layout: "model/<parameter name>" and "optim/<key>" arrays, plus "meta", a JSON string holding the model
configuration, the step, the random generators' states and anything else the trainer wants back.
Writing goes to a temporary file in the same folder, is flushed to disk, then renamed over the old file:
an interrupt at any moment leaves either the previous checkpoint or the new one, never half of one.
Reading gives today's parameter names, also for a checkpoint written before they changed (current_name).
"""
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "minunet-checkpoint-1"


def save(path, model, optimizer=None, **meta):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    if optimizer is not None:
        arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    meta = dict(meta, format=FORMAT, model_config=model.config, dtype=str(model.parameters()[0].dtype))
    arrays["meta"] = np.array(json.dumps(meta))
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's file is private (0600); a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask():
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load(path):
    """(meta dict, model state under today's names, optimizer state); a clear ValueError for a missing or
    corrupt file."""
    path = Path(path)
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
