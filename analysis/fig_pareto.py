"""Pareto fronts: recall vs simulated throughput per hardware (trace-sims.csv), and measured
accuracy vs budget normalised to the dense run of the same context (accuracy/*.json)."""

import math

from matplotlib.lines import Line2D

from attention import (accuracy_series_label, label_order, pareto_groups, pareto_title,
                       sim_point_label)
from fig_attention import budget_axis, policy_color
from style import finish_with_top_legend, legend_height_in, plt, save


def _grid(n, max_cols):
    ncols = min(max_cols, n)
    return int(math.ceil(n / float(ncols))), ncols


def _marker_size(budget, budgets):
    """Marker area grows with log2(budget) across the budgets drawn."""
    if not budget or not budgets:
        return 40.0
    lo, hi = math.log2(min(budgets)), math.log2(max(budgets))
    f = 0.5 if hi == lo else (math.log2(budget) - lo) / (hi - lo)
    return 18.0 + 72.0 * f


def pareto_figure(rows, fig_dir, log, stem="pareto-recall-vs-throughput"):
    """Per hardware (and model, workload, trace) a panel: one marker per (policy, budget) at
    (simulated throughput, recall); the non-dominated points joined as a step line."""
    groups = [g for g in pareto_groups(rows or []) if g["rows"]]
    if not groups:
        return None
    labels = []
    for r in rows:
        lab = sim_point_label(r, rows)
        if lab not in labels:
            labels.append(lab)
    labels.sort(key=label_order)
    handles = [Line2D([], [], color=policy_color(l), marker="o", ls="none", ms=6, label=l)
               for l in labels]
    handles.append(Line2D([], [], color="black", lw=1.2, drawstyle="steps-pre",
                          label="Pareto front (labels: budget B)"))
    ncol = len(handles) if len(handles) <= 6 else 4
    n = len(groups)
    nrows, ncols = _grid(n, 2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 4.0 * nrows
                                                    + legend_height_in(len(handles), ncol)),
                             squeeze=False)
    for idx, g in enumerate(groups):
        ax = axes[idx // ncols][idx % ncols]
        budgets = [r["budget"] for r in g["points"] if r["budget"]]
        for r in g["points"]:
            lab = sim_point_label(r, rows)
            ax.scatter([r["throughput_tok_s"]], [r["recall"]], s=_marker_size(r["budget"], budgets),
                       color=policy_color(lab), edgecolors="none", alpha=0.85, zorder=3)
        front = g["front"]
        if front:
            ax.plot([r["throughput_tok_s"] for r in front], [r["recall"] for r in front],
                    color="black", lw=1.2, drawstyle="steps-pre", zorder=4)
            ax.scatter([r["throughput_tok_s"] for r in front], [r["recall"] for r in front],
                       s=[_marker_size(r["budget"], budgets) for r in front],
                       facecolors="none", edgecolors="black", lw=1.0, zorder=5)
            for r in front:
                ax.annotate("%s" % r["budget"], (r["throughput_tok_s"], r["recall"]),
                            xytext=(4, 3), textcoords="offset points", fontsize=6.5)
        xs = [r["throughput_tok_s"] for r in g["points"] if r["throughput_tok_s"] > 0]
        if xs and max(xs) / min(xs) > 30:
            ax.set_xscale("log")
        else:
            ax.set_xlim(left=0, right=(max(xs) * 1.12) if xs else None)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("throughput (tokens/s, simulated)")
        ax.set_ylabel("recall (attention mass, measured)")
        title = pareto_title(g, groups)
        bad = len(g["left_out"])
        if bad:
            title += "\n(%d infeasible point%s not drawn)" % (bad, "" if bad == 1 else "s")
        if not g["points"]:
            ax.text(0.5, 0.5, "no feasible point", transform=ax.transAxes, ha="center",
                    va="center", fontsize=9, color="#555555")
        ax.set_title(title, fontsize=9)
    for idx in range(n, nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    finish_with_top_legend(fig, handles, "Recall vs throughput per (policy, budget): the "
                           "Pareto front (marker size grows with the budget)", ncol)
    return save(fig, fig_dir, stem, log)


def accuracy_figure(acc_rows, fig_dir, log, stem="accuracy-vs-budget"):
    """Per task and context a panel: measured accuracy / the dense accuracy there vs budget,
    a line per policy (and variant, and backend or file where needed)."""
    rows = [r for r in acc_rows if r["policy"] != "full" and r["normalised"] is not None
            and r["budget"]]
    if not rows:
        return None
    panels = sorted({(r["task"], r["context"]) for r in rows})
    series = {}
    for r in rows:
        series.setdefault(((r["task"], r["context"]), accuracy_series_label(r, acc_rows)), []).append(r)
    labels = sorted({lab for _, lab in series}, key=label_order)
    # Colour by policy; line style and marker by (file, variant), the same in every panel.
    combos = sorted({(r["file_index"], r["variant"]) for r in rows})
    ls_cycle = ["-", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1, 1, 1, 1, 1))]
    style = {}
    for r in rows:
        lab = accuracy_series_label(r, acc_rows)
        if lab not in style:
            i = combos.index((r["file_index"], r["variant"]))
            style[lab] = (policy_color(r["policy"]), ls_cycle[i % len(ls_cycle)], "osD^v"[i % 5])
    handles = [Line2D([], [], color=style[lab][0], ls=style[lab][1], marker=style[lab][2],
                      ms=4, label=lab) for lab in labels]
    handles.append(Line2D([], [], color="#555555", ls="--", lw=0.9,
                          label="dense (full KV) = 1"))
    ncol = min(len(handles), 4)
    n = len(panels)
    nrows, ncols = _grid(n, 3)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.6 * nrows
                                                    + legend_height_in(len(handles), ncol)),
                             squeeze=False)
    top = max([1.0] + [r["normalised"] for r in rows])
    for idx, panel in enumerate(panels):
        ax = axes[idx // ncols][idx % ncols]
        in_panel = [r for r in rows if (r["task"], r["context"]) == panel]
        budgets = sorted({r["budget"] for r in in_panel})
        for lab in labels:
            rs = sorted(series.get((panel, lab), []), key=lambda r: r["budget"])
            if not rs:
                continue
            color, ls, marker = style[lab]
            ax.plot([r["budget"] for r in rs], [r["normalised"] for r in rs], color=color,
                    ls=ls, marker=marker, ms=4, lw=1.4)
        ax.axhline(1.0, color="#555555", ls="--", lw=0.9)
        budget_axis(ax, budgets)
        ax.set_ylim(0, top * 1.08)
        dense = sorted({r["dense"] for r in in_panel})
        ax.set_title("%scontext %d (dense %s)"
                     % (panel[0] + " · " if panel[0] else "", panel[1], " / ".join("%.2f" % d for d in dense)), fontsize=9)
        ax.set_xlabel("KV budget B (tokens per head)")
        ax.set_ylabel("accuracy / dense accuracy")
    for idx in range(n, nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    finish_with_top_legend(fig, handles, "Measured accuracy vs KV budget, normalised to the "
                           "dense run of the same task and context", ncol)
    return save(fig, fig_dir, stem, log)


def engine_point_label(point, panel):
    """The policy; plus the accuracy file where the panel has that policy from several files."""
    sources = {p["source"] for p in panel["points"] if p["policy"] == point["policy"]}
    return point["policy"] if len(sources) <= 1 else "%s · %s" % (point["policy"], point["source"])


def engine_pareto_figure(panels, fig_dir, log, stem="pareto-accuracy-vs-measured-throughput"):
    """Per accuracy task and context (and engine run) a panel: one marker per (policy, budget) at
    (measured engine tokens/s, accuracy / dense), the dense run at (its tokens/s, 1), and the
    non-dominated points joined as a step line."""
    if not panels:
        return None
    labels = sorted({engine_point_label(p, g) for g in panels for p in g["points"]}, key=label_order)
    handles = [Line2D([], [], color=policy_color(l.split(" · ")[0]), marker="o", ls="none", ms=6,
                      label=l) for l in labels]
    handles.append(Line2D([], [], color="black", marker="*", ls="none", ms=9, label="dense (full KV)"))
    handles.append(Line2D([], [], color="black", lw=1.2, drawstyle="steps-pre",
                          label="Pareto front (labels: engine budget B)"))
    ncol = min(len(handles), 4)
    nrows, ncols = _grid(len(panels), 3)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.8 * nrows
                                                    + legend_height_in(len(handles), ncol)),
                             squeeze=False)
    several_engines = len({(g["engine"], g["depth"], g["requests"]) for g in panels}) > 1
    for idx, g in enumerate(panels):
        ax = axes[idx // ncols][idx % ncols]
        budgets = [p["engine_budget"] for p in g["points"]]
        for p in g["points"]:
            ax.scatter([p["tokens_per_s"]], [p["normalised"]], s=_marker_size(p["engine_budget"], budgets),
                       color=policy_color(p["policy"]), edgecolors="none", alpha=0.85, zorder=3)
        if g["dense"]:
            ax.scatter([g["dense"]["tokens_per_s"]], [1.0], marker="*", s=110, color="black", zorder=5)
        xy = [(p["tokens_per_s"], p["normalised"]) if p else (g["dense"]["tokens_per_s"], 1.0)
              for p in g["front"]]
        ax.plot([x for x, _ in xy], [y for _, y in xy], color="black", lw=1.2, drawstyle="steps-pre",
                zorder=4)
        for p, (x, y) in zip(g["front"], xy):
            if p:
                ax.annotate("%d" % p["engine_budget"], (x, y), xytext=(4, 3), textcoords="offset points",
                            fontsize=6.5)
        xs = [x for x, _ in xy] + [p["tokens_per_s"] for p in g["points"]]
        ax.set_xlim(0, max(xs) * 1.12)
        ax.set_ylim(0, max([1.0] + [p["normalised"] for p in g["points"]]) * 1.08)
        ax.set_xlabel("throughput (tokens/s, measured: R = %d at %d)" % (g["requests"], g["depth"]))
        ax.set_ylabel("accuracy / dense accuracy (measured)")
        title = "%scontext %d (B/context as the engine's B/%d)" % (
            g["task"] + " · " if g["task"] else "", g["context"], g["depth"])
        if several_engines:
            title += "\n" + g["engine"]
        ax.set_title(title, fontsize=9)
    for idx in range(len(panels), nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    finish_with_top_legend(fig, handles, "Measured accuracy vs measured engine throughput per "
                           "(policy, budget): the Pareto front", ncol)
    return save(fig, fig_dir, stem, log)
