"""The kernel version tables: every default version exists as a kernel, is an exact version (never TF32),
and the TF32 versions are selectable after the exact ones."""
import re

from minunet.ops.launching import DEFAULT_VERSIONS, LAUNCHERS, TF32_VERSIONS, VERSIONS, all_versions
from minunet.paths import kernels_dir


def test_default_kernel_versions_exist():
    source = "\n".join(f.read_text() for f in kernels_dir().glob("*.cu"))
    for name, version in DEFAULT_VERSIONS.items():
        kernel = LAUNCHERS[name][version].__name__
        assert kernel == f"{name}_v{version}"
        assert re.search(rf'extern "C" __global__ void (__launch_bounds__\([^)]*\)\s*)?{kernel}\(', source), name


def test_defaults_are_exact_versions_and_tf32_ones_are_selectable():
    for op, v in DEFAULT_VERSIONS.items():
        assert v in VERSIONS[op] and TF32_VERSIONS.get(op) != v, op
    for op, v in TF32_VERSIONS.items():
        assert v not in VERSIONS[op] and all_versions(op)[-1] == v, op
