"""Fingerprint every kernel: NVRTC's resource report and the simulator's exact output bits.

A restructure of kernels/ or of the launch code must leave both alone (or improve the report):

    python benchmarks/kernel_fingerprint.py --out before.json          # on the old code
    python benchmarks/kernel_fingerprint.py --compare before.json      # on the new: exit 1 on a change

For the report, every kernel of kernels/*.cu for sm_75/80/86/90 in float and double: registers, static shared
memory, spill stores/loads, stack. More registers or spills than before is a failure; fewer is printed.
For the results, every backend op at every version and dtype on fixed random inputs of odd sizes, run on the
sim (and on numpy, the fast path): the SHA-256 of each output's bytes. Any change of a bit is a failure.
"""
import argparse
import hashlib
import json
import sys

import numpy as np

from minunet import nvrtc
from minunet.backends import get_backend
from minunet.ops.launching import TF32_VERSIONS, all_versions

ARCHS = ("sm_75", "sm_80", "sm_86", "sm_90")
DTYPES = (np.float32, np.float64)


def nvrtc_report():
    results = nvrtc.compile_matrix(nvrtc.kernel_files(), ARCHS, ("float", "double"), workers=2)
    report = {}
    for path, arch, dtype, result in results:
        if isinstance(result, Exception):
            report[f"{path.name} COMPILE ERROR {dtype} sm_{arch}"] = str(result)[:200]
            continue
        for name, r in result.kernels.items():
            report[f"{name} {dtype} sm_{arch}"] = [r.registers, r.shared_bytes, r.spill_stores, r.spill_loads,
                                                   r.stack_bytes]
    return report


def _conv_versions(op, dtype):
    return [v for v in all_versions(op) if not (TF32_VERSIONS.get(op) == v and dtype == np.float64)]


def cases(dtype):
    """(name, backend op, args, kwargs, versioned op name or None) on fixed random inputs."""
    rng = np.random.default_rng(1234)
    r = lambda *s: rng.standard_normal(s).astype(dtype)
    N, Ci, H, W, Co = 2, 5, 11, 13, 7
    x, w3, b = r(N, Ci, H, W), r(Co, Ci, 3, 3), r(Co)
    out = []
    for pad in (0, 1):
        Ho, Wo = H - 2 + 2 * pad, W - 2 + 2 * pad
        gy = r(N, Co, Ho, Wo)
        for relu in (False, True):
            out.append((f"conv3x3 pad{pad} relu{relu}", "conv3x3", (x, w3, b, pad), dict(relu=relu), "conv3x3_forward"))
        out.append((f"conv3x3_grad_input pad{pad}", "conv3x3_grad_input", (gy, w3, pad, x.shape), {},
                    "conv3x3_grad_input"))
        out.append((f"conv3x3_grad_weight pad{pad}", "conv3x3_grad_weight", (x, gy, pad), {}, "conv3x3_grad_weight"))
    big_x, big_gy = r(1, 3, 40, 45), r(1, 70, 38, 43)  # several split-K slices, a second 64-row tile
    out.append(("conv3x3_grad_weight splitk", "conv3x3_grad_weight", (big_x, big_gy, 0), {}, "conv3x3_grad_weight"))
    wu, gyu = r(Ci, Co, 2, 2), r(N, Co, 2 * H, 2 * W)
    out += [("up_conv2x2", "up_conv2x2", (x, wu, b), {}, "up_conv2x2_forward"),
            ("up_conv2x2_grad_input", "up_conv2x2_grad_input", (gyu, wu), {}, "up_conv2x2_grad_input"),
            ("up_conv2x2_grad_weight", "up_conv2x2_grad_weight", (x, gyu), {}, "up_conv2x2_grad_weight")]
    w1, gy1 = r(Co, Ci, 1, 1), r(N, Co, H, W)
    out += [("conv1x1", "conv1x1", (x, w1, b), {}, "conv1x1_forward"),
            ("conv1x1_grad_input", "conv1x1_grad_input", (gy1, w1), {}, "conv1x1_grad_input"),
            ("conv1x1_grad_weight", "conv1x1_grad_weight", (x, gy1), {}, "conv1x1_grad_weight")]
    xe = r(N, Ci, 10, 14)
    ype, am = get_backend("numpy").max_pool2x2(xe)
    labels = rng.integers(0, 3, (N, H, W)).astype(np.int32)
    logits, weights = r(N, 3, H, W), np.abs(r(N, H, W))
    mask = (rng.random(x.shape) > 0.3).astype(dtype) * 2
    out += [("bias_grad", "bias_grad", (gy1,), {}, None),
            ("bias_grad big", "bias_grad", (r(3, 4, 33, 35),), {}, None),
            ("max_pool2x2", "max_pool2x2", (xe,), {}, None),
            ("max_pool2x2_grad", "max_pool2x2_grad", (r(*ype.shape), am), {}, None),
            ("relu", "relu", (x,), {}, None), ("relu_grad", "relu_grad", (r(*x.shape), x), {}, None),
            ("crop", "crop", (x, 2, 3, 6, 7), {}, None), ("crop_grad", "crop_grad", (r(N, Ci, 6, 7), x.shape, 2, 3), {}, None),
            ("concat", "concat", (x, r(N, 3, H, W)), {}, None), ("concat_grad", "concat_grad", (r(N, 8, H, W), 5), {}, None),
            ("dropout", "dropout", (x, 0.3, 77, 5), {}, None), ("dropout_grad", "dropout_grad", (r(*x.shape), mask), {}, None),
            ("softmax_cross_entropy", "softmax_cross_entropy", (logits, labels, weights, 1, 0.01), {}, None),
            ("softmax_cross_entropy noweights", "softmax_cross_entropy", (logits, labels, None, -1, 1.0), {}, None)]
    return out


def _digest(value, backend):
    parts = value if isinstance(value, tuple) else (value,)
    h = hashlib.sha256()
    for p in parts:
        a = np.asarray(p) if isinstance(p, float) else backend.to_numpy(p)
        h.update(str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def results(devices=("numpy", "sim")):
    digests = {}
    for device in devices:
        be = get_backend(device)
        for dtype in DTYPES:
            for name, op, args, kwargs, versioned in cases(dtype):
                versions = [None] if versioned is None or device == "numpy" else _conv_versions(versioned, dtype)
                for v in versions:
                    dev_args = tuple(be.asarray(a) if isinstance(a, np.ndarray) else a for a in args)
                    kw = dict(kwargs, **({} if v is None else {"version": v}))
                    key = f"{device} {np.dtype(dtype).name} {name}" + ("" if v is None else f" v{v}")
                    digests[key] = _digest(getattr(be, op)(*dev_args, **kw), be)
            # sgd_step works in place: fingerprint the updated param and velocity
            rng = np.random.default_rng(5)
            p, g, vel = (rng.standard_normal(37).astype(dtype) for _ in range(3))
            p, g, vel = be.asarray(p), be.asarray(g), be.asarray(vel)
            be.sgd_step(p, g, vel, 0.01, 0.99, 0.0005)
            digests[f"{device} {np.dtype(dtype).name} sgd_step"] = _digest((p, vel), be)
    return digests


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write the fingerprint here")
    parser.add_argument("--compare", help="compare with this earlier fingerprint; exit 1 on a change")
    parser.add_argument("--skip-nvrtc", action="store_true", help="only the simulator's and numpy's results")
    args = parser.parse_args(argv)
    now = {"results": results(), "nvrtc": {} if args.skip_nvrtc else nvrtc_report()}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(now, f, indent=1, sort_keys=True)
    if not args.compare:
        return 0
    with open(args.compare) as f:
        before = json.load(f)
    bad, better = [], []
    for key in sorted(set(before["results"]) | set(now["results"])):
        if before["results"].get(key) != now["results"].get(key):
            bad.append(f"result {key}: {before['results'].get(key)} -> {now['results'].get(key)}")
    if not args.skip_nvrtc:
        for key in sorted(set(before["nvrtc"]) | set(now["nvrtc"])):
            a, b = before["nvrtc"].get(key), now["nvrtc"].get(key)
            if a == b:
                continue
            if a is None or b is None or isinstance(a, str) or isinstance(b, str):
                bad.append(f"nvrtc {key}: {a} -> {b}")
            elif b[0] > a[0] or b[2] > a[2] or b[3] > a[3] or b[4] > a[4]:
                bad.append(f"nvrtc {key}: [regs, smem, spill st, spill ld, stack] {a} -> {b}")
            else:
                better.append(f"nvrtc {key}: {a} -> {b}")
    print("\n".join(better + bad) or "no change")
    print(f"{len(now['results'])} results, {len(now['nvrtc'])} kernel reports compared: "
          f"{len(bad)} worse or changed, {len(better)} better")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
