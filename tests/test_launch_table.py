"""The launch table (minunet/ops/launch_table.py) against the kernels it launches.

Every row's kernel exists in its file; every kernel of kernels/ has a row; every number a row uses is a
`#define` of its file, read by the parser; the backends launch each kernel with its row's block and shared
memory; the version tables are consistent; a bad version= is a one-line ValueError.
"""
import re
from pathlib import Path

import numpy as np
import pytest

from minunet import paths
from minunet.backends import get_backend
from minunet.backends.kernel_backend import KernelBackend
from minunet.ops import launching as lt
from minunet.sim.build import find_kernels

TABLE_SOURCE = Path(lt.__file__)


def sources_of(file):
    """The text of kernels/<file>.cu and of the headers it includes, as the compiler sees them."""
    return "\n".join((paths.kernels_dir() / name).read_text() for name in lt.read_defines(
        str(paths.kernels_dir()), f"{file}.cu")[1])


# ---------------------------------------------------------------------------------------------------------------
# the parser

def test_the_parser_reads_int_defines_of_a_file_and_the_headers_it_includes(tmp_path):
    (tmp_path / "base.cuh").write_text('#pragma once\n#define BASE_THREADS 128  // a comment\n#define REAL float\n')
    (tmp_path / "op.cu").write_text('#include "base.cuh"\n  #  define OP_TILE 16\n#define OP_EXPR (OP_TILE / 4)\n'
                                    '// #define IN_A_COMMENT 3 is still a line that starts with //, not #\n')
    found, files = lt.read_defines(str(tmp_path), "op.cu")
    assert found == {"OP_TILE": 16, "BASE_THREADS": 128} and files == ("op.cu", "base.cuh")


def test_the_parser_refuses_two_values_for_one_name(tmp_path):
    (tmp_path / "a.cuh").write_text("#define TILE 16\n")
    (tmp_path / "b.cu").write_text('#include "a.cuh"\n#define TILE 32\n')
    with pytest.raises(ValueError, match="a.cuh: #define TILE 16 contradicts 32, its value in a file read before"):
        lt.read_defines(str(tmp_path), "b.cu")


def test_a_missing_define_is_an_error_naming_the_file_and_its_headers():
    with pytest.raises(lt.MissingDefineError, match=r"kernels/conv3x3.cu \(with common.cuh, gemm_tile.cuh\) has "
                                                    r"no `#define CONV3X3_V9_BM <int>`"):
        lt.define("conv3x3.cu", "CONV3X3_V9_BM")


def test_every_constant_a_row_uses_is_a_define_of_its_file():
    for row in lt.LAUNCHES:
        names = row.block + row.tile + row.shared[:1]
        for name in names:
            # an independent look at the source: the line `#define NAME <int>` is there, with the parsed value
            match = re.search(rf"^\s*#\s*define\s+{name}\s+(\d+)\b", sources_of(row.file), re.M)
            assert match, f"{row.kernel}: no `#define {name} <int>` in kernels/{row.file}.cu or its headers"
            assert int(match.group(1)) == row.value(name)
        assert all(isinstance(v, int) and v > 0 for v in row.threads + row.tile_sizes), row


# ---------------------------------------------------------------------------------------------------------------
# rows and kernels

def test_every_row_names_a_kernel_of_its_file_literally():
    table = TABLE_SOURCE.read_text()
    for row in lt.LAUNCHES:
        kernels = find_kernels(sources_of(row.file))
        assert row.kernel in kernels, f"{row.kernel} is not an extern \"C\" __global__ kernel of kernels/{row.file}.cu"
        assert f'"{row.kernel}"' in table, f"{row.kernel} is not written out in launch_table.py"
        assert row.kernel == f"{row.name}_v{row.version}", row  # the naming rule of ARCHITECTURE.md
        if row.reduce:
            assert row.reduce in kernels and f'"{row.reduce}"' in table, row.reduce


def test_every_kernel_of_kernels_has_a_row_or_is_a_rows_helper():
    named = {row.kernel for row in lt.LAUNCHES} | {row.reduce for row in lt.LAUNCHES if row.reduce}
    every = {k for pattern in ("*.cu", "*.cuh") for f in paths.kernels_dir().glob(pattern)
             for k in find_kernels(f.read_text())}
    assert every - named == set(), "kernels without a row in minunet/ops/launch_table.py"
    assert len(lt.ROWS) == len(lt.LAUNCHES), "two rows for one (op, direction, version)"


def _every_row_once(sim):
    """Call every backend op at every version on the sim with small inputs (split-K included)."""
    rng = np.random.default_rng(0)
    r = lambda *s, dtype=np.float32: sim.asarray(rng.standard_normal(s).astype(dtype))
    x, w3, b, gy3 = r(1, 3, 6, 6), r(4, 3, 3, 3), r(4), r(1, 4, 6, 6)
    wu, gyu, w1 = r(3, 4, 2, 2), r(1, 4, 12, 12), r(4, 3, 1, 1)
    big_x, big_gy = r(1, 3, 40, 45), r(1, 5, 38, 43)  # several split-K slices: the reduce kernel runs
    calls = {"conv3x3_forward": lambda v: sim.conv3x3(x, w3, b, 1, version=v),
             "conv3x3_grad_input": lambda v: sim.conv3x3_grad_input(gy3, w3, 1, x.shape, version=v),
             "conv3x3_grad_weight": lambda v: sim.conv3x3_grad_weight(big_x, big_gy, 0, version=v),
             "up_conv2x2_forward": lambda v: sim.up_conv2x2(x, wu, b, version=v),
             "up_conv2x2_grad_input": lambda v: sim.up_conv2x2_grad_input(gyu, wu, version=v),
             "up_conv2x2_grad_weight": lambda v: sim.up_conv2x2_grad_weight(big_x, r(1, 4, 80, 90), version=v),
             "conv1x1_forward": lambda v: sim.conv1x1(x, w1, b, version=v),
             "conv1x1_grad_input": lambda v: sim.conv1x1_grad_input(gy3, w1, version=v),
             "conv1x1_grad_weight": lambda v: sim.conv1x1_grad_weight(big_x, r(1, 4, 40, 45), version=v)}
    for name, call in calls.items():
        for v in lt.all_versions(name):
            call(v)
    y, argmax = sim.max_pool2x2(x)
    sim.max_pool2x2_grad(y, argmax)
    sim.relu_grad(gy3, sim.relu(gy3))
    sim.concat_grad(sim.concat(gy3, sim.crop_grad(sim.crop(gy3, 1, 1, 5, 5), gy3.shape, 1, 1)), 4)
    sim.dropout_grad(gy3, sim.dropout(gy3, 0.5, 7)[1])
    sim.bias_grad(r(2, 3, 4, 5, dtype=np.float64))
    sim.softmax_cross_entropy(r(1, 3, 4, 5), sim.asarray(rng.integers(0, 3, (1, 4, 5)).astype(np.int32)), None, -1,
                              1.0)
    sim.sgd_step(r(10), r(10), r(10), 0.1, 0.9, 0.0)


def test_the_backends_launch_every_kernel_as_its_row_says(monkeypatch):
    launched = []
    launch = KernelBackend.launch

    def recording(self, stem, kernel, dtype, grid, block, args, shared_mem=0):
        launched.append((stem, kernel, np.dtype(dtype), tuple(block), shared_mem))
        return launch(self, stem, kernel, dtype, grid, block, args, shared_mem)

    monkeypatch.setattr(KernelBackend, "launch", recording)
    _every_row_once(get_backend("sim"))
    by_kernel = {(row.file, row.kernel): row for row in lt.LAUNCHES}
    for stem, kernel, dtype, block, shared_mem in launched:
        row = by_kernel.get((stem, kernel))
        if row is None:  # a split-K reduce: one thread per element, in the file of the op that needs it
            assert kernel in {r.reduce for r in lt.LAUNCHES if r.file == stem}, (stem, kernel)
            row = lt.Launch("", "", 0, kernel, stem, lt.THREADS, lt.PER_ELEMENT)
        assert block == row.threads, f"{kernel}: launched with block {block}, its row says {row.threads}"
        assert shared_mem == row.shared_bytes(dtype), f"{kernel}: {shared_mem} bytes of shared memory"
    assert {k for _, k, *_ in launched} == {r.kernel for r in lt.LAUNCHES} | {lt.REDUCE}, "rows never launched"


# ---------------------------------------------------------------------------------------------------------------
# versions

def test_defaults_are_exact_versions_of_every_versioned_op():
    assert set(lt.DEFAULT_VERSIONS) == set(lt.VERSIONS)
    for name, v in lt.DEFAULT_VERSIONS.items():
        assert v in lt.VERSIONS[name] and lt.TF32_VERSIONS.get(name) != v, name
    for name, v in lt.TF32_VERSIONS.items():
        assert v not in lt.VERSIONS[name] and lt.all_versions(name)[-1] == v, name
    for name, versions in lt.FUSED_RELU_VERSIONS.items():
        assert set(versions) <= set(lt.all_versions(name)), name


@pytest.mark.parametrize("op, call, message", [
    ("conv3x3", lambda sim, x, w: sim.conv3x3(x, w, None, 0, version=99),
     r"^conv3x3_forward: version must be one of \(1, 2, 3, 4, 5\), got 99 \(there is no kernel conv3x3_forward_v99\)$"),
    ("conv3x3 bool", lambda sim, x, w: sim.conv3x3(x, w, None, 0, version=True), r"version must be one of .* got True"),
    ("conv3x3 str", lambda sim, x, w: sim.conv3x3(x, w, None, 0, version="3"), r"version must be one of .* got '3'"),
    ("conv1x1", lambda sim, x, w: sim.conv1x1(x, x[:, :1, :1, :1], None, version=3),
     r"^conv1x1_forward: version must be one of \(1, 2\)"),
    ("tf32 double", lambda sim, x, w: sim.conv3x3(x.astype(np.float64), w.astype(np.float64), None, 0, version=5),
     r"^conv3x3_forward: version 5 computes in TF32 on tensor cores and takes float32 only, got float64$"),
    ("relu", lambda sim, x, w: sim.relu(x, version=2), r"^relu_forward: version must be one of \(1,\), got 2 "),
    ("bias_grad", lambda sim, x, w: sim.bias_grad(x, version=0), r"no kernel bias_grad_v0\)$"),
    ("concat", lambda sim, x, w: sim.concat(x, x, version=2), r"^copy_window: version must be one of \(1,\)"),
])
def test_a_bad_version_is_a_one_line_error(op, call, message):
    sim = get_backend("sim")
    x, w = np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=message) as error:
        call(sim, x, w)
    assert "\n" not in str(error.value)


def test_the_int32_size_check_names_the_op_and_the_shape():
    lt.check_int32_size("conv3x3", (2**15, 2**16 - 1))  # 2**31 - 2**15 elements: fine
    with pytest.raises(ValueError, match=r"^conv3x3: an array of shape \(65536, 32768\) has more than 2\*\*31-1 "):
        lt.check_int32_size("conv3x3", (1, 2), (2**16, 2**15))
