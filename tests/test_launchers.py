"""The launchers (one per kernel version, in minunet/ops/<op>.py) against the kernels they launch, and the
layers: every launcher launches the kernel it is named after, every kernel of kernels/ has a launcher, every
number a launcher reads is a `#define` of its file; the version tables come from the launchers; a bad version=
is a one-line ValueError; every device has every backend op; no module of minunet imports in a cycle.
"""
import ast
import functools
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import minunet
from minunet import paths
from minunet.backends import get_backend
from minunet.backends.kernel_backend import KernelBackend
from minunet.backends.registry import KERNEL_OPS, NUMPY_OPS
from minunet.ops import launching as lt
from minunet.sim.build import find_kernels

REDUCE = "gemm_split_k_reduce"  # gemm_tile.cuh's, launched by launching.launch_split_k
LAUNCHERS = [fn for versions in lt.LAUNCHERS.values() for fn in versions.values()]


def every_kernel():
    return {k for pattern in ("*.cu", "*.cuh") for f in paths.kernels_dir().glob(pattern)
            for k in find_kernels(f.read_text())}


# ---------------------------------------------------------------------------------------------------------------
# the #defines

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
        lt.KernelDefines("conv3x3.cu").CONV3X3_V9_BM


def test_every_define_a_launcher_reads_is_in_its_kernels_file_with_the_value_read():
    checked = 0
    for fn in LAUNCHERS:
        module = inspect.getmodule(fn)
        for holder, name in re.findall(r"\b([A-Z][A-Z0-9_]*)\.([A-Z][A-Z0-9_]+)\b", inspect.getsource(fn)):
            defines = getattr(module, holder)
            assert isinstance(defines, lt.KernelDefines), (fn.__name__, holder)
            # an independent look at the source: the line `#define NAME <int>` is there, with the parsed value
            text = "\n".join((paths.kernels_dir() / f).read_text()
                             for f in lt.read_defines(str(paths.kernels_dir()), defines.file)[1])
            match = re.search(rf"^\s*#\s*define\s+{name}\s+(\d+)\b", text, re.M)
            assert match, f"{fn.__name__}: no `#define {name} <int>` in kernels/{defines.file} or its headers"
            assert int(match.group(1)) == getattr(defines, name) > 0
            checked += 1
    assert checked >= 30


# ---------------------------------------------------------------------------------------------------------------
# launchers and kernels

def test_every_launcher_is_named_as_a_kernel_and_launches_it_by_that_name():
    kernels = every_kernel()
    for fn in LAUNCHERS:
        assert fn.__name__ in kernels, f"{fn.__name__} is not an extern \"C\" __global__ kernel of kernels/"
        assert f'"{fn.__name__}"' in inspect.getsource(fn), f"{fn.__name__} does not launch its kernel by name"


def test_every_kernel_of_kernels_has_a_launcher():
    assert every_kernel() - {fn.__name__ for fn in LAUNCHERS} == {REDUCE}, "kernels without a launcher"


def test_a_launcher_must_be_named_as_its_kernel():
    with pytest.raises(NameError, match="its name must be its kernel's"):
        lt.launcher(lambda be: None)


def _every_launcher_once(sim):
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


def test_the_backends_launch_every_kernel_each_launcher_names(monkeypatch):
    """Each launcher launches its own kernel (and the split-K ones the reduce), with dynamic shared memory
    exactly when the kernel declares an extern __shared__ array."""
    launched, active = [], []
    launch = KernelBackend.launch

    def recording(self, stem, kernel, dtype, grid, block, args, shared_mem=0):
        launched.append((active[-1] if active else None, kernel, shared_mem))
        return launch(self, stem, kernel, dtype, grid, block, args, shared_mem)

    def tracing(fn):
        @functools.wraps(fn)
        def traced(*args, **kwargs):
            active.append(fn.__name__)
            try:
                return fn(*args, **kwargs)
            finally:
                active.pop()
        return traced

    monkeypatch.setattr(KernelBackend, "launch", recording)
    for versions in lt.LAUNCHERS.values():
        for v, fn in list(versions.items()):
            monkeypatch.setitem(versions, v, tracing(fn))
    _every_launcher_once(get_backend("sim"))
    sources = "\n".join(f.read_text() for pattern in ("*.cu", "*.cuh") for f in paths.kernels_dir().glob(pattern))
    for launcher_name, kernel, shared_mem in launched:
        assert kernel in (launcher_name, REDUCE), f"launcher {launcher_name} launched {kernel}"
        start = re.search(rf"__global__ void (__launch_bounds__\([^)]*\)\s*)?{kernel}\(", sources).start()
        body = sources[start:sources.index("\n}\n", start)]
        assert (shared_mem > 0) == ("extern __shared__" in body), (kernel, shared_mem)
    assert {k for _, k, _ in launched} == {fn.__name__ for fn in LAUNCHERS} | {REDUCE}, "launchers never called"


# ---------------------------------------------------------------------------------------------------------------
# versions and devices

def test_defaults_are_exact_versions_of_every_versioned_op():
    assert set(lt.DEFAULT_VERSIONS) == set(lt.VERSIONS) == set(lt.LAUNCHERS)
    for name, v in lt.DEFAULT_VERSIONS.items():
        assert v in lt.VERSIONS[name] and lt.TF32_VERSIONS.get(name) != v, name
    for name, v in lt.TF32_VERSIONS.items():
        assert v not in lt.VERSIONS[name] and lt.all_versions(name)[-1] == v, name
        assert lt.LAUNCHERS[name][v].tf32


def test_every_device_has_every_backend_op_and_names_what_it_lacks():
    assert set(NUMPY_OPS) == set(KERNEL_OPS) and len(NUMPY_OPS) == 23
    for device in ("numpy", "sim"):
        be = get_backend(device)
        assert all(callable(getattr(be, op)) for op in NUMPY_OPS)
        with pytest.raises(AttributeError, match=f"device '{device}' has no backend op 'conv5x5'; it has: bias_grad, "):
            be.conv5x5
        assert not hasattr(be, "__array__")


def _imports(path, module, is_package):
    """The minunet modules a file imports, at any depth (a lazy import inside a function counts too)."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                target = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                yield f"{target}.{alias.name}", target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, alias.name


def test_no_module_of_minunet_imports_in_a_cycle():
    root = Path(minunet.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    edges = {m: {sub if sub in modules else target for sub, target in _imports(path, m, is_package)} & set(modules)
             - {m} for m, (path, is_package) in modules.items()}

    def cycle_from(start, node, seen):
        for nxt in edges[node]:
            if nxt == start:
                return [node, nxt]
            if nxt not in seen:
                seen.add(nxt)
                rest = cycle_from(start, nxt, seen)
                if rest:
                    return [node] + rest
        return None

    for m in sorted(modules):
        cycle = cycle_from(m, m, {m})
        assert cycle is None, "import cycle: " + " -> ".join(cycle)


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
