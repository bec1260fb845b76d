"""The kernel version tables: every default version exists as a kernel, is an exact version (never TF32),
and the TF32 versions are selectable after the exact ones."""
from minunet.backends.kernel_conv import DEFAULT_VERSIONS, TF32_VERSIONS, VERSIONS, all_versions
from minunet.backends.kernel_misc import DEFAULT_VERSIONS as MISC_DEFAULT_VERSIONS
from minunet.paths import kernel_path


def test_default_kernel_versions_exist():
    source = "".join(kernel_path(stem).read_text() for stem in ("max_pool2x2", "elementwise",
                                                               "softmax_cross_entropy", "sgd"))
    for op, version in MISC_DEFAULT_VERSIONS.items():
        assert f'extern "C" __global__ void {op}_v{version}(' in source, op


def test_defaults_are_exact_versions_and_tf32_ones_are_selectable():
    for op, v in DEFAULT_VERSIONS.items():
        assert v in VERSIONS[op] and TF32_VERSIONS.get(op) != v, op
    for op, v in TF32_VERSIONS.items():
        assert v not in VERSIONS[op] and all_versions(op)[-1] == v, op
