"""Figure 5: throughput per host-link variant per system (host-link-whatif.csv)."""

import math

from matplotlib.patches import Patch

from results import distinct, infeasible_tag, label_order, workload_label
from style import (finish_with_top_legend, legend_height_in, plt, save,
                   system_color)

VARIANT_ORDER = ("pcie3-x16", "pcie4-x16", "pcie5-x16", "nvlink-c2c")


def _panel_key(r):
    return (r["model"], r["input"], r["output"], r["requests_mode"])


def _variant_sort(first_seen):
    def key(v):
        hw, var = v
        rank = VARIANT_ORDER.index(var) if var in VARIANT_ORDER else len(VARIANT_ORDER)
        return (rank, first_seen.index(v))
    return key


def figure(rows, fig_dir, log, stem="host-link-whatif"):
    keys = distinct(rows, _panel_key)
    if not keys:
        return None
    labels = sorted(distinct(rows, "label"), key=label_order)
    n = len(keys)
    ncols = min(2, n)
    nrows = int(math.ceil(n / float(ncols)))
    first_seen = distinct(rows, lambda r: (r["hardware"], r["hardware_variant"]))
    nv = len(first_seen)
    width = max(6.0, 1.2 + nv * (0.32 * len(labels) + 0.5))
    height = 4.0 * nrows + legend_height_in(len(labels), 9)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height), squeeze=False)
    for idx, key in enumerate(keys):
        ax = axes[idx // ncols][idx % ncols]
        prow = [r for r in rows if _panel_key(r) == key]
        variants = sorted(distinct(prow, lambda r: (r["hardware"], r["hardware_variant"])),
                          key=_variant_sort(first_seen))
        bw = 0.84 / max(len(labels), 1)
        top = max([r["throughput_tok_s"] or 0 for r in prow] + [1e-9])
        for vi, v in enumerate(variants):
            for li, label in enumerate(labels):
                x = vi - 0.42 + bw * (li + 0.5)
                match = [r for r in prow if r["label"] == label
                         and (r["hardware"], r["hardware_variant"]) == v]
                if not match:
                    continue
                r = match[0]
                color = system_color(label)
                if r["feasible"] and r["throughput_tok_s"] is not None:
                    ax.bar(x, r["throughput_tok_s"], width=bw * 0.92, color=color,
                           edgecolor="black" if label == "SpeContext" else "none", lw=0.6)
                    if r["requests_mode"] == "best" and r["requests"] is not None:
                        ax.annotate("R=%d" % r["requests"], (x, r["throughput_tok_s"]),
                                    xytext=(0, 2), textcoords="offset points", ha="center",
                                    va="bottom", fontsize=6, rotation=90)
                else:
                    ax.plot(x, 0, marker="x", ms=7, mew=2, color=color, ls="none",
                            clip_on=False, zorder=5)
                    ax.annotate(infeasible_tag(r["reason"]), (x, 0), xytext=(0, 6),
                                textcoords="offset points", ha="center", va="bottom",
                                fontsize=6.5, rotation=90, fontweight="bold")
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(["%s\n%s" % (var or "(as configured)", hw) for hw, var in variants])
        ax.set_xlim(-0.5, len(variants) - 0.5)
        ax.set_ylim(0, top * 1.25)
        model, i, o, mode = key
        ax.set_title("%s · %s · R %s" % (model, workload_label({"input": i, "output": o},
                                                               compact=True), mode))
        ax.set_ylabel("throughput (tokens/s)")
        ax.set_xlabel("host link (hardware)")
    for idx in range(n, nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    handles = [Patch(color=system_color(l), label=l) for l in labels]
    finish_with_top_legend(fig, handles, "Host-link what-if: throughput per link (simulated; "
                           "x = infeasible)", min(len(handles), 9))
    return save(fig, fig_dir, stem, log)
