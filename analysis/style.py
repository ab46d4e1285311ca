"""Matplotlib set-up shared by all figures: Agg, fixed colours, deterministic files."""

import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({
    "svg.hashsalt": "specontext",     # stable SVG ids
    "svg.fonttype": "path",
    "figure.dpi": 100,
    "savefig.dpi": 130,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
})

SYSTEM_COLORS = {
    "hf-eager": "#7f7f7f",
    "hf-flash": "#bcbd22",
    "flashinfer": "#1f77b4",
    "quest": "#2ca02c",
    "clusterkv": "#9467bd",
    "shadowkv": "#8c564b",
    "specontext[c1]": "#fdae6b",
    "specontext[c1+c2]": "#f16913",
    "SpeContext": "#d62728",
}
_EXTRA = ["#17becf", "#e377c2", "#393b79", "#637939", "#8c6d31", "#843c39"]

CATEGORY_COLORS = {
    "host": "#7f7f7f",
    "retrieval": "#d62728",
    "select": "#ff7f0e",
    "prefetch": "#17becf",
    "attention": "#1f77b4",
    "mlp": "#2ca02c",
    "proj": "#9467bd",
    "sample": "#8c564b",
    "embed": "#e377c2",
    "sync": "#bcbd22",
    "norm": "#aec7e8",
}

_assigned = {}


def system_color(label):
    if label in SYSTEM_COLORS:
        return SYSTEM_COLORS[label]
    if label.startswith("specontext["):
        return "#fd8d3c"
    if label not in _assigned:
        _assigned[label] = _EXTRA[len(_assigned) % len(_EXTRA)]
    return _assigned[label]


def category_color(cat, _extra={}):
    if cat in CATEGORY_COLORS:
        return CATEGORY_COLORS[cat]
    if cat not in _extra:  # an unnamed category never takes a named one's colour
        free = [c for c in _EXTRA if c not in CATEGORY_COLORS.values()]
        _extra[cat] = free[len(_extra) % len(free)]
    return _extra[cat]


def save(fig, fig_dir, stem, log):
    """Write stem.png and stem.svg without dates; returns the PNG's file name."""
    os.makedirs(fig_dir, exist_ok=True)
    png = os.path.join(fig_dir, stem + ".png")
    svg = os.path.join(fig_dir, stem + ".svg")
    fig.savefig(png, metadata={"Software": None}, bbox_inches="tight")
    fig.savefig(svg, metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    plt.close(fig)
    log("wrote %s (+ .svg)" % png)
    return stem + ".png"


def legend_height_in(n_handles, ncol):
    """Inches to reserve above the panels for a suptitle and an n-row legend."""
    rows = -(-n_handles // ncol)
    return 0.3 + 0.18 * rows


def finish_with_top_legend(fig, handles, title, ncol):
    """Suptitle, then the legend, then the panels (tight) below them."""
    height = fig.get_size_inches()[1]
    frac = 1.0 - legend_height_in(len(handles), ncol) / height
    fig.legend(handles=handles, loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, frac))
    fig.suptitle(title, y=0.998)
    fig.tight_layout(rect=(0, 0, 1, frac))
