"""The Markdown tables of a report: per kernel, totals over the U-Net's layers, per op and version, the CPU's
per-op totals, the training step, and the checks that failed."""
from ..ops.launching import DEFAULT_VERSIONS


def _ms(seconds):
    return "-" if not seconds else f"{seconds * 1e3:.4g}"


def _num(value):
    return "-" if value is None else f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _layer_count(row):
    return len(row.get("layers", [row["layer"]]))


def kernel_table(rows):
    lines = ["| layer(s) | op | direction | shape N,Ci,H,W,Co | impl | ms | GFLOP/s | GB/s | floor ms | % of roofline | check |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        shape = ",".join(str(r[k]) for k in ("N", "Ci", "H", "W", "Co"))
        pct = f"{100 * r['of_roofline']:.0f}%" if r.get("of_roofline") else "-"
        check = r.get("check", "") if "error" not in r else f"error: {r['error'][:60]}"
        lines.append(f"| {' '.join(r.get('layers', [r['layer']]))} | {r['op']} | {r['direction']} | {shape} | {r['impl']} "
                     f"| {_ms(r['seconds'])} | {_num(r.get('gflops'))} | {_num(r.get('gbps'))} "
                     f"| {_ms(r.get('floor_s'))} | {pct} | {check} |")
    return "\n".join(lines)


def mismatch_table(rows):
    """The implementations that failed their check (never timed), with the worst element of each."""
    lines = ["| layer(s) | op | direction | impl | what the check found |", "|---|---|---|---|---|"]
    lines += [f"| {' '.join(r.get('layers', [r['layer']]))} | {r['op']} | {r['direction']} | {r['impl']} "
              f"| {r['mismatch']} |" for r in rows if r.get("check") == "MISMATCH"]
    return "\n".join(lines)


def totals_table(rows):
    """Per implementation: the sum over all layers of the U-Net (each layer counted, shared shapes too) of
    the three directions, for the versions that cover every op (v1 and the default) and PyTorch."""
    sums = {}
    for r in rows:
        if not r.get("seconds"):
            continue
        op = f"{r['op']}_{r['direction']}"
        impl = r["impl"]
        keys = [impl] if impl.startswith("torch") else []
        if impl == f"v{DEFAULT_VERSIONS[op]}":
            keys.append("minunet defaults")
        if impl == "v1":
            keys.append("minunet v1")
        best = min((x["seconds"] for x in rows if x.get("seconds") and x["op"] == r["op"] and
                    x["direction"] == r["direction"] and x["layer"] == r["layer"] and not x["impl"].startswith("torch")
                    and not x.get("tf32")), default=None)
        if best == r["seconds"] and not impl.startswith("torch") and not r.get("tf32"):
            keys.append("minunet fastest exact version per layer")
        for key in keys:
            sums[key] = sums.get(key, 0.0) + r["seconds"] * _layer_count(r)
    lines = ["| implementation | all conv layers, fwd + both grads (ms) |", "|---|---:|"]
    lines += [f"| {k} | {v * 1e3:.2f} |" for k, v in sorted(sums.items(), key=lambda kv: kv[1])]
    return "\n".join(lines)


def op_totals(rows):
    """{op: {impl: seconds}}: each implementation's time summed over every U-Net layer of the op (shared shapes
    counted once per layer). A minunet version counts only if it ran and passed the check on every shape of the
    op: a version that failed on one layer must not look fast for missing it."""
    shapes, totals, complete = {}, {}, {}
    for r in rows:
        op = f"{r['op']}_{r['direction']}"
        shapes.setdefault(op, set()).add(r["layer"])
        torch_ok = r["impl"].startswith("torch") and r.get("seconds")
        if torch_ok or (r.get("seconds") and r.get("check") == "ok"):
            totals.setdefault(op, {})
            totals[op][r["impl"]] = totals[op].get(r["impl"], 0.0) + r["seconds"] * _layer_count(r)
            complete.setdefault((op, r["impl"]), set()).add(r["layer"])
    return {op: {impl: t for impl, t in by_impl.items() if complete[(op, impl)] == shapes[op]}
            for op, by_impl in totals.items()}


def fastest_exact_versions(rows):
    """{op: version}: per op, the exact (not TF32) version with the least total time over the U-Net's layers:
    the evidence-based value of DEFAULT_VERSIONS in minunet/ops/launching.py."""
    best = {}
    for op, by_impl in op_totals(rows).items():
        exact = {impl: t for impl, t in by_impl.items() if impl.startswith("v") and not impl.endswith("tf32")}
        if exact:
            best[op] = int(min(exact, key=exact.get)[1:])
    return best


def op_totals_table(rows):
    totals = op_totals(rows)
    impls = sorted({r["impl"] for r in rows}, key=lambda i: (i.startswith("torch"), i))
    fastest = fastest_exact_versions(rows)
    lines = ["| op | " + " | ".join(impls) + " | fastest exact |", "|---|" + "---:|" * len(impls) + "---|"]
    for op, by_impl in totals.items():
        cells = [_ms(by_impl.get(impl)) for impl in impls]
        lines.append(f"| {op} | " + " | ".join(cells) + f" | {'v%d' % fastest[op] if op in fastest else '-'} |")
    lines += ["", "Total ms over all U-Net layers of the op; `-`: not run on every layer, or failed its check. "
              f"Fastest exact version per op, for DEFAULT_VERSIONS: `{fastest}`"]
    return "\n".join(lines)


def cpu_totals_table(rows):
    """Per op: the numpy device's and PyTorch's time summed over the small U-Net's layers, their ratio, and
    how close the numpy device comes to the roofline floor (summed floors / summed times)."""
    total = {}
    for r in rows:
        if r.get("seconds"):
            t = total.setdefault(f"{r['op']}_{r['direction']}", {})
            time_s, floor_s = t.get(r["impl"], (0.0, 0.0))
            t[r["impl"]] = (time_s + r["seconds"] * _layer_count(r), floor_s + r.get("floor_s", 0.0) * _layer_count(r))
    lines = ["| op | numpy ms | torch cpu ms | numpy / torch | numpy % of roofline |", "|---|---:|---:|---:|---:|"]
    for op, t in total.items():
        numpy_s, floor_s = t.get("numpy", (None, 0.0))
        torch_s = t.get("torch cpu", (None, 0.0))[0]
        ratio = f"{numpy_s / torch_s:.2f}" if numpy_s and torch_s else "-"
        pct = f"{100 * floor_s / numpy_s:.0f}%" if numpy_s and floor_s else "-"
        lines.append(f"| {op} | {_ms(numpy_s)} | {_ms(torch_s)} | {ratio} | {pct} |")
    return "\n".join(lines)


def training_table(results):
    lines = ["| implementation | step ms | runs | peak memory MiB |", "|---|---:|---:|---:|"]
    for name, r in results.items():
        if name in ("network", "threads"):
            continue
        if "seconds" not in r:
            lines.append(f"| {name} | {r.get('skipped') or r.get('error')} | | |")
            continue
        mem = r.get("peak_reserved_bytes")
        mem_text = "-" if mem is None else f"{mem / 2**20:.0f} reserved"
        if r.get("peak_allocated_bytes") is not None:
            mem_text += f" ({r['peak_allocated_bytes'] / 2**20:.0f} allocated)"
        lines.append(f"| {name} | {r['seconds'] * 1e3:.1f} | {r['runs']} | {mem_text} |")
    return "\n".join(lines)


def against_torch(results):
    """{(threads, what): {"minunet numpy" or "numpy": row, "torch cpu": row}} of bench_against_torch's rows,
    what: "training step, <network>" or "conv3x3 <direction>"."""
    pairs = {}
    for r in results["steps"]:
        pairs.setdefault((r["threads"], f"training step, {r['network']}"), {})[r["impl"]] = r
    for r in results["conv"]:
        pairs.setdefault((r["threads"], f"conv3x3 {r['direction']}"), {})[r["impl"]] = r
    return pairs


def against_torch_table(results):
    """The numpy device / PyTorch CPU per thread count: each network's training step, and conv3x3's directions
    summed over the small U-Net's layers."""
    lines = ["| threads | what | numpy ms | torch cpu ms | numpy / torch | CPU ms numpy | CPU ms torch | numpy / torch "
             "in CPU time | load averages (1, 5, 15 min) |", "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for (n, what), by in against_torch(results).items():
        ours, peer = by.get("minunet numpy") or by.get("numpy"), by.get("torch cpu") or {}
        cells = []
        for key in ("seconds", "cpu_seconds"):
            ratio = f"{ours[key] / peer[key]:.2f}" if peer else "-"
            cells += [f"{ours[key] * 1e3:.1f}", f"{peer[key] * 1e3:.1f}" if peer else "not installed", ratio]
        where = ", summed over the layers" if what.startswith("conv3x3") else ""
        lines.append(f"| {n} | {what}{where} | {' | '.join(cells)} | {ours['load']} |")
    return "\n".join(lines)


def choices_table(rows):
    """Per conv3x3 layer and direction, the numpy device's algorithm at each thread count, and what each
    candidate took when it was measured (the least of a few calls)."""
    lines = ["| threads | layer | direction | chosen | measured ms |", "|---:|---|---|---|---|"]
    for r in rows:
        measured = ("-" if not r["seconds"] else
                    ", ".join(f"{name} {t * 1e3:.2f}" for name, t in sorted(r["seconds"].items(), key=lambda kv: kv[1])))
        lines.append(f"| {r['threads']} | {r['layer']} | {r['direction']} | {r['algorithm']} | {measured} |")
    return "\n".join(lines)
