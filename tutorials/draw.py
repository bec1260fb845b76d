"""The figures of the tutorials, drawn apart from the chapters (as micrograd keeps draw_dot apart) so that a
chapter's text reads as the lesson. Each function draws one kind of figure and saves it to `path`; the data it
shows is computed by the chapter that calls it.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.patches as patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path, dpi=110, **kwargs):
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, **kwargs)
    plt.close(fig)


# ---- chapter 3b: the GEMM block tile ----------------------------------------------------------------------
def gemm_thread_outputs(bm, bn, tx, ty, path):
    """The BM x BN block tile of gemm_tile.cuh and the outputs of thread (tx, ty): rows ty*TM .. +TM-1
    (contiguous), columns tx + 16j (interleaved); the shaded row and column of As and Bs are what it loads."""
    tm, tn = bm // 16, bn // 16
    fig, ax = plt.subplots(figsize=(8.4, 7))
    ax.add_patch(patches.Rectangle((0, 0), bn, bm, fc="white", ec="0.2", lw=1.5))
    for t in range(0, bn + 1, 16):
        ax.plot([t, t], [0, bm], color="0.85", lw=0.8)
    rows = [ty * tm + i for i in range(tm)]
    cols = [tx + 16 * j for j in range(tn)]
    for r in rows:
        for c in cols:
            ax.add_patch(patches.Rectangle((c, r), 1, 1, fc="#d95f02", ec="none"))
    # As (BM rows) on the left, Bs (BN columns) on top: one 16-deep slice each
    ax.add_patch(patches.Rectangle((-18, 0), 16, bm, fc="#eeeeee", ec="0.3"))
    ax.add_patch(patches.Rectangle((-18, rows[0]), 16, tm, fc="#9ecae1", ec="#08519c"))
    ax.text(-10, -1.5, "As[kk][row]\n(A, BK = 16 deep)", ha="center", va="bottom", fontsize=9)
    ax.add_patch(patches.Rectangle((0, -18), bn, 16, fc="#eeeeee", ec="0.3"))
    for c in cols:
        ax.add_patch(patches.Rectangle((c, -18), 1, 16, fc="#a1d99b", ec="#238b45"))
    ax.text(bn + 1, -10, "Bs[kk][col]\n(B, BK = 16 deep)", ha="left", va="center", fontsize=9)
    ax.text(bn / 2, bm + 2, f"block tile {bm} x {bn} of C, 256 threads as 16 x 16; thread (tx={tx}, ty={ty}) owns "
            f"{tm} x {tn} outputs:\nrows ty*{tm} .. ty*{tm}+{tm - 1} (contiguous: one {4 * min(tm, 4)}-byte "
            f"shared load per 4 rows), columns tx + 16j (interleaved)", ha="center", va="top", fontsize=9)
    ax.set_xlim(-20, bn + 16)
    ax.set_ylim(bm + 8, -20)
    ax.set_aspect("equal")
    ax.axis("off")
    _save(fig, path)


def ladder(names, panels, title, path):
    """One bar chart per panel ({ylabel: values}), one bar per step of the ladder, labelled with its value."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.6 * len(panels)), sharex=True)
    for ax, (ylabel, values) in zip(np.atleast_1d(axes), panels.items()):
        bars = ax.bar(range(len(names)), values, color="#6baed6", ec="#08519c")
        for bar, v in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{v:.0f}", ha="center", va="bottom",
                    fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_ylim(0, max(values) * 1.25)
    ax.set_xticks(range(len(names)), names, fontsize=9)
    np.atleast_1d(axes)[0].set_title(title, fontsize=10)
    _save(fig, path)


# ---- chapter 3: how v1 and v2 map threads onto the output -------------------------------------------------
def conv_mappings(Ho, Wo, path, images, channels, cout, thread, threads=256, tile=16):
    """v1's runs of `threads` pixels; v2's tiles with one block's halo, one thread's (tx, ty) 3x3 window,
    and how blockIdx.z splits into (image, group of `cout` output channels)."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.8), gridspec_kw=dict(width_ratios=[1, 1, 0.8]))
    colours = plt.cm.tab20(np.arange(20))

    ax = axes[0]
    block_of_pixel = (np.arange(Ho * Wo) // threads).reshape(Ho, Wo)
    ax.imshow(colours[block_of_pixel % 20], interpolation="nearest")
    for blk in range(block_of_pixel.max() + 1):
        ys, xs = np.nonzero(block_of_pixel == blk)
        ax.text(xs.mean(), ys.mean(), f"block {blk}", ha="center", va="center", fontsize=8)
    ax.set_title(f"v1: one thread per output pixel,\n{threads} consecutive pixels per block (one channel shown)")
    ax.set_xlim(-2.5, Wo + 1.5)
    ax.set_ylim(Ho + 1.5, -2.5)

    ax = axes[1]
    tiles_x, tiles_y = -(-Wo // tile), -(-Ho // tile)
    ax.add_patch(patches.Rectangle((-0.5, -0.5), tiles_x * tile, tiles_y * tile, fc="white", ec="none",
                                   hatch="//", alpha=0.35))    # threads of partial tiles with no pixel
    ax.add_patch(patches.Rectangle((-0.5, -0.5), Wo, Ho, fc="#eeeeee", ec="black", lw=1.5))
    for by in range(tiles_y):
        for bx in range(tiles_x):
            ax.add_patch(patches.Rectangle((bx * tile - 0.5, by * tile - 0.5), tile, tile, fill=False,
                                           ec="0.3", lw=1.2))
            if (bx, by) not in ((1, 1), (1, 2)):  # (1, 2): room for the thread's label
                ax.text(bx * tile + tile / 2 - 0.5, by * tile + tile / 2 - 0.5, f"block\n({bx}, {by}, z)",
                        ha="center", va="center", fontsize=8, color="0.3",
                        bbox=dict(fc="white", ec="none", alpha=0.8, pad=1))
    bx, by = 1, 1                                   # one block: its output tile and its input tile + halo
    ax.add_patch(patches.Rectangle((bx * tile - 0.5, by * tile - 0.5), tile, tile, fc="#9ecae1", ec="#08519c",
                                   lw=2, alpha=0.8))
    ax.add_patch(patches.Rectangle((bx * tile - 1.5, by * tile - 1.5), tile + 2, tile + 2, fill=False,
                                   ec="#d95f02", lw=2.5, ls="--"))
    tx, ty = thread                                 # its output pixel and the 3x3 window it reads ("same")
    px, py = bx * tile + tx, by * tile + ty
    ax.add_patch(patches.Rectangle((px - 1.5, py - 1.5), 3, 3, fc="#fdd0a2", ec="#a63603", lw=1.5))
    ax.add_patch(patches.Rectangle((px - 0.5, py - 0.5), 1, 1, fc="#a63603", ec="none"))
    ax.annotate(f"thread (tx={tx}, ty={ty}):\nits pixel and the 3x3 window\nit reads from the shared tile",
                (px + 1.5, py + 1.5), xytext=(px - 4, py + 13), fontsize=8, color="#a63603",
                bbox=dict(fc="white", ec="#a63603", pad=2), arrowprops=dict(arrowstyle="->", color="#a63603"))
    ax.set_title(f"v2: {tile}x{tile} output tiles; block (1, 1, z) (blue) loads\n"
                 f"{tile + 2}x{tile + 2} inputs with the halo (orange); hatched: no pixel")
    ax.set_xlim(-2.5, tiles_x * tile + 1.5)
    ax.set_ylim(tiles_y * tile + 1.5, -2.5)
    for ax in axes[:2]:
        ax.set_xlabel("output column ox")
        ax.set_ylabel("output row oy")

    ax = axes[2]                                    # blockIdx.z = n * groups + channel group
    groups = -(-channels // cout)
    for n in range(images):
        for o in range(groups * cout):
            z = n * groups + o // cout
            y0 = n * (groups * cout + 3) + o
            ax.add_patch(patches.Rectangle((0, y0), 1, 0.9, fc=colours[z % 20] if o < channels else "white",
                                           ec="0.4", hatch=None if o < channels else "//"))
            if o % cout == 0:
                ax.text(1.3, y0 + cout / 2 - 0.5, f"z = {z}: image n = {n}, channels {o}..{min(o + cout, channels) - 1}"
                        + ("" if o + cout <= channels else f"\n(threads' accumulators for {channels}..{o + cout - 1} "
                           "are never stored)"), va="center", fontsize=8)
        ax.text(-0.3, n * (groups * cout + 3) + (groups * cout) / 2, f"image {n}", rotation=90, ha="right",
                va="center", fontsize=9)
    ax.set_xlim(-1.2, 9)
    ax.set_ylim(images * (groups * cout + 3), -1)
    ax.axis("off")
    ax.set_title(f"v2's blockIdx.z: image and group of {cout} output\nchannels ({images} images, Co = {channels}: "
                 f"{groups} groups)")
    _save(fig, path)


# ---- chapter 1: the computation graph, the finite-difference errors, a loss curve ------------------------------------
def computation_graph(nodes, edges, names, title, path):
    """Tensors as boxes (blue: leaves that want a gradient), the Functions that made them as ovals.
    nodes: {id: Tensor}, edges: [(parent, child)], as chapter 1's graph_nodes returns them."""
    depth = {}                                   # longest distance from a leaf: the column of a node

    def depth_of(t):
        if id(t) not in depth:
            parents = t._ctx.parents if t._ctx is not None else []
            depth[id(t)] = 1 + max((depth_of(p) for p in parents), default=-1)
        return depth[id(t)]
    for t in nodes.values():
        depth_of(t)
    for parent, child in edges:                  # a leaf sits just left of its first user
        if parent._ctx is None:
            depth[id(parent)] = min(depth[id(child)] - 1 for p, child in edges if p is parent)
    columns = {}
    for key in sorted(nodes, key=lambda k: (nodes[k]._ctx is None, names.get(k, ""))):
        columns.setdefault(depth[key], []).append(key)
    pos = {}
    for d, keys in columns.items():
        computed = [k for k in keys if nodes[k]._ctx is not None]
        leaves = [k for k in keys if nodes[k]._ctx is None]
        rows = [0.0] * len(computed) + ([1.3, -1.3] if computed else [0.75, -0.75])[:len(leaves)]
        for key, row in zip(computed + leaves, rows):
            pos[key] = (2.6 * d, row)

    fig, ax = plt.subplots(figsize=(11, 3.8))
    for parent, child in edges:                  # arrow tensor -> function oval -> tensor
        (x0, y0), (x1, y1) = pos[id(parent)], pos[id(child)]
        fx, fy = x1 - 1.2, y1
        ax.annotate("", xy=(fx - 0.45, fy), xytext=(x0 + 0.55, y0),
                    arrowprops=dict(arrowstyle="->", color="0.4", lw=1.2))
    for key, t in nodes.items():
        x0, y0 = pos[key]
        if t._ctx is not None:                   # the Function that made t, drawn just left of it
            ax.annotate("", xy=(x0 - 0.55, y0), xytext=(x0 - 0.75, y0),
                        arrowprops=dict(arrowstyle="->", color="0.4", lw=1.2))
            ax.text(x0 - 1.2, y0, t._ctx.function.__name__, ha="center", va="center", fontsize=10,
                    bbox=dict(boxstyle="round,pad=0.4,rounding_size=0.8", fc="#fde9c9", ec="#d08a1e"))
        leaf_with_grad = t._ctx is None and t.requires_grad
        ax.text(x0, y0, f"{names.get(key, '')}\n{t.shape}", ha="center", va="center", fontsize=10,
                bbox=dict(boxstyle="square,pad=0.4", fc="#cfe3f7" if leaf_with_grad else "white", ec="0.3"))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(min(ys) - 0.9, max(ys) + 0.9)
    ax.axis("off")
    ax.set_title(title)
    _save(fig, path)


def error_curves(epsilons, curves, title, path):
    """curves: {label: errors over epsilons}, on log-log axes."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, errors in curves.items():
        ax.loglog(epsilons, errors, "o-", ms=3, label=label)
    ax.set_xlabel("eps")
    ax.set_ylabel("|finite difference - exact derivative|")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    _save(fig, path)


def loss_curve(losses, title, path):
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(range(len(losses)), losses, "o-", ms=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    _save(fig, path)


# ---- chapter 2: threads onto an array, and the tree sum ------------------------------------------------
def grid_mapping(n, threads, path):
    """i = blockIdx.x * blockDim.x + threadIdx.x for n elements and blocks of `threads`."""
    blocks = -(-n // threads)
    colours = plt.cm.Set2(np.arange(blocks))
    fig, ax = plt.subplots(figsize=(11, 3.3))
    for blk in range(blocks):
        x0 = blk * threads
        ax.add_patch(patches.Rectangle((x0 - 0.45, 1.55), threads - 0.1, 1.1, fc=colours[blk], alpha=0.25,
                                       ec=colours[blk], lw=2))
        ax.text(x0 + threads / 2 - 0.5, 2.85, f"blockIdx.x = {blk}", ha="center", fontsize=10)
        for t in range(threads):
            i = blk * threads + t
            idle = i >= n
            ax.add_patch(patches.Circle((i, 2.0), 0.32, fc="white" if idle else colours[blk], ec="0.3"))
            ax.text(i, 2.0, str(t), ha="center", va="center", fontsize=8, color="0.5" if idle else "black")
            if idle:
                continue
            ax.annotate("", xy=(i, 0.45), xytext=(i, 1.65), arrowprops=dict(arrowstyle="->", color="0.5"))
            ax.add_patch(patches.Rectangle((i - 0.45, -0.1), 0.9, 0.55, fc="#eeeeee", ec="0.3"))
            ax.text(i, 0.17, str(i), ha="center", va="center", fontsize=8)
    if blocks * threads > n:
        ax.text((n + blocks * threads - 1) / 2, 1.0, "i >= n:\nthese threads\ndo nothing", ha="center",
                va="center", fontsize=8, color="0.35")
    ax.text(-1.0, 2.0, "threadIdx.x", ha="right", va="center", fontsize=9)
    ax.text(-1.0, 0.17, "x[i], y[i]", ha="right", va="center", fontsize=9)
    ax.set_title(f"n = {n}, blockDim.x = {threads}, gridDim.x = cdiv(n, {threads}) = {blocks}:  "
                 f"i = blockIdx.x * blockDim.x + threadIdx.x")
    ax.set_xlim(-3.2, blocks * threads)
    ax.set_ylim(-0.4, 3.2)
    ax.set_aspect("equal")
    ax.axis("off")
    _save(fig, path, bbox_inches="tight")


def tree_sum(width, path):
    """The tree reduction of chapter 2 for `width` threads, with its barriers."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    steps = int(np.log2(width))
    for level in range(steps + 1):
        y0 = steps - level
        active = width >> level                          # slots still holding partial sums
        for t in range(width):
            live = t < active
            ax.add_patch(patches.Rectangle((t - 0.4, y0 - 0.25), 0.8, 0.5, ec="0.3",
                                           fc="#9ecae1" if live else "#f2f2f2"))
            label = f"x{t}" if level == 0 else (f"p[{t}]" if live else "")
            ax.text(t, y0, label, ha="center", va="center", fontsize=8)
        if level < steps:
            stride = width >> (level + 1)
            for t in range(stride):                      # thread t adds slot t + stride into slot t
                ax.annotate("", xy=(t, y0 - 1 + 0.27), xytext=(t + stride, y0 - 0.27),
                            arrowprops=dict(arrowstyle="->", color="#d95f02", lw=1.2))
                ax.annotate("", xy=(t, y0 - 1 + 0.27), xytext=(t, y0 - 0.27),
                            arrowprops=dict(arrowstyle="->", color="0.5", lw=1.0))
            done = "the loads" if level == 0 else f"stride {width >> level}"
            ax.plot([-0.5, width - 0.5], [y0 - 0.33] * 2, color="#7570b3", ls="--", lw=1)
            ax.text(width - 0.3, y0 - 0.33, f"__syncthreads()\nafter {done}", ha="left", va="center",
                    fontsize=8, color="#7570b3")
    ax.set_xlim(-0.8, width + 1.4)
    ax.set_ylim(-0.6, steps + 0.6)
    ax.axis("off")
    ax.set_title(f"Tree sum in shared memory, {width} threads: {steps} steps, a barrier between steps")
    _save(fig, path)


# ---- chapter 6: the loss kernel's threads, and the weight map ----------------------------------------------
def loss_kernel(path):
    """Left: one thread per pixel reading a (K=3, H*W=32) logits array; right: a block's tree reduction."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw=dict(width_ratios=[1.1, 1]))
    pixels, classes = 32, 3
    colors = plt.cm.tab10(np.arange(4))
    for k in range(classes):
        for s in range(pixels):
            ax1.add_patch(plt.Rectangle((s, -k), 1, 0.8, color=colors[s // 8], alpha=0.25 + 0.25 * k))
        ax1.text(-0.6, -k + 0.4, f"class {k}", ha="right", va="center")
    for s in range(0, pixels, 8):
        ax1.annotate("", xy=(s + 0.5, 0.85), xytext=(s + 0.5, 1.9), arrowprops=dict(arrowstyle="->"))
        ax1.text(s + 0.5, 2.0, f"thread {s}", ha="center", fontsize=8)
    ax1.text(16, -3.0, "at loop step k the threads read neighbouring addresses of row k: coalesced\n"
             "(colours: 4 warps of 8 threads here; 32 on a real GPU)", ha="center", fontsize=9)
    ax1.set_xlim(-6, pixels + 0.5), ax1.set_ylim(-3.5, 2.6), ax1.axis("off")
    ax1.set_title("logits of one image, NCHW: K rows of H*W pixels, one thread per pixel")
    vals = np.arange(1, 9, dtype=float)
    level = 0
    while len(vals) >= 1:
        for i, v in enumerate(vals):
            ax2.add_patch(plt.Rectangle((i, -level), 0.9, 0.7, color="tab:blue", alpha=0.3))
            ax2.text(i + 0.45, -level + 0.35, f"{v:g}", ha="center", va="center")
        if len(vals) == 1:
            break
        half = len(vals) // 2
        for i in range(half):
            for src in (i, i + half):
                ax2.annotate("", xy=(i + 0.45, -level - 1 + 0.7), xytext=(src + 0.45, -level),
                             arrowprops=dict(arrowstyle="->", color="gray", lw=0.8))
        who = "thread 0 adds" if half == 1 else f"threads 0..{half - 1} add"
        ax2.text(8.3, -level + 0.35, f"stride {half}: {who}", va="center", fontsize=9)
        vals = vals[:half] + vals[half:]
        level += 1
    ax2.text(0, -level - 0.7, "then __syncthreads(); thread 0 writes block_loss[blockIdx.x]", fontsize=9)
    ax2.set_xlim(-0.2, 12), ax2.set_ylim(-level - 1.1, 0.9), ax2.axis("off")
    ax2.set_title("a block's losses in shared memory: tree reduction")
    _save(fig, path)


def weight_map_panels(image, cells, wmap, w0, sigma, path):
    """The paper's Fig. 3 layout: image, instances, mask, weight map."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    palette = np.random.default_rng(1).uniform(0.2, 1.0, (cells.max() + 1, 3))
    palette[0] = 0
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("a) image")
    axes[1].imshow(image, cmap="gray")
    axes[1].imshow(palette[cells], alpha=0.55)
    axes[1].set_title("b) ground truth instances")
    axes[2].imshow(cells > 0, cmap="gray")
    axes[2].set_title("c) mask (white: cell)")
    im = axes[3].imshow(wmap, cmap="jet")
    axes[3].set_title(f"d) weight map (w0={w0}, sigma={sigma})")
    plt.colorbar(im, ax=axes[3], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    _save(fig, path, dpi=100)


# ---- chapter 7: the U-Net, in the style of the paper's Fig. 1 ----------------------------------------------
def unet_architecture(rows, path):
    """rows: (name, channels, side) as chapter 7 records them walking the network. One box per feature map,
    its height growing with the side; channels above it, side below it; the white box is the cropped copy.
    Pooling arrows leave a box's lower right corner and up-convolutions its upper right corner, so that no
    arrow crosses a label."""
    fig, ax = plt.subplots(figsize=(15, 8))
    y_of = lambda level: -2.1 * level  # noqa: E731
    box_w = lambda channels: 0.12 + 0.06 * np.log2(channels + 1)  # noqa: E731
    box_h = lambda side: 0.3 + 1.3 * side / 572  # noqa: E731
    colors = {"input": "lightgray", "down": "lightsteelblue", "up": "lightskyblue", "head": "tab:orange"}

    def draw_box(x, level, channels, side, color, label_x=None):
        w, h = box_w(channels), box_h(side)
        ax.add_patch(plt.Rectangle((x, y_of(level) - h / 2), w, h, facecolor=color, edgecolor="k"))
        ax.text(x + w / 2, y_of(level) + h / 2 + 0.04, str(channels), ha="center", va="bottom", fontsize=7)
        ax.text((x if label_x is None else label_x) + w / 2, y_of(level) - h / 2 - 0.04, str(side), ha="center",
                va="top", fontsize=7, color="0.3")
        return w, h

    def arrow(start, end, color, style="-"):
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color=color, lw=1.5,
                                                              linestyle=style, shrinkA=0, shrinkB=0))

    x, level, prev, skip_end, up_x = 0.0, 0, None, {}, None
    for name, channels, side in rows:
        kind = name.split()[0].rstrip(":")
        if "max pool" in name:                    # go one level down; the next conv box starts there
            level += 1
            continue
        if "crop skip" in name:                   # drawn with the concat below
            continue
        if "up-conv" in name:
            level -= 1
        if "concat" in name:                      # the cropped copy (white), just left of the up-conv output
            w_skip = box_w(channels // 2)
            ax.add_patch(plt.Rectangle((up_x - w_skip, y_of(level) - box_h(side) / 2), w_skip, box_h(side),
                                       facecolor="white", edgecolor="k"))
            arrow(skip_end[level], (up_x - w_skip, y_of(level)), "gray", "--")
            continue
        gap = 0.45
        x_new = x + (0 if prev is None else gap)
        if "up-conv" in name:
            x_new += box_w(channels)              # room for the white copy box
        w, h = draw_box(x_new, level, channels, side, colors[kind])
        if prev is not None:
            px, plevel, pw, ph = prev
            if plevel == level:                   # conv 3x3 (or the 1x1 head) on the same level
                arrow((px + pw, y_of(level)), (x_new, y_of(level)), "tab:orange" if kind == "head" else "tab:blue")
            elif level > plevel:                  # max pool: down, corner to corner
                arrow((px + pw, y_of(plevel) - ph / 2), (x_new, y_of(level) + h / 2), "tab:red")
            else:                                 # up-conv: up, corner to corner
                arrow((px + pw, y_of(plevel) + ph / 2), (x_new, y_of(level) - h / 2), "tab:green")
        if "up-conv" in name:
            up_x = x_new
        if kind == "down":
            skip_end[level] = (x_new + w, y_of(level))
        prev = (x_new, level, w, h)
        x = x_new + w

    legend = [("conv 3x3 + ReLU", "tab:blue"), ("max pool 2x2", "tab:red"), ("up-conv 2x2", "tab:green"),
              ("copy and crop (white box: the cropped copy)", "gray"), ("conv 1x1", "tab:orange")]
    for text, color in legend:
        ax.plot([], [], color=color, lw=2, label=text)
    ax.legend(loc="lower right", fontsize=9)
    ax.set_xlim(-0.3, x + 0.3)
    ax.set_ylim(y_of(4) - 1.0, 1.4)
    ax.axis("off")
    ax.set_title(f"U-Net, depth {len(skip_end)}: channels above each feature map, side below it; "
                 f"{rows[0][2]}x{rows[0][2]} in, {rows[-1][2]}x{rows[-1][2]} out")
    _save(fig, path, dpi=100)


# ---- chapter 4: max pooling's argmax, forward and backward ---------------------------------------------
def max_pool(x, y, argmax, gy, gx, path):
    """One image through max pooling: x's windows and maxima, y / argmax / gy, and the routed gradient dx."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    colours = plt.cm.Pastel1(np.arange(4))
    H, W = x.shape

    def grid(ax, values, cell_colour, labels, title):
        h, w = values.shape
        for i in range(h):
            for j in range(w):
                ax.add_patch(patches.Rectangle((j, i), 1, 1, fc=cell_colour(i, j), ec="0.5"))
                ax.text(j + 0.5, i + 0.5, labels(i, j), ha="center", va="center", fontsize=10)
        ax.set_xlim(-0.1, w + 0.1)
        ax.set_ylim(h + 0.1, -0.1)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(title, fontsize=10)

    def window_colour(i, j):
        return colours[(i // 2) * (W // 2) + j // 2]

    def winner(i, j):
        return argmax[i // 2, j // 2] == 2 * (i % 2) + (j % 2)

    grid(axes[0], x, window_colour, lambda i, j: (f"[{x[i, j]:g}]" if winner(i, j) else f"{x[i, j]:g}"),
         "x (4x4): windows by colour, [max] of each")
    for i in range(0, H, 2):
        for j in range(0, W, 2):
            axes[0].add_patch(patches.Rectangle((j, i), 2, 2, fill=False, ec="black", lw=2))
    grid(axes[1], y, lambda i, j: colours[i * (W // 2) + j],
         lambda i, j: f"y = {y[i, j]:g}\nargmax = {argmax[i, j]}\ngy = {gy[i, j]:g}",
         "forward: y and argmax = 2*dy + dx;\nbackward: the incoming gy")
    grid(axes[2], gx, lambda i, j: window_colour(i, j) if winner(i, j) else "white",
         lambda i, j: f"{gx[i, j]:g}", "dx: each gy goes to its window's argmax")
    _save(fig, path, bbox_inches="tight")

example = np.array([[1, 3, 2, 9], [4, 2, 7, 0], [5, 8, 6, 6], [1, 0, 1, 2]], dtype=np.float64)


# ---- chapter 5: scatter and gather -----------------------------------------------------------------------
def scatter_gather(path, H=3, W=3):
    """A 2x2 stride-2 scatter (patches tile the output), a 3x3 one (they overlap), and the gather form."""
    colours = plt.cm.Set3(np.arange(H * W))
    fig, axes = plt.subplots(1, 3, figsize=(14, 5.4))

    ax = axes[0]
    for i in range(H):
        for j in range(W):
            for a in range(2):
                for d in range(2):
                    p, q = 2 * i + a, 2 * j + d
                    ax.add_patch(patches.Rectangle((q, p), 1, 1, fc=colours[i * W + j], ec="0.6"))
                    ax.text(q + 0.5, p + 0.5, f"({a},{d})", ha="center", va="center", fontsize=8)
            ax.add_patch(patches.Rectangle((2 * j, 2 * i), 2, 2, fill=False, ec="black", lw=2))
    ax.set_title("scatter, 2x2 kernel, stride 2:\neach input pixel writes its own 2x2 patch")

    ax = axes[1]
    k, s = 3, 2
    size = s * (H - 1) + k
    writers = np.zeros((size, size), int)
    for i in range(H):
        for j in range(W):
            writers[s * i:s * i + k, s * j:s * j + k] += 1
    ax.imshow(writers, cmap="Oranges", vmin=0, vmax=5, extent=(0, size, size, 0))
    for p in range(size):
        for q in range(size):
            ax.text(q + 0.5, p + 0.5, str(writers[p, q]), ha="center", va="center", fontsize=9)
    for (i, j), edge, style in (((0, 0), "#1f78b4", "-"), ((0, 1), "#33a02c", "--")):
        ax.add_patch(patches.Rectangle((s * j + 0.06, s * i + 0.06), k - 0.12, k - 0.12, fill=False, ec=edge,
                                       lw=3, ls=style))
    ax.set_title("scatter, 3x3 kernel, stride 2: patches overlap,\nup to 4 threads add into one pixel (atomics)")

    ax = axes[2]
    for p in range(2 * H):
        for q in range(2 * W):
            ax.add_patch(patches.Rectangle((q, p), 1, 1, fc=colours[(p // 2) * W + q // 2], ec="0.6"))
            ax.text(q + 0.5, p + 0.5, f"x[{p // 2},{q // 2}]\nw(..,{p % 2},{q % 2})", ha="center",
                    va="center", fontsize=6.5)
    ax.set_title("gather, 2x2 kernel, stride 2: output (p, q) reads\nx[p//2, q//2] through tap (p%2, q%2)")

    for ax, n in zip(axes, (2 * H, size, 2 * W)):
        ax.set_xlim(0, n)
        ax.set_ylim(n, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, path, bbox_inches="tight")
