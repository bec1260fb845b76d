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
