"""docs/frontier.png: size ratio against time ratio of every setting of the frontier run, the
seed's point marked, the issue's box drawn and the frontier joined. matplotlib is the bench's own
requirement (requirements-bench.txt), imported only here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmarks.frontier import BLOCKS, BOX, TRIXIE, Box, Point, Setting, all_ratios, frontier

COLOURS = dict(zip(BLOCKS, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=True))


def short(setting: Setting) -> str:
    """The point's name on the plot."""
    if setting.seed:
        return "seed"
    parts = [setting.block]
    parts += ["bcj"] if setting.bcj else []
    parts += [f"d{setting.dict_size}"] if setting.dict_size else []
    parts += [" ".join(setting.extra)] if setting.extra else []
    parts += ["(4.6)"] if setting.tools == TRIXIE else []
    return " ".join(parts)


def plot(points: Sequence[Point], png: Path, title: str, box: Box = BOX) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    found = all_ratios(points)
    figure, axes = plt.subplots(figsize=(11, 6), dpi=100)
    xs = [r.time for r in found.values()] + [box.time]
    ys = [r.size for r in found.values()] + [box.size]
    left, bottom = min(xs) - 0.1, min(ys) - 0.02
    axes.add_patch(
        Rectangle(
            (left, bottom),
            box.time - left,
            box.size - bottom,
            facecolor="tab:green",
            alpha=0.12,
            edgecolor="tab:green",
            linestyle="--",
            label=f"issue 26's box: ≤ {box.size}x bytes, ≤ {box.time}x time",
        )
    )
    for point in points:
        r, s = found[point.label], point.setting
        if s.seed:
            axes.scatter(r.time, r.size, marker="*", s=320, color="black", zorder=3,
                         label="seed: mksquashfs xz 128K, the original script")  # fmt: skip
        else:
            marker = "^" if s.bcj else ("s" if s.dict_size else ("D" if s.extra else "o"))
            colour = COLOURS.get(s.block, "grey")
            hollow = s.tools == TRIXIE
            axes.scatter(r.time, r.size, marker=marker, s=55, zorder=3, edgecolors=colour,
                         facecolors="none" if hollow else colour)  # fmt: skip
        axes.annotate(short(s), (r.time, r.size), textcoords="offset points", xytext=(5, 4),
                      fontsize=7)  # fmt: skip
    edge = frontier(found)
    axes.plot([found[e].time for e in edge], [found[e].size for e in edge], color="grey",
              linewidth=1, drawstyle="steps-post", label="frontier", zorder=2)  # fmt: skip
    for block, colour in COLOURS.items():
        axes.scatter([], [], marker="o", color=colour, label=f"{block} blocks")
    axes.scatter([], [], marker="^", color="grey", label="x86 BCJ filter")
    axes.scatter([], [], marker="s", color="grey", label="-Xdict-size below the block")
    axes.scatter([], [], marker="o", facecolors="none", edgecolors="grey",
                 label="squashfs-tools 4.6.1 (hollow)")  # fmt: skip
    axes.set_xlim(left, max(xs) + 0.1)
    axes.set_ylim(bottom, max(ys) + 0.02)
    axes.set_xlabel("pack seconds / the seed's (median of the rounds' ratios)")
    axes.set_ylabel("image bytes / the seed's")
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: no point hidden
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, metadata={"Software": None})
    plt.close(figure)
