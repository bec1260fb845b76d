"""Where minunet finds its kernel sources and keeps its caches."""
import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def kernels_dir() -> Path:
    """The folder of the .cu files: inside the installed package, or kernels/ of a source checkout;
    MINUNET_KERNELS_DIR overrides (tests/test_barrier_mutations.py points it at mutated copies)."""
    override = os.environ.get("MINUNET_KERNELS_DIR")
    if override:
        if not (Path(override) / "common.cuh").is_file():
            raise FileNotFoundError(f"MINUNET_KERNELS_DIR={override} holds no kernels (no common.cuh)")
        return Path(override)
    for candidate in (_PACKAGE / "kernels", _PACKAGE.parent / "kernels"):
        if (candidate / "common.cuh").is_file():
            return candidate
    raise FileNotFoundError(f"minunet kernels not found next to {_PACKAGE} (looked for kernels/common.cuh)")


def kernel_path(stem: str) -> Path:
    path = kernels_dir() / f"{stem}.cu"
    if not path.is_file():
        known = sorted(p.stem for p in kernels_dir().glob("*.cu"))
        raise FileNotFoundError(f"no kernel file {stem}.cu; known: {known}")
    return path


def cache_dir() -> Path:
    """Compiled kernels (simulator libraries) live here; MINUNET_CACHE_DIR overrides."""
    root = os.environ.get("MINUNET_CACHE_DIR") or Path.home() / ".cache" / "minunet"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
