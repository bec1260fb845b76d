"""The report files: results-<device>-<date>.md (tables) and .json (every number), with the machine and the
versions they were measured with."""
import datetime
import importlib
import json
import os
import platform
from pathlib import Path

import numpy as np

from ..ops.launching import DEFAULT_VERSIONS


def environment(device):
    versions = {"python": platform.python_version()}
    for name in ("minunet", "numpy", "cupy", "torch"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except Exception:
            versions[name] = None
    if device == "numpy":
        from ..ops import blas
        versions["blas"] = blas.describe()  # what conv3x3's products per tap call (ops/blas.py)
    name = _cpu_name()
    if device == "cuda":
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        versions["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        versions["compute_capability"] = cupy.cuda.Device().compute_capability
    return dict(device=device, device_name=name, date=datetime.datetime.now().isoformat(timespec="seconds"),
                versions=versions, default_kernel_versions=dict(DEFAULT_VERSIONS), platform=platform.platform())


def _cpu_name():
    """'AMD EPYC, 2 cores (x86_64)' from /proc/cpuinfo where there is one (platform.processor() is often empty)."""
    model = platform.processor()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model or 'CPU'}, {os.cpu_count()} cores ({platform.machine()})"


def write_report(out_dir, env, sections):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"results-{env['device']}-{env['date'][:10]}"
    md = [f"# minunet benchmark: {env['device_name']} ({env['device']}), {env['date']}", "",
          "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), "",
          "Default kernel versions: " + ", ".join(f"{k} v{v}" for k, v in env["default_kernel_versions"].items()), ""]
    for title, text in sections.get("markdown", []):
        md += [f"## {title}", "", text, ""]
    (out_dir / f"{stem}.md").write_text("\n".join(md))
    data = {"device_name": env["device_name"]} | env | {k: v for k, v in sections.items() if k != "markdown"}
    text = json.dumps(data, indent=1, default=_json_default)
    (out_dir / f"{stem}.json").write_text(text.replace("{\n ", "{", 1))  # the device named on the first line
    return out_dir / f"{stem}.md", out_dir / f"{stem}.json"


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)
